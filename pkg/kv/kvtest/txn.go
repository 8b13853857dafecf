package kvtest

import (
	"fmt"
	"strings"
	"testing"

	"github.com/topod-io/topod/pkg/kv"
)

// The checks of this file hold a kv.Backend to etcd's transaction
// semantics (go.etcd.io/etcd/server/v3/etcdserver/txn and the request
// checks of etcdserver/api/v3rpc/key.go), so that every backend answers a
// transaction as etcd does.

// txnOf returns e's backend.
func txnOf(t *testing.T, e *env) kv.Backend {
	t.Helper()
	return e.b
}

func mustTxn(t *testing.T, tb kv.Backend, txn kv.Txn) kv.TxnResult {
	t.Helper()
	res, err := tb.Txn(ctx(t), txn)
	if err != nil {
		t.Fatalf("Txn: %v", err)
	}
	if len(res.Responses) != len(branch(txn, res.Succeeded)) {
		t.Fatalf("Txn returned %d responses for a branch of %d ops", len(res.Responses), len(branch(txn, res.Succeeded)))
	}
	return res
}

// branch returns the ops txn runs when its compares hold (ok) or not.
func branch(txn kv.Txn, ok bool) []kv.Op {
	if ok {
		return txn.Success
	}
	return txn.Failure
}

func opGet(key string) kv.Op { return kv.Op{Type: kv.OpRange, Key: key} }

func opRange(key, end string) kv.Op { return kv.Op{Type: kv.OpRange, Key: key, End: end} }

func opPut(key, value string) kv.Op { return kv.Op{Type: kv.OpPut, Key: key, Value: []byte(value)} }

func opDelete(key, end string) kv.Op { return kv.Op{Type: kv.OpDelete, Key: key, End: end} }

func opTxn(txn kv.Txn) kv.Op { return kv.Op{Type: kv.OpTxn, Txn: &txn} }

func cmpInt(key string, target kv.CompareTarget, result kv.CompareResult, n int64) kv.Compare {
	return kv.Compare{Key: key, Target: target, Result: result, Int: n}
}

func cmpValue(key string, result kv.CompareResult, value string) kv.Compare {
	return kv.Compare{Key: key, Target: kv.CompareValue, Result: result, Value: []byte(value)}
}

// never is a compare that fails: its Txn runs Failure.
func never(key string) kv.Compare { return cmpInt(key, kv.CompareVersion, kv.Less, 0) }

// prefixEnd is the range end of the keys starting with prefix (etcd's
// clientv3.GetPrefixRangeEnd, for a prefix not ending in 0xff).
func prefixEnd(prefix string) string {
	return prefix[:len(prefix)-1] + string(prefix[len(prefix)-1]+1)
}

// kvWant is what a check expects of one key: its value ("" and keysOnly
// for a nil one), revisions, version and lease.
type kvWant struct {
	key, value  string
	mod, create int64
	version     int64
	lease       kv.LeaseID
}

func (w kvWant) String() string {
	return fmt.Sprintf("{%s=%q mod %d create %d version %d lease %d}", w.key, w.value, w.mod, w.create, w.version, w.lease)
}

func kvString(k kv.KV) string {
	return fmt.Sprintf("{%s=%q mod %d create %d version %d lease %d}", k.Key, k.Value, k.ModRevision, k.CreateRevision, k.Version, k.Lease)
}

func kvsString(kvs []kv.KV) string {
	var s []string
	for _, k := range kvs {
		s = append(s, kvString(k))
	}
	return "[" + strings.Join(s, " ") + "]"
}

// wantKVs fails t unless got is want, in order; keysOnly wants nil values.
func wantKVs(t *testing.T, what string, got []kv.KV, want []kvWant, keysOnly bool) {
	t.Helper()
	ok := len(got) == len(want)
	for i := 0; ok && i < len(got); i++ {
		g, w := got[i], want[i]
		ok = g.Key == w.key && g.ModRevision == w.mod && g.CreateRevision == w.create &&
			g.Version == w.version && g.Lease == w.lease
		if keysOnly {
			ok = ok && g.Value == nil
		} else {
			ok = ok && string(g.Value) == w.value
		}
	}
	if !ok {
		t.Fatalf("%s = %s, want %v (keysOnly %v)", what, kvsString(got), want, keysOnly)
	}
}

// want returns key's current state as a kvWant.
func want(t *testing.T, e *env, key string) kvWant {
	t.Helper()
	g := mustGet(t, e, key)
	return kvWant{g.Key, string(g.Value), g.ModRevision, g.CreateRevision, g.Version, g.Lease}
}

