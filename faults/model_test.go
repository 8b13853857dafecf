package faults

import (
	"fmt"
	"sort"

	"github.com/anishathalye/porcupine"
)

// The KV model that porcupine checks the history against: one key's state
// (the history is partitioned by key), a versioned register as Vitess's
// topo.Conn sees it and as etcd's KV API sees it (the plugin's Version is
// the key's etcd ModRevision: both APIs' operations on a key are one
// history). Versions are topod's backend revisions: they are not
// predictable, so the model checks what can be checked: a write's version
// is above every version the key had before, and a read returns the version
// and value of the write it follows.

// opKind is what an operation does.
type opKind int

const (
	opGet opKind = iota
	opCreate
	opUpdate
	opDelete
	// etcd's KV API:
	opPut // Put: unconditional; its version is the response's revision
	// Txn If(ModRevision(key) == Version) Then(Put) Else(Get): a
	// compare-and-set, Version 0 for a key that does not exist. Failed
	// (outBadVersion), its output is the Else read: the key's value and
	// version then (0: absent).
	opCAS
	opDel // Delete: unconditional; ok if it deleted the key, no node if none
)

func (k opKind) String() string {
	return [...]string{"get", "create", "update", "delete", "put", "cas", "del"}[k]
}

// kvInput is an operation's request.
type kvInput struct {
	Kind    opKind
	Key     string
	Value   string // create, update, put, cas
	Version int64  // update, delete, cas: the version the write is conditional on
	Via     string // which API and mode (for the descriptions): "plugin", "plugin default", "etcd", ...
}

// outcome is how an operation ended.
type outcome int

const (
	outOK         outcome = iota
	outNoNode             // topo.NoNode
	outExists             // topo.NodeExists
	outBadVersion         // topo.BadVersion
	outUnknown            // any other error: the write may or may not have happened
)

func (o outcome) String() string {
	return [...]string{"ok", "no node", "exists", "bad version", "unknown"}[o]
}

// kvOutput is an operation's response.
type kvOutput struct {
	Outcome outcome
	Value   string // get
	Version int64  // get, create, update
}

// keyState is the model's state of one key. known says whether version is
// known; when it is not (a write whose answer was lost), the key's version
// is some revision above floor.
type keyState struct {
	exists  bool
	value   string
	version int64
	known   bool
	floor   int64 // every version the key has had is <= floor
}

// atVersion says whether the key can be at version v, and the state that
// learns it.
func (s keyState) atVersion(v int64) (bool, keyState) {
	switch {
	case s.known:
		return s.version == v, s
	case v > s.floor:
		s.version, s.known, s.floor = v, true, v
		return true, s
	}
	return false, s
}

// written is the state after a write of value at version v (0: unknown).
func (s keyState) written(value string, v int64) keyState {
	s.exists, s.value = true, value
	if v == 0 {
		s.known = false
		s.floor = max(s.floor, s.version)
		return s
	}
	s.version, s.known, s.floor = v, true, v
	return s
}

// deleted is the state after a delete.
func (s keyState) deleted() keyState {
	return keyState{floor: max(s.floor, s.version)}
}

