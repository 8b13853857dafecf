// Package wire is the JSON of vschemad's HTTP API (/api/v1) that is not
// Vitess's own protobuf JSON (vschemas, routing rules and SrvVSchemas are
// that): the request bodies, the results of writes (validation problems,
// diffs, what each cell did), the audit log's entries and the error body.
//
// The server (pkg/vschemaapi) encodes these types and the client
// (pkg/vschemaclient) decodes them, so the two cannot disagree on a field.
// It depends on the standard library only: a client links no server code,
// no topology and no SQL parser by importing it.
package wire

import (
	"encoding/json"
	"strings"
	"time"
)

// RollbackRequest is the body of POST .../vschema/rollback.
type RollbackRequest struct {
	Version string `json:"version"`
}

// BatchRequest is the body of POST /api/v1/vschemas: vschemas (Vitess's
// JSON, as vtctldclient ApplyVSchema takes) by keyspace.
type BatchRequest struct {
	Keyspaces map[string]json.RawMessage `json:"keyspaces"`
}

// Problem is one reason an input is refused (an error) or one thing worth
// knowing about it (a warning). Field is the path of the offending value in
// the vschema JSON, such as tables.users.column_vindexes[0].name; Code is
// machine-readable (malformed, unknown_vindex_type, missing_keyspace, ...).
type Problem struct {
	Keyspace string `json:"keyspace,omitempty"`
	Table    string `json:"table,omitempty"`
	Vindex   string `json:"vindex,omitempty"`
	Field    string `json:"field,omitempty"`
	Code     string `json:"code"`
	Message  string `json:"message"`
}

// String is the problem on one line: "keyspace ks, table t, field f: message".
func (p Problem) String() string {
	var where []string
	for _, w := range [][2]string{{"keyspace", p.Keyspace}, {"table", p.Table}, {"vindex", p.Vindex}, {"field", p.Field}} {
		if w[1] != "" {
			where = append(where, w[0]+" "+w[1])
		}
	}
	if len(where) == 0 {
		return p.Message
	}
	return strings.Join(where, ", ") + ": " + p.Message
}

// Validation is the result of validating an input: accepted when it has no
// errors.
type Validation struct {
	Errors   []Problem `json:"errors"`
	Warnings []Problem `json:"warnings"`
}

// OK reports whether the input has no errors.
func (v *Validation) OK() bool { return v == nil || len(v.Errors) == 0 }

// Operations of a FieldChange.
const (
	OpAdd    = "add"
	OpRemove = "remove"
	OpChange = "change"
)

// FieldChange is one difference between two vschemas: a table, a vindex or
// another top-level field, with its old and new JSON.
type FieldChange struct {
	Path string          `json:"path"` // "tables.users", "vindexes.hash", "sharded"
	Op   string          `json:"op"`   // OpAdd, OpRemove, OpChange
	Old  json.RawMessage `json:"old,omitempty"`
	New  json.RawMessage `json:"new,omitempty"`
}

// KeyspaceDiff is what differs between the old and the new vschema of a
// keyspace. Changes is left out of a batch's answer unless it asks for
// ?full_diff=true.
type KeyspaceDiff struct {
	Created         bool          `json:"created,omitempty"`
	Deleted         bool          `json:"deleted,omitempty"`
	Changes         []FieldChange `json:"changes,omitempty"`
	TablesAdded     int           `json:"tables_added"`
	TablesRemoved   int           `json:"tables_removed"`
	TablesChanged   int           `json:"tables_changed"`
	VindexesAdded   int           `json:"vindexes_added"`
	VindexesRemoved int           `json:"vindexes_removed"`
	VindexesChanged int           `json:"vindexes_changed"`
	FieldsChanged   []string      `json:"fields_changed,omitempty"`
	Summary         string        `json:"summary"`
}

// KeyspaceResult is what a write did to one keyspace's vschema.
type KeyspaceResult struct {
	Keyspace   string        `json:"keyspace"`
	OldVersion string        `json:"old_version,omitempty"`
	NewVersion string        `json:"new_version,omitempty"`
	Changed    bool          `json:"changed"`
	Written    bool          `json:"written"`
	Diff       *KeyspaceDiff `json:"diff"`
}

// CellResult is what a write did to one cell's SrvVSchema.
type CellResult struct {
	Cell    string `json:"cell"`
	Version string `json:"version,omitempty"`
	// Mode is how the cell was updated: unchanged, splice, manifest,
	// create or rebuild.
	Mode     string `json:"mode,omitempty"`
	Attempts int    `json:"attempts,omitempty"`
	Error    string `json:"error,omitempty"`
}

// ApplyResponse is the body of a successful (or dry-run) write of keyspace
// vschemas: PUT and DELETE .../vschema, POST /api/v1/vschemas, a rollback.
type ApplyResponse struct {
	DryRun     bool             `json:"dry_run"`
	Validation *Validation      `json:"validation"`
	Keyspaces  []KeyspaceResult `json:"keyspaces"`
	// Cells are the cells' updates: absent when the cells were not reached
	// (a dry run, a refusal), empty when the topology has no cell.
	Cells []CellResult `json:"cells,omitzero"`
	// NoCells: the topology has no cell, so no SrvVSchema was updated;
	// CellsNote then says what that means.
	NoCells   bool   `json:"no_cells,omitempty"`
	CellsNote string `json:"cells_note,omitempty"`
}