// checkTxnCompare: each target, compared with each result to an operand
// below, at and above the key's own, on a present key and on a missing one
// (which compares as 0, and fails every Value compare); several compares
// hold only if all do.
func checkTxnCompare(t *testing.T, e *env) {
	tb := txnOf(t, e)
	l := mustGrant(t, e, ctx(t), leaseTTL)
	k, missing := e.key("k"), e.key("missing")
	created := mustCreate(t, e, k, "v2", l.ID())
	modified := mustUpdate(t, e, k, "v2", created)
	got := mustGet(t, e, k)
	if got.Version != 2 || got.Lease != l.ID() {
		t.Fatalf("Get(%q) = %s, want version 2 and lease %d", k, kvString(got), l.ID())
	}

	// holds[operand][result] for the operands below, at and above the key's.
	holds := [3]map[kv.CompareResult]bool{
		{kv.Equal: false, kv.Greater: true, kv.Less: false, kv.NotEqual: true},
		{kv.Equal: true, kv.Greater: false, kv.Less: false, kv.NotEqual: false},
		{kv.Equal: false, kv.Greater: false, kv.Less: true, kv.NotEqual: true},
	}
	results := []kv.CompareResult{kv.Equal, kv.Greater, kv.Less, kv.NotEqual}
	ints := []struct {
		name   string
		target kv.CompareTarget
		actual int64
	}{
		{"Version", kv.CompareVersion, 2},
		{"Create", kv.CompareCreate, created},
		{"Mod", kv.CompareMod, modified},
		{"Lease", kv.CompareLease, int64(l.ID())},
	}
	tryAll := func(what string, compares []kv.Compare, want bool) {
		t.Helper()
		res := mustTxn(t, tb, kv.Txn{Compare: compares})
		if res.Succeeded != want {
			t.Errorf("%s: Succeeded = %v, want %v", what, res.Succeeded, want)
		}
	}
	try := func(what string, c kv.Compare, want bool) {
		t.Helper()
		tryAll(what, []kv.Compare{c}, want)
	}
	for _, tt := range ints {
		for i, operand := range []int64{tt.actual - 1, tt.actual, tt.actual + 1} {
			for _, r := range results {
				try(fmt.Sprintf("%s(%s) %v %d (is %d)", tt.name, k, r, operand, tt.actual),
					cmpInt(k, tt.target, r, operand), holds[i][r])
				// A missing key compares as 0.
				try(fmt.Sprintf("%s(missing) %v %d", tt.name, r, operand-tt.actual),
					cmpInt(missing, tt.target, r, operand-tt.actual), holds[i][r])
			}
		}
	}
	for i, operand := range []string{"v1", "v2", "v3"} {
		for _, r := range results {
			try(fmt.Sprintf("Value(%s) %v %q (is v2)", k, r, operand), cmpValue(k, r, operand), holds[i][r])
			// A Value compare fails on a missing key, whatever it asks.
			try(fmt.Sprintf("Value(missing) %v %q", r, operand), cmpValue(missing, r, operand), false)
		}
	}
	try("Value(missing) NotEqual \"\"", cmpValue(missing, kv.NotEqual, ""), false)

	// Several compares: all must hold.
	yes, no := cmpInt(k, kv.CompareVersion, kv.Equal, 2), cmpInt(k, kv.CompareVersion, kv.Equal, 3)
	for _, tt := range []struct {
		name     string
		compares []kv.Compare
		want     bool
	}{
		{"none", nil, true},
		{"all hold", []kv.Compare{yes, cmpValue(k, kv.Equal, "v2"), cmpInt(missing, kv.CompareCreate, kv.Equal, 0)}, true},
		{"last fails", []kv.Compare{yes, yes, no}, false},
		{"first fails", []kv.Compare{no, yes}, false},
	} {
		tryAll("compares "+tt.name, tt.compares, tt.want)
	}
}

