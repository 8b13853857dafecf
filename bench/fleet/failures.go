package fleet

import (
	"context"
	"errors"
	"maps"
	"sync"

	"google.golang.org/grpc/status"
	"vitess.io/vitess/go/vt/topo"
	"vitess.io/vitess/go/vt/vterrors"
)

// counts counts events by label; safe for concurrent use.
type counts struct {
	mu sync.Mutex
	n  map[string]int64
}

func (c *counts) add(label string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int64{}
	}
	c.n[label]++
}

// snapshot returns a copy of the counts.
func (c *counts) snapshot() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.n)
}

// since returns the counts of now that grew since then (nil if none did).
func since(now, then map[string]int64) map[string]int64 {
	var out map[string]int64
	for k, v := range now {
		if d := v - then[k]; d > 0 {
			if out == nil {
				out = map[string]int64{}
			}
			out[k] = d
		}
	}
	return out
}

// errClass names what kind of failure err is, for the report: the topo
// error code where there is one (etcd2topo and the topod plugin map theirs
// to Vitess's), else a context's end, else the gRPC status code, else
// "other". An error wrapped by vterrors (which keeps its cause without
// Unwrap) is named by its root cause.
func errClass(err error) string {
	if c := classify(err); c != "other" {
		return c
	}
	if root := vterrors.RootCause(err); root != err {
		return classify(root)
	}
	return "other"
}

func classify(err error) string {
	for _, c := range []struct {
		code topo.ErrorCode
		name string
	}{
		{topo.Timeout, "timeout"},
		{topo.Interrupted, "interrupted"},
		{topo.ResourceExhausted, "resource exhausted"},
		{topo.PartialResult, "partial result"},
		{topo.NoNode, "no node"},
		{topo.BadVersion, "bad version"},
		{topo.NodeNotEmpty, "node not empty"},
	} {
		if topo.IsErrType(err, c.code) {
			return c.name
		}
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline exceeded"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	if s, ok := status.FromError(err); ok {
		return "grpc " + s.Code().String()
	}
	return "other"
}
