package etcdapi

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/topod-io/topod/pkg/kv"
	"github.com/topod-io/topod/pkg/kvmirror"
)

// maxTxnOps is etcd's default --max-txn-ops.
const maxTxnOps = 128

// syncWait bounds how long a linearizable range waits for its mirror to
// confirm the backend's revision and reach it; past it the backend
// answers (as etcd would: or fails).
const syncWait = time.Second

// Range is part of pb.KVServer.
func (s *Server) Range(ctx context.Context, req *pb.RangeRequest) (*pb.RangeResponse, error) {
	if err := checkRange(req); err != nil {
		return nil, err
	}
	kvs, rev, err := s.rangeKeys(ctx, req)
	if err != nil {
		return nil, toStatus(err)
	}
	resp, err := s.rangeResponse(ctx, req, kvs)
	if err != nil {
		return nil, toStatus(err)
	}
	resp.Header = s.header(rev)
	return resp, nil
}

// rangeKeys reads every key of the request's range, sorted by key: from
// the mirror holding it (a linearizable read once it has reached the
// backend's current revision; a serializable one as it is), else, and for
// a past revision, from the backend.
func (s *Server) rangeKeys(ctx context.Context, req *pb.RangeRequest) ([]kv.KV, int64, error) {
	key, end := string(req.Key), string(req.RangeEnd)
	keysOnly := readsKeysOnly(req)
	if m := s.mirrorFor(key, end); m != nil && req.Revision <= 0 {
		minRev, ok := int64(0), true
		if !req.Serializable {
			sctx, cancel := context.WithTimeout(ctx, syncWait)
			rev, err := m.Sync(sctx)
			cancel()
			if err != nil {
				s.log.Debug("linearizable range read from the backend: the mirror could not confirm its revision", "key", key, "err", err)
				ok = false
			}
			minRev = rev
		}
		if ok {
			kvs, rev, served, err := m.Range(ctx, key, end, keysOnly, minRev)
			if err != nil {
				return nil, 0, fmt.Errorf("range %q: %w", key, err)
			}
			s.metrics.read(req.Serializable, served)
			if served {
				return kvs, rev, nil
			}
		}
	} else {
		s.metrics.read(req.Serializable, false)
	}
	res, err := s.opts.Backend.Txn(ctx, kv.Txn{Success: []kv.Op{{Type: kv.OpRange, Key: key, End: end, Rev: req.Revision, KeysOnly: keysOnly}}})
	if err != nil {
		return nil, 0, fmt.Errorf("range %q: %w", key, err)
	}
	return res.Responses[0].Range, res.Revision, nil
}

// readsKeysOnly says whether a range needs no values: count-only, or
// keys-only unless sorted by value (etcd sorts keys-only ranges by their
// values too).
func readsKeysOnly(r *pb.RangeRequest) bool {
	return r.CountOnly || (r.KeysOnly && r.SortTarget != pb.RangeRequest_VALUE)
}

