package faults

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"vitess.io/vitess/go/vt/topo"
)

// Sizes of the workload.
const (
	kvClients   = 4
	lockClients = 2
	watchers    = 2
)

// fault is one fault injected in the middle phase of a run. inject runs for
// about one phase and leaves the cluster whole again when it returns.
type fault struct {
	name   string
	bolt   bool // one topod on bolt, no etcd
	etcd2  bool // also run against stock etcd2 (a fault of etcd alone)
	inject func(t *testing.T, c *cluster, phase time.Duration) string
}

var faultCases = []fault{
	{name: "none", etcd2: true, inject: func(t *testing.T, c *cluster, phase time.Duration) string {
		time.Sleep(phase)
		return "no fault: the baseline"
	}},
	{name: "topod-kill", inject: func(t *testing.T, c *cluster, phase time.Duration) string {
		c.killReplica(0)
		time.Sleep(phase)
		c.startReplica(0)
		return "SIGKILL of topod0, restarted a phase later"
	}},
	{name: "topod-stop", inject: func(t *testing.T, c *cluster, phase time.Duration) string {
		c.signalReplica(0, syscall.SIGSTOP)
		time.Sleep(max(phase, lockTTL+2*time.Second))
		c.signalReplica(0, syscall.SIGCONT)
		return fmt.Sprintf("SIGSTOP of topod0 past the lock TTL (%v), then SIGCONT", lockTTL)
	}},
	{name: "etcd-leader-kill", etcd2: true, inject: func(t *testing.T, c *cluster, phase time.Duration) string {
		i := c.etcd.Leader(context.Background())
		if i < 0 {
			t.Fatal("no etcd leader")
		}
		c.etcd.Kill(i)
		time.Sleep(phase)
		c.etcd.Restart(i)
		return fmt.Sprintf("SIGKILL of the etcd leader (m%d), restarted a phase later", i)
	}},
	{name: "etcd-follower-kill", etcd2: true, inject: func(t *testing.T, c *cluster, phase time.Duration) string {
		i := (c.etcd.Leader(context.Background()) + 1) % 3
		c.etcd.Kill(i)
		time.Sleep(phase)
		c.etcd.Restart(i)
		return fmt.Sprintf("SIGKILL of an etcd follower (m%d), restarted a phase later", i)
	}},
	{name: "topod-etcd-partition", inject: func(t *testing.T, c *cluster, phase time.Duration) string {
		c.partitionReplica(0, true)
		time.Sleep(max(phase, lockTTL+2*time.Second))
		c.partitionReplica(0, false)
		return "topod0 cut from every etcd member (both ways, etcd's proxy holding the data), past the lock TTL"
	}},
	{name: "etcd-member-partition", etcd2: true, inject: func(t *testing.T, c *cluster, phase time.Duration) string {
		i := c.etcd.Leader(context.Background())
		if i < 0 {
			t.Fatal("no etcd leader")
		}
		partition(c.etcd.members[i].peerProxy, true)
		time.Sleep(phase)
		partition(c.etcd.members[i].peerProxy, false)
		return fmt.Sprintf("the etcd leader m%d's peer listener cut (its peers cannot reach it; its clients can)", i)
	}},
	{name: "compaction", etcd2: true, inject: func(t *testing.T, c *cluster, phase time.Duration) string {
		cli, err := c.etcd.client()
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		n := 0
		for end := time.Now().Add(phase); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			if err := c.etcd.Compact(ctx, cli); err == nil {
				n++
			}
			cancel()
		}
		return fmt.Sprintf("etcd compacted to its current revision every 200 ms (%d times)", n)
	}},
	{name: "minio-restart", inject: func(t *testing.T, c *cluster, phase time.Duration) string {
		c.minio.Stop()
		time.Sleep(phase)
		c.minio.Restart(t)
		return "MinIO (the blob store) stopped, restarted a phase later"
	}},
	{name: "bolt-kill", bolt: true, inject: func(t *testing.T, c *cluster, phase time.Duration) string {
		n := 0
		for end := time.Now().Add(phase); time.Now().Before(end); n++ {
			time.Sleep(phase / 4)
			c.killReplica(0)
			c.startReplica(0)
		}
		return fmt.Sprintf("topod on bolt killed (SIGKILL) under writes and restarted on its file, %d times", n)
	}},
}

