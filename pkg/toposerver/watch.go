package toposerver

import (
	"context"
	"errors"
	"fmt"
	"time"

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
	return s.streamEnd(s.watch(ctx, stream, req, false))
}

// WatchRecursive is part of topodv1.TopoServer.
func (s *Server) WatchRecursive(req *topodv1.WatchRequest, stream grpc.ServerStreamingServer[topodv1.WatchResponse]) error {
	if err := checkPath(req.Path, true); err != nil {
		return toStatus(err)
	}
	ctx, done := s.stream(stream.Context(), "watch_recursive")
	defer done()
	return s.streamEnd(s.watch(ctx, stream, req, true))
}

// resumeWait bounds how long a resuming watch waits for the mirror to
// reach the revision the client had seen (on another replica, say).
const resumeWait = 5 * time.Second

// watch sends the current state of the watched path (one file, or every
// file under the directory when recursive), then its changes: from the
// mirror covering it, shared with every other watcher, or, when there is
// none (or it turned itself off), from a backend watch of the stream's own.
// A client resuming after req.AfterRevision gets in the initial state only
// the files changed since.
func (s *Server) watch(ctx context.Context, stream grpc.ServerStreamingServer[topodv1.WatchResponse], req *topodv1.WatchRequest, recursive bool) error {
	p, after := req.Path, max(req.AfterRevision, 0)
	key := p
	if recursive {
		key = dirPrefix(p)
	}
	s.metrics.watchOpened(after > 0)
	if m := s.mirrorFor(key); m != nil {
		if after > 0 {
			// Answer from a state at least as recent as the client's, if
			// the mirror gets there soon.
			wctx, cancel := context.WithTimeout(ctx, resumeWait)
			_ = m.WaitRev(wctx, after)
			cancel()
		}
		if sub, snapshot, rev, ok := m.Subscribe(key, recursive); ok {
			err := s.watchMirror(ctx, stream, sub, snapshot, rev, after, p, recursive)
			sub.Close()
			if !errors.Is(err, mirror.ErrDisabled) {
				return err
			}
			// The mirror turned itself off: carry on from the backend,
			// which sends the full state again.
			after = 0
		}
	}
	return s.watchBackend(ctx, stream, p, key, after, recursive)
}

// watchMirror serves a watch from a mirror subscription. A slow client gets
// the latest value of each file it missed, never a growing queue.
func (s *Server) watchMirror(ctx context.Context, stream grpc.ServerStreamingServer[topodv1.WatchResponse], sub *mirror.Subscription, snapshot []kv.KV, rev, after int64, p string, recursive bool) error {
	if !recursive && len(snapshot) == 0 {
		return fmt.Errorf("watch %s: %w", p, kv.ErrNotFound)
	}
	if err := s.sendInitial(stream, snapshot, rev, after); err != nil {
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
// watcher that fell too far behind) it sends the current state again,
// marked initial, so the client never keeps a stale view: the files changed
// since the last revision sent, and the names of the others.
func (s *Server) watchBackend(ctx context.Context, stream grpc.ServerStreamingServer[topodv1.WatchResponse], p, key string, after int64, recursive bool) error {
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
		if err := s.sendInitial(stream, kvs, rev, after); err != nil {
			return err
		}
		changes, err := s.backend.Watch(ctx, key, recursive, rev)
		if err != nil {
			return fmt.Errorf("watch %s: %w", p, err)
		}
		sent, ended, err := s.forward(stream, changes, recursive)
		if err != nil || ended {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		after = max(rev, sent)
	}
}

// forward sends backend events to the stream until the file is deleted
// (ended true, single-file watches), the changes channel ends (re-list), or
// an error. sent is the revision of the last message sent.
func (s *Server) forward(stream grpc.ServerStreamingServer[topodv1.WatchResponse], changes <-chan kv.WatchResponse, recursive bool) (sent int64, ended bool, err error) {
	for resp := range changes {
		if resp.Err != nil {
			if errors.Is(resp.Err, kv.ErrCompacted) {
				return sent, false, nil
			}
			return sent, false, resp.Err
		}
		if ended, err := s.sendEvents(stream, resp.Events, resp.Revision, recursive); err != nil || ended {
			return sent, ended, err
		}
		sent = resp.Revision
	}
	return sent, false, nil
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

// sendInitial sends the state at rev in messages of at most about
// maxWatchMessageBytes: the contents of every file, or, when the client had
// reached revision after (> 0), of the files changed since and the names of
// the others.
func (s *Server) sendInitial(stream grpc.ServerStreamingServer[topodv1.WatchResponse], kvs []kv.KV, rev, after int64) error {
	msg := &topodv1.WatchResponse{Initial: true, Revision: rev}
	size, unchanged := 0, 0
	for _, e := range kvs {
		n := len(e.Key)
		if after <= 0 || e.ModRevision > after {
			n += len(e.Value)
		}
		if size > 0 && size+n > maxWatchMessageBytes {
			if err := stream.Send(msg); err != nil {
				return err
			}
			msg = &topodv1.WatchResponse{Initial: true, Revision: rev}
			size = 0
		}
		size += n
		if after > 0 && e.ModRevision <= after {
			msg.Unchanged = append(msg.Unchanged, e.Key)
			unchanged++
			continue
		}
		msg.Events = append(msg.Events, &topodv1.FileEvent{Path: e.Key, Contents: e.Value, Version: e.ModRevision})
	}
	msg.InitialComplete = true
	s.metrics.eventsOut.Add(float64(len(kvs) - unchanged))
	s.metrics.resumeUnchanged.Add(float64(unchanged))
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
