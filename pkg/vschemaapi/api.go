package vschemaapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	vschemapb "vitess.io/vitess/go/vt/proto/vschema"
	"vitess.io/vitess/go/vt/topo"

	"github.com/topod-io/topod/pkg/vschemaapi/wire"
	"github.com/topod-io/topod/pkg/vschemastore"
)

// apiServer serves the HTTP/JSON API under /api/v1 (NewHandler).
type apiServer struct {
	store   Store
	auth    Authorizer
	guard   Guard
	audit   AuditLog
	maxBody int64
	log     *slog.Logger
	metrics *Metrics
}

// handler returns the routes:
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
//	GET    /api/v1/audit                                   the audit log (?keyspace=, ?action=, ?limit=)
func (s *apiServer) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	handle := func(pattern string, h func(w http.ResponseWriter, r *http.Request, p *Principal) error) {
		mux.HandleFunc(pattern, s.wrap(h))
	}
	handle("GET /api/v1/keyspaces/{ks}/vschema", s.getVSchema)
	handle("PUT /api/v1/keyspaces/{ks}/vschema", s.putVSchema)
	handle("DELETE /api/v1/keyspaces/{ks}/vschema", s.deleteVSchema)
	handle("GET /api/v1/keyspaces/{ks}/vschema/history", s.history)
	handle("GET /api/v1/keyspaces/{ks}/vschema/versions/{v}", s.getVersion)
	handle("POST /api/v1/keyspaces/{ks}/vschema/rollback", s.rollback)
	handle("POST /api/v1/vschemas", s.putVSchemas)
	for _, k := range vschemastore.AllRules {
		handle("GET /api/v1/"+string(k), func(w http.ResponseWriter, r *http.Request, p *Principal) error { return s.getRules(w, r, p, k) })
		handle("PUT /api/v1/"+string(k), func(w http.ResponseWriter, r *http.Request, p *Principal) error { return s.putRules(w, r, p, k) })
	}
	handle("GET /api/v1/cells", s.cells)
	handle("GET /api/v1/cells/{cell}/srvvschema", s.cellSrvVSchema)
	handle("GET /api/v1/cells/{cell}/srvvschema/keyspaces/{ks}", s.cellKeyspace)
	handle("POST /api/v1/cells/{cell}/srvvschema/rebuild", s.rebuildCell)
	handle("GET /api/v1/audit", s.getAudit)
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such API endpoint: "+r.Method+" "+r.URL.Path, nil)
		s.metrics.observe(r, http.StatusNotFound, 0)
	})
	return mux
}

// httpError is an error with its HTTP status and, optionally, a body.
type httpError struct {
	status int
	msg    string
	body   map[string]any
}

func (e *httpError) Error() string { return e.msg }

func errorf(status int, format string, args ...any) error {
	return &httpError{status: status, msg: fmt.Sprintf(format, args...)}
}