// step returns the states the key may be in after the operation, none if
// the operation's answer is impossible in state s.
func step(s keyState, in kvInput, out kvOutput) []keyState {
	switch in.Kind {
	case opGet:
		switch out.Outcome {
		case outNoNode:
			if !s.exists {
				return []keyState{s}
			}
		case outOK:
			if s.exists && s.value == out.Value {
				if ok, ns := s.atVersion(out.Version); ok {
					return []keyState{ns}
				}
			}
		case outUnknown:
			return []keyState{s}
		}
	case opCreate:
		switch out.Outcome {
		case outOK:
			if !s.exists && out.Version > max(s.floor, s.version) {
				return []keyState{s.written(in.Value, out.Version)}
			}
		case outExists:
			if s.exists {
				return []keyState{s}
			}
		case outUnknown:
			if !s.exists {
				return []keyState{s, s.written(in.Value, 0)}
			}
			return []keyState{s}
		}
	case opUpdate, opDelete:
		// The new state of a conditional write that happened.
		apply := func(ns keyState, version int64) keyState {
			if in.Kind == opDelete {
				return ns.deleted()
			}
			return ns.written(in.Value, version)
		}
		switch out.Outcome {
		case outOK:
			if ok, ns := s.atVersion(in.Version); ok && s.exists && (in.Kind == opDelete || out.Version > ns.floor) {
				return []keyState{apply(ns, out.Version)}
			}
		case outBadVersion:
			// Also for a missing key: Vitess's etcd2 says BadVersion there.
			if !s.exists || !(s.known && s.version == in.Version) {
				return []keyState{s}
			}
		case outNoNode:
			if !s.exists {
				return []keyState{s}
			}
		case outUnknown:
			if ok, ns := s.atVersion(in.Version); ok && s.exists {
				return []keyState{s, apply(ns, 0)}
			}
			return []keyState{s}
		}
	case opPut:
		switch out.Outcome {
		case outOK:
			if out.Version > max(s.floor, s.version) {
				return []keyState{s.written(in.Value, out.Version)}
			}
		case outUnknown:
			return []keyState{s, s.written(in.Value, 0)}
		}
	case opCAS:
		// holds: the compare is true in s (ns: s having learnt the
		// version it compared).
		holds, ns := !s.exists, s
		if in.Version != 0 {
			holds, ns = false, s
			if s.exists {
				holds, ns = s.atVersion(in.Version)
			}
		}
		switch out.Outcome {
		case outOK:
			if holds && out.Version > max(ns.floor, ns.version) {
				return []keyState{ns.written(in.Value, out.Version)}
			}
		case outBadVersion:
			// The Else read is the key's state, and the compare false.
			if out.Version == 0 {
				if !s.exists && in.Version != 0 {
					return []keyState{s}
				}
			} else if s.exists && s.value == out.Value && out.Version != in.Version {
				if ok, ls := s.atVersion(out.Version); ok {
					return []keyState{ls}
				}
			}
		case outUnknown:
			if holds {
				return []keyState{s, ns.written(in.Value, 0)}
			}
			return []keyState{s}
		}
	case opDel:
		switch out.Outcome {
		case outOK:
			if s.exists && out.Version > max(s.floor, s.version) {
				ns := s.deleted()
				ns.floor = out.Version
				return []keyState{ns}
			}
		case outNoNode:
			if !s.exists {
				return []keyState{s}
			}
		case outUnknown:
			if s.exists {
				return []keyState{s, s.deleted()}
			}
			return []keyState{s}
		}
	}
	return nil
}

// kvModel is the porcupine model, partitioned by key.
var kvModel = porcupine.NondeterministicModel{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		for _, op := range history {
			k := op.Input.(kvInput).Key
			byKey[k] = append(byKey[k], op)
		}
		keys := make([]string, 0, len(byKey))
		for k := range byKey {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() []any { return []any{keyState{}} },
	Step: func(state, input, output any) []any {
		var out []any
		for _, s := range step(state.(keyState), input.(kvInput), output.(kvOutput)) {
			out = append(out, s)
		}
		return out
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(kvInput), output.(kvOutput)
		return fmt.Sprintf("%s %s(%s, %q, v%d) -> %s %q v%d", in.Via, in.Kind, in.Key, in.Value, in.Version, out.Outcome, out.Value, out.Version)
	},
	DescribeState: func(state any) string {
		s := state.(keyState)
		if !s.exists {
			return fmt.Sprintf("absent (floor %d)", s.floor)
		}
		if !s.known {
			return fmt.Sprintf("%q at v>%d", s.value, s.floor)
		}
		return fmt.Sprintf("%q at v%d", s.value, s.version)
	},
}
