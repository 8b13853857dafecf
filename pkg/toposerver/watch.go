package toposerver

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/topod-io/topod/pkg/kv"
	"github.com/topod-io/topod/pkg/kvmirror"
	topodv1 "github.com/topod-io/topod/proto/topod/v1"
)

// maxWatchMessageBytes bounds the size of one WatchResponse carrying a large
// initial state (the state then spans several messages), and of one
// WatchStreamResponse packing the updates of many watches.
const maxWatchMessageBytes = 1 << 20

// resumeWait bounds how long a watch waits for the mirror covering it to be
// ready and to reach the revision the client had seen (on another replica,
// say), before it is served from a backend watch of its own.
const resumeWait = 5 * time.Second

// sendFunc sends one message of one watch, tagged with the watch's id on
// its WatchStream.
type sendFunc func(*topodv1.WatchResponse) error

// watchSpec is one watch as a client asked for it.
type watchSpec struct {
	path      string // as asked
	key       string // path, or its directory prefix (path + "/") when recursive
	recursive bool
	after     int64 // the revision a resuming client had reached; 0 for all
}

func newWatchSpec(p string, recursive bool, after int64) (watchSpec, error) {
	if err := checkPath(p, recursive); err != nil {
		return watchSpec{}, err
	}
	w := watchSpec{path: p, key: p, recursive: recursive, after: max(after, 0)}
	if recursive {
		w.key = dirPrefix(p)
	}
	return w, nil
}

// watch sends the current state of the watched path (one file, or every
// file under the directory when recursive), then its changes: from the
// mirror covering it, shared with every other watcher, or, when there is
// none (or it is not ready in time), from a backend watch of its own. A
// client resuming after w.after gets in the initial state only the files
// changed since.
func (s *Server) watch(ctx context.Context, send sendFunc, w watchSpec) error {
	if m := s.mirrorFor(w.key); m != nil {
		s.awaitResume(ctx, m, w.after)
		notify, signaled := kvmirror.Signal()
		sub, snapshot, rev, ok, err := m.Subscribe(ctx, w.key, w.recursive, notify)
		if err != nil {
			return fmt.Errorf("watch %s: %w", w.path, err)
		}
		if ok {
			defer sub.Close()
			if err := s.sendSnapshot(send, w, snapshot, rev); err != nil {
				return err
			}
			for {
				events, rev, err := sub.Next(ctx, signaled)
				if err != nil {
					return err
				}
				if ended, err := s.sendEvents(send, events, rev, w.recursive); err != nil || ended {
					return err
				}
			}
		}
	}
	return s.watchBackend(ctx, send, w)
}

// awaitResume waits, at most resumeWait, until m is ready and has reached
// the revision a resuming client had seen, so the watch starts from a state
// at least as recent as the client's.
func (s *Server) awaitResume(ctx context.Context, m *kvmirror.Mirror, after int64) {
	ctx, cancel := context.WithTimeout(ctx, resumeWait)
	defer cancel()
	_ = m.WaitRev(ctx, max(after, 1))
}

// sendSnapshot sends a watch's initial state from a mirror snapshot: a
// single-file watch of a missing file is NotFound.
func (s *Server) sendSnapshot(send sendFunc, w watchSpec, snapshot []kv.KV, rev int64) error {
	if !w.recursive && len(snapshot) == 0 {
		return fmt.Errorf("watch %s: %w", w.path, kv.ErrNotFound)
	}
	return s.sendInitial(send, snapshot, rev, w.after)
}

// watchBackend serves a watch from a backend watch of its own. When the
// backend can no longer replay from the revision reached (compaction, a
// watcher that fell too far behind) it sends the current state again,
// marked initial, so the client never keeps a stale view: the files changed
// since the last revision sent, and the names of the others.
func (s *Server) watchBackend(ctx context.Context, send sendFunc, w watchSpec) error {
	after := w.after
	for first := true; ; first = false {
		kvs, rev, err := s.backend.List(ctx, w.key, false)
		if err != nil {
			return fmt.Errorf("watch %s: %w", w.path, err)
		}
		if !w.recursive {
			kvs = exactKey(kvs, w.key)
			if len(kvs) == 0 {
				if first {
					return fmt.Errorf("watch %s: %w", w.path, kv.ErrNotFound)
				}
				// Deleted while we could not follow it.
				return send(&topodv1.WatchResponse{
					Events:   []*topodv1.FileEvent{{Path: w.key, Deleted: true, Version: rev}},
					Revision: rev,
				})
			}
		}
		if err := s.sendInitial(send, kvs, rev, after); err != nil {
			return err
		}
		changes, err := s.backend.Watch(ctx, w.key, w.recursive, rev)
		if err != nil {
			return fmt.Errorf("watch %s: %w", w.path, err)
		}
		sent, ended, err := s.forward(send, changes, w.recursive)
		if err != nil || ended {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		after = max(rev, sent)
	}
}

// forward sends backend events until the file is deleted (ended true,
// single-file watches), the changes channel ends (re-list), or an error.
// sent is the revision of the last message sent.
func (s *Server) forward(send sendFunc, changes <-chan kv.WatchResponse, recursive bool) (sent int64, ended bool, err error) {
	for resp := range changes {
		if resp.Err != nil {
			if errors.Is(resp.Err, kv.ErrCompacted) {
				return sent, false, nil
			}
			return sent, false, resp.Err
		}
		if ended, err := s.sendEvents(send, resp.Events, resp.Revision, recursive); err != nil || ended {
			return sent, ended, err
		}
		sent = resp.Revision
	}
	return sent, false, nil
}

// sendEvents sends one batch of changes; for a single-file watch a delete
// is the last message (ended).
func (s *Server) sendEvents(send sendFunc, events []kv.Event, rev int64, recursive bool) (ended bool, err error) {
	out, ended := s.eventsResponse(events, rev, recursive)
	return ended, send(out)
}

// eventsResponse is the message carrying a batch of changes, counted as
// sent; for a single-file watch a delete is its last event (ended).
func (s *Server) eventsResponse(events []kv.Event, rev int64, recursive bool) (out *topodv1.WatchResponse, ended bool) {
	out = &topodv1.WatchResponse{Revision: rev}
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
	s.metrics.eventsOut.Add(float64(len(out.Events)))
	s.metrics.bytesOut.Add(float64(bytes))
	return out, ended
}

// sendInitial sends the state at rev (initialResponses).
func (s *Server) sendInitial(send sendFunc, kvs []kv.KV, rev, after int64) error {
	for _, msg := range s.initialResponses(kvs, rev, after) {
		if err := send(msg); err != nil {
			return err
		}
	}
	return nil
}

// initialResponses are the messages of the state at rev, each of at most
// about maxWatchMessageBytes: the contents of every file, or, when the
// client had reached revision after (> 0), of the files changed since and
// the names of the others.
func (s *Server) initialResponses(kvs []kv.KV, rev, after int64) []*topodv1.WatchResponse {
	msg := &topodv1.WatchResponse{Initial: true, Revision: rev}
	var out []*topodv1.WatchResponse
	size, unchanged, bytes := 0, 0, 0
	for _, e := range kvs {
		n := len(e.Key)
		if after <= 0 || e.ModRevision > after {
			n += len(e.Value)
		}
		if size > 0 && size+n > maxWatchMessageBytes {
			out = append(out, msg)
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
		bytes += len(e.Value)
	}
	msg.InitialComplete = true
	s.metrics.eventsOut.Add(float64(len(kvs) - unchanged))
	s.metrics.bytesOut.Add(float64(bytes))
	s.metrics.resumeUnchanged.Add(float64(unchanged))
	return append(out, msg)
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