// rangeResponse applies the request's filters, sort, limit and count to
// kvs (every key of the range, sorted by key), as etcd's executeRange
// does, and decodes the values it returns.
func (s *Server) rangeResponse(ctx context.Context, req *pb.RangeRequest, kvs []kv.KV) (*pb.RangeResponse, error) {
	resp := &pb.RangeResponse{Count: int64(len(kvs))}
	if req.Limit > 0 && int64(len(kvs)) > req.Limit+1 && req.SortOrder == pb.RangeRequest_NONE &&
		req.MinModRevision == 0 && req.MaxModRevision == 0 && req.MinCreateRevision == 0 && req.MaxCreateRevision == 0 {
		// etcd then reads only the first limit+1 keys, and sorts those
		// (by a target other than the key: ascending).
		kvs = kvs[:req.Limit+1]
	}
	kvs = slices.DeleteFunc(kvs, func(e kv.KV) bool {
		return (req.MaxModRevision != 0 && e.ModRevision > req.MaxModRevision) ||
			(req.MinModRevision != 0 && e.ModRevision < req.MinModRevision) ||
			(req.MaxCreateRevision != 0 && e.CreateRevision > req.MaxCreateRevision) ||
			(req.MinCreateRevision != 0 && e.CreateRevision < req.MinCreateRevision)
	})
	if req.CountOnly {
		return resp, nil
	}
	order := req.SortOrder
	switch {
	case req.SortTarget != pb.RangeRequest_KEY && order == pb.RangeRequest_NONE:
		order = pb.RangeRequest_ASCEND
	case req.SortTarget == pb.RangeRequest_KEY && order == pb.RangeRequest_ASCEND:
		order = pb.RangeRequest_NONE // already by key
	}
	if order != pb.RangeRequest_NONE && req.SortTarget == pb.RangeRequest_VALUE {
		// Sort by what the client sees, not by the stored record.
		if err := s.decodeAll(ctx, kvs); err != nil {
			return nil, err
		}
	}
	if order != pb.RangeRequest_NONE {
		by := func(a, b kv.KV) int {
			switch req.SortTarget {
			case pb.RangeRequest_VERSION:
				return cmp.Compare(a.Version, b.Version)
			case pb.RangeRequest_CREATE:
				return cmp.Compare(a.CreateRevision, b.CreateRevision)
			case pb.RangeRequest_MOD:
				return cmp.Compare(a.ModRevision, b.ModRevision)
			case pb.RangeRequest_VALUE:
				return bytes.Compare(a.Value, b.Value)
			}
			return cmp.Compare(a.Key, b.Key)
		}
		if order == pb.RangeRequest_DESCEND {
			slices.SortStableFunc(kvs, func(a, b kv.KV) int { return by(b, a) })
		} else {
			slices.SortStableFunc(kvs, by)
		}
	}
	if req.Limit > 0 && int64(len(kvs)) > req.Limit {
		kvs, resp.More = kvs[:req.Limit], true
	}
	if !req.KeysOnly && !(order != pb.RangeRequest_NONE && req.SortTarget == pb.RangeRequest_VALUE) {
		if err := s.decodeAll(ctx, kvs); err != nil {
			return nil, err
		}
	}
	resp.Kvs = make([]*mvccpb.KeyValue, len(kvs))
	for i := range kvs {
		resp.Kvs[i] = toKeyValue(kvs[i])
		if req.KeysOnly {
			resp.Kvs[i].Value = nil
		}
	}
	return resp, nil
}

// decodeAll replaces the values of kvs by the contents they stand for.
func (s *Server) decodeAll(ctx context.Context, kvs []kv.KV) error {
	for i := range kvs {
		if kvs[i].Value == nil {
			continue
		}
		v, err := s.opts.Values.Decode(ctx, kvs[i].Key, kvs[i].Value)
		if err != nil {
			return err
		}
		kvs[i].Value = v
	}
	return nil
}

// decodeKV decodes one state; nil stays nil.
func (s *Server) decodeKV(ctx context.Context, e *kv.KV) (*mvccpb.KeyValue, error) {
	if e == nil {
		return nil, nil
	}
	c := []kv.KV{*e}
	if err := s.decodeAll(ctx, c); err != nil {
		return nil, err
	}
	return toKeyValue(c[0]), nil
}

func toKeyValue(e kv.KV) *mvccpb.KeyValue {
	return &mvccpb.KeyValue{
		Key: []byte(e.Key), Value: e.Value, CreateRevision: e.CreateRevision, ModRevision: e.ModRevision,
		Version: e.Version, Lease: int64(e.Lease),
	}
}

// Put is part of pb.KVServer.
func (s *Server) Put(ctx context.Context, req *pb.PutRequest) (*pb.PutResponse, error) {
	if err := checkPut(req); err != nil {
		return nil, err
	}
	if err := s.checkWritable(req.Key, nil); err != nil {
		return nil, err
	}
	op, err := s.putOp(ctx, req)
	if err != nil {
		return nil, toStatus(err)
	}
	t := kv.Txn{Success: []kv.Op{op}}
	res, err := s.opts.Backend.Txn(ctx, t)
	if err != nil {
		return nil, toStatus(err)
	}
	s.awaitWrite(ctx, res.Revision, &t)
	resp := &pb.PutResponse{Header: s.header(res.Revision)}
	if resp.PrevKv, err = s.decodeKV(ctx, res.Responses[0].PrevKV); err != nil {
		return nil, toStatus(err)
	}
	return resp, nil
}