// RulesDiff is what differs between two versions of a rules file.
type RulesDiff struct {
	OldRules int    `json:"old_rules"`
	NewRules int    `json:"new_rules"`
	Added    int    `json:"added"`
	Removed  int    `json:"removed"`
	Summary  string `json:"summary"`
}

// RulesResponse is the body of a successful (or dry-run) write of rules:
// PUT /api/v1/{routing-rules|shard-routing-rules|keyspace-routing-rules|mirror-rules}.
type RulesResponse struct {
	Kind       string       `json:"kind"`
	DryRun     bool         `json:"dry_run"`
	OldVersion string       `json:"old_version,omitempty"`
	NewVersion string       `json:"new_version,omitempty"`
	Changed    bool         `json:"changed"`
	Written    bool         `json:"written"`
	Diff       *RulesDiff   `json:"diff"`
	Validation *Validation  `json:"validation"`
	Cells      []CellResult `json:"cells,omitzero"`
	NoCells    bool         `json:"no_cells,omitempty"`
	CellsNote  string       `json:"cells_note,omitempty"`
}

// CellsResponse is the body of GET /api/v1/cells.
type CellsResponse struct {
	Cells []string `json:"cells"`
}

// RebuildResponse is the body of POST /api/v1/cells/{cell}/srvvschema/rebuild.
type RebuildResponse struct {
	Cell CellResult `json:"cell"`
}

// The Results of an AuditEntry.
const (
	ResultOK         = "ok"          // written
	ResultError      = "error"       // written, but not every cell updated: Error says what failed
	ResultNotWritten = "not_written" // nothing written: Error says why, or nothing changed
	ResultIntent     = "intent"      // about to write: the outcome follows on a later line
	ResultUnknown    = "unknown"     // the intent's outcome was never recorded: read the topology
)

// AuditEntry is one line of vschemad's audit log: a write, who made it,
// when, and what it changed.
//
// Every write is recorded twice: an intent line (Result ResultIntent),
// appended and synced before anything is written to the topology, and an
// outcome line (Intent naming the intent's Seq) after, before the request
// is answered. The readers (history, GET /api/v1/audit) show outcomes and
// the intents still without one (a write in flight).
type AuditEntry struct {
	Seq        int64     `json:"seq"`
	Time       time.Time `json:"time"`
	User       string    `json:"user"`
	Remote     string    `json:"remote,omitempty"`
	Action     string    `json:"action"` // apply, delete, rollback to V, import, rules, rebuild
	Keyspace   string    `json:"keyspace,omitempty"`
	Rules      string    `json:"rules,omitempty"` // the rules kind, for action rules
	Cell       string    `json:"cell,omitempty"`  // for action rebuild
	OldVersion string    `json:"old_version,omitempty"`
	NewVersion string    `json:"new_version,omitempty"`
	Summary    string    `json:"summary"`
	Result     string    `json:"result"` // ResultOK, ...
	Error      string    `json:"error,omitempty"`
	// Intent is, on an outcome line, the Seq of its intent line.
	Intent int64 `json:"intent,omitempty"`
}

// HistoryResponse is the body of GET .../vschema/history: the writes of a
// keyspace, newest first.
type HistoryResponse struct {
	Keyspace       string       `json:"keyspace"`
	CurrentVersion string       `json:"current_version"`
	Entries        []AuditEntry `json:"entries"`
}

// AuditResponse is the body of GET /api/v1/audit, newest first.
type AuditResponse struct {
	Entries []AuditEntry `json:"entries"`
}

// Write is one file a write request wrote to the global topology.
type Write struct {
	Keyspace string `json:"keyspace,omitempty"` // a keyspace's vschema
	Rules    string `json:"rules,omitempty"`    // or a rules file
	Path     string `json:"path"`               // the file, in the global topology
	Version  string `json:"version,omitempty"`  // its new version (none once deleted)
	Deleted  bool   `json:"deleted,omitempty"`
}

// ErrorResponse is the body of every error response.
type ErrorResponse struct {
	Status  int    `json:"status"`
	Message string `json:"error"`
	// Validation says what is wrong with a refused input.
	Validation *Validation `json:"validation,omitempty"`
	// Result is what a write did before it failed (an ApplyResponse or a
	// RulesResponse, without cells_note): e.g. the global topology
	// written, a cell not updated.
	Result json.RawMessage `json:"result,omitempty"`
	// Cell is what a rebuild did before it failed.
	Cell *CellResult `json:"cell,omitempty"`
	// Written lists what a write request wrote to the global topology
	// before it failed: those writes stand, nothing was undone. The
	// message names them too. Absent when no write was seen to succeed.
	Written []Write `json:"written,omitempty"`
}