// TestFaults runs the workload against each fault and checks its history.
func TestFaults(t *testing.T) {
	needSuite(t)
	var reports []*report
	for _, f := range faultCases {
		t.Run(f.name, func(t *testing.T) {
			r := runFault(t, f, clusterOptions{replicas: 3, bolt: f.bolt})
			reports = append(reports, r)
			t.Log(r)
			r.assert(t)
		})
		if f.etcd2 {
			t.Run(f.name+"/etcd2", func(t *testing.T) {
				r := runFault(t, f, clusterOptions{etcd2: true})
				r.name += " (etcd2)"
				reports = append(reports, r)
				// Stock Vitess is the comparison, not what this suite
				// holds to account: its anomalies are reported.
				t.Logf("%s\nfirst anomalies:\n%s", r, strings.Join(r.anomalies, "\n"))
			})
		}
	}
	for _, r := range reports {
		fmt.Println(r)
	}
}

// assert fails the test on any verdict other than "nothing wrong".
func (r *report) assert(t *testing.T) {
	t.Helper()
	if r.linearizable != porcupine.Ok {
		t.Errorf("%s: the KV history is not linearizable (%s); drawn in %s; a key's operations:%s", r.name, verdict(r.linearizable), r.visualization, r.detail)
	}
	if r.duplicates+r.reorders+r.phantoms+r.gaps+r.timeTravel+r.lockUnsafe > 0 {
		t.Errorf("%s: %d duplicates, %d reorders, %d phantoms, %d gaps, %d time travels, %d unsafe lock writes; first anomalies:\n%s",
			r.name, r.duplicates, r.reorders, r.phantoms, r.gaps, r.timeTravel, r.lockUnsafe, strings.Join(r.anomalies, "\n"))
	}
	if r.ok[2] == 0 {
		t.Errorf("%s: nothing succeeded after the fault", r.name)
	}
}

// runFault starts a cluster, runs the workload through three phases with
// the fault in the middle one, and checks the history.
func runFault(t *testing.T, f fault, opts clusterOptions) *report {
	if opts.bolt {
		opts.replicas = 1
	}
	c := startCluster(t, opts)
	setup := c.conn()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := setup.Create(ctx, register, []byte("token=0 count=0")); err != nil {
		t.Fatalf("create the register: %v", err)
	}
	return runWorkload(t, c, f)
}

// runWorkload runs the clients through the phases and checks what they saw.
func runWorkload(t *testing.T, c *cluster, f fault) *report {
	phase := phaseLength()
	rec := newRecorder()
	locks := &lockLog{}
	watches := make([]*watchLog, watchers)
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range kvClients {
		conn := c.conn()
		wg.Go(func() { kvClient(ctx, rec, i, conn, c.version) })
	}
	for i := range lockClients {
		conn := c.conn()
		wg.Go(func() { lockClient(ctx, rec, locks, kvClients+i, conn) })
	}
	watchCtx, stopWatches := context.WithCancel(context.Background())
	var watchWG sync.WaitGroup
	for i := range watches {
		watches[i] = &watchLog{}
		conn := c.conn()
		watchWG.Go(func() { watcher(watchCtx, watches[i], conn) })
	}

	r := &report{name: f.name, phase: phase}
	time.Sleep(phase)
	rec.phase.Store(1)
	start := time.Now()
	r.faultNote = f.inject(t, c, phase)
	r.phase = max(phase, time.Since(start)) // the during phase may run longer
	rec.phase.Store(2)
	time.Sleep(phase)
	stop()
	wg.Wait()

	final := finalState(t, c)
	// The watchers converge on the final state (bounded: a watcher that
	// never does is a gap).
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if allConverged(watches, final) {
			break
		}
	}
	stopWatches()
	watchWG.Wait()

	r.ok, r.failed, r.longestGap = rec.ok, rec.failed, rec.longestGap
	r.checkKV(rec, 2*time.Minute)
	r.checkClients(rec)
	r.checkStaleness(rec)
	for _, w := range watches {
		r.checkWatch(rec, w, final)
	}
	r.checkLocks(locks)
	t.Logf("%s: %s", f.name, r.faultNote)
	return r
}

// finalState reads every key of the workload after it stopped.
func finalState(t *testing.T, c *cluster) map[string]watchEvent {
	conn := c.conn()
	var kvs []topo.KVInfo
	var err error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		kvs, err = conn.List(ctx, kvDir+"/")
		cancel()
		if err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("final read: %v", err)
	}
	final := map[string]watchEvent{}
	for _, e := range kvs {
		k := keyOf(string(e.Key))
		final[k] = watchEvent{key: k, value: valueOf(e.Value), version: versionNumber(e.Version)}
	}
	return final
}

// allConverged says whether every watcher's state is final.
func allConverged(watches []*watchLog, final map[string]watchEvent) bool {
	for _, w := range watches {
		w.mu.Lock()
		same := len(w.state) == len(final)
		for k, want := range final {
			if got := w.state[k]; got.value != want.value || got.version != want.version {
				same = false
			}
		}
		w.mu.Unlock()
		if !same {
			return false
		}
	}
	return true
}