// checkTxnCompareRange: a compare over a range holds if it holds for every
// key of the range; over a range with no key, it compares as one missing
// key (0, and Value fails); a range from a key on ("\x00") takes every key
// from there.
func checkTxnCompareRange(t *testing.T, e *env) {
	tb := txnOf(t, e)
	dir, empty := e.key("r/"), e.key("empty/")
	a, b, c, d := e.key("r/a"), e.key("r/b"), e.key("r/c"), e.key("r/d")
	mustCreate(t, e, a, "x", 0)
	rev := mustCreate(t, e, b, "x", 0)
	mustUpdate(t, e, b, "x", rev) // version 2
	rev = mustCreate(t, e, c, "x", 0)
	rev = mustUpdate(t, e, c, "x", rev)
	rev = mustUpdate(t, e, c, "x", rev) // version 3
	last := mustCreate(t, e, d, "y", 0)
	mustCreate(t, e, e.key("s"), "z", 0) // outside the ranges

	all, abc := prefixEnd(dir), d // [dir, all) holds a b c d; [a, d) a b c
	tests := []struct {
		name     string
		key, end string
		target   kv.CompareTarget
		result   kv.CompareResult
		n        int64
		value    string
		want     bool
	}{
		{"every version > 0", dir, all, kv.CompareVersion, kv.Greater, 0, "", true},
		{"not every version > 1", dir, all, kv.CompareVersion, kv.Greater, 1, "", false},
		{"every version < 4", dir, all, kv.CompareVersion, kv.Less, 4, "", true},
		{"not every version < 3", dir, all, kv.CompareVersion, kv.Less, 3, "", false},
		{"not every version = 2", dir, all, kv.CompareVersion, kv.Equal, 2, "", false},
		{"every version != 5", dir, all, kv.CompareVersion, kv.NotEqual, 5, "", true},
		{"every create > 0", dir, all, kv.CompareCreate, kv.Greater, 0, "", true},
		{"every mod <= last", dir, all, kv.CompareMod, kv.Less, last + 1, "", true},
		{"not every mod < last", dir, all, kv.CompareMod, kv.Less, last, "", false},
		{"every lease = 0", dir, all, kv.CompareLease, kv.Equal, 0, "", true},
		{"every value = x in [a, d)", a, abc, kv.CompareValue, kv.Equal, 0, "x", true},
		{"not every value = x", dir, all, kv.CompareValue, kv.Equal, 0, "x", false},
		{"every value > w", dir, all, kv.CompareValue, kv.Greater, 0, "w", true},
		{"every value < z", dir, all, kv.CompareValue, kv.Less, 0, "z", true},
		{"not every value != x", dir, all, kv.CompareValue, kv.NotEqual, 0, "x", false},
		{"[b, c) is b alone", b, c, kv.CompareVersion, kv.Equal, 2, "", true},
		{"empty range: version = 0", empty, prefixEnd(empty), kv.CompareVersion, kv.Equal, 0, "", true},
		{"empty range: not version > 0", empty, prefixEnd(empty), kv.CompareVersion, kv.Greater, 0, "", false},
		{"empty range: create = 0", empty, prefixEnd(empty), kv.CompareCreate, kv.Equal, 0, "", true},
		{"empty range: mod < 1", empty, prefixEnd(empty), kv.CompareMod, kv.Less, 1, "", true},
		{"empty range: lease = 0", empty, prefixEnd(empty), kv.CompareLease, kv.Equal, 0, "", true},
		{"empty range: value = \"\" fails", empty, prefixEnd(empty), kv.CompareValue, kv.Equal, 0, "", false},
		{"empty range: value != x fails", empty, prefixEnd(empty), kv.CompareValue, kv.NotEqual, 0, "x", false},
		{"inverted range: as missing", c, a, kv.CompareCreate, kv.Equal, 0, "", true},
		// From a key on: every key of the store from there, which in a
		// shared store includes other keys than these (all of them created).
		{"from b on: every create > 0", b, "\x00", kv.CompareCreate, kv.Greater, 0, "", true},
		{"from b on: not every version < 3", b, "\x00", kv.CompareVersion, kv.Less, 3, "", false},
	}
	for _, tt := range tests {
		c := kv.Compare{Key: tt.key, End: tt.end, Target: tt.target, Result: tt.result, Int: tt.n}
		if tt.target == kv.CompareValue {
			c.Value = []byte(tt.value)
		}
		res := mustTxn(t, tb, kv.Txn{Compare: []kv.Compare{c}})
		if res.Succeeded != tt.want {
			t.Errorf("%s: Succeeded = %v, want %v", tt.name, res.Succeeded, tt.want)
		}
	}
}

// checkTxnRange: a Range returns the key, or the keys of its range sorted
// by key, with their revisions, versions and leases (keys only: values
// nil); a missing key or an empty range returns none.
func checkTxnRange(t *testing.T, e *env) {
	tb := txnOf(t, e)
	l := mustGrant(t, e, ctx(t), leaseTTL)
	// Created out of order, so that sorting is the backend's doing.
	for _, name := range []string{"r/c", "r/b/c", "r/a", "other"} {
		mustCreate(t, e, e.key(name), name, 0)
	}
	b := e.key("r/b")
	rev := mustCreate(t, e, b, "b1", l.ID())
	mustUpdate(t, e, b, "b2", rev)
	w := map[string]kvWant{}
	for _, name := range []string{"r/a", "r/b", "r/b/c", "r/c"} {
		w[name] = want(t, e, e.key(name))
	}
	dir := e.key("r/")
	tests := []struct {
		name     string
		op       kv.Op
		want     []kvWant
		keysOnly bool
	}{
		{"one key", opGet(b), []kvWant{w["r/b"]}, false},
		{"missing key", opGet(e.key("r/missing")), nil, false},
		{"a prefix is not a key", opGet(e.key("r")), nil, false},
		{"prefix", opRange(dir, prefixEnd(dir)), []kvWant{w["r/a"], w["r/b"], w["r/b/c"], w["r/c"]}, false},
		{"[b, c)", opRange(b, e.key("r/c")), []kvWant{w["r/b"], w["r/b/c"]}, false},
		{"keys only", kv.Op{Type: kv.OpRange, Key: dir, End: prefixEnd(dir), KeysOnly: true},
			[]kvWant{w["r/a"], w["r/b"], w["r/b/c"], w["r/c"]}, true},
		{"empty range", opRange(e.key("r/d"), e.key("r/e")), nil, false},
		{"inverted range", opRange(e.key("r/c"), e.key("r/a")), nil, false},
	}
	for _, tt := range tests {
		res := mustTxn(t, tb, kv.Txn{Success: []kv.Op{tt.op}})
		if !res.Succeeded || res.Responses[0].Type != kv.OpRange {
			t.Fatalf("%s: Succeeded %v, response type %v", tt.name, res.Succeeded, res.Responses[0].Type)
		}
		wantKVs(t, tt.name, res.Responses[0].Range, tt.want, tt.keysOnly)
	}

	// From a key on: these keys first, then (in a shared store) others,
	// all sorted.
	res := mustTxn(t, tb, kv.Txn{Success: []kv.Op{opRange(b, "\x00")}})
	got := res.Responses[0].Range
	if len(got) < 3 {
		t.Fatalf("Range from %s on = %s, want at least 3 keys", b, kvsString(got))
	}
	wantKVs(t, "Range from b on (first 3)", got[:3], []kvWant{w["r/b"], w["r/b/c"], w["r/c"]}, false)
	for i := 1; i < len(got); i++ {
		if got[i-1].Key >= got[i].Key {
			t.Fatalf("Range from %s on not sorted: %q before %q", b, got[i-1].Key, got[i].Key)
		}
	}
}

