package boltkv

import (
	"bytes"
	"cmp"
	"context"
	"errors"

	bolt "go.etcd.io/bbolt"

	"github.com/topod-io/topod/pkg/kv"
)

// This file is kv.Backend.Txn on bolt: etcd's transactions, evaluated as
// etcd's server evaluates them (go.etcd.io/etcd/server/v3: etcdserver/txn
// and the request checks of etcdserver/api/v3rpc/key.go), in one bolt
// transaction at one revision.

// Errors of a malformed transaction, as etcd's.
var (
	errValueProvided = errors.New("value is provided with ignore_value")
	errLeaseProvided = errors.New("lease is provided with ignore_lease")
	errNoNestedTxn   = errors.New("nested txn missing")
	errBadOp         = errors.New("unknown op type")
)

// Txn runs t as etcd does:
//
//   - First, checks that need no data: keys not empty, no value with
//     IgnoreValue nor lease with IgnoreLease, and no key put twice or put
//     and deleted by one branch (kv.ErrDuplicateKey, see checkIntervals),
//     in both branches, whichever runs.
//   - Then, against the state before the transaction: every Compare,
//     those of the nested transactions of the branches taken included,
//     which picks the branches; and the checks of the ops those branches
//     run: a Range's revision (kv.ErrFutureRevision, kv.ErrCompacted), a
//     Put's lease (kv.ErrLeaseNotFound) and, with IgnoreValue or
//     IgnoreLease, its key (kv.ErrNotFound).
//   - Last, the ops, in order, each seeing the writes of those before it.
//     Every write is at one new revision; a key's Version goes up once.
//
// A transaction that may write runs in one write transaction (a failure
// rolls all of it back; one that wrote nothing leaves the revision where
// it was); one that cannot runs in a read transaction. The result's
// Revision is the revision of the writes, or the current one; a nested
// result's Revision is 0, as etcd's.
func (b *Backend) Txn(ctx context.Context, t kv.Txn) (kv.TxnResult, error) {
	name := t.Name()
	if err := ctx.Err(); err != nil {
		return kv.TxnResult{}, opError("txn", name, err)
	}
	if err := checkTxnRequest(&t); err != nil {
		return kv.TxnResult{}, opError("txn", name, err)
	}
	for _, ops := range [][]kv.Op{t.Success, t.Failure} {
		if _, _, err := checkIntervals(ops); err != nil {
			return kv.TxnResult{}, opError("txn", name, err)
		}
	}
	var res kv.TxnResult
	if !t.Writes() {
		err := b.read(func(tx *bolt.Tx) error {
			run := &txnRun{b: b, tx: tx, rev: metaOf(tx).get(metaRev)}
			var err error
			res, err = run.run(&t)
			res.Revision = run.rev
			return err
		})
		if err != nil {
			return kv.TxnResult{}, opError("txn", name, err)
		}
		return res, nil
	}
	rev, err := b.write(func(w *writeTx) error {
		run := &txnRun{b: b, tx: w.tx, w: w, rev: w.rev - 1}
		var err error
		res, err = run.run(&t)
		return err
	})
	if err != nil {
		return kv.TxnResult{}, opError("txn", name, err)
	}
	res.Revision = rev
	return res, nil
}

// CurrentRevision returns the revision of the last committed write.
func (b *Backend) CurrentRevision(ctx context.Context) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, opError("current revision", "", err)
	}
	var rev int64
	err := b.read(func(tx *bolt.Tx) error {
		rev = metaOf(tx).get(metaRev)
		return nil
	})
	if err != nil {
		return 0, opError("current revision", "", err)
	}
	return rev, nil
}

