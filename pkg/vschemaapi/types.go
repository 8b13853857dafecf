package vschemaapi

import (
	"encoding/json"

	"github.com/topod-io/topod/pkg/vschemastore"
)

// The JSON bodies of the API's requests and responses, other than Vitess's
// own protobuf JSON (vschemas, routing rules, SrvVSchemas).

// RollbackRequest is the body of POST .../vschema/rollback.
type RollbackRequest struct {
	Version string `json:"version"`
}

// BatchRequest is the body of POST /api/v1/vschemas: vschemas by keyspace.
type BatchRequest struct {
	Keyspaces map[string]json.RawMessage `json:"keyspaces"`
}

// ApplyResponse is the body of a successful (or dry-run) write of
// keyspace vschemas: PUT .../vschema, POST /api/v1/vschemas, a rollback.
type ApplyResponse struct {
	*vschemastore.ApplyResult
	// CellsNote explains no_cells when it is set: the topology has no
	// cell, so no SrvVSchema was updated (cells is then []).
	CellsNote string `json:"cells_note,omitempty"`
}

// RulesResponse is the body of a successful (or dry-run) write of rules:
// PUT /api/v1/{routing-rules|...}.
type RulesResponse struct {
	*vschemastore.RulesResult
	// CellsNote is as in ApplyResponse.
	CellsNote string `json:"cells_note,omitempty"`
}

// HistoryResponse is the body of GET .../vschema/history.
type HistoryResponse struct {
	Keyspace       string       `json:"keyspace"`
	CurrentVersion string       `json:"current_version"`
	Entries        []AuditEntry `json:"entries"`
}

// AuditResponse is the body of GET /api/v1/audit.
type AuditResponse struct {
	Entries []AuditEntry `json:"entries"`
}

// ErrorResponse is the body of every error response.
type ErrorResponse struct {
	Status  int    `json:"status"`
	Message string `json:"error"`
	// Validation says what is wrong with a refused vschema.
	Validation *vschemastore.Validation `json:"validation,omitempty"`
	// Result is what a write did before it failed (e.g. the global
	// topology written, a cell not updated).
	Result json.RawMessage `json:"result,omitempty"`
	// Written lists what a write request wrote to the global topology
	// before it failed (a batch's first keyspaces; a vschema or rules whose
	// cells were then not updated; a write whose outcome could not be
	// recorded in the audit log, 500): those writes stand, nothing was
	// undone.
	// The error message names them too. Absent when no write was seen to
	// succeed.
	Written []vschemastore.Write `json:"written,omitempty"`
}
