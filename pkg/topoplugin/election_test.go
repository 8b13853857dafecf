package topoplugin_test

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestWaitForNewLeaderReportsTheLeaderAtTheCall: WaitForNewLeader reports
// the leader there was when it was called, even when that leader resigns
// right after the call returns, before topod has read the election (Vitess's
// conformance suite does exactly this, and hung when the read came second).
func TestWaitForNewLeaderReportsTheLeaderAtTheCall(t *testing.T) {
	a, _ := twoReplicas(t)
	c := newConn(t, a.Addr, "/vitess/global")
	for i := range 50 {
		name := fmt.Sprintf("e%d", i)
		mp1, err := c.NewLeaderParticipation(name, "id1")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := mp1.WaitForLeadership(); err != nil {
			t.Fatal(err)
		}
		mp2, err := c.NewLeaderParticipation(name, "id2")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		leaders, err := mp2.WaitForNewLeader(ctx)
		if err != nil {
			t.Fatal(err)
		}
		mp1.Stop()
		select {
		case id, ok := <-leaders:
			if !ok {
				t.Fatalf("round %d: the watch ended without reporting a leader", i)
			}
			if id != "id1" {
				t.Fatalf("round %d: first leader %q, want id1", i, id)
			}
		case <-ctx.Done():
			t.Fatalf("round %d: no leader reported: the leader at the call was missed", i)
		}
		cancel()
		mp2.Stop()
	}
}