// wrap authenticates a request, runs h, and turns its error into a JSON
// error response.
func (s *apiServer) wrap(h func(w http.ResponseWriter, r *http.Request, p *Principal) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		if he := s.guard.check(r); he != nil {
			writeError(w, he.status, he.msg, nil)
			s.metrics.observe(r, he.status, time.Since(start))
			s.log.Warn("refused", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "host", r.Host,
				"origin", r.Header.Get("Origin"), "status", he.status, "err", he.msg)
			return
		}
		p, err := s.auth.Authorize(r)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="vschemad"`)
			writeError(w, http.StatusUnauthorized, err.Error(), nil)
			s.metrics.observe(r, http.StatusUnauthorized, time.Since(start))
			s.log.Info("refused", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "status", http.StatusUnauthorized, "err", err)
			return
		}
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			p.Name += " (cert " + r.TLS.PeerCertificates[0].Subject.CommonName + ")"
		}
		if s.maxBody > 0 && r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, s.maxBody)
		}
		err = h(w, r, &p)
		status := http.StatusOK
		if err != nil {
			var he *httpError
			if !errors.As(err, &he) {
				he = s.mapError(err)
			}
			status = he.status
			writeError(w, he.status, he.msg, he.body)
		}
		s.metrics.observe(r, status, time.Since(start))
		s.log.Info("request", "method", r.Method, "path", r.URL.Path, "user", p.Name, "remote", r.RemoteAddr,
			"status", status, "duration", time.Since(start).Round(time.Microsecond), "err", errString(err))
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// mapError maps the errors of vschemastore.Store to HTTP statuses; the
// writes a *vschemastore.PartialError names go in the body's "written".
func (s *apiServer) mapError(err error) *httpError {
	he := s.statusOf(err)
	var perr *vschemastore.PartialError
	if errors.As(err, &perr) {
		if he.body == nil {
			he.body = map[string]any{}
		}
		he.body["written"] = writesOf(perr.Writes)
	}
	return he
}

// statusOf is the HTTP status, message and body of an error of
// vschemastore.Store.
func (s *apiServer) statusOf(err error) *httpError {
	var verr *vschemastore.ValidationError
	var cerr *vschemastore.CellError
	switch {
	case errors.As(err, &verr) && errors.Is(err, vschemastore.ErrNoKeyspace):
		return &httpError{status: http.StatusNotFound, msg: err.Error(), body: map[string]any{"validation": validationOf(verr.Validation)}}
	case errors.As(err, &verr):
		return &httpError{status: http.StatusBadRequest, msg: err.Error(), body: map[string]any{"validation": validationOf(verr.Validation)}}
	case errors.Is(err, vschemastore.ErrBadRequest):
		return &httpError{status: http.StatusBadRequest, msg: err.Error()}
	case errors.Is(err, vschemastore.ErrNotFound), errors.Is(err, vschemastore.ErrNoKeyspace):
		return &httpError{status: http.StatusNotFound, msg: err.Error()}
	case errors.Is(err, vschemastore.ErrVersionMismatch):
		return &httpError{status: http.StatusPreconditionFailed, msg: err.Error()}
	case errors.Is(err, vschemastore.ErrContention):
		return &httpError{status: http.StatusConflict, msg: err.Error()}
	case errors.As(err, &cerr):
		return &httpError{status: http.StatusBadGateway, msg: err.Error() + "; apply again, or POST /api/v1/cells/{cell}/srvvschema/rebuild"}
	case topo.IsErrType(err, topo.Timeout):
		return &httpError{status: http.StatusGatewayTimeout, msg: "topology: " + err.Error()}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return &httpError{status: http.StatusServiceUnavailable, msg: err.Error()}
	default:
		return &httpError{status: http.StatusInternalServerError, msg: err.Error()}
	}
}

func writeError(w http.ResponseWriter, status int, msg string, body map[string]any) {
	out := map[string]any{"error": msg, "status": status}
	maps.Copy(out, body)
	writeJSON(w, status, out)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

var pbJSON = protojson.MarshalOptions{UseProtoNames: true}

// writeProto writes m as the JSON vtctldclient reads.
func writeProto(w http.ResponseWriter, r *http.Request, m proto.Message) error {
	opts := pbJSON
	if r.URL.Query().Get("pretty") == "true" {
		opts.Multiline, opts.Indent = true, "  "
	}
	b, err := opts.Marshal(m)
	if err != nil {
		return fmt.Errorf("marshal JSON: %w", err)
	}
	w.Header().Set("Content-Type", "application/json")
	_, err = w.Write(append(b, '\n'))
	return err
}

// readBody reads the request body within --max-body-bytes.
func readBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(r.Body)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, errorf(http.StatusRequestEntityTooLarge, "request body is larger than the limit of %d bytes (the server's --max-body-bytes)", mbe.Limit)
	}
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "read request body: %v", err)
	}
	return b, nil
}

// keyspaceParam returns the {ks} of the path, checked.
func keyspaceParam(r *http.Request) (string, error) {
	ks := r.PathValue("ks")
	if err := vschemastore.ValidateKeyspaceName(ks); err != nil {
		return "", errorf(http.StatusBadRequest, "%v", err)
	}
	return ks, nil
}

func boolParam(r *http.Request, name string) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, errorf(http.StatusBadRequest, "query parameter %s=%q is not a boolean", name, v)
	}
	return b, nil
}

// forbid returns the 403 of a principal lacking v on what.
func forbid(p *Principal, v Verb, what string) error {
	return errorf(http.StatusForbidden, "%s may not %s %s", p.Name, v, what)
}

func (s *apiServer) getVSchema(w http.ResponseWriter, r *http.Request, p *Principal) error {
	ks, err := keyspaceParam(r)
	if err != nil {
		return err
	}
	if !p.can(VerbRead, ks) {
		return forbid(p, VerbRead, "keyspace "+ks)
	}
	vs, ver, err := s.store.GetKeyspace(r.Context(), ks)
	if err != nil {
		return err
	}
	w.Header().Set("ETag", strconv.Quote(ver))
	return writeProto(w, r, vs)
}

// keyspaceChange reads what every request changing one keyspace starts
// with: the keyspace, ?dry_run, and whether p may do it (a dry run needs
// read, a write write).
func keyspaceChange(r *http.Request, p *Principal) (ks string, dryRun bool, err error) {
	if ks, err = keyspaceParam(r); err != nil {
		return "", false, err
	}
	if dryRun, err = boolParam(r, "dry_run"); err != nil {
		return "", false, err
	}
	if need := changeVerb(dryRun); !p.can(need, ks) {
		return "", false, forbid(p, need, "keyspace "+ks)
	}
	return ks, dryRun, nil
}

// changeVerb is the verb a change needs: read for a dry run, else write.
func changeVerb(dryRun bool) Verb {
	if dryRun {
		return VerbRead
	}
	return VerbWrite
}

// putVSchema applies one keyspace's vschema.
func (s *apiServer) putVSchema(w http.ResponseWriter, r *http.Request, p *Principal) error {
	ks, dryRun, err := keyspaceChange(r, p)
	if err != nil {
		return err
	}
	strict, err := boolParam(r, "strict")
	if err != nil {
		return err
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	vs, parsed, err := vschemastore.ParseKeyspaceJSON(ks, body)
	if err != nil {
		return err
	}
	if err := mayReference(p, changeVerb(dryRun), ks, vs); err != nil {
		return err
	}
	return s.apply(w, r, p, "apply", []vschemastore.Change{{Keyspace: ks, VSchema: vs, IfMatch: r.Header.Get("If-Match")}},
		vschemastore.ApplyOptions{DryRun: dryRun, Strict: strict}, parsed, true)
}

func (s *apiServer) deleteVSchema(w http.ResponseWriter, r *http.Request, p *Principal) error {
	ks, dryRun, err := keyspaceChange(r, p)
	if err != nil {
		return err
	}
	return s.apply(w, r, p, "delete", []vschemastore.Change{{Keyspace: ks, IfMatch: r.Header.Get("If-Match")}},
		vschemastore.ApplyOptions{DryRun: dryRun}, nil, true)
}

func (s *apiServer) rollback(w http.ResponseWriter, r *http.Request, p *Principal) error {
	ks, dryRun, err := keyspaceChange(r, p)
	if err != nil {
		return err
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var req wire.RollbackRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return errorf(http.StatusBadRequest, "malformed rollback request (want {\"version\": \"...\"}): %v", err)
	}
	if req.Version == "" {
		req.Version = r.URL.Query().Get("version")
	}
	old, err := s.store.GetKeyspaceAt(r.Context(), ks, req.Version)
	if err != nil {
		return err
	}
	// The old version may name keyspaces that its writer could, and p cannot.
	if err := mayReference(p, changeVerb(dryRun), ks, old); err != nil {
		return err
	}
	return s.apply(w, r, p, "rollback to "+req.Version, []vschemastore.Change{{Keyspace: ks, VSchema: old, IfMatch: r.Header.Get("If-Match")}},
		vschemastore.ApplyOptions{DryRun: dryRun}, nil, true)
}

// putVSchemas applies many keyspaces at once (the import).
func (s *apiServer) putVSchemas(w http.ResponseWriter, r *http.Request, p *Principal) error {
	dryRun, err := boolParam(r, "dry_run")
	if err != nil {
		return err
	}
	strict, err := boolParam(r, "strict")
	if err != nil {
		return err
	}
	full, err := boolParam(r, "full_diff")
	if err != nil {
		return err
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var req wire.BatchRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return errorf(http.StatusBadRequest, "malformed request (want {\"keyspaces\": {\"name\": vschema, ...}}): %v", err)
	}
	if len(req.Keyspaces) == 0 {
		return errorf(http.StatusBadRequest, "no keyspaces in the request")
	}
	need := changeVerb(dryRun)
	parsed := &vschemastore.Validation{}
	var changes []vschemastore.Change
	for _, ks := range slices.Sorted(maps.Keys(req.Keyspaces)) {
		if err := vschemastore.ValidateKeyspaceName(ks); err != nil {
			// A problem of that keyspace, so that a client sending many
			// (an import) can tell it from the others and send them again.
			parsed.Errors = append(parsed.Errors, vschemastore.Problem{Keyspace: ks, Code: vschemastore.CodeBadName, Message: err.Error()})
			continue
		}
		if !p.can(need, ks) {
			return forbid(p, need, "keyspace "+ks)
		}
		vs, v, err := vschemastore.ParseKeyspaceJSON(ks, req.Keyspaces[ks])
		if err != nil {
			var verr *vschemastore.ValidationError
			if errors.As(err, &verr) {
				parsed.Errors = append(parsed.Errors, verr.Validation.Errors...)
				continue
			}
			return err
		}
		if err := mayReference(p, need, ks, vs); err != nil {
			return err
		}
		parsed.Warnings = append(parsed.Warnings, v.Warnings...)
		changes = append(changes, vschemastore.Change{Keyspace: ks, VSchema: vs})
	}
	if !parsed.OK() {
		return &vschemastore.ValidationError{Validation: parsed}
	}
	return s.apply(w, r, p, "import", changes, vschemastore.ApplyOptions{DryRun: dryRun, Strict: strict}, parsed, full)
}

// apply runs a write, audits it and writes the response.
func (s *apiServer) apply(w http.ResponseWriter, r *http.Request, p *Principal, action string, changes []vschemastore.Change,
	opts vschemastore.ApplyOptions, parsed *vschemastore.Validation, fullDiff bool) error {
	var intents []wire.AuditEntry
	if !opts.DryRun {
		for _, c := range changes {
			intents = append(intents, wire.AuditEntry{User: p.Name, Remote: r.RemoteAddr, Action: action, Keyspace: c.Keyspace})
		}
		if err := s.begin(intents); err != nil {
			return err
		}
	}
	res, err := s.store.Apply(r.Context(), changes, opts)
	if parsed != nil && res != nil && res.Validation != nil {
		res.Validation.Warnings = append(parsed.Warnings, res.Validation.Warnings...)
	}
	auditErr := s.auditApply(intents, res, err)
	if res != nil && !fullDiff {
		for i := range res.Keyspaces {
			if d := res.Keyspaces[i].Diff; d != nil {
				d.Changes = nil
			}
		}
	}
	if writes := res.Writes(); auditErr != nil && len(writes) > 0 {
		return unaudited(auditErr, err, writes, applyResponse(res))
	}
	if err != nil {
		he := s.mapError(err)
		if res != nil {
			if he.body == nil {
				he.body = map[string]any{}
			}
			he.body["result"] = applyResponse(res)
			if he.status == http.StatusBadRequest || he.status == http.StatusNotFound {
				he.body["validation"] = validationOf(res.Validation)
			}
		}
		return he
	}
	if len(res.Keyspaces) == 1 && res.Keyspaces[0].NewVersion != "" {
		w.Header().Set("ETag", strconv.Quote(res.Keyspaces[0].NewVersion))
	}
	resp := applyResponse(res)
	resp.CellsNote = cellsNote(res.NoCells)
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// begin records the intents of a write before it is made (AuditEntry):
// if they cannot be, the write is not made, and the answer (500) says so.
func (s *apiServer) begin(intents []wire.AuditEntry) error {
	now := time.Now().UTC()
	for i := range intents {
		intents[i].Time = now
	}
	if err := s.audit.Begin(intents); err != nil {
		s.log.Error("audit log: cannot record a write's intent: the write is refused", "err", err)
		s.metrics.auditErrors.Inc()
		return errorf(http.StatusInternalServerError, "nothing was written: the write could not be recorded in the audit log before being made: %v", err)
	}
	return nil
}

// finish appends the outcome lines of a write's intents.
func (s *apiServer) finish(outcomes []wire.AuditEntry) error {
	if len(outcomes) == 0 {
		return nil
	}
	if err := s.audit.Append(outcomes...); err != nil {
		s.log.Error("audit log: cannot record a write's outcome", "err", err, "entries", len(outcomes))
		s.metrics.auditErrors.Inc()
		return err
	}
	return nil
}

// outcome is the outcome line of intent: its result ok, or error if opErr
// is set, when written; not_written (with opErr) when not.
func outcome(intent wire.AuditEntry, written bool, opErr error) wire.AuditEntry {
	e := intent
	e.Seq, e.Intent, e.Time = 0, intent.Seq, time.Now().UTC()
	e.Result, e.Error = wire.ResultOK, errString(opErr)
	switch {
	case !written:
		e.Result = wire.ResultNotWritten
	case opErr != nil:
		e.Result = wire.ResultError
	}
	return e
}

// unaudited is the answer (500) to a write that was made but whose outcome
// could not be recorded in the audit log: it names what was written (as
// "written", and in the message) and has the write's result; its intent
// stays in the log, and the next start of vschemad records it as unknown.
func unaudited(auditErr, opErr error, writes []vschemastore.Write, result any) error {
	msg := fmt.Sprintf("the write was made, but its outcome could not be recorded in the audit log (%v)", auditErr)
	if opErr != nil {
		msg += "; the write reported: " + opErr.Error()
	}
	msg = (&vschemastore.PartialError{Writes: writes, Err: errors.New(msg)}).Error()
	return &httpError{status: http.StatusInternalServerError, msg: msg, body: map[string]any{"written": writesOf(writes), "result": result}}
}

// cellsNote is the cells_note of a write's response: NoCellsNote when the
// topology has no cell, with the API's rebuild.
func cellsNote(noCells bool) string {
	if !noCells {
		return ""
	}
	return vschemastore.NoCellsNote + " (POST /api/v1/cells/{cell}/srvvschema/rebuild)"
}

// auditApply appends the outcome of each intent: a keyspace's old and new
// version and diff summary when written.
func (s *apiServer) auditApply(intents []wire.AuditEntry, res *vschemastore.ApplyResult, applyErr error) error {
	byKeyspace := map[string]*vschemastore.KeyspaceResult{}
	if res != nil {
		for i := range res.Keyspaces {
			byKeyspace[res.Keyspaces[i].Keyspace] = &res.Keyspaces[i]
		}
	}
	var outcomes []wire.AuditEntry
	for _, in := range intents {
		k := byKeyspace[in.Keyspace]
		e := outcome(in, k != nil && k.Written, applyErr)
		if k != nil {
			e.OldVersion, e.NewVersion = k.OldVersion, k.NewVersion
			if !k.Written {
				e.NewVersion = ""
			}
			if k.Diff != nil {
				e.Summary = k.Diff.Summary
				if k.Written && k.Diff.Deleted {
					e.Action = "delete"
				}
			}
		}
		outcomes = append(outcomes, e)
	}
	return s.finish(outcomes)
}

func (s *apiServer) history(w http.ResponseWriter, r *http.Request, p *Principal) error {
	ks, err := keyspaceParam(r)
	if err != nil {
		return err
	}
	if !p.can(VerbRead, ks) {
		return forbid(p, VerbRead, "keyspace "+ks)
	}
	limit, err := limitParam(r)
	if err != nil {
		return err
	}
	_, cur, err := s.store.GetKeyspace(r.Context(), ks)
	if err != nil && !errors.Is(err, vschemastore.ErrNotFound) {
		return err
	}
	// The keyspace's writes: attempts that wrote nothing are in the audit
	// log (GET /api/v1/audit), not in its history.
	entries, err := s.audit.Read(func(e *wire.AuditEntry) bool { return e.Keyspace == ks && e.Result != wire.ResultNotWritten }, limit)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, wire.HistoryResponse{Keyspace: ks, CurrentVersion: cur, Entries: entries})
	return nil
}

func limitParam(r *http.Request) (int, error) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return 100, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 100000 {
		return 0, errorf(http.StatusBadRequest, "limit=%q: want 1 to 100000", v)
	}
	return n, nil
}

func (s *apiServer) getVersion(w http.ResponseWriter, r *http.Request, p *Principal) error {
	ks, err := keyspaceParam(r)
	if err != nil {
		return err
	}
	if !p.can(VerbRead, ks) {
		return forbid(p, VerbRead, "keyspace "+ks)
	}
	vs, err := s.store.GetKeyspaceAt(r.Context(), ks, r.PathValue("v"))
	if err != nil {
		return err
	}
	w.Header().Set("ETag", strconv.Quote(r.PathValue("v")))
	return writeProto(w, r, vs)
}

func (s *apiServer) getRules(w http.ResponseWriter, r *http.Request, p *Principal, k vschemastore.RulesKind) error {
	if !p.canAll(VerbRead) {
		return forbid(p, VerbRead, string(k)+" (they span keyspaces: the token needs keyspaces [\"*\"])")
	}
	m, ver, err := s.store.GetRules(r.Context(), k)
	if err != nil {
		return err
	}
	w.Header().Set("ETag", strconv.Quote(ver))
	return writeProto(w, r, m)
}

func (s *apiServer) putRules(w http.ResponseWriter, r *http.Request, p *Principal, k vschemastore.RulesKind) error {
	dryRun, err := boolParam(r, "dry_run")
	if err != nil {
		return err
	}
	if !p.canAll(VerbAdmin) {
		return forbid(p, VerbAdmin, string(k)+" (the token needs admin on keyspaces [\"*\"])")
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	rules, parsed, err := vschemastore.ParseRulesJSON(k, body)
	if err != nil {
		return err
	}
	var intents []wire.AuditEntry
	if !dryRun {
		intents = []wire.AuditEntry{{User: p.Name, Remote: r.RemoteAddr, Action: "rules", Rules: string(k)}}
		if err := s.begin(intents); err != nil {
			return err
		}
	}
	res, err := s.store.PutRules(r.Context(), k, rules, r.Header.Get("If-Match"), dryRun)
	if res != nil && res.Validation != nil {
		res.Validation.Warnings = append(parsed.Warnings, res.Validation.Warnings...)
	}
	var outcomes []wire.AuditEntry
	for _, in := range intents {
		e := outcome(in, res.Written, err)
		e.OldVersion = res.OldVersion
		if res.Written {
			e.NewVersion = res.NewVersion
		}
		if res.Diff != nil {
			e.Summary = res.Diff.Summary
		}
		outcomes = append(outcomes, e)
	}
	if auditErr := s.finish(outcomes); auditErr != nil && res.Written {
		return unaudited(auditErr, err, res.Writes(), rulesResponse(res))
	}
	if err != nil {
		he := s.mapError(err)
		if res != nil {
			if he.body == nil {
				he.body = map[string]any{}
			}
			he.body["result"] = rulesResponse(res)
			if res.Validation != nil {
				he.body["validation"] = validationOf(res.Validation)
			}
		}
		return he
	}
	if res.NewVersion != "" {
		w.Header().Set("ETag", strconv.Quote(res.NewVersion))
	}
	resp := rulesResponse(res)
	resp.CellsNote = cellsNote(res.NoCells)
	writeJSON(w, http.StatusOK, resp)
	return nil
}

func (s *apiServer) cells(w http.ResponseWriter, r *http.Request, p *Principal) error {
	cells, err := s.store.Cells(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, wire.CellsResponse{Cells: cells})
	return nil
}

func (s *apiServer) cellSrvVSchema(w http.ResponseWriter, r *http.Request, p *Principal) error {
	if !p.canAll(VerbRead) {
		return forbid(p, VerbRead, "whole SrvVSchemas (the token needs keyspaces [\"*\"]; per keyspace: .../srvvschema/keyspaces/{ks})")
	}
	cell := r.PathValue("cell")
	data, ver, err := s.store.GetCellSrvVSchemaBytes(r.Context(), cell)
	if err != nil {
		return err
	}
	w.Header().Set("ETag", strconv.Quote(ver))
	if r.URL.Query().Get("format") == "proto" {
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, err := w.Write(data)
		return err
	}
	srv := &vschemapb.SrvVSchema{}
	if err := srv.UnmarshalVT(data); err != nil {
		return fmt.Errorf("cell %s: SrvVSchema: unmarshal: %w", cell, err)
	}
	return writeProto(w, r, srv)
}

func (s *apiServer) cellKeyspace(w http.ResponseWriter, r *http.Request, p *Principal) error {
	ks, err := keyspaceParam(r)
	if err != nil {
		return err
	}
	if !p.can(VerbRead, ks) {
		return forbid(p, VerbRead, "keyspace "+ks)
	}
	vs, err := s.store.GetCellKeyspace(r.Context(), r.PathValue("cell"), ks)
	if err != nil {
		return err
	}
	return writeProto(w, r, vs)
}

func (s *apiServer) rebuildCell(w http.ResponseWriter, r *http.Request, p *Principal) error {
	if !p.canAll(VerbAdmin) {
		return forbid(p, VerbAdmin, "cells (the token needs admin on keyspaces [\"*\"])")
	}
	cell := r.PathValue("cell")
	cells, err := s.store.Cells(r.Context())
	if err != nil {
		return err
	}
	switch {
	case len(cells) == 0:
		return errorf(http.StatusNotFound, "no cell %q: no cell is registered in the topology", cell)
	case !slices.Contains(cells, cell):
		return errorf(http.StatusNotFound, "no cell %q (cells: %s)", cell, strings.Join(cells, ", "))
	}
	intent := []wire.AuditEntry{{User: p.Name, Remote: r.RemoteAddr, Action: "rebuild", Cell: cell}}
	if err := s.begin(intent); err != nil {
		return err
	}
	res, err := s.store.RebuildCell(r.Context(), cell)
	// Recorded as written when the rebuild succeeded or reports the
	// version it wrote; a failure without one as not_written, with its
	// error (a write whose answer was lost may still have landed, as for
	// every write).
	written := err == nil || res.Version != ""
	e := outcome(intent[0], written, err)
	e.NewVersion, e.Summary = res.Version, "SrvVSchema rebuilt from the global topology"
	if auditErr := s.finish([]wire.AuditEntry{e}); auditErr != nil && written {
		msg := fmt.Sprintf("cell %s's SrvVSchema was rebuilt (version %s), but the rebuild could not be recorded in the audit log (%v)", cell, res.Version, auditErr)
		if err != nil {
			msg += "; the rebuild reported: " + err.Error()
		}
		return &httpError{status: http.StatusInternalServerError, msg: msg, body: map[string]any{"cell": cellOf(res)}}
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, wire.RebuildResponse{Cell: cellOf(res)})
	return nil
}

func (s *apiServer) getAudit(w http.ResponseWriter, r *http.Request, p *Principal) error {
	if !p.canAll(VerbAdmin) {
		return forbid(p, VerbAdmin, "the audit log (the token needs admin on keyspaces [\"*\"]; per keyspace: .../vschema/history)")
	}
	limit, err := limitParam(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	ks, action, user := q.Get("keyspace"), q.Get("action"), q.Get("user")
	entries, err := s.audit.Read(func(e *wire.AuditEntry) bool {
		return (ks == "" || e.Keyspace == ks) && (action == "" || strings.HasPrefix(e.Action, action)) && (user == "" || e.User == user)
	}, limit)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, wire.AuditResponse{Entries: entries})
	return nil
}