// checkTxnRequest rejects a malformed transaction, as etcd's
// checkTxnRequest: an empty key, a value given with IgnoreValue or a
// lease with IgnoreLease, a nested Txn missing, an unknown op.
func checkTxnRequest(t *kv.Txn) error {
	for _, c := range t.Compare {
		if c.Key == "" {
			return opError("compare", c.Key, errEmptyKey)
		}
	}
	for _, ops := range [][]kv.Op{t.Success, t.Failure} {
		for _, op := range ops {
			switch op.Type {
			case kv.OpRange, kv.OpDelete:
				if op.Key == "" {
					return opError(opName(op.Type), op.Key, errEmptyKey)
				}
			case kv.OpPut:
				switch {
				case op.Key == "":
					return opError("put", op.Key, errEmptyKey)
				case op.IgnoreValue && len(op.Value) != 0:
					return opError("put", op.Key, errValueProvided)
				case op.IgnoreLease && op.Lease != 0:
					return opError("put", op.Key, errLeaseProvided)
				}
			case kv.OpTxn:
				if op.Txn == nil {
					return opError("txn", op.Key, errNoNestedTxn)
				}
				if err := checkTxnRequest(op.Txn); err != nil {
					return err
				}
			default:
				return opError("op", op.Key, errBadOp)
			}
		}
	}
	return nil
}

func opName(t kv.OpType) string {
	switch t {
	case kv.OpRange:
		return "range"
	case kv.OpPut:
		return "put"
	case kv.OpDelete:
		return "delete"
	}
	return "txn"
}

// checkIntervals is etcd's check that the ops of one branch put no key
// twice and put no key one of them deletes (kv.ErrDuplicateKey), nested
// transactions included; it returns the keys the ops put and the ranges
// they delete, for the branch around them. As etcd's: deletes may overlap;
// a nested transaction's two branches may put the same key; a delete of
// every key from a key on ("\x00") overlaps no put (etcd's interval tree
// never matches it); and a nested transaction's puts are checked against
// the deletes of the ops of its branch and of the nested transactions
// before it, not after it.
func checkIntervals(ops []kv.Op) (puts map[string]bool, dels []keyRange, err error) {
	for _, op := range ops {
		if op.Type == kv.OpDelete {
			dels = append(dels, keyRange{op.Key, op.End})
		}
	}
	puts = map[string]bool{}
	for _, op := range ops {
		if op.Type != kv.OpTxn {
			continue
		}
		putsThen, delsThen, err := checkIntervals(op.Txn.Success)
		if err != nil {
			return nil, nil, err
		}
		putsElse, delsElse, err := checkIntervals(op.Txn.Failure)
		if err != nil {
			return nil, nil, err
		}
		for k := range putsThen {
			if puts[k] || deletes(dels, k) {
				return nil, nil, opError("put", k, kv.ErrDuplicateKey)
			}
			puts[k] = true
		}
		for k := range putsElse {
			if (puts[k] && !putsThen[k]) || deletes(dels, k) {
				return nil, nil, opError("put", k, kv.ErrDuplicateKey)
			}
			puts[k] = true
		}
		dels = append(dels, delsThen...)
		dels = append(dels, delsElse...)
	}
	for _, op := range ops {
		if op.Type != kv.OpPut {
			continue
		}
		if puts[op.Key] || deletes(dels, op.Key) {
			return nil, nil, opError("put", op.Key, kv.ErrDuplicateKey)
		}
		puts[op.Key] = true
	}
	return puts, dels, nil
}

// deletes says whether one of dels deletes key, as etcd's interval tree
// answers it: never for a delete from a key on.
func deletes(dels []keyRange, key string) bool {
	for _, d := range dels {
		if !d.fromKey() && d.contains(key) {
			return true
		}
	}
	return false
}

// txnRun is one transaction being run, in tx.
type txnRun struct {
	b   *Backend
	tx  *bolt.Tx
	w   *writeTx // nil for a transaction that cannot write
	rev int64    // the revision before the transaction
}

// txnPlan is the branch a transaction takes, and those of the transactions
// nested in it: etcd decides them all before running any op.
type txnPlan struct {
	ok     bool      // the compares held: Success runs
	ops    []kv.Op   // the branch
	nested []txnPlan // by op index, for the ops that are a Txn
}

