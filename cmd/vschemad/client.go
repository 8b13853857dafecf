package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/topod-io/topod/pkg/tlsconfig"
	"github.com/topod-io/topod/pkg/vschemastore"
)

// clientFlags are the flags every client subcommand shares.
type clientFlags struct {
	server    string
	token     string
	tokenFile string
	caFile    string
	certFile  string
	keyFile   string
	timeout   time.Duration
	output    string
}

// register adds the flags to a client subcommand.
func (f *clientFlags) register(cmd *cobra.Command) {
	pf := cmd.Flags()
	pf.StringVar(&f.server, "server", envOr("VSCHEMAD_SERVER", "http://127.0.0.1:15980"), "vschemad URL ($VSCHEMAD_SERVER)")
	pf.StringVar(&f.token, "token", "", "bearer token ($VSCHEMAD_TOKEN)")
	pf.StringVar(&f.tokenFile, "token-file", "", "file holding the bearer token")
	pf.StringVar(&f.caFile, "ca-file", "", "CA bundle (PEM) to verify the server's certificate")
	pf.StringVar(&f.certFile, "cert", "", "client certificate (PEM), for servers that require one")
	pf.StringVar(&f.keyFile, "key", "", "client certificate's key (PEM)")
	pf.DurationVar(&f.timeout, "timeout", 10*time.Minute, "deadline of each request")
	pf.StringVarP(&f.output, "output", "o", "text", "text or json")
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// client calls the vschemad API.
type client struct {
	base    *url.URL
	token   string
	hc      *http.Client
	timeout time.Duration
}

func (f *clientFlags) client() (*client, error) {
	if f.output != "text" && f.output != "json" {
		return nil, usageError{fmt.Errorf("--output %q: want text or json", f.output)}
	}
	u, err := url.Parse(strings.TrimSuffix(f.server, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usageError{fmt.Errorf("--server %q: want http://host:port or https://host:port", f.server)}
	}
	tok := f.token
	if tok == "" {
		tok = os.Getenv("VSCHEMAD_TOKEN")
	}
	if f.tokenFile != "" {
		b, err := os.ReadFile(f.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("--token-file: %w", err)
		}
		tok = strings.TrimSpace(string(b))
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if files := (tlsconfig.Files{CA: f.caFile, Cert: f.certFile, Key: f.keyFile}); files.Enabled() {
		tc, err := tlsconfig.Client(files)
		if err != nil {
			return nil, fmt.Errorf("--ca-file/--cert/--key: %w", err)
		}
		tr.TLSClientConfig = tc
	}
	return &client{base: u, token: tok, hc: &http.Client{Transport: tr}, timeout: f.timeout}, nil
}

// apiError is an error response of the API.
type apiError struct {
	Status     int                      `json:"status"`
	Message    string                   `json:"error"`
	Validation *vschemastore.Validation `json:"validation,omitempty"`
	Result     json.RawMessage          `json:"result,omitempty"`
}

func (e *apiError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (HTTP %d)", e.Message, e.Status)
	if e.Validation != nil && len(e.Validation.Errors) > 1 {
		for _, p := range e.Validation.Errors {
			fmt.Fprintf(&b, "\nerror: %s", p)
		}
	}
	return b.String()
}

// do sends a request and returns the body of a 2xx response, or an
// *apiError.
func (c *client) do(ctx context.Context, method, path string, query url.Values, body []byte, header http.Header) ([]byte, http.Header, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var err error
	// path is escaped already (keyspacePath): keep its escapes.
	u := *c.base
	u.RawPath = c.base.EscapedPath() + path
	u.Path, err = url.PathUnescape(u.RawPath)
	if err != nil {
		return nil, nil, fmt.Errorf("bad path %q: %w", path, err)
	}
	u.RawQuery = query.Encode()
	var rd io.Reader
	var req *http.Request
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err = http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: %w", method, u.Redacted(), err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: read response: %w", method, u.Redacted(), err)
	}
	if resp.StatusCode/100 != 2 {
		e := &apiError{Status: resp.StatusCode}
		if json.Unmarshal(out, e) != nil || e.Message == "" {
			e.Message = strings.TrimSpace(string(out))
		}
		e.Status = resp.StatusCode
		return nil, resp.Header, e
	}
	return out, resp.Header, nil
}

// keyspacePath is the API path of a keyspace's vschema, escaped.
func keyspacePath(ks string) string {
	return "/api/v1/keyspaces/" + url.PathEscape(ks) + "/vschema"
}
