// Package vschemaclient calls vschemad's HTTP API: a Client with one method
// per endpoint, answering the API's own types (package
// vschemaapi/wire) or, for vschemas, rules and SrvVSchemas, Vitess's JSON
// as the server sent it; and Import, which applies many keyspaces'
// vschemas in batches and resumes from a journal.
//
// It links no server code: what a vschema means (validation, references
// the topology must hold) is the server's to decide, and its refusals come
// back as *APIError with the problems it found.
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
	"strconv"
	"strings"
	"time"

	"github.com/topod-io/topod/pkg/tlsconfig"
	"github.com/topod-io/topod/pkg/vschemaapi/wire"
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

// Client calls the vschemad API. Its methods are safe for concurrent use.
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
type APIError wire.ErrorResponse

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

// Document is a vschema, rules or a SrvVSchema as the server sent it:
// Vitess's protobuf JSON (vtctldclient's), or the protobuf bytes of
// CellSrvVSchemaProto; Version is its version (the answer's ETag).
type Document struct {
	Version string
	Data    []byte
}

// WriteOptions adjust a write.
type WriteOptions struct {
	// DryRun validates and diffs without writing.
	DryRun bool
	// Strict refuses unknown vindex parameters (vschemas only).
	Strict bool
	// IfMatch, if set, writes only if the current version is this one.
	IfMatch string
	// FullDiff keeps each keyspace's changes in a batch's answer (ApplyVSchemas
	// only: without it, only their counts and summary).
	FullDiff bool
}

func (o WriteOptions) query() url.Values {
	q := url.Values{}
	for name, on := range map[string]bool{"dry_run": o.DryRun, "strict": o.Strict, "full_diff": o.FullDiff} {
		if on {
			q.Set(name, "true")
		}
	}
	return q
}

func (o WriteOptions) header() http.Header {
	h := http.Header{}
	if o.IfMatch != "" {
		h.Set("If-Match", strconv.Quote(o.IfMatch))
	}
	return h
}

// The rules kinds, as their endpoints name them (/api/v1/KIND).
const (
	RoutingRules         = "routing-rules"
	ShardRoutingRules    = "shard-routing-rules"
	KeyspaceRoutingRules = "keyspace-routing-rules"
	MirrorRules          = "mirror-rules"
)

func keyspacePath(ks string) string {
	return "/api/v1/keyspaces/" + url.PathEscape(ks) + "/vschema"
}

// Healthz checks that the server answers: GET /healthz.
func (c *Client) Healthz(ctx context.Context) error {
	_, _, err := c.do(ctx, http.MethodGet, "/healthz", nil, nil, nil)
	return err
}

// GetVSchema returns keyspace ks's vschema: GET .../vschema.
func (c *Client) GetVSchema(ctx context.Context, ks string) (*Document, error) {
	return c.document(ctx, keyspacePath(ks), nil)
}

// GetVSchemaAt returns keyspace ks's vschema at a past version (see
// History): GET .../vschema/versions/{version}.
func (c *Client) GetVSchemaAt(ctx context.Context, ks, version string) (*Document, error) {
	return c.document(ctx, keyspacePath(ks)+"/versions/"+url.PathEscape(version), nil)
}

// ApplyVSchema validates and writes keyspace ks's vschema (Vitess's JSON,
// as vtctldclient ApplyVSchema --vschema takes): PUT .../vschema.
func (c *Client) ApplyVSchema(ctx context.Context, ks string, vschema []byte, opts WriteOptions) (*wire.ApplyResponse, error) {
	return callAs[wire.ApplyResponse](ctx, c, http.MethodPut, keyspacePath(ks), opts.query(), vschema, opts.header())
}

// DeleteVSchema deletes keyspace ks's vschema: DELETE .../vschema.
func (c *Client) DeleteVSchema(ctx context.Context, ks string, opts WriteOptions) (*wire.ApplyResponse, error) {
	return callAs[wire.ApplyResponse](ctx, c, http.MethodDelete, keyspacePath(ks), opts.query(), nil, opts.header())
}

// Rollback writes a past version of keyspace ks's vschema again: POST
// .../vschema/rollback.
func (c *Client) Rollback(ctx context.Context, ks, version string, opts WriteOptions) (*wire.ApplyResponse, error) {
	body, err := json.Marshal(wire.RollbackRequest{Version: version})
	if err != nil {
		return nil, fmt.Errorf("rollback of keyspace %s: %w", ks, err)
	}
	return callAs[wire.ApplyResponse](ctx, c, http.MethodPost, keyspacePath(ks)+"/rollback", opts.query(), body, opts.header())
}

// ApplyVSchemas validates and writes many keyspaces' vschemas at once, all
// or none: POST /api/v1/vschemas. opts.IfMatch does not apply.
func (c *Client) ApplyVSchemas(ctx context.Context, vschemas map[string]json.RawMessage, opts WriteOptions) (*wire.ApplyResponse, error) {
	body, err := json.Marshal(wire.BatchRequest{Keyspaces: vschemas})
	if err != nil {
		return nil, fmt.Errorf("POST /api/v1/vschemas: %w", err)
	}
	return callAs[wire.ApplyResponse](ctx, c, http.MethodPost, "/api/v1/vschemas", opts.query(), body, nil)
}

// History returns the writes of keyspace ks through vschemad, newest
// first, at most limit (0: the server's default): GET .../vschema/history.
func (c *Client) History(ctx context.Context, ks string, limit int) (*wire.HistoryResponse, error) {
	return callAs[wire.HistoryResponse](ctx, c, http.MethodGet, keyspacePath(ks)+"/history", limitQuery(limit), nil, nil)
}

// AuditQuery selects entries of the audit log; empty fields select all.
type AuditQuery struct {
	Keyspace string
	Action   string // a prefix: apply, delete, rollback, import, rules, rebuild
	User     string
	Limit    int // 0: the server's default
}