// run runs t: plans it, checks the ops of the plan, runs them.
func (r *txnRun) run(t *kv.Txn) (kv.TxnResult, error) {
	p, err := r.plan(t)
	if err != nil {
		return kv.TxnResult{}, err
	}
	if err := r.check(&p); err != nil {
		return kv.TxnResult{}, err
	}
	return r.exec(&p)
}

// plan evaluates t's compares, and those of the transactions nested in
// the branch they pick, on the state before any op runs.
func (r *txnRun) plan(t *kv.Txn) (txnPlan, error) {
	ok := true
	for _, c := range t.Compare {
		held, err := r.compare(c)
		if err != nil {
			return txnPlan{}, opError("compare", c.Key, err)
		}
		if !held {
			ok = false
			break
		}
	}
	p := txnPlan{ok: ok, ops: t.Success}
	if !ok {
		p.ops = t.Failure
	}
	p.nested = make([]txnPlan, len(p.ops))
	for i, op := range p.ops {
		if op.Type != kv.OpTxn {
			continue
		}
		var err error
		if p.nested[i], err = r.plan(op.Txn); err != nil {
			return txnPlan{}, err
		}
	}
	return p, nil
}

// compare says whether c holds: for every key of its range, or, if the
// range holds no key, for a missing key, which compares as 0 (and fails
// every Value compare), as etcd's applyCompare.
func (r *txnRun) compare(c kv.Compare) (bool, error) {
	held, found := true, false
	err := scanCurrent(r.tx, keyRange{c.Key, c.End}, c.Target == kv.CompareValue, func(_ string, rec record) error {
		found = true
		if !compareRecord(c, rec) {
			held = false
			return errStopScan
		}
		return nil
	})
	if err != nil || found {
		return held, err
	}
	if c.Target == kv.CompareValue {
		return false, nil
	}
	return compareRecord(c, record{}), nil
}

// compareRecord says whether c holds for rec, as etcd's compareKV: an
// unknown target compares as equal, an unknown result holds.
func compareRecord(c kv.Compare, rec record) bool {
	var order int
	switch c.Target {
	case kv.CompareValue:
		order = bytes.Compare(rec.value, c.Value)
	case kv.CompareVersion:
		order = cmp.Compare(rec.version, c.Int)
	case kv.CompareCreate:
		order = cmp.Compare(rec.createRev, c.Int)
	case kv.CompareMod:
		order = cmp.Compare(rec.modRev, c.Int)
	case kv.CompareLease:
		order = cmp.Compare(int64(rec.lease), c.Int)
	}
	switch c.Result {
	case kv.Equal:
		return order == 0
	case kv.NotEqual:
		return order != 0
	case kv.Greater:
		return order > 0
	case kv.Less:
		return order < 0
	}
	return true
}

