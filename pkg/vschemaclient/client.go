// Package vschemaclient calls vschemad's HTTP API (pkg/vschemaapi): a
// Client for its requests, and Import, which applies many keyspaces'
// vschemas in batches and resumes from a journal.
package vschemaclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/topod-io/topod/pkg/tlsconfig"
	"github.com/topod-io/topod/pkg/vschemaapi"
)

// Options say which vschemad a Client calls, and how.
type Options struct {
	Server   *url.URL      // http://host:port or https://host:port (ParseServer)
	Token    string        // bearer token; "" for none
	CAFile   string        // CA bundle (PEM) to verify the server's certificate
	CertFile string        // client certificate (PEM), for servers that require one
	KeyFile  string        // the client certificate's key (PEM)
	Timeout  time.Duration // deadline of each request; 0 for none
}

// DefaultServer is the server `vschemad`'s client commands call unless
// told otherwise (--server, $VSCHEMAD_SERVER): `vschemad serve`'s default
// address.
const DefaultServer = "http://127.0.0.1:15980"

// ParseServer parses a vschemad URL: http://host:port or https://host:port.
func ParseServer(s string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSuffix(s, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("vschemad server %q: want http://host:port or https://host:port", s)
	}
	return u, nil
}

// Client calls the vschemad API.
type Client struct {
	base    *url.URL
	token   string
	hc      *http.Client
	timeout time.Duration
}

// New returns a Client of opts.
func New(opts Options) (*Client, error) {
	if opts.Server == nil {
		return nil, errors.New("vschemad client: no server")
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if files := (tlsconfig.Files{CA: opts.CAFile, Cert: opts.CertFile, Key: opts.KeyFile}); files.Enabled() {
		tc, err := tlsconfig.Client(files)
		if err != nil {
			return nil, fmt.Errorf("vschemad client TLS: %w", err)
		}
		tr.TLSClientConfig = tc
	}
	return &Client{base: opts.Server, token: opts.Token, hc: &http.Client{Transport: tr}, timeout: opts.Timeout}, nil
}

// APIError is an error response of the API.
type APIError vschemaapi.ErrorResponse

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (HTTP %d)", e.Message, e.Status)
	if e.Validation != nil && len(e.Validation.Errors) > 1 {
		for _, p := range e.Validation.Errors {
			fmt.Fprintf(&b, "\nerror: %s", p)
		}
	}
	return b.String()
}

// Do sends a request to path (escaped already, e.g. KeyspacePath) and
// returns the body and headers of a 2xx response, or an *APIError.
func (c *Client) Do(ctx context.Context, method, path string, query url.Values, body []byte, header http.Header) ([]byte, http.Header, error) {
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
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
	if body != nil || (method != http.MethodGet && method != http.MethodHead) {
		// Every request but a read says JSON, with a body or without: a
		// vschemad serving without bearer tokens refuses one that does not
		// (415), as it would a web page's form or text/plain POST.
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
		e := &APIError{Status: resp.StatusCode}
		if json.Unmarshal(out, e) != nil || e.Message == "" {
			e.Message = strings.TrimSpace(string(out))
		}
		e.Status = resp.StatusCode
		return nil, resp.Header, e
	}
	return out, resp.Header, nil
}

// KeyspacePath is the API path of a keyspace's vschema, escaped.
func KeyspacePath(ks string) string {
	return "/api/v1/keyspaces/" + url.PathEscape(ks) + "/vschema"
}

// PreviousVersion returns the version keyspace ks's vschema had before its
// last write through vschemad, from the keyspace's history (the audit log):
// what `vschemad rollback --to-previous` goes back to. It is an error if
// the history holds no write of ks, if that write created the vschema (no
// version before it), or if the vschema has changed since outside vschemad
// (its current version is not the one that write made).
func (c *Client) PreviousVersion(ctx context.Context, ks string) (string, error) {
	out, _, err := c.Do(ctx, http.MethodGet, KeyspacePath(ks)+"/history", nil, nil, nil)
	if err != nil {
		return "", err
	}
	var h vschemaapi.HistoryResponse
	if err := json.Unmarshal(out, &h); err != nil {
		return "", fmt.Errorf("bad history response: %w", err)
	}
	for _, e := range h.Entries { // newest first
		if e.NewVersion == "" && e.OldVersion == "" {
			continue // nothing was written
		}
		switch {
		case e.NewVersion != h.CurrentVersion:
			return "", fmt.Errorf("keyspace %s: its vschema is at version %s, not %s, which vschemad's last write (%s) made: it changed outside vschemad; pick a version with --to-version",
				ks, orNone(h.CurrentVersion), orNone(e.NewVersion), e.Action)
		case e.OldVersion == "":
			return "", fmt.Errorf("keyspace %s: vschemad's last write (%s, version %s) created its vschema: there is no version before it", ks, e.Action, e.NewVersion)
		}
		return e.OldVersion, nil
	}
	return "", fmt.Errorf("keyspace %s: vschemad's audit log has no write of it to go back from; pick a version with --to-version", ks)
}

func orNone(v string) string {
	if v == "" {
		return "none"
	}
	return v
}