// checkTxnPut: a Put creates (Version 1) or updates (Version + 1, same
// CreateRevision) at the transaction's revision, a new revision even for
// the same value; PrevKV returns the state before (none for a new key).
func checkTxnPut(t *testing.T, e *env) {
	tb := txnOf(t, e)
	k := e.key("k")
	put := opPut(k, "v1")
	put.PrevKV = true
	res := mustTxn(t, tb, kv.Txn{Success: []kv.Op{put}})
	if res.Responses[0].Type != kv.OpPut || res.Responses[0].PrevKV != nil {
		t.Fatalf("Put of a new key: response %+v, want a Put with no PrevKV", res.Responses[0])
	}
	created := res.Revision
	first := kvWant{k, "v1", created, created, 1, 0}
	wantKVs(t, "Get after the first Put", []kv.KV{mustGet(t, e, k)}, []kvWant{first}, false)

	put = opPut(k, "v2")
	put.PrevKV = true
	res = mustTxn(t, tb, kv.Txn{Success: []kv.Op{put}})
	if res.Revision <= created {
		t.Fatalf("second Put at revision %d, want > %d", res.Revision, created)
	}
	if prev := res.Responses[0].PrevKV; prev == nil {
		t.Fatalf("second Put: no PrevKV")
	} else {
		wantKVs(t, "PrevKV of the second Put", []kv.KV{*prev}, []kvWant{first}, false)
	}
	second := kvWant{k, "v2", res.Revision, created, 2, 0}
	wantKVs(t, "Get after the second Put", []kv.KV{mustGet(t, e, k)}, []kvWant{second}, false)

	// The same value again is a write all the same.
	res = mustTxn(t, tb, kv.Txn{Success: []kv.Op{opPut(k, "v2")}})
	if res.Revision <= second.mod {
		t.Fatalf("Put of the same value at revision %d, want > %d", res.Revision, second.mod)
	}
	wantKVs(t, "Get after a Put of the same value", []kv.KV{mustGet(t, e, k)},
		[]kvWant{{k, "v2", res.Revision, created, 3, 0}}, false)

	// An empty value is a value.
	empty := e.key("empty")
	res = mustTxn(t, tb, kv.Txn{Success: []kv.Op{opPut(empty, "")}})
	wantKVs(t, "Get of an empty value", []kv.KV{mustGet(t, e, empty)},
		[]kvWant{{empty, "", res.Revision, res.Revision, 1, 0}}, false)
}

// checkTxnPutLease: a Put attaches the key to its Lease, or takes it off
// its lease with none (etcd's put does not keep a lease unless asked to);
// a Put with a lease that has ended fails with ErrLeaseNotFound and writes
// nothing.
func checkTxnPutLease(t *testing.T, e *env) {
	tb := txnOf(t, e)
	l := mustGrant(t, e, ctx(t), leaseTTL)
	leased, detached := e.key("leased"), e.key("detached")
	mustCreate(t, e, detached, "d1", l.ID())

	put := opPut(leased, "l1")
	put.Lease = l.ID()
	res := mustTxn(t, tb, kv.Txn{Success: []kv.Op{put, opPut(detached, "d2")}})
	if got := mustGet(t, e, leased); got.Lease != l.ID() {
		t.Errorf("Put with lease %d: key's lease %d", l.ID(), got.Lease)
	}
	wantKVs(t, "Get after a Put with no lease", []kv.KV{mustGet(t, e, detached)},
		[]kvWant{{detached, "d2", res.Revision, mustGet(t, e, detached).CreateRevision, 2, 0}}, false)

	if err := l.Revoke(ctx(t)); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	wantNotFound(t, e, leased)
	mustGet(t, e, detached) // off the lease: it stays

	before := want(t, e, detached)
	for _, id := range []kv.LeaseID{l.ID(), 0x5eed_0bad_cafe} {
		put := opPut(e.key("new"), "n")
		put.Lease = id
		_, err := tb.Txn(ctx(t), kv.Txn{Success: []kv.Op{opPut(detached, "d3"), put}})
		wantErr(t, fmt.Sprintf("Put with lease %d, ended or never granted", id), err, kv.ErrLeaseNotFound, "")
		wantNotFound(t, e, e.key("new"))
		wantKVs(t, "Get after the failed Txn", []kv.KV{mustGet(t, e, detached)}, []kvWant{before}, false)
	}
}