// putOp is the backend's put of req, its value encoded (blobs uploaded).
func (s *Server) putOp(ctx context.Context, req *pb.PutRequest) (kv.Op, error) {
	op := kv.Op{
		Type: kv.OpPut, Key: string(req.Key), Lease: kv.LeaseID(req.Lease), PrevKV: req.PrevKv,
		IgnoreValue: req.IgnoreValue, IgnoreLease: req.IgnoreLease,
	}
	if !req.IgnoreValue {
		v, err := s.opts.Values.Encode(ctx, op.Key, req.Value)
		if err != nil {
			return kv.Op{}, err
		}
		op.Value = v
	}
	return op, nil
}

// DeleteRange is part of pb.KVServer.
func (s *Server) DeleteRange(ctx context.Context, req *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	if len(req.Key) == 0 {
		return nil, rpctypes.ErrGRPCEmptyKey
	}
	if err := s.checkWritable(req.Key, req.RangeEnd); err != nil {
		return nil, err
	}
	t := kv.Txn{Success: []kv.Op{deleteOp(req)}}
	res, err := s.opts.Backend.Txn(ctx, t)
	if err != nil {
		return nil, toStatus(err)
	}
	s.awaitWrite(ctx, res.Revision, &t)
	resp, err := s.deleteResponse(ctx, res.Responses[0])
	if err != nil {
		return nil, toStatus(err)
	}
	resp.Header = s.header(res.Revision)
	return resp, nil
}

func deleteOp(req *pb.DeleteRangeRequest) kv.Op {
	return kv.Op{Type: kv.OpDelete, Key: string(req.Key), End: string(req.RangeEnd), PrevKV: req.PrevKv}
}

func (s *Server) deleteResponse(ctx context.Context, r kv.OpResult) (*pb.DeleteRangeResponse, error) {
	resp := &pb.DeleteRangeResponse{Deleted: r.Deleted}
	for i := range r.PrevKVs {
		p, err := s.decodeKV(ctx, &r.PrevKVs[i])
		if err != nil {
			return nil, err
		}
		resp.PrevKvs = append(resp.PrevKvs, p)
	}
	return resp, nil
}

// Txn is part of pb.KVServer. Its puts' values are encoded (blobs
// uploaded) first; it then runs as one backend transaction (runTxn: Value
// compares on values kept as blobs are evaluated on their contents, the
// transaction guarded by the keys' revisions).
func (s *Server) Txn(ctx context.Context, req *pb.TxnRequest) (*pb.TxnResponse, error) {
	if err := checkTxn(req, 0); err != nil {
		return nil, err
	}
	if err := s.checkTxnWritable(req); err != nil {
		return nil, err
	}
	t, err := s.toTxn(ctx, req)
	if err != nil {
		return nil, toStatus(err)
	}
	res, err := s.runTxn(ctx, t)
	if err != nil {
		return nil, toStatus(err)
	}
	if t.Writes() {
		s.awaitWrite(ctx, res.Revision, &t)
	}
	resp, err := s.txnResponse(ctx, req, res)
	if err != nil {
		return nil, toStatus(err)
	}
	return resp, nil
}

func (s *Server) toTxn(ctx context.Context, req *pb.TxnRequest) (kv.Txn, error) {
	var t kv.Txn
	for _, c := range req.Compare {
		kc := kv.Compare{Key: string(c.Key), End: string(c.RangeEnd), Target: kv.CompareTarget(c.Target), Result: kv.CompareResult(c.Result)}
		switch u := c.TargetUnion.(type) {
		case *pb.Compare_Version:
			kc.Int = u.Version
		case *pb.Compare_CreateRevision:
			kc.Int = u.CreateRevision
		case *pb.Compare_ModRevision:
			kc.Int = u.ModRevision
		case *pb.Compare_Lease:
			kc.Int = u.Lease
		case *pb.Compare_Value:
			kc.Value = u.Value
		}
		t.Compare = append(t.Compare, kc)
	}
	var err error
	if t.Success, err = s.toOps(ctx, req.Success); err != nil {
		return kv.Txn{}, err
	}
	t.Failure, err = s.toOps(ctx, req.Failure)
	return t, err
}

