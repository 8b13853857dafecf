package etcdkv

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/metadata"

	"github.com/topod-io/topod/pkg/kv"
)

// historyProgressInterval is how often History asks etcd whether its replay
// has caught up with the revision it ends at.
const historyProgressInterval = 100 * time.Millisecond

// historyAttempts bounds how many times History restarts its replay when a
// compaction overtakes it.
const historyAttempts = 5

// historySeq gives each History replay its own watch stream.
var historySeq atomic.Int64

// History calls fn with every past value under prefix that GetRevision can
// still return, skipping the keys' current versions.
//
// etcd keeps no per-key list of versions, so History replays what etcd
// retains. It reads the current revision R and the keys' current versions
// (a keys-only range), then learns the compaction revision C from a watch
// from revision 1 (etcd answers it with CompactRevision), reads the values
// as of C (a range at revision C: the oldest values GetRevision can return)
// and watches from C+1 to R, visiting the value of every put. The watch
// runs on its own gRPC stream, and its end is found with progress
// notifications (clientv3 RequestProgress). If a compaction overtakes the
// replay, it restarts from the new compaction revision (visiting some values
// twice).
//
// Cost: History reads etcd's whole retained history under prefix, every
// value written since the last compaction plus the values as of it, once
// per call: O(writes since compaction), each value up to the backend's
// value size. Deployments bound it by compacting (etcd's
// --auto-compaction-mode and --auto-compaction-retention), which also
// bounds what GetRevision can return.
func (b *Backend) History(ctx context.Context, prefix string, fn func(kv.KV) error) error {
	const op = "history"
	if err := b.checkOpen(op, prefix); err != nil {
		return err
	}
	cur, end, err := b.List(ctx, prefix, true)
	if err != nil {
		return err
	}
	current := make(map[string]int64, len(cur))
	for _, e := range cur {
		current[e.Key] = e.ModRevision
	}
	r := &replay{b: b, prefix: prefix, end: end, current: current, fn: fn}
	start := int64(1)
	for range historyAttempts {
		next, err := r.run(ctx, start)
		if err != nil || next == 0 {
			return err
		}
		start = next
	}
	return fail(op, prefix, fmt.Errorf("overtaken by compaction %d times: %w", historyAttempts, kv.ErrCompacted))
}

// replay is one History call's walk through etcd's retained revisions.
type replay struct {
	b       *Backend
	prefix  string
	end     int64            // the revision the replay ends at
	current map[string]int64 // key → ModRevision of its current version
	fn      func(kv.KV) error
}

// visit calls fn with ekv unless it is its key's current version.
func (r *replay) visit(ekv *mvccpb.KeyValue) error {
	if ekv.ModRevision > r.end || r.current[string(ekv.Key)] == ekv.ModRevision {
		return nil
	}
	return r.fn(fromEtcd(ekv))
}

// run visits the values from revision start to r.end: the values as of
// start when start is a compaction revision (> 1), then every put after
// it. It returns 0 when done, or the revision to start again from when a
// compaction got in the way: the compaction revision, or 1 to learn it
// again.
func (r *replay) run(ctx context.Context, start int64) (int64, error) {
	const op = "history"
	from := start
	if start > 1 {
		resp, err := r.b.cli.Get(ctx, r.prefix, clientv3.WithPrefix(), clientv3.WithRev(start))
		if err != nil {
			err = r.b.wrap(fmt.Sprintf("%s at revision %d", op, start), r.prefix, err)
			if errors.Is(err, kv.ErrCompacted) {
				return 1, nil
			}
			return 0, err
		}
		for _, ekv := range resp.Kvs {
			if err := r.visit(ekv); err != nil {
				return 0, err
			}
		}
		from = start + 1
	}
	if from > r.end {
		return 0, nil
	}

	// A watch stream of its own, so that progress notifications (sent only
	// once every watch of a stream has caught up) are about this watch.
	wctx := metadata.AppendToOutgoingContext(ctx, "topod-kv-history", strconv.FormatInt(historySeq.Add(1), 10))
	wctx, cancel := context.WithCancel(wctx)
	defer cancel()
	wch := r.b.cli.Watch(wctx, r.prefix, clientv3.WithPrefix(), clientv3.WithRev(from))
	if err := r.b.cli.RequestProgress(wctx); err != nil {
		return 0, r.b.wrap(op, r.prefix, err)
	}
	tick := time.NewTicker(historyProgressInterval)
	defer tick.Stop()
	for {
		select {
		case wresp, ok := <-wch:
			if !ok {
				if err := ctx.Err(); err != nil {
					return 0, r.b.wrap(op, r.prefix, err)
				}
				return 0, fail(op, r.prefix, kv.ErrClosed)
			}
			if wresp.CompactRevision != 0 {
				return wresp.CompactRevision, nil
			}
			if err := wresp.Err(); err != nil {
				return 0, r.b.wrap(op, r.prefix, err)
			}
			// The events of one revision come in one response.
			for _, ev := range wresp.Events {
				if ev.Type == mvccpb.PUT {
					if err := r.visit(ev.Kv); err != nil {
						return 0, err
					}
				}
			}
			if n := len(wresp.Events); n > 0 && wresp.Events[n-1].Kv.ModRevision >= r.end {
				return 0, nil
			}
			if wresp.IsProgressNotify() && wresp.Header.Revision >= r.end {
				return 0, nil
			}
		case <-tick.C:
			if err := r.b.cli.RequestProgress(wctx); err != nil {
				return 0, r.b.wrap(op, r.prefix, err)
			}
		case <-ctx.Done():
			return 0, r.b.wrap(op, r.prefix, ctx.Err())
		case <-r.b.done:
			return 0, fail(op, r.prefix, kv.ErrClosed)
		}
	}
}