// checkTxnPutIgnore: IgnoreValue keeps the key's value, IgnoreLease its
// lease (without it, a Put takes the lease from the op, none included);
// either on a missing key fails with ErrNotFound and writes nothing; a
// value given with IgnoreValue, or a lease with IgnoreLease, is an error.
func checkTxnPutIgnore(t *testing.T, e *env) {
	tb := txnOf(t, e)
	l := mustGrant(t, e, ctx(t), leaseTTL)
	k := e.key("k")
	created := mustCreate(t, e, k, "keep", l.ID())

	tests := []struct {
		name        string
		op          kv.Op
		value       string
		lease       kv.LeaseID
		wantVersion int64
	}{
		{"IgnoreLease", kv.Op{Type: kv.OpPut, Key: k, Value: []byte("new"), IgnoreLease: true}, "new", l.ID(), 2},
		{"IgnoreValue", kv.Op{Type: kv.OpPut, Key: k, IgnoreValue: true, Lease: l.ID()}, "new", l.ID(), 3},
		{"both", kv.Op{Type: kv.OpPut, Key: k, IgnoreValue: true, IgnoreLease: true}, "new", l.ID(), 4},
		{"IgnoreValue without a lease", kv.Op{Type: kv.OpPut, Key: k, IgnoreValue: true}, "new", 0, 5},
	}
	for _, tt := range tests {
		res := mustTxn(t, tb, kv.Txn{Success: []kv.Op{tt.op}})
		wantKVs(t, tt.name, []kv.KV{mustGet(t, e, k)},
			[]kvWant{{k, tt.value, res.Revision, created, tt.wantVersion, tt.lease}}, false)
	}

	missing := e.key("missing")
	before := want(t, e, k)
	for _, op := range []kv.Op{
		{Type: kv.OpPut, Key: missing, IgnoreValue: true},
		{Type: kv.OpPut, Key: missing, Value: []byte("v"), IgnoreLease: true},
	} {
		_, err := tb.Txn(ctx(t), kv.Txn{Success: []kv.Op{opPut(k, "other"), op}})
		wantErr(t, fmt.Sprintf("Put (IgnoreValue %v, IgnoreLease %v) of a missing key", op.IgnoreValue, op.IgnoreLease),
			err, kv.ErrNotFound, "")
		wantNotFound(t, e, missing)
		wantKVs(t, "Get after the failed Txn", []kv.KV{mustGet(t, e, k)}, []kvWant{before}, false)
	}

	for _, op := range []kv.Op{
		{Type: kv.OpPut, Key: k, Value: []byte("v"), IgnoreValue: true},
		{Type: kv.OpPut, Key: k, Lease: l.ID(), IgnoreLease: true},
	} {
		if _, err := tb.Txn(ctx(t), kv.Txn{Success: []kv.Op{op}}); err == nil {
			t.Errorf("Put with a value and IgnoreValue %v, or a lease and IgnoreLease %v: no error", op.IgnoreValue, op.IgnoreLease)
		}
	}
	wantKVs(t, "Get after the refused Puts", []kv.KV{mustGet(t, e, k)}, []kvWant{before}, false)
}

