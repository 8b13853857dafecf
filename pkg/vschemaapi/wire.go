package vschemaapi

import (
	"github.com/topod-io/topod/pkg/vschemaapi/wire"
	"github.com/topod-io/topod/pkg/vschemastore"
)

// The store's results as the API sends them (package wire). A nil slice
// stays nil (absent, or null, in the JSON) and an empty one empty: "cells":
// [] says that the topology has no cell, no "cells" that none was reached.

func validationOf(v *vschemastore.Validation) *wire.Validation {
	if v == nil {
		return nil
	}
	return &wire.Validation{Errors: problemsOf(v.Errors), Warnings: problemsOf(v.Warnings)}
}

func problemsOf(ps []vschemastore.Problem) []wire.Problem {
	if ps == nil {
		return nil
	}
	out := make([]wire.Problem, len(ps))
	for i, p := range ps {
		out[i] = wire.Problem(p)
	}
	return out
}

func diffOf(d *vschemastore.KeyspaceDiff) *wire.KeyspaceDiff {
	if d == nil {
		return nil
	}
	var changes []wire.FieldChange
	if d.Changes != nil {
		changes = make([]wire.FieldChange, len(d.Changes))
		for i, c := range d.Changes {
			changes[i] = wire.FieldChange(c)
		}
	}
	return &wire.KeyspaceDiff{
		Created: d.Created, Deleted: d.Deleted, Changes: changes,
		TablesAdded: d.TablesAdded, TablesRemoved: d.TablesRemoved, TablesChanged: d.TablesChanged,
		VindexesAdded: d.VindexesAdded, VindexesRemoved: d.VindexesRemoved, VindexesChanged: d.VindexesChanged,
		FieldsChanged: d.FieldsChanged, Summary: d.Summary,
	}
}

func cellOf(c vschemastore.CellResult) wire.CellResult { return wire.CellResult(c) }

func cellsOf(cs []vschemastore.CellResult) []wire.CellResult {
	if cs == nil {
		return nil
	}
	out := make([]wire.CellResult, len(cs))
	for i, c := range cs {
		out[i] = cellOf(c)
	}
	return out
}

func writesOf(ws []vschemastore.Write) []wire.Write {
	if ws == nil {
		return nil
	}
	out := make([]wire.Write, len(ws))
	for i, w := range ws {
		out[i] = wire.Write{Keyspace: w.Keyspace, Rules: string(w.Rules), Path: w.Path, Version: w.Version, Deleted: w.Deleted}
	}
	return out
}

// applyResponse is res without its cells note (the caller adds it).
func applyResponse(res *vschemastore.ApplyResult) *wire.ApplyResponse {
	if res == nil {
		return nil
	}
	out := &wire.ApplyResponse{DryRun: res.DryRun, Validation: validationOf(res.Validation), Cells: cellsOf(res.Cells), NoCells: res.NoCells}
	if res.Keyspaces != nil {
		out.Keyspaces = make([]wire.KeyspaceResult, len(res.Keyspaces))
		for i, k := range res.Keyspaces {
			out.Keyspaces[i] = wire.KeyspaceResult{Keyspace: k.Keyspace, OldVersion: k.OldVersion, NewVersion: k.NewVersion,
				Changed: k.Changed, Written: k.Written, Diff: diffOf(k.Diff)}
		}
	}
	return out
}

// rulesResponse is res without its cells note (the caller adds it).
func rulesResponse(res *vschemastore.RulesResult) *wire.RulesResponse {
	if res == nil {
		return nil
	}
	out := &wire.RulesResponse{Kind: string(res.Kind), DryRun: res.DryRun, OldVersion: res.OldVersion, NewVersion: res.NewVersion,
		Changed: res.Changed, Written: res.Written, Validation: validationOf(res.Validation), Cells: cellsOf(res.Cells), NoCells: res.NoCells}
	if res.Diff != nil {
		d := wire.RulesDiff(*res.Diff)
		out.Diff = &d
	}
	return out
}