func (s *Server) toOps(ctx context.Context, reqs []*pb.RequestOp) ([]kv.Op, error) {
	ops := make([]kv.Op, 0, len(reqs))
	for _, r := range reqs {
		switch r := r.Request.(type) {
		case *pb.RequestOp_RequestRange:
			q := r.RequestRange
			ops = append(ops, kv.Op{Type: kv.OpRange, Key: string(q.Key), End: string(q.RangeEnd), Rev: q.Revision, KeysOnly: readsKeysOnly(q)})
		case *pb.RequestOp_RequestPut:
			op, err := s.putOp(ctx, r.RequestPut)
			if err != nil {
				return nil, err
			}
			ops = append(ops, op)
		case *pb.RequestOp_RequestDeleteRange:
			ops = append(ops, deleteOp(r.RequestDeleteRange))
		case *pb.RequestOp_RequestTxn:
			nested, err := s.toTxn(ctx, r.RequestTxn)
			if err != nil {
				return nil, err
			}
			ops = append(ops, kv.Op{Type: kv.OpTxn, Txn: &nested})
		}
	}
	return ops, nil
}

// txnResponse is the answer to req of the backend's res: each range
// shaped by its request (rangeResponse), values decoded, and each
// operation's header at the revision etcd gives it: the revision before
// the transaction until one of its operations has written, the
// transaction's own from then on (a nested transaction's header has
// none).
func (s *Server) txnResponse(ctx context.Context, req *pb.TxnRequest, res kv.TxnResult) (*pb.TxnResponse, error) {
	begin := res.Revision
	if txnWrote(req, res) {
		begin--
	}
	wrote := false
	resp, err := s.txnResponses(ctx, req, res, begin, &wrote)
	if err != nil {
		return nil, err
	}
	resp.Header = s.header(res.Revision)
	return resp, nil
}

// txnWrote says whether the operations res ran of req wrote: a put, or
// a delete that found keys.
func txnWrote(req *pb.TxnRequest, res kv.TxnResult) bool {
	reqs := req.Failure
	if res.Succeeded {
		reqs = req.Success
	}
	for i, r := range res.Responses[:min(len(reqs), len(res.Responses))] {
		switch q := reqs[i].Request.(type) {
		case *pb.RequestOp_RequestPut:
			return true
		case *pb.RequestOp_RequestDeleteRange:
			if r.Deleted > 0 {
				return true
			}
		case *pb.RequestOp_RequestTxn:
			if r.Txn != nil && txnWrote(q.RequestTxn, *r.Txn) {
				return true
			}
		}
	}
	return false
}

// txnResponses answers the operations res ran of req, the transaction
// beginning at revision begin; wrote says whether an operation before
// has written.
func (s *Server) txnResponses(ctx context.Context, req *pb.TxnRequest, res kv.TxnResult, begin int64, wrote *bool) (*pb.TxnResponse, error) {
	resp := &pb.TxnResponse{Header: s.header(0), Succeeded: res.Succeeded}
	reqs := req.Failure
	if res.Succeeded {
		reqs = req.Success
	}
	if len(reqs) != len(res.Responses) {
		return nil, fmt.Errorf("txn: %d responses to %d operations", len(res.Responses), len(reqs))
	}
	at := func() *pb.ResponseHeader {
		if *wrote {
			return s.header(begin + 1)
		}
		return s.header(begin)
	}
	for i, r := range res.Responses {
		var out *pb.ResponseOp
		switch q := reqs[i].Request.(type) {
		case *pb.RequestOp_RequestRange:
			rr, err := s.rangeResponse(ctx, q.RequestRange, r.Range)
			if err != nil {
				return nil, err
			}
			rr.Header = at()
			out = &pb.ResponseOp{Response: &pb.ResponseOp_ResponseRange{ResponseRange: rr}}
		case *pb.RequestOp_RequestPut:
			*wrote = true
			pr := &pb.PutResponse{Header: at()}
			var err error
			if pr.PrevKv, err = s.decodeKV(ctx, r.PrevKV); err != nil {
				return nil, err
			}
			out = &pb.ResponseOp{Response: &pb.ResponseOp_ResponsePut{ResponsePut: pr}}
		case *pb.RequestOp_RequestDeleteRange:
			dr, err := s.deleteResponse(ctx, r)
			if err != nil {
				return nil, err
			}
			if r.Deleted > 0 {
				*wrote = true
			}
			dr.Header = at()
			out = &pb.ResponseOp{Response: &pb.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: dr}}
		case *pb.RequestOp_RequestTxn:
			tr, err := s.txnResponses(ctx, q.RequestTxn, *r.Txn, begin, wrote)
			if err != nil {
				return nil, err
			}
			out = &pb.ResponseOp{Response: &pb.ResponseOp_ResponseTxn{ResponseTxn: tr}}
		}
		resp.Responses = append(resp.Responses, out)
	}
	return resp, nil
}