// checkTxnDelete: a Delete removes the key, or the keys of its range,
// counting them, and with PrevKV returns their states before, sorted by
// key; deleting nothing is no error.
func checkTxnDelete(t *testing.T, e *env) {
	tb := txnOf(t, e)
	for _, name := range []string{"d/b", "d/a", "d/c/1", "d", "e", "single"} {
		mustCreate(t, e, e.key(name), name, 0)
	}
	w := map[string]kvWant{}
	for _, name := range []string{"d/a", "d/b", "d/c/1", "single"} {
		w[name] = want(t, e, e.key(name))
	}

	del := opDelete(e.key("missing"), "")
	del.PrevKV = true
	res := mustTxn(t, tb, kv.Txn{Success: []kv.Op{del}})
	if r := res.Responses[0]; r.Type != kv.OpDelete || r.Deleted != 0 || len(r.PrevKVs) != 0 {
		t.Fatalf("Delete of a missing key: %+v, want a Delete of 0 keys", r)
	}

	del = opDelete(e.key("single"), "")
	del.PrevKV = true
	res = mustTxn(t, tb, kv.Txn{Success: []kv.Op{del}})
	if r := res.Responses[0]; r.Deleted != 1 {
		t.Fatalf("Delete of one key: Deleted = %d, want 1", r.Deleted)
	}
	wantKVs(t, "PrevKVs of a one-key Delete", res.Responses[0].PrevKVs, []kvWant{w["single"]}, false)
	wantNotFound(t, e, e.key("single"))

	dir := e.key("d/")
	del = opDelete(dir, prefixEnd(dir))
	del.PrevKV = true
	res = mustTxn(t, tb, kv.Txn{Success: []kv.Op{del}})
	if r := res.Responses[0]; r.Deleted != 3 {
		t.Fatalf("Delete of a range: Deleted = %d, want 3", r.Deleted)
	}
	wantKVs(t, "PrevKVs of a range Delete", res.Responses[0].PrevKVs, []kvWant{w["d/a"], w["d/b"], w["d/c/1"]}, false)
	for _, name := range []string{"d/a", "d/b", "d/c/1"} {
		wantNotFound(t, e, e.key(name))
	}
	mustGet(t, e, e.key("d"))
	mustGet(t, e, e.key("e"))

	// Without PrevKV: the count only.
	for _, name := range []string{"f/1", "f/2"} {
		mustCreate(t, e, e.key(name), name, 0)
	}
	res = mustTxn(t, tb, kv.Txn{Success: []kv.Op{opDelete(e.key("f/"), prefixEnd(e.key("f/")))}})
	if r := res.Responses[0]; r.Deleted != 2 || len(r.PrevKVs) != 0 {
		t.Fatalf("Delete of a range without PrevKV: %+v, want Deleted 2 and no PrevKVs", r)
	}
}

// checkTxnNested: a nested Txn's compares are evaluated, with the outer
// ones, on the state before the transaction (not after the ops before
// it), and its ops run in order with the others; its result holds its
// branch's responses, and Revision 0 (as etcd's nested header).
func checkTxnNested(t *testing.T, e *env) {
	tb := txnOf(t, e)
	k, a, b, c := e.key("k"), e.key("a"), e.key("b"), e.key("c")
	mustCreate(t, e, k, "v1", 0)

	res := mustTxn(t, tb, kv.Txn{
		Compare: []kv.Compare{cmpInt(k, kv.CompareVersion, kv.Equal, 1)},
		Success: []kv.Op{
			opPut(k, "v2"),
			opTxn(kv.Txn{
				// Holds: k was at version 1 before the transaction.
				Compare: []kv.Compare{cmpInt(k, kv.CompareVersion, kv.Equal, 1)},
				Success: []kv.Op{opGet(k), opTxn(kv.Txn{
					Compare: []kv.Compare{cmpValue(k, kv.Equal, "v2")}, // fails: k was v1
					Success: []kv.Op{opPut(a, "then")},
					Failure: []kv.Op{opPut(a, "else"), opGet(a)},
				})},
				Failure: []kv.Op{opPut(b, "wrong")},
			}),
			opGet(k),
		},
	})
	if !res.Succeeded || len(res.Responses) != 3 {
		t.Fatalf("outer: Succeeded %v with %d responses, want true with 3", res.Succeeded, len(res.Responses))
	}
	rev := res.Revision
	inner := res.Responses[1].Txn
	if res.Responses[1].Type != kv.OpTxn || inner == nil {
		t.Fatalf("second response: %+v, want a Txn", res.Responses[1])
	}
	if !inner.Succeeded || len(inner.Responses) != 2 || inner.Revision != 0 {
		t.Fatalf("nested: Succeeded %v, %d responses, Revision %d; want true, 2, 0",
			inner.Succeeded, len(inner.Responses), inner.Revision)
	}
	wantK := kvWant{k, "v2", rev, mustGet(t, e, k).CreateRevision, 2, 0}
	wantKVs(t, "nested Range of k, after the outer Put", inner.Responses[0].Range, []kvWant{wantK}, false)
	innermost := inner.Responses[1].Txn
	if innermost == nil || innermost.Succeeded || len(innermost.Responses) != 2 {
		t.Fatalf("innermost: %+v, want Failure's 2 responses", innermost)
	}
	wantKVs(t, "innermost Range of a", innermost.Responses[1].Range, []kvWant{{a, "else", rev, rev, 1, 0}}, false)
	wantKVs(t, "outer Range of k", res.Responses[2].Range, []kvWant{wantK}, false)
	wantNotFound(t, e, b)

	// A nested Txn in the Failure branch.
	res = mustTxn(t, tb, kv.Txn{
		Compare: []kv.Compare{never(k)},
		Success: []kv.Op{opPut(b, "wrong")},
		Failure: []kv.Op{opTxn(kv.Txn{Success: []kv.Op{opPut(c, "c")}})},
	})
	if res.Succeeded || len(res.Responses) != 1 || res.Responses[0].Txn == nil || !res.Responses[0].Txn.Succeeded {
		t.Fatalf("Failure with a nested Txn: %+v", res)
	}
	wantKVs(t, "Get(c)", []kv.KV{mustGet(t, e, c)}, []kvWant{{c, "c", res.Revision, res.Revision, 1, 0}}, false)
	wantNotFound(t, e, b)
}

