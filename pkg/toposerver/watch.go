package toposerver

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc"

	"github.com/topod-io/topod/pkg/kv"
	"github.com/topod-io/topod/pkg/mirror"
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
	ctx, done := s.stream(stream.Context(), "watch")
	defer done()
	return s.streamEnd(s.watch(ctx, stream, req.Path, false))
}

// WatchRecursive is part of topodv1.TopoServer.
func (s *Server) WatchRecursive(req *topodv1.WatchRequest, stream grpc.ServerStreamingServer[topodv1.WatchResponse]) error {
	if err := checkPath(req.Path, true); err != nil {
		return toStatus(err)
	}
	ctx, done := s.stream(stream.Context(), "watch_recursive")
	defer done()
	return s.streamEnd(s.watch(ctx, stream, req.Path, true))
}

// watch sends the current state of p (one file, or every file under the
// directory p when recursive), then its changes: from the mirror covering
// p, shared with every other watcher, or, when there is none (or it turned
// itself off), from a backend watch of the stream's own.
func (s *Server) watch(ctx context.Context, stream grpc.ServerStreamingServer[topodv1.WatchResponse], p string, recursive bool) error {
	key := p
	if recursive {
		key = dirPrefix(p)
	}
	if m := s.mirrorFor(key); m != nil {
		if sub, snapshot, rev, ok := m.Subscribe(key, recursive); ok {
			err := s.watchMirror(ctx, stream, sub, snapshot, rev, p, recursive)
			sub.Close()
			if !errors.Is(err, mirror.ErrDisabled) {
				return err
			}
			// The mirror turned itself off: carry on from the backend,
			// which sends the full state again.
		}
	}
	return s.watchBackend(ctx, stream, p, key, recursive)
}

// watchMirror serves a watch from a mirror subscription. A slow client gets
// the latest value of each file it missed, never a growing queue.
func (s *Server) watchMirror(ctx context.Context, stream grpc.ServerStreamingServer[topodv1.WatchResponse], sub *mirror.Subscription, snapshot []kv.KV, rev int64, p string, recursive bool) error {
	if !recursive && len(snapshot) == 0 {
		return fmt.Errorf("watch %s: %w", p, kv.ErrNotFound)
	}
	if err := s.sendInitial(stream, snapshot, rev); err != nil {
		return err
	}
	for {
		events, rev, err := sub.Next(ctx)
		if err != nil {
			return err
		}
		if ended, err := s.sendEvents(stream, events, rev, recursive); err != nil || ended {
			return err
		}
	}
}

// watchBackend serves a watch from a backend watch of its own. When the
// backend can no longer replay from the revision reached (compaction, a
// watcher that fell too far behind) it sends the full current state again,
// marked initial, so the client never keeps a stale view.
func (s *Server) watchBackend(ctx context.Context, stream grpc.ServerStreamingServer[topodv1.WatchResponse], p, key string, recursive bool) error {
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
		if err := s.sendInitial(stream, kvs, rev); err != nil {
			return err
		}
		changes, err := s.backend.Watch(ctx, key, recursive, rev)
		if err != nil {
			return fmt.Errorf("watch %s: %w", p, err)
		}
		ended, err := s.forward(stream, changes, recursive)
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
func (s *Server) forward(stream grpc.ServerStreamingServer[topodv1.WatchResponse], changes <-chan kv.WatchResponse, recursive bool) (ended bool, err error) {
	for resp := range changes {
		if resp.Err != nil {
			if errors.Is(resp.Err, kv.ErrCompacted) {
				return false, nil
			}
			return false, resp.Err
		}
		if ended, err := s.sendEvents(stream, resp.Events, resp.Revision, recursive); err != nil || ended {
			return ended, err
		}
	}
	return false, nil
}

// sendEvents sends one batch of changes; for a single-file watch a delete
// is the last message (ended).
func (s *Server) sendEvents(stream grpc.ServerStreamingServer[topodv1.WatchResponse], events []kv.Event, rev int64, recursive bool) (ended bool, err error) {
	out := &topodv1.WatchResponse{Revision: rev}
	bytes := 0
	for _, ev := range events {
		fe := &topodv1.FileEvent{Path: ev.KV.Key, Version: ev.KV.ModRevision}
		if ev.Type == kv.Delete {
			fe.Deleted = true
			ended = !recursive
		} else {
			fe.Contents = ev.KV.Value
			bytes += len(fe.Contents)
		}
		out.Events = append(out.Events, fe)
		if ended {
			break
		}
	}
	if err := stream.Send(out); err != nil {
		return false, err
	}
	s.metrics.eventsOut.Add(float64(len(out.Events)))
	s.metrics.bytesOut.Add(float64(bytes))
	return ended, nil
}

// sendInitial sends the full state at rev in messages of at most about
// maxWatchMessageBytes.
func (s *Server) sendInitial(stream grpc.ServerStreamingServer[topodv1.WatchResponse], kvs []kv.KV, rev int64) error {
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
	s.metrics.eventsOut.Add(float64(len(kvs)))
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