// check fails the transaction, before any op runs, for what etcd's
// checkTxn fails it: a Range at a revision not held, a Put of a lease
// not alive, or with IgnoreValue or IgnoreLease of a missing key.
func (r *txnRun) check(p *txnPlan) error {
	compacted := metaOf(r.tx).get(metaCompacted)
	for i, op := range p.ops {
		switch op.Type {
		case kv.OpRange:
			switch {
			case op.Rev > r.rev:
				return opError("range", op.Key, kv.ErrFutureRevision)
			case op.Rev > 0 && op.Rev <= compacted:
				return opError("range", op.Key, kv.ErrCompacted)
			}
		case kv.OpPut:
			if op.IgnoreValue || op.IgnoreLease {
				if _, ok, err := getRecord(r.tx, op.Key, false); err != nil || !ok {
					return opError("put", op.Key, cmp.Or(err, kv.ErrNotFound))
				}
			}
			if op.Lease != 0 && !r.b.leases.alive(op.Lease) {
				return opError("put", op.Key, leaseError("attach to", op.Lease, kv.ErrLeaseNotFound))
			}
		case kv.OpTxn:
			if err := r.check(&p.nested[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

// exec runs the ops of p in order.
func (r *txnRun) exec(p *txnPlan) (kv.TxnResult, error) {
	res := kv.TxnResult{Succeeded: p.ok, Responses: make([]kv.OpResult, len(p.ops))}
	for i, op := range p.ops {
		out := &res.Responses[i]
		out.Type = op.Type
		var err error
		switch op.Type {
		case kv.OpRange:
			err = r.rangeOp(op, out)
		case kv.OpPut:
			err = r.put(op, out)
		case kv.OpDelete:
			err = r.deleteOp(op, out)
		case kv.OpTxn:
			var nested kv.TxnResult
			if nested, err = r.exec(&p.nested[i]); err == nil {
				out.Txn = &nested
			}
		}
		if err != nil {
			return kv.TxnResult{}, err
		}
	}
	return res, nil
}

// rangeOp reads op's keys, as they are now (the transaction's writes so
// far included) or at op.Rev.
func (r *txnRun) rangeOp(op kv.Op, out *kv.OpResult) error {
	var err error
	kr := keyRange{op.Key, op.End}
	if op.Rev == 0 {
		out.Range, err = rangeCurrent(r.tx, kr, !op.KeysOnly)
	} else {
		out.Range, err = rangeAt(r.tx, kr, op.Rev, !op.KeysOnly)
	}
	return opError("range", op.Key, err)
}

// put writes op.Key as etcd's put: with op's value and lease, or the key's
// own with IgnoreValue and IgnoreLease. A Put without IgnoreLease takes
// the key off its lease unless op.Lease is that lease.
func (r *txnRun) put(op kv.Op, out *kv.OpResult) error {
	if r.w == nil {
		return opError("put", op.Key, errors.New("write in a read-only transaction"))
	}
	old, ok, err := getStored(r.tx, op.Key)
	if err != nil {
		return opError("put", op.Key, err)
	}
	if (op.IgnoreValue || op.IgnoreLease) && !ok {
		return opError("put", op.Key, kv.ErrNotFound)
	}
	value, lease := op.Value, op.Lease
	var prev *stored
	if ok {
		prev = &old
		if op.IgnoreLease {
			lease = old.lease
		}
		if op.IgnoreValue || op.PrevKV {
			full, err := decodeRecord(old.raw, true)
			if err != nil {
				return opError("put", op.Key, err)
			}
			if op.IgnoreValue {
				value = full.value
			}
			if op.PrevKV {
				prevKV := full.kvOf(op.Key)
				out.PrevKV = &prevKV
			}
		}
	}
	if op.Lease != 0 && !r.b.leases.alive(op.Lease) {
		return opError("put", op.Key, leaseError("attach to", op.Lease, kv.ErrLeaseNotFound))
	}
	return opError("put", op.Key, r.w.put(op.Key, value, lease, prev))
}

// deleteOp deletes op's keys, counting them.
func (r *txnRun) deleteOp(op kv.Op, out *kv.OpResult) error {
	if r.w == nil {
		return opError("delete", op.Key, errors.New("write in a read-only transaction"))
	}
	// Collect first: deleting moves the cursor.
	var keys []string
	err := scanCurrent(r.tx, keyRange{op.Key, op.End}, op.PrevKV, func(key string, rec record) error {
		keys = append(keys, key)
		if op.PrevKV {
			out.PrevKVs = append(out.PrevKVs, rec.kvOf(key))
		}
		return nil
	})
	if err != nil {
		return opError("delete", op.Key, err)
	}
	for _, key := range keys {
		old, ok, err := getStored(r.tx, key)
		if err != nil {
			return opError("delete", key, err)
		}
		if !ok {
			continue
		}
		if err := r.w.del(key, old); err != nil {
			return opError("delete", key, err)
		}
		out.Deleted++
	}
	return nil
}