// Audit returns entries of the audit log, newest first: GET /api/v1/audit.
func (c *Client) Audit(ctx context.Context, q AuditQuery) ([]wire.AuditEntry, error) {
	query := limitQuery(q.Limit)
	for k, v := range map[string]string{"keyspace": q.Keyspace, "action": q.Action, "user": q.User} {
		if v != "" {
			query.Set(k, v)
		}
	}
	var res wire.AuditResponse
	if err := c.call(ctx, http.MethodGet, "/api/v1/audit", query, nil, nil, &res); err != nil {
		return nil, err
	}
	return res.Entries, nil
}

func limitQuery(limit int) url.Values {
	q := url.Values{}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	return q
}

// GetRules returns the rules of a kind (RoutingRules, ...): GET /api/v1/KIND.
func (c *Client) GetRules(ctx context.Context, kind string) (*Document, error) {
	return c.document(ctx, "/api/v1/"+url.PathEscape(kind), nil)
}

// PutRules validates and writes the rules of a kind (Vitess's JSON): PUT
// /api/v1/KIND. opts.Strict does not apply.
func (c *Client) PutRules(ctx context.Context, kind string, rules []byte, opts WriteOptions) (*wire.RulesResponse, error) {
	return callAs[wire.RulesResponse](ctx, c, http.MethodPut, "/api/v1/"+url.PathEscape(kind), opts.query(), rules, opts.header())
}

// Cells returns the topology's cells: GET /api/v1/cells.
func (c *Client) Cells(ctx context.Context) ([]string, error) {
	var res wire.CellsResponse
	if err := c.call(ctx, http.MethodGet, "/api/v1/cells", nil, nil, nil, &res); err != nil {
		return nil, err
	}
	return res.Cells, nil
}

func cellPath(cell string) string { return "/api/v1/cells/" + url.PathEscape(cell) + "/srvvschema" }

// CellSrvVSchema returns a cell's SrvVSchema, assembled, as JSON: GET
// /api/v1/cells/{cell}/srvvschema.
func (c *Client) CellSrvVSchema(ctx context.Context, cell string) (*Document, error) {
	return c.document(ctx, cellPath(cell), nil)
}

// CellSrvVSchemaProto returns a cell's SrvVSchema as its protobuf bytes:
// GET /api/v1/cells/{cell}/srvvschema?format=proto.
func (c *Client) CellSrvVSchemaProto(ctx context.Context, cell string) (*Document, error) {
	return c.document(ctx, cellPath(cell), url.Values{"format": {"proto"}})
}

// CellKeyspace returns keyspace ks's vschema as cell serves it: GET
// /api/v1/cells/{cell}/srvvschema/keyspaces/{ks}.
func (c *Client) CellKeyspace(ctx context.Context, cell, ks string) (*Document, error) {
	return c.document(ctx, cellPath(cell)+"/keyspaces/"+url.PathEscape(ks), nil)
}

// RebuildCell rewrites a cell's SrvVSchema whole from the global
// topology: POST /api/v1/cells/{cell}/srvvschema/rebuild.
func (c *Client) RebuildCell(ctx context.Context, cell string) (*wire.CellResult, error) {
	var res wire.RebuildResponse
	if err := c.call(ctx, http.MethodPost, cellPath(cell)+"/rebuild", nil, nil, nil, &res); err != nil {
		return nil, err
	}
	return &res.Cell, nil
}

// PreviousVersion returns the version keyspace ks's vschema had before its
// last write through vschemad, from the keyspace's history (the audit log):
// what `vschemad rollback --to-previous` goes back to. It is an error if
// the history holds no write of ks, if that write created the vschema (no
// version before it), or if the vschema has changed since outside vschemad
// (its current version is not the one that write made).
func (c *Client) PreviousVersion(ctx context.Context, ks string) (string, error) {
	h, err := c.History(ctx, ks, 0)
	if err != nil {
		return "", err
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

// document GETs path and returns the body and its version.
func (c *Client) document(ctx context.Context, path string, query url.Values) (*Document, error) {
	out, h, err := c.do(ctx, http.MethodGet, path, query, nil, nil)
	if err != nil {
		return nil, err
	}
	d := &Document{Data: out}
	if v, err := strconv.Unquote(h.Get("ETag")); err == nil {
		d.Version = v
	}
	return d, nil
}

// callAs is call into a new T.
func callAs[T any](ctx context.Context, c *Client, method, path string, query url.Values, body []byte, header http.Header) (*T, error) {
	var out T
	if err := c.call(ctx, method, path, query, body, header, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// call sends a request and decodes the JSON of a 2xx answer into out.
func (c *Client) call(ctx context.Context, method, path string, query url.Values, body []byte, header http.Header, out any) error {
	b, _, err := c.do(ctx, method, path, query, body, header)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s: bad response: %w", method, path, err)
	}
	return nil
}

// do sends a request to path (escaped already) and returns the body and
// headers of a 2xx response, or an *APIError.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, body []byte, header http.Header) ([]byte, http.Header, error) {
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	var err error
	u := *c.base
	u.RawPath = c.base.EscapedPath() + path // keep path's escapes
	if u.Path, err = url.PathUnescape(u.RawPath); err != nil {
		return nil, nil, fmt.Errorf("%s %s: bad path: %w", method, path, err)
	}
	u.RawQuery = query.Encode()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: %w", method, u.Redacted(), err)
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
		e := &APIError{}
		if json.Unmarshal(out, e) != nil || e.Message == "" {
			e.Message = strings.TrimSpace(string(out))
		}
		e.Status = resp.StatusCode
		return nil, resp.Header, e
	}
	return out, resp.Header, nil
}
