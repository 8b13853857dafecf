package toposerver

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc"

	"github.com/topod-io/topod/pkg/kv"
	topodv1 "github.com/topod-io/topod/proto/topod/v1"
)

// maxWatchMessageBytes bounds the size of one WatchResponse carrying a large
// initial state; the state then spans several messages.
const maxWatchMessageBytes = 1 << 20

// Watch is part of topodv1.TopoServer.
func (s *Server) Watch(req *topodv1.WatchRequest, stream grpc.ServerStreamingServer[topodv1.WatchResponse]) error {
	if err := checkPath(req.Path, false); err != nil {
		return toStatus(err)
	}
	ctx, done := s.stream(stream.Context())
	defer done()
	return s.streamEnd(s.watch(ctx, stream, req.Path, false))
}

// WatchRecursive is part of topodv1.TopoServer.
func (s *Server) WatchRecursive(req *topodv1.WatchRequest, stream grpc.ServerStreamingServer[topodv1.WatchResponse]) error {
	if err := checkPath(req.Path, true); err != nil {
		return toStatus(err)
	}
	ctx, done := s.stream(stream.Context())
	defer done()
	return s.streamEnd(s.watch(ctx, stream, req.Path, true))
}

// watch sends the current state of p (one file, or every file under the
// directory p when recursive), then its changes. When the backend can no
// longer replay from the revision reached (compaction, a watcher that fell too
// far behind) it sends the full current state again, marked initial, so the
// client never keeps a stale view.
func (s *Server) watch(ctx context.Context, stream grpc.ServerStreamingServer[topodv1.WatchResponse], p string, recursive bool) error {
	key := p
	if recursive {
		key = dirPrefix(p)
	}
	for first := true; ; first = false {
		kvs, rev, err := s.backend.List(ctx, key, false)
		if err != nil {
			return fmt.Errorf("watch %s: %w", p, err)
		}
		if !recursive {
			kvs = exactKey(kvs, key)
			if len(kvs) == 0 {
				if first {
					return fmt.Errorf("watch %s: %w", p, kv.ErrNotFound)
				}
				// Deleted while we could not follow it.
				return stream.Send(&topodv1.WatchResponse{
					Events:   []*topodv1.FileEvent{{Path: key, Deleted: true}},
					Revision: rev,
				})
			}
		}
		if err := sendInitial(stream, kvs, rev); err != nil {
			return err
		}
		changes, err := s.backend.Watch(ctx, key, recursive, rev)
		if err != nil {
			return fmt.Errorf("watch %s: %w", p, err)
		}
		ended, err := forward(stream, changes, recursive)
		if err != nil || ended {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// forward sends backend events to the stream until the file is deleted
// (ended true, single-file watches), the changes channel ends (re-list), or
// an error.
func forward(stream grpc.ServerStreamingServer[topodv1.WatchResponse], changes <-chan kv.WatchResponse, recursive bool) (ended bool, err error) {
	for resp := range changes {
		if resp.Err != nil {
			if errors.Is(resp.Err, kv.ErrCompacted) {
				return false, nil
			}
			return false, resp.Err
		}
		out := &topodv1.WatchResponse{Revision: resp.Revision}
		deleted := false
		for _, ev := range resp.Events {
			fe := &topodv1.FileEvent{Path: ev.KV.Key, Version: ev.KV.ModRevision}
			if ev.Type == kv.Delete {
				fe.Deleted = true
				deleted = true
			} else {
				fe.Contents = ev.KV.Value
			}
			out.Events = append(out.Events, fe)
			if deleted && !recursive {
				break
			}
		}
		if err := stream.Send(out); err != nil {
			return false, err
		}
		if deleted && !recursive {
			return true, nil
		}
	}
	return false, nil
}

// sendInitial sends the full state at rev in messages of at most about
// maxWatchMessageBytes.
func sendInitial(stream grpc.ServerStreamingServer[topodv1.WatchResponse], kvs []kv.KV, rev int64) error {
	msg := &topodv1.WatchResponse{Initial: true, Revision: rev}
	size := 0
	for _, e := range kvs {
		if size > 0 && size+len(e.Value) > maxWatchMessageBytes {
			if err := stream.Send(msg); err != nil {
				return err
			}
			msg = &topodv1.WatchResponse{Initial: true, Revision: rev}
			size = 0
		}
		msg.Events = append(msg.Events, &topodv1.FileEvent{Path: e.Key, Contents: e.Value, Version: e.ModRevision})
		size += len(e.Key) + len(e.Value)
	}
	msg.InitialComplete = true
	return stream.Send(msg)
}

// exactKey keeps the entry of kvs whose key is exactly key.
func exactKey(kvs []kv.KV, key string) []kv.KV {
	for _, e := range kvs {
		if e.Key == key {
			return []kv.KV{e}
		}
	}
	return nil
}
