package topoplugin

import (
	"context"
	"path"
	"sync"
	"time"

	"google.golang.org/grpc"

	"vitess.io/vitess/go/vt/topo"

	"github.com/topod-io/topod/pkg/topoerr"
	topodv1 "github.com/topod-io/topod/proto/topod/v1"
)

// electionsPath is the directory of elections under the root, as in
// etcd2topo.
const electionsPath = "elections"

// resignTimeout bounds how long Stop waits for topod to confirm the
// resignation; the stream is closed afterwards either way.
const resignTimeout = 5 * time.Second

// NewLeaderParticipation is part of topo.Conn.
func (c *Conn) NewLeaderParticipation(name, id string) (topo.LeaderParticipation, error) {
	p, err := c.fullPath(path.Join(electionsPath, name))
	if err != nil {
		return nil, err
	}
	return &participation{c: c, path: p, id: id, stop: make(chan struct{})}, nil
}

// participation is a topo.LeaderParticipation: a Campaign stream held while
// this process takes part in the election.
type participation struct {
	c    *Conn
	path string
	id   string

	stopOnce sync.Once
	stop     chan struct{} // closed by Stop

	// mu guards the current campaign stream and serializes its Sends.
	mu     sync.Mutex
	stream grpc.BidiStreamingClient[topodv1.CampaignRequest, topodv1.CampaignResponse]
	cancel context.CancelFunc // ends the current campaign stream
	ended  chan struct{}      // closed when the campaign stream is over
}

// WaitForLeadership is part of topo.LeaderParticipation. The returned
// context ends when leadership is lost or Stop is called.
func (mp *participation) WaitForLeadership() (context.Context, error) {
	select {
	case <-mp.stop:
		return nil, topo.NewError(topo.Interrupted, "Leadership")
	default:
	}
	streamCtx, cancel := context.WithCancel(mp.c.ctx)
	stream, err := mp.c.client.Campaign(streamCtx, grpc.WaitForReady(true))
	if err != nil {
		cancel()
		return nil, topoerr.FromError(err, mp.path)
	}
	ended := make(chan struct{})
	mp.mu.Lock()
	mp.stream, mp.cancel, mp.ended = stream, cancel, ended
	err = stream.Send(&topodv1.CampaignRequest{Request: &topodv1.CampaignRequest_Start{Start: &topodv1.CampaignStart{Path: mp.path, Id: mp.id}}})
	mp.mu.Unlock()
	if err != nil {
		_, err = stream.Recv()
		cancel()
		close(ended)
		return nil, topoerr.FromError(err, mp.path)
	}

	// The goroutine below owns Recv; Stop sends the resignation.
	elected := make(chan error, 1)
	leaderCtx, leaderCancel := context.WithCancel(context.Background())
	go func() {
		defer close(ended)
		defer leaderCancel()
		defer cancel()
		resp, err := stream.Recv()
		if err == nil && resp.GetElected() == nil {
			err = topo.NewError(topo.Interrupted, mp.path)
		}
		elected <- err
		if err != nil {
			return
		}
		// Leading: wait for the end (resigned, or the stream broke).
		_, _ = stream.Recv()
	}()

	select {
	case err := <-elected:
		if err != nil {
			select {
			case <-mp.stop:
				return nil, topo.NewError(topo.Interrupted, "Leadership")
			default:
			}
			return nil, topoerr.FromError(err, mp.path)
		}
		return leaderCtx, nil
	case <-mp.stop:
		<-ended
		return nil, topo.NewError(topo.Interrupted, "Leadership")
	}
}

// Stop is part of topo.LeaderParticipation: it resigns, and returns once
// topod has released the leadership (or after resignTimeout).
func (mp *participation) Stop() {
	mp.stopOnce.Do(func() { close(mp.stop) })
	mp.mu.Lock()
	stream, cancel, ended := mp.stream, mp.cancel, mp.ended
	if stream != nil {
		// topod revokes the participant's lease, then answers resigned and
		// ends the stream.
		_ = stream.Send(&topodv1.CampaignRequest{Request: &topodv1.CampaignRequest_Resign{Resign: &topodv1.CampaignResign{}}})
	}
	mp.mu.Unlock()
	if stream == nil {
		return
	}
	select {
	case <-ended:
	case <-time.After(resignTimeout):
	}
	cancel()
}

// GetCurrentLeaderID is part of topo.LeaderParticipation.
func (mp *participation) GetCurrentLeaderID(ctx context.Context) (string, error) {
	ctx, cancel, wait := mp.c.unary(ctx)
	defer cancel()
	resp, err := mp.c.client.GetLeader(ctx, &topodv1.GetLeaderRequest{Path: mp.path}, wait)
	if err != nil {
		return "", topoerr.FromError(err, mp.path)
	}
	return resp.Id, nil
}

// WaitForNewLeader is part of topo.LeaderParticipation: the current leader,
// then each new one, until ctx ends, Stop is called or the stream breaks.
func (mp *participation) WaitForNewLeader(ctx context.Context) (<-chan string, error) {
	ctx, cancel := context.WithCancel(ctx)
	stopOnClose := context.AfterFunc(mp.c.ctx, cancel)
	stream, err := mp.c.client.WatchLeader(ctx, &topodv1.WatchLeaderRequest{Path: mp.path}, grpc.WaitForReady(true))
	if err != nil {
		stopOnClose()
		cancel()
		return nil, topoerr.FromError(err, mp.path)
	}
	// The first answer is the leader when the watch started ("" for
	// none): taken before returning, as etcd2topo reads it, so a leader
	// that resigns right after this call is still reported.
	first, err := stream.Recv()
	if err != nil {
		stopOnClose()
		cancel()
		return nil, topoerr.FromError(err, mp.path)
	}
	leaders := make(chan string, 8)
	if first.Id != "" {
		leaders <- first.Id
	}
	go func() {
		defer close(leaders)
		defer stopOnClose()
		defer cancel()
		go func() {
			select {
			case <-mp.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		for {
			resp, err := stream.Recv()
			if err != nil {
				return
			}
			if resp.Id == "" {
				continue
			}
			select {
			case leaders <- resp.Id:
			case <-ctx.Done():
				return
			}
		}
	}()
	return leaders, nil
}
