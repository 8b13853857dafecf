// Package vschemaapi is vschemad's HTTP/JSON API under /api/v1, as an
// http.Handler: it reads, validates, applies, diffs, deletes and rolls back
// keyspace vschemas, routing rules and the cells' SrvVSchemas through a
// Store (pkg/vschemastore on any Vitess topology), lets each request do what
// its Authorizer grants (bearer tokens scoped by keyspace and verb, or
// anyone), records every write in an AuditLog before and after it is made,
// and counts requests in Prometheus Metrics.
//
// Serving it (listening, TLS, timeouts, logging, opening the topology) is
// the caller's: cmd/vschemad. The JSON it speaks, beside Vitess's own
// protobuf JSON, is package wire; pkg/vschemaclient calls it.
package vschemaapi

import (
	"context"
	"log/slog"
	"net/http"

	"google.golang.org/protobuf/proto"
	vschemapb "vitess.io/vitess/go/vt/proto/vschema"

	"github.com/topod-io/topod/pkg/vschemaapi/wire"
	"github.com/topod-io/topod/pkg/vschemastore"
)

// Store is what the API reads and writes: *vschemastore.Store.
type Store interface {
	GetKeyspace(ctx context.Context, keyspace string) (*vschemapb.Keyspace, string, error)
	GetKeyspaceAt(ctx context.Context, keyspace, version string) (*vschemapb.Keyspace, error)
	Apply(ctx context.Context, changes []vschemastore.Change, opts vschemastore.ApplyOptions) (*vschemastore.ApplyResult, error)
	GetRules(ctx context.Context, k vschemastore.RulesKind) (proto.Message, string, error)
	PutRules(ctx context.Context, k vschemastore.RulesKind, rules proto.Message, ifMatch string, dryRun bool) (*vschemastore.RulesResult, error)
	Cells(ctx context.Context) ([]string, error)
	GetCellSrvVSchemaBytes(ctx context.Context, cell string) ([]byte, string, error)
	GetCellKeyspace(ctx context.Context, cell, keyspace string) (*vschemapb.Keyspace, error)
	RebuildCell(ctx context.Context, cell string) (vschemastore.CellResult, error)
}

// Authorizer says who sent a request and what they may do. An error
// refuses the request as unauthenticated (401); its message is the
// answer's. Tokens and Anyone are the two vschemad has.
type Authorizer interface {
	Authorize(r *http.Request) (Principal, error)
}

// AuditLog records the writes (AuditFile is vschemad's). Begin and Append
// number the entries they are given (setting Seq) and return once the
// entries are durable: a write whose intent Begin cannot record is not
// made. Read returns the last limit entries keep accepts, newest first,
// leaving out the intents that have an outcome.
type AuditLog interface {
	Begin(intents []wire.AuditEntry) error
	Append(outcomes ...wire.AuditEntry) error
	Read(keep func(*wire.AuditEntry) bool, limit int) ([]wire.AuditEntry, error)
}

// Options adjust the handler; the zero value is usable (no body limit,
// no guard, logs discarded, metrics on a registry nobody serves).
type Options struct {
	// MaxBodyBytes is the largest request body accepted (413 beyond); 0
	// for no limit.
	MaxBodyBytes int64
	// Guard is what the handler refuses of the requests a web browser can
	// be made to send; GuardFor picks it.
	Guard Guard
	// Log receives a line per request and the warnings; nil discards them.
	Log *slog.Logger
	// Metrics count the requests; nil counts them on metrics of the
	// handler's own.
	Metrics *Metrics
}

// NewHandler returns the API over store: every request is authorized by
// auth and every write recorded in audit. Its routes:
//
//	GET    /healthz
//	GET    /api/v1/keyspaces/{ks}/vschema                  the vschema (ETag: its version)
//	PUT    /api/v1/keyspaces/{ks}/vschema                  apply (?dry_run=true, ?strict=true, If-Match)
//	DELETE /api/v1/keyspaces/{ks}/vschema                  delete (If-Match)
//	GET    /api/v1/keyspaces/{ks}/vschema/history          the writes of the keyspace, newest first
//	GET    /api/v1/keyspaces/{ks}/vschema/versions/{v}     the vschema at version v
//	POST   /api/v1/keyspaces/{ks}/vschema/rollback         apply version {"version": "v"} again
//	POST   /api/v1/vschemas                                apply many: {"keyspaces": {ks: vschema, ...}}
//	GET    /api/v1/{routing-rules|shard-routing-rules|keyspace-routing-rules|mirror-rules}
//	PUT    /api/v1/{routing-rules|...}                     (?dry_run=true, If-Match)
//	GET    /api/v1/cells
//	GET    /api/v1/cells/{cell}/srvvschema                 assembled (?format=proto for the bytes)
//	GET    /api/v1/cells/{cell}/srvvschema/keyspaces/{ks}  one keyspace as the cell serves it
//	POST   /api/v1/cells/{cell}/srvvschema/rebuild         rewrite the cell's SrvVSchema whole
//	GET    /api/v1/audit                                   the audit log (?keyspace=, ?action=, ?user=, ?limit=)
func NewHandler(store Store, auth Authorizer, audit AuditLog, opts Options) http.Handler {
	s := &apiServer{store: store, auth: auth, guard: opts.Guard, audit: audit, maxBody: opts.MaxBodyBytes, log: opts.Log, metrics: opts.Metrics}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.metrics == nil {
		s.metrics = NewMetrics()
	}
	return s.handler()
}