// checkTxnReadsOwnWrites: the ops of a transaction run in order, each
// seeing the writes of those before it.
func checkTxnReadsOwnWrites(t *testing.T, e *env) {
	tb := txnOf(t, e)
	dir := e.key("dir/")
	a, b, c := e.key("dir/a"), e.key("dir/b"), e.key("dir/c")
	createdA := mustCreate(t, e, a, "a0", 0)
	mustCreate(t, e, b, "b0", 0)

	res := mustTxn(t, tb, kv.Txn{Success: []kv.Op{
		opGet(a),
		opPut(a, "a1"),
		opGet(a),
		opDelete(b, ""),
		opGet(b),
		opPut(c, "c1"),
		opRange(dir, prefixEnd(dir)),
	}})
	rev := res.Revision
	a0 := want0(t, res.Responses[0].Range)
	if string(a0.Value) != "a0" {
		t.Fatalf("Range before the Put: %s, want a0", kvString(a0))
	}
	a1 := kvWant{a, "a1", rev, createdA, 2, 0}
	c1 := kvWant{c, "c1", rev, rev, 1, 0}
	wantKVs(t, "Range after the Put", res.Responses[2].Range, []kvWant{a1}, false)
	if r := res.Responses[3]; r.Deleted != 1 {
		t.Fatalf("Delete(b): Deleted %d, want 1", r.Deleted)
	}
	wantKVs(t, "Range after the Delete", res.Responses[4].Range, nil, false)
	wantKVs(t, "Range of the directory", res.Responses[6].Range, []kvWant{a1, c1}, false)
	wantNotFound(t, e, b)

	// A range deleted, then read.
	res = mustTxn(t, tb, kv.Txn{Success: []kv.Op{
		opDelete(dir, prefixEnd(dir)),
		opRange(dir, prefixEnd(dir)),
		opGet(a),
	}})
	if r := res.Responses[0]; r.Deleted != 2 {
		t.Fatalf("Delete of the directory: Deleted %d, want 2 (a and c)", r.Deleted)
	}
	wantKVs(t, "Range after deleting the directory", res.Responses[1].Range, nil, false)
	wantKVs(t, "Range(a) after deleting the directory", res.Responses[2].Range, nil, false)
	for _, k := range []string{a, b, c} {
		wantNotFound(t, e, k)
	}
}

// want0 returns the one KV of kvs.
func want0(t *testing.T, kvs []kv.KV) kv.KV {
	t.Helper()
	if len(kvs) != 1 {
		t.Fatalf("got %s, want one key", kvsString(kvs))
	}
	return kvs[0]
}

