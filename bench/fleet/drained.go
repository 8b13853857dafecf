package fleet

import (
	"context"
	"sync/atomic"
	"time"

	"vitess.io/vitess/go/vt/topo"
)

// drainedConn is a stock etcd2topo connection that closes only once every
// watch it started has ended.
//
// etcd2topo's Close sets its etcd client to nil while a watch's goroutine
// may still run; a goroutine that then finds its etcd watch channel closed
// re-watches through the nil client and panics the whole process (vitess
// v0.24.4 go/vt/topo/etcd2topo/server.go Close, watch.go:117: the retry
// path that vitessio/vitess#18352's closed-server checks left out; the
// panic of vitessio/vitess#10171). A real
// vtgate closes its topo.Server only on exit; the driver stops thousands
// of watches and closes their connections right after, and a full-scale
// stock run died of it while stopping its fleet. So each watch's channel
// is forwarded, and Close waits (up to drainTimeout) until every forwarder
// has seen its channel closed, which etcd2topo does as its goroutine
// returns. Callers cancel the watches' contexts before Close.
type drainedConn struct {
	topo.Conn
	watches atomic.Int64 // forwarders running
}

// drainTimeout bounds Close's wait for the watches to end.
const drainTimeout = time.Minute

func (c *drainedConn) Watch(ctx context.Context, p string) (*topo.WatchData, <-chan *topo.WatchData, error) {
	cur, ch, err := c.Conn.Watch(ctx, p)
	if err != nil {
		return cur, ch, err
	}
	return cur, forward(ctx, &c.watches, ch), nil
}

func (c *drainedConn) WatchRecursive(ctx context.Context, p string) ([]*topo.WatchDataRecursive, <-chan *topo.WatchDataRecursive, error) {
	cur, ch, err := c.Conn.WatchRecursive(ctx, p)
	if err != nil {
		return cur, ch, err
	}
	return cur, forward(ctx, &c.watches, ch), nil
}

// Close waits for the watches to end, then closes the connection.
func (c *drainedConn) Close() {
	deadline := time.Now().Add(drainTimeout)
	for c.watches.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	c.Conn.Close()
}

// forward copies in to the channel it returns until in is closed, then
// closes it; running counts the forwarders. Once ctx is done, what the
// reader does not take is dropped (it may be gone), but in is still read
// to its end, so that the sender's goroutine can return.
func forward[T any](ctx context.Context, running *atomic.Int64, in <-chan T) <-chan T {
	out := make(chan T, cap(in))
	running.Add(1)
	go func() {
		defer running.Add(-1)
		defer close(out)
		for v := range in {
			select {
			case out <- v:
			case <-ctx.Done():
			}
		}
	}()
	return out
}
