package etcdkv

import (
	"context"
	"errors"
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/topod-io/topod/pkg/kv"
)

// This file passes kv.Txn through to etcd as one transaction, and reads
// etcd's current revision.

// Txn runs t as one etcd transaction.
func (b *Backend) Txn(ctx context.Context, t kv.Txn) (kv.TxnResult, error) {
	const op = "txn"
	key := t.Name()
	if err := b.checkOpen(op, key); err != nil {
		return kv.TxnResult{}, err
	}
	resp, err := pb.NewKVClient(b.cli.ActiveConnection()).Txn(ctx, toTxnRequest(&t))
	if err != nil {
		return kv.TxnResult{}, b.wrap(op, key, txnError(err))
	}
	return fromTxnResponse(resp), nil
}

// txnError maps the etcd errors of a transaction that have a kv meaning
// beyond those wrap maps.
// (The raw gRPC client answers statuses; rpctypes.Error turns them into
// the etcd errors clientv3 returns.)
func txnError(err error) error {
	err = rpctypes.Error(err)
	switch {
	case errors.Is(err, rpctypes.ErrFutureRev):
		return fmt.Errorf("%w (%w)", kv.ErrFutureRevision, err)
	case errors.Is(err, rpctypes.ErrDuplicateKey):
		return fmt.Errorf("%w (%w)", kv.ErrDuplicateKey, err)
	case errors.Is(err, rpctypes.ErrKeyNotFound):
		return fmt.Errorf("%w (%w)", kv.ErrNotFound, err)
	}
	return err
}

// CurrentRevision reads etcd's revision linearizably: a count-only range
// of one key (a read through the leader's read index, not a raft entry).
func (b *Backend) CurrentRevision(ctx context.Context) (int64, error) {
	const op, key = "current revision", "/"
	if err := b.checkOpen(op, key); err != nil {
		return 0, err
	}
	resp, err := pb.NewKVClient(b.cli.ActiveConnection()).Range(ctx, &pb.RangeRequest{Key: []byte(key), CountOnly: true})
	if err != nil {
		return 0, b.wrap(op, key, rpctypes.Error(err))
	}
	return resp.Header.Revision, nil
}

func bytesOf(s string) []byte {
	if s == "" {
		return nil
	}
	return []byte(s)
}

func toTxnRequest(t *kv.Txn) *pb.TxnRequest {
	req := &pb.TxnRequest{}
	for _, c := range t.Compare {
		pc := &pb.Compare{
			Key:      []byte(c.Key),
			RangeEnd: bytesOf(c.End),
			Result:   pb.Compare_CompareResult(c.Result),
			Target:   pb.Compare_CompareTarget(c.Target),
		}
		switch c.Target {
		case kv.CompareVersion:
			pc.TargetUnion = &pb.Compare_Version{Version: c.Int}
		case kv.CompareCreate:
			pc.TargetUnion = &pb.Compare_CreateRevision{CreateRevision: c.Int}
		case kv.CompareMod:
			pc.TargetUnion = &pb.Compare_ModRevision{ModRevision: c.Int}
		case kv.CompareValue:
			pc.TargetUnion = &pb.Compare_Value{Value: c.Value}
		case kv.CompareLease:
			pc.TargetUnion = &pb.Compare_Lease{Lease: c.Int}
		}
		req.Compare = append(req.Compare, pc)
	}
	req.Success = toRequestOps(t.Success)
	req.Failure = toRequestOps(t.Failure)
	return req
}

func toRequestOps(ops []kv.Op) []*pb.RequestOp {
	out := make([]*pb.RequestOp, 0, len(ops))
	for i := range ops {
		op := &ops[i]
		switch op.Type {
		case kv.OpRange:
			out = append(out, &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{
				Key: []byte(op.Key), RangeEnd: bytesOf(op.End), Revision: op.Rev, KeysOnly: op.KeysOnly,
				SortOrder: pb.RangeRequest_ASCEND, SortTarget: pb.RangeRequest_KEY,
			}}})
		case kv.OpPut:
			out = append(out, &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{
				Key: []byte(op.Key), Value: op.Value, Lease: int64(op.Lease), PrevKv: op.PrevKV,
				IgnoreValue: op.IgnoreValue, IgnoreLease: op.IgnoreLease,
			}}})
		case kv.OpDelete:
			out = append(out, &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{
				Key: []byte(op.Key), RangeEnd: bytesOf(op.End), PrevKv: op.PrevKV,
			}}})
		case kv.OpTxn:
			out = append(out, &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: toTxnRequest(op.Txn)}})
		}
	}
	return out
}

func fromTxnResponse(resp *pb.TxnResponse) kv.TxnResult {
	res := kv.TxnResult{Succeeded: resp.Succeeded, Revision: resp.Header.Revision}
	for _, r := range resp.Responses {
		var or kv.OpResult
		switch r := r.Response.(type) {
		case *pb.ResponseOp_ResponseRange:
			or.Type = kv.OpRange
			for _, ekv := range r.ResponseRange.Kvs {
				or.Range = append(or.Range, fromEtcd(ekv))
			}
		case *pb.ResponseOp_ResponsePut:
			or.Type = kv.OpPut
			if p := r.ResponsePut.PrevKv; p != nil {
				prev := fromEtcd(p)
				or.PrevKV = &prev
			}
		case *pb.ResponseOp_ResponseDeleteRange:
			or.Type = kv.OpDelete
			or.Deleted = r.ResponseDeleteRange.Deleted
			for _, ekv := range r.ResponseDeleteRange.PrevKvs {
				or.PrevKVs = append(or.PrevKVs, fromEtcd(ekv))
			}
		case *pb.ResponseOp_ResponseTxn:
			or.Type = kv.OpTxn
			nested := fromTxnResponse(r.ResponseTxn)
			or.Txn = &nested
		}
		res.Responses = append(res.Responses, or)
	}
	return res
}