// Compact is part of pb.KVServer: compaction is etcd's own business.
func (s *Server) Compact(context.Context, *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	return nil, unimplemented("Compact")
}

// checkRange, checkPut and checkTxn refuse what etcd's v3rpc refuses,
// with etcd's errors.
func checkRange(r *pb.RangeRequest) error {
	if len(r.Key) == 0 {
		return rpctypes.ErrGRPCEmptyKey
	}
	if _, ok := pb.RangeRequest_SortOrder_name[int32(r.SortOrder)]; !ok {
		return rpctypes.ErrGRPCInvalidSortOption
	}
	if _, ok := pb.RangeRequest_SortTarget_name[int32(r.SortTarget)]; !ok {
		return rpctypes.ErrGRPCInvalidSortOption
	}
	return nil
}

func checkPut(r *pb.PutRequest) error {
	switch {
	case len(r.Key) == 0:
		return rpctypes.ErrGRPCEmptyKey
	case r.IgnoreValue && len(r.Value) != 0:
		return rpctypes.ErrGRPCValueProvided
	case r.IgnoreLease && r.Lease != 0:
		return rpctypes.ErrGRPCLeaseProvided
	}
	return nil
}

// checkWritable refuses a put or delete of [key, end) (etcd's range form:
// no end is the key alone, "\x00" every key from it on) that reaches under
// the reserved prefix, topod's own keys.
func (s *Server) checkWritable(key, end []byte) error {
	p := s.opts.ReservedPrefix
	if p == "" {
		return nil
	}
	k, e := string(key), string(end)
	var reaches bool
	switch e {
	case "":
		reaches = strings.HasPrefix(k+"/", p) // the prefix's own directory key too
	case "\x00":
		reaches = k < kvmirror.PrefixEnd(p)
	default:
		reaches = k < kvmirror.PrefixEnd(p) && e > p
	}
	if reaches {
		return status.Errorf(codes.PermissionDenied, "topod: keys under %s are topod's own: clients may not change them", p)
	}
	return nil
}

// checkTxnWritable is checkWritable for every put and delete of a
// transaction, nested ones included, whichever branch runs.
func (s *Server) checkTxnWritable(r *pb.TxnRequest) error {
	for _, ops := range [][]*pb.RequestOp{r.Success, r.Failure} {
		for _, op := range ops {
			var err error
			switch q := op.Request.(type) {
			case *pb.RequestOp_RequestPut:
				err = s.checkWritable(q.RequestPut.Key, nil)
			case *pb.RequestOp_RequestDeleteRange:
				err = s.checkWritable(q.RequestDeleteRange.Key, q.RequestDeleteRange.RangeEnd)
			case *pb.RequestOp_RequestTxn:
				err = s.checkTxnWritable(q.RequestTxn)
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

func checkTxn(r *pb.TxnRequest, depth int) error {
	if len(r.Compare) > maxTxnOps || len(r.Success) > maxTxnOps || len(r.Failure) > maxTxnOps {
		return rpctypes.ErrGRPCTooManyOps
	}
	for _, ops := range [][]*pb.RequestOp{r.Success, r.Failure} {
		for _, op := range ops {
			var err error
			switch q := op.Request.(type) {
			case *pb.RequestOp_RequestRange:
				err = checkRange(q.RequestRange)
			case *pb.RequestOp_RequestPut:
				err = checkPut(q.RequestPut)
			case *pb.RequestOp_RequestDeleteRange:
				if len(q.RequestDeleteRange.Key) == 0 {
					err = rpctypes.ErrGRPCEmptyKey
				}
			case *pb.RequestOp_RequestTxn:
				err = checkTxn(q.RequestTxn, depth+1)
			default:
				err = rpctypes.ErrGRPCKeyNotFound
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}
