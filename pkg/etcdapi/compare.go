package etcdapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/topod-io/topod/pkg/kv"
	"github.com/topod-io/topod/pkg/record"
)

// This file makes a Txn's Value compares compare what clients see. The
// backend compares stored values; a value over the inline limit is stored
// as a blob reference (and a small value that happens to start with the
// record magic as an inline record), so for such keys the compare is
// evaluated here, on the decoded values, and the transaction runs guarded
// by the keys' revisions: if every guard holds, nothing the compare read
// has changed and its result stands; if not, it is evaluated again. The
// Value compares of nested transactions still compare stored values.

// maxCompareRetries bounds the rounds of a guarded transaction whose keys
// keep changing under it.
const maxCompareRetries = 10

// errValueCompareContended: a guarded transaction's keys kept changing.
var errValueCompareContended = errors.New("txn: the keys of a value compare kept changing; try again")

// runTxn runs t, evaluating here the Value compares on keys whose stored
// value is not the contents (see above).
func (s *Server) runTxn(ctx context.Context, t kv.Txn) (kv.TxnResult, error) {
	if !hasValueCompare(&t) {
		return s.opts.Backend.Txn(ctx, t)
	}
	for range maxCompareRetries {
		guarded, ok, err := s.guard(ctx, t)
		if err != nil {
			return kv.TxnResult{}, err
		}
		if !ok {
			return s.opts.Backend.Txn(ctx, t) // every compared value is stored as it is
		}
		res, err := s.opts.Backend.Txn(ctx, guarded)
		if err != nil {
			return kv.TxnResult{}, err
		}
		if res.Succeeded {
			inner := *res.Responses[0].Txn
			inner.Revision = res.Revision
			return inner, nil
		}
	}
	return kv.TxnResult{}, errValueCompareContended
}

func hasValueCompare(t *kv.Txn) bool {
	for _, c := range t.Compare {
		if c.Target == kv.CompareValue {
			return true
		}
	}
	for _, ops := range [][]kv.Op{t.Success, t.Failure} {
		for _, op := range ops {
			if op.Type == kv.OpTxn && hasValueCompare(op.Txn) {
				return true
			}
		}
	}
	return false
}

// guard returns t with its top-level Value compares on stored records
// evaluated now and replaced by their result, wrapped in a transaction
// that runs it only if none of the keys read has changed. ok is false when
// no compared value needs it.
func (s *Server) guard(ctx context.Context, t kv.Txn) (guarded kv.Txn, ok bool, err error) {
	var reads []kv.Op
	for _, c := range t.Compare {
		if c.Target == kv.CompareValue {
			reads = append(reads, kv.Op{Type: kv.OpRange, Key: c.Key, End: c.End})
		}
	}
	if len(reads) == 0 { // only nested transactions compare values
		return t, false, nil
	}
	cur, err := s.opts.Backend.Txn(ctx, kv.Txn{Success: reads})
	if err != nil {
		return kv.Txn{}, false, err
	}
	for _, r := range cur.Responses {
		for _, e := range r.Range {
			if bytes.HasPrefix(e.Value, []byte(record.Magic)) {
				ok = true
			}
		}
	}
	if !ok {
		return t, false, nil
	}
	inner := kv.Txn{Success: t.Success, Failure: t.Failure}
	var guards []kv.Compare
	i := 0
	for _, c := range t.Compare {
		if c.Target != kv.CompareValue {
			inner.Compare = append(inner.Compare, c)
			continue
		}
		kvs := cur.Responses[i].Range
		i++
		holds, err := s.valueHolds(ctx, c, kvs)
		if err != nil {
			return kv.Txn{}, false, err
		}
		if !holds {
			// Never true: no ModRevision is below 0.
			inner.Compare = append(inner.Compare, kv.Compare{Key: c.Key, Target: kv.CompareMod, Result: kv.Less, Int: 0})
		}
		for _, e := range kvs {
			guards = append(guards, kv.Compare{Key: e.Key, Target: kv.CompareMod, Result: kv.Equal, Int: e.ModRevision})
		}
		if c.End == "" && len(kvs) == 0 {
			guards = append(guards, kv.Compare{Key: c.Key, Target: kv.CompareMod, Result: kv.Equal, Int: 0})
		}
		if c.End != "" {
			// No key created in the range since.
			guards = append(guards, kv.Compare{Key: c.Key, End: c.End, Target: kv.CompareMod, Result: kv.Less, Int: cur.Revision + 1})
		}
	}
	return kv.Txn{Compare: guards, Success: []kv.Op{{Type: kv.OpTxn, Txn: &inner}}}, true, nil
}

// valueHolds evaluates a Value compare on kvs, the keys of its range, as
// etcd does: it holds if it holds for every key; a range with no key, or
// a missing key, fails it.
func (s *Server) valueHolds(ctx context.Context, c kv.Compare, kvs []kv.KV) (bool, error) {
	if len(kvs) == 0 {
		return false, nil
	}
	for _, e := range kvs {
		v, err := s.opts.Values.Decode(ctx, e.Key, e.Value)
		if err != nil {
			return false, fmt.Errorf("txn: compare %s: %w", e.Key, err)
		}
		cmp := bytes.Compare(v, c.Value)
		var holds bool
		switch c.Result {
		case kv.Equal:
			holds = cmp == 0
		case kv.NotEqual:
			holds = cmp != 0
		case kv.Greater:
			holds = cmp > 0
		case kv.Less:
			holds = cmp < 0
		}
		if !holds {
			return false, nil
		}
	}
	return true, nil
}
