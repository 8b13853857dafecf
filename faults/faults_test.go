package faults

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	clientv3 "go.etcd.io/etcd/client/v3"

	"vitess.io/vitess/go/vt/topo"

	"github.com/topod-io/topod/pkg/blobstore"
	_ "github.com/topod-io/topod/pkg/blobstore/s3blob"
	"github.com/topod-io/topod/pkg/record"
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
	name     string
	bolt     bool // one topod on bolt, no etcd
	etcd2    bool // also run against stock etcd2 (a fault of etcd alone)
	compacts bool // it compacts etcd: an etcd watch may leave out a PrevKv compacted
	inject   func(t *testing.T, c *cluster, phase time.Duration) string
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
		i, err := c.etcd.Leader(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		c.etcd.Kill(i)
		time.Sleep(phase)
		if err := c.etcd.Restart(context.Background(), i); err != nil {
			t.Error(err)
		}
		return fmt.Sprintf("SIGKILL of the etcd leader (m%d), restarted a phase later", i)
	}},
	{name: "etcd-follower-kill", etcd2: true, inject: func(t *testing.T, c *cluster, phase time.Duration) string {
		leader, err := c.etcd.Leader(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		i := (leader + 1) % 3
		c.etcd.Kill(i)
		time.Sleep(phase)
		if err := c.etcd.Restart(context.Background(), i); err != nil {
			t.Error(err)
		}
		return fmt.Sprintf("SIGKILL of an etcd follower (m%d), restarted a phase later", i)
	}},
	{name: "topod-etcd-partition", inject: func(t *testing.T, c *cluster, phase time.Duration) string {
		c.partitionReplica(0, true)
		time.Sleep(max(phase, lockTTL+2*time.Second))
		c.partitionReplica(0, false)
		return "topod0 cut from every etcd member (both ways, etcd's proxy holding the data), past the lock TTL"
	}},
	{name: "etcd-member-partition", etcd2: true, inject: func(t *testing.T, c *cluster, phase time.Duration) string {
		i, err := c.etcd.Leader(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if err := c.etcd.PartitionPeer(i, true); err != nil {
			t.Fatal(err)
		}
		time.Sleep(phase)
		if err := c.etcd.PartitionPeer(i, false); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("the etcd leader m%d's peer listener cut (its peers cannot reach it; its clients can)", i)
	}},
	{name: "compaction", etcd2: true, compacts: true, inject: func(t *testing.T, c *cluster, phase time.Duration) string {
		n := 0
		for end := time.Now().Add(phase); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			if _, err := c.etcd.Compact(ctx); err == nil {
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
	if n := r.etcd.violations(r.compacts); n > 0 {
		t.Errorf("%s: %d violations on the etcd API (%s); first anomalies:\n%s", r.name, n, &r.etcd, strings.Join(r.anomalies, "\n"))
	}
	if r.ok[2] == 0 {
		t.Errorf("%s: nothing succeeded after the fault", r.name)
	}
	if r.etcd.ok[2] == 0 {
		t.Errorf("%s: nothing of the etcd API succeeded after the fault", r.name)
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
	// The revision before the workload: the etcd watches start after it,
	// when no key of kvDir exists yet.
	eps := c.etcdEndpoints()
	truthCli := c.truthClient()
	revCli := truthCli // etcd's own revision, or topod's on bolt
	if revCli == nil {
		revCli = c.etcdClient(eps)
	}
	startRev, err := currentRevision(revCli, 30*time.Second)
	if err != nil {
		t.Fatalf("start revision: %v", err)
	}
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
	// The etcd API's clients and watchers, from the revision the workload
	// started at, and, on etcd, a watch of etcd itself from there all
	// along: the truth the etcd watches are compared to should etcd
	// compact the revisions before the end.
	live := &truthLog{}
	if truthCli != nil {
		watchWG.Go(func() { watchTruth(watchCtx, truthCli, startRev+1, live) })
	}
	for i := range etcdKVClients {
		mine := slices.Clone(eps)
		rand.Shuffle(len(mine), func(i, j int) { mine[i], mine[j] = mine[j], mine[i] })
		cli := c.etcdClient(mine)
		wg.Go(func() { etcdKVClient(ctx, rec, 100+i, cli) })
	}
	etcdLogs := make([]*etcdWatchLog, etcdWatchers)
	for i := range etcdLogs {
		// The first on one endpoint alone: across its replica's
		// restart, its watch resumes there or is compacted. The others
		// on every endpoint: clientv3 resumes their watches elsewhere.
		mine := eps
		if i == 0 {
			mine = eps[:1]
		}
		etcdLogs[i] = &etcdWatchLog{name: fmt.Sprintf("etcd watcher %d (%s)", i, strings.Join(mine, ","))}
		cli := c.etcdClient(mine)
		watchWG.Go(func() { etcdWatcher(watchCtx, etcdLogs[i], cli, startRev+1) })
	}

	r := &report{name: f.name, phase: phase, stock: c.etcd2}
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
	finalRev, err := currentRevision(revCli, 30*time.Second)
	if err != nil {
		t.Fatalf("final revision: %v", err)
	}
	// The watchers converge on the final state, the etcd watchers (and
	// etcd's own) reach the final revision (bounded: a watcher that never
	// does has a gap).
	waitFor(15*time.Second, func() bool {
		if !allConverged(watches, final) {
			return false
		}
		for _, w := range etcdLogs {
			if w.Reached() < finalRev {
				return false
			}
		}
		rev, err := live.state()
		return truthCli == nil || rev >= finalRev || err != nil
	})
	stopWatches()
	watchWG.Wait()

	r.ok, r.failed, r.longestGap = rec.ok, rec.failed, rec.longestGap
	r.etcd.ok, r.etcd.failed, r.etcd.longestGap = rec.etcdOK, rec.etcdFailed, rec.etcdLongestGap
	r.compacts = f.compacts
	r.checkKV(rec, 2*time.Minute)
	r.checkClients(rec)
	r.checkStaleness(rec)
	for _, w := range watches {
		r.checkWatch(rec, w, final)
	}
	r.checkLocks(locks)
	r.checkSerializable(rec)
	truth := c.eventTruth(t, r, truthCli, startRev, finalRev, live, etcdLogs)
	r.etcd.truth, r.etcd.truthEvents = truth.source, 0
	for _, evs := range truth.byRev {
		r.etcd.truthEvents += len(evs)
	}
	for _, w := range etcdLogs {
		r.checkEtcdWatch(w, truth)
	}
	r.checkAcked(rec, truth, etcdLogs)
	t.Logf("%s: %s", f.name, r.faultNote)
	return r
}

// truthClient is a client of the etcd members themselves, not through
// topod nor the proxies (nil on bolt).
func (c *cluster) truthClient() *clientv3.Client {
	if c.etcd == nil {
		return nil
	}
	return c.etcdClient(c.etcd.Endpoints())
}

// eventTruth is what the etcd watches must have delivered: a watch of etcd
// itself from the workload's start revision once it is over, or, if etcd
// compacted those revisions, the one that watched etcd all along; on bolt
// (no etcd to ask), the etcd watches' own events merged. Values stored as
// topod records are decoded (their blobs read from the blob store).
func (c *cluster) eventTruth(t *testing.T, r *report, cli *clientv3.Client, startRev, finalRev int64, live *truthLog, logs []*etcdWatchLog) *eventTruth {
	if cli == nil {
		return r.mergedTruth(logs)
	}
	end := &truthLog{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		watchTruth(ctx, cli, startRev+1, end)
	}()
	waitFor(30*time.Second, func() bool {
		rev, err := end.state()
		return rev >= finalRev || err != nil
	})
	cancel()
	<-done
	liveRev, liveErr := live.state()
	source, log := "etcd", end
	switch {
	case end.err == nil && end.reached >= finalRev:
		if liveErr == nil && liveRev >= finalRev && !sameEvents(live.events, end.events) {
			t.Errorf("etcd's own watches disagree: %d events watched all along, %d from the start revision at the end", len(live.events), len(end.events))
		}
	case liveErr == nil && liveRev >= finalRev:
		source, log = "etcd (live)", live
	default:
		t.Errorf("no truth of the etcd watches: etcd's watch from the start revision: reached %d of %d, %v; all along: reached %d, %v", end.reached, finalRev, end.err, liveRev, liveErr)
		source, log = "etcd (partial)", end
		if liveRev > end.reached {
			log = live
		}
	}
	events := slices.Clone(log.events)
	get := c.blobGetter(t)
	for i := range events {
		for _, kv := range []*etcdKV{&events[i].KV, &events[i].Prev} {
			if !kv.Present {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			v, err := record.Decode(ctx, []byte(kv.Value), get)
			cancel()
			if err != nil {
				t.Errorf("decode etcd's value of %s at revision %d: %v", events[i].Key, kv.Mod, err)
				continue
			}
			kv.Value = string(v)
		}
	}
	return newEventTruth(source, events, log.reached)
}

// blobGetter reads the blobs of topod's records from the blob store (nil
// without one: etcd2's values are not records).
func (c *cluster) blobGetter(t *testing.T) record.Getter {
	if c.minio == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store, err := blobstore.Open(ctx, c.minio.URL("topod"), blobstore.Options{CredentialsFile: filepath.Join(c.dir, "credentials")})
	if err != nil {
		t.Fatalf("open the blob store: %v", err)
	}
	return store.Get
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