// checkTxnDuplicateKey: a branch may not put a key twice, nor put a key
// one of its deletes covers, nested transactions included
// (ErrDuplicateKey, nothing written); both branches are checked, whichever
// runs. What etcd allows is allowed: deletes that overlap, the two
// branches of a nested transaction putting one key, and (etcd's interval
// check) a delete from a key on ("\x00") with a put in it, or a nested
// transaction's put followed by a later nested transaction's delete.
func checkTxnDuplicateKey(t *testing.T, e *env) {
	tb := txnOf(t, e)
	tests := []struct {
		name string
		ops  func(a, b, dir string) []kv.Op
		dup  bool
		// run: run the branch when it is allowed (false: only check it is
		// allowed, in the branch that does not run).
		run bool
	}{
		{"put twice", func(a, b, dir string) []kv.Op { return []kv.Op{opPut(a, "1"), opPut(a, "2")} }, true, true},
		{"put then delete", func(a, b, dir string) []kv.Op { return []kv.Op{opPut(a, "1"), opDelete(a, "")} }, true, true},
		{"delete then put", func(a, b, dir string) []kv.Op { return []kv.Op{opDelete(a, ""), opPut(a, "1")} }, true, true},
		{"put in a deleted range", func(a, b, dir string) []kv.Op {
			return []kv.Op{opPut(a, "1"), opDelete(dir, prefixEnd(dir))}
		}, true, true},
		{"put, and in a nested txn", func(a, b, dir string) []kv.Op {
			return []kv.Op{opPut(a, "1"), opTxn(kv.Txn{Success: []kv.Op{opPut(a, "2")}})}
		}, true, true},
		{"nested delete, then put", func(a, b, dir string) []kv.Op {
			return []kv.Op{opTxn(kv.Txn{Success: []kv.Op{opDelete(a, "")}}), opPut(a, "1")}
		}, true, true},
		{"two nested txns put", func(a, b, dir string) []kv.Op {
			return []kv.Op{opTxn(kv.Txn{Success: []kv.Op{opPut(a, "1")}}), opTxn(kv.Txn{Failure: []kv.Op{opPut(a, "2")}})}
		}, true, true},
		{"two levels down", func(a, b, dir string) []kv.Op {
			return []kv.Op{opTxn(kv.Txn{Success: []kv.Op{opTxn(kv.Txn{Failure: []kv.Op{opPut(a, "1")}})}}), opPut(a, "2")}
		}, true, true},
		{"nested delete range, nested put", func(a, b, dir string) []kv.Op {
			return []kv.Op{opTxn(kv.Txn{Success: []kv.Op{opTxn(kv.Txn{Failure: []kv.Op{opDelete(dir, prefixEnd(dir))}})}}),
				opTxn(kv.Txn{Success: []kv.Op{opPut(a, "1")}})}
		}, true, true},
		{"different keys", func(a, b, dir string) []kv.Op { return []kv.Op{opPut(a, "1"), opPut(b, "2"), opDelete(dir+"x", "")} }, false, true},
		{"delete twice", func(a, b, dir string) []kv.Op { return []kv.Op{opDelete(a, ""), opDelete(dir, prefixEnd(dir))} }, false, true},
		{"then and else of a nested txn", func(a, b, dir string) []kv.Op {
			return []kv.Op{opTxn(kv.Txn{Success: []kv.Op{opPut(a, "1")}, Failure: []kv.Op{opPut(a, "2")}})}
		}, false, true},
		{"nested put, later nested delete", func(a, b, dir string) []kv.Op {
			return []kv.Op{opTxn(kv.Txn{Success: []kv.Op{opPut(a, "1")}}), opTxn(kv.Txn{Success: []kv.Op{opDelete(a, "")}})}
		}, false, true},
		{"delete from a key on, then put", func(a, b, dir string) []kv.Op {
			return []kv.Op{opDelete(a, "\x00"), opPut(a, "1")}
		}, false, false},
	}
	for i, tt := range tests {
		for _, runs := range []bool{true, false} {
			if runs && !tt.dup && !tt.run {
				continue
			}
			dir := e.key(fmt.Sprintf("%d-%v/", i, runs))
			a, b := dir+"a", dir+"b"
			mustCreate(t, e, b, "b0", 0)
			before := want(t, e, b)
			txn := kv.Txn{Success: tt.ops(a, b, dir)}
			if !runs {
				txn.Compare = []kv.Compare{never(a)}
			}
			what := fmt.Sprintf("%s (branch runs: %v)", tt.name, runs)
			res, err := tb.Txn(ctx(t), txn)
			if tt.dup {
				wantErr(t, what, err, kv.ErrDuplicateKey, "")
				wantNotFound(t, e, a)
				wantKVs(t, what+": Get(b)", []kv.KV{mustGet(t, e, b)}, []kvWant{before}, false)
				continue
			}
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			if res.Succeeded != runs {
				t.Fatalf("%s: Succeeded %v", what, res.Succeeded)
			}
		}
	}

	// The Failure branch is checked too when Success runs.
	k := e.key("failure")
	_, err := tb.Txn(ctx(t), kv.Txn{Success: []kv.Op{opPut(k, "ok")}, Failure: []kv.Op{opPut(k, "1"), opPut(k, "2")}})
	wantErr(t, "duplicate in the Failure branch", err, kv.ErrDuplicateKey, "")
	wantNotFound(t, e, k)
	// One key in both branches is no duplicate.
	mustTxn(t, tb, kv.Txn{Success: []kv.Op{opPut(k, "ok")}, Failure: []kv.Op{opPut(k, "no")}})
	if got := mustGet(t, e, k); string(got.Value) != "ok" {
		t.Fatalf("Get(%q) = %q, want ok", k, got.Value)
	}
}

// checkTxnMalformed: a transaction with an empty key anywhere is refused,
// and writes nothing; an empty transaction succeeds.
func checkTxnMalformed(t *testing.T, e *env) {
	tb := txnOf(t, e)
	k := e.key("k")
	for _, txn := range []kv.Txn{
		{Compare: []kv.Compare{cmpInt("", kv.CompareVersion, kv.Equal, 0)}, Success: []kv.Op{opPut(k, "v")}},
		{Success: []kv.Op{opPut(k, "v"), opPut("", "v")}},
		{Success: []kv.Op{opPut(k, "v"), opGet("")}},
		{Success: []kv.Op{opPut(k, "v"), opDelete("", "")}},
		{Success: []kv.Op{opPut(k, "v"), opTxn(kv.Txn{Failure: []kv.Op{opPut("", "v")}})}},
	} {
		if _, err := tb.Txn(ctx(t), txn); err == nil {
			t.Errorf("Txn with an empty key: no error")
		}
		wantNotFound(t, e, k)
	}
	if res, err := tb.Txn(ctx(t), kv.Txn{}); err != nil || !res.Succeeded {
		t.Errorf("empty Txn: Succeeded %v, %v; want true, no error", res.Succeeded, err)
	}
}
