package etcdapi_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/topod-io/topod/internal/harness"
	"github.com/topod-io/topod/pkg/kv"
	"github.com/topod-io/topod/pkg/toposerver"
)

// TestClientv3Conformance runs one table of clientv3 calls against a real
// etcd and against topod on etcd and on bolt, side by side, and asserts
// that topod answers what etcd answers.
//
// Each case runs on each store and writes a transcript: one line per
// answer, with revisions relative to the store's revision when the case
// began (so "+3" is the third write of the case on every store), lease
// IDs by the order the case granted them, and large values by size and
// hash. Every topod transcript must equal etcd's. Where topod
// legitimately answers otherwise, the case asserts topod's own answer
// (sess.differs, which says why) and both transcripts carry the same
// placeholder line.
func TestClientv3Conformance(t *testing.T) {
	stores := startConformanceStores(t)
	for _, c := range conformanceCases {
		t.Run(c.name, func(t *testing.T) {
			lines := make([][]string, len(stores))
			t.Run("run", func(t *testing.T) {
				for i, st := range stores {
					t.Run(st.name, func(t *testing.T) {
						t.Parallel()
						lines[i] = runConformanceCase(t, st, c)
					})
				}
			})
			for i, st := range stores[1:] {
				t.Run(st.name, func(t *testing.T) {
					compareTranscripts(t, st.name, lines[0], lines[i+1])
				})
			}
		})
	}
}

const (
	// waitTimeout bounds every wait for a watch response (the race
	// detector on two shared cores is slow).
	waitTimeout = 30 * time.Second
	// progressInterval is the progress notification interval of the
	// stores' progress endpoints.
	progressInterval = time.Second
	// watchWindow is the watch window, in events, of the topods the
	// compacted watch case runs on.
	watchWindow = 5
)

// conformanceStore is one server the table runs on.
type conformanceStore struct {
	name  string
	topod bool
	cli   *clientv3.Client
	// window serves the watch from a compacted revision: etcd itself
	// (compacted with Compact), or a topod on the same backend whose
	// watch window holds only watchWindow events.
	window *clientv3.Client
	// progress serves watches that ask for progress notifications: etcd
	// with --watch-progress-notify-interval 1s, or a topod with
	// --etcd-progress-notify-interval 1s on the same backend.
	progress *clientv3.Client
}

// startConformanceStores starts etcd, topod on another etcd and topod on
// bolt, with their window and progress endpoints.
func startConformanceStores(t *testing.T) []*conformanceStore {
	ref := harness.StartEtcd(t, 1, harness.WithConfig(func(_ int, cfg *embed.Config) {
		cfg.WatchProgressNotifyInterval = progressInterval
	}))
	refCli := newClient(t, ref.Endpoints()...)
	stores := []*conformanceStore{{name: "etcd", cli: refCli, window: refCli, progress: refCli}}
	for _, b := range []struct {
		name string
		open func() kv.Backend
	}{
		{"topod-etcd", func() kv.Backend { return harness.OpenEtcd(t, harness.StartEtcd(t, 1).Endpoints()) }},
		{"topod-bolt", func() kv.Backend { return harness.OpenBolt(t, filepath.Join(t.TempDir(), "topo.db")) }},
	} {
		backend := b.open()
		srv := harness.StartTopod(t, backend, toposerver.Options{})
		small := harness.StartTopod(t, backend, toposerver.Options{EtcdWatchWindowEvents: watchWindow})
		stores = append(stores, &conformanceStore{
			name: b.name, topod: true, cli: newClient(t, srv.Addr), window: newClient(t, small.Addr),
			progress: newClient(t, harness.StartTopod(t, backend, toposerver.Options{EtcdProgressNotifyInterval: progressInterval}).Addr),
		})
	}
	return stores
}

func newClient(t testing.TB, endpoints ...string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("clientv3 %v: %v", endpoints, err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// compareTranscripts fails with every line where got differs from etcd's.
func compareTranscripts(t *testing.T, name string, want, got []string) {
	t.Helper()
	shown := 0
	for i := range max(len(want), len(got)) {
		w, g := "(none)", "(none)"
		if i < len(want) {
			w = want[i]
		}
		if i < len(got) {
			g = got[i]
		}
		if w != g {
			if shown < 20 {
				t.Errorf("line %d:\n\tetcd:       %s\n\t%-11s %s", i+1, w, name+":", g)
			}
			shown++
		}
	}
	if shown > 20 {
		t.Errorf("... and %d more differing lines", shown-20)
	}
}

// runConformanceCase runs c on st and returns its transcript. The keys
// and leases of the case are gone when the test ends.
func runConformanceCase(t *testing.T, st *conformanceStore, c conformanceCase) []string {
	s := &sess{t: t, st: st, cli: st.cli, ctx: t.Context(), prefix: "/cf/" + c.name + "/", leases: map[clientv3.LeaseID]string{}}
	t.Cleanup(func() {
		// Revoked now rather than expiring during a later case, which
		// would move the store's revision under it.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for id := range s.leases {
			_, _ = st.cli.Revoke(ctx, id)
		}
		if _, err := st.cli.Delete(ctx, s.prefix, clientv3.WithPrefix()); err != nil {
			t.Errorf("clean up %s: %v", s.prefix, err)
		}
	})
	s.base = s.revision()
	c.run(s)
	return s.lines
}

// sess is one case running on one store.
type sess struct {
	t      *testing.T
	st     *conformanceStore
	cli    *clientv3.Client
	ctx    context.Context
	prefix string
	base   int64
	lines  []string
	leases map[clientv3.LeaseID]string
}

func (s *sess) log(format string, args ...any) {
	s.lines = append(s.lines, fmt.Sprintf(format, args...))
}

// differs asserts got, an answer where topod legitimately differs from
// etcd, is etcdWant on etcd and topodWant on topod, and logs the same
// line for both.
func (s *sess) differs(what, why, got, etcdWant, topodWant string) {
	s.t.Helper()
	s.expect(what, why, got, map[string]string{"etcd": etcdWant, "topod-etcd": topodWant, "topod-bolt": topodWant})
}

// expect asserts got is want[store's name], and logs the same line on
// every store.
func (s *sess) expect(what, why, got string, want map[string]string) {
	s.t.Helper()
	if w, ok := want[s.st.name]; !ok || got != w {
		s.t.Errorf("%s (where topod differs from etcd: %s):\n\tgot  %s\n\twant %s", what, why, got, w)
	}
	s.log("%s: differs (%s)", what, why)
}

// k is the case's key name.
func (s *sess) k(name string) string { return s.prefix + name }

// rev is the store's revision n writes into the case.
func (s *sess) rev(n int64) int64 { return s.base + n }

// revision is the store's current revision.
func (s *sess) revision() int64 {
	s.t.Helper()
	resp, err := s.cli.Get(s.ctx, s.k(""))
	if err != nil {
		s.t.Fatalf("current revision: %v", err)
	}
	return resp.Header.Revision
}

// r shows a revision relative to the case's start; 0 stays 0.
func (s *sess) r(rev int64) string {
	if rev == 0 {
		return "0"
	}
	return fmt.Sprintf("%+d", rev-s.base)
}

func (s *sess) hdr(h *pb.ResponseHeader) string {
	if h == nil {
		return "nohdr"
	}
	return "rev" + s.r(h.Revision)
}

func (s *sess) key(k []byte) string {
	if rest, ok := strings.CutPrefix(string(k), s.prefix); ok {
		return rest
	}
	return strconv.Quote(string(k))
}

// value shows small values as they are, larger ones by size and hash.
func value(v []byte) string {
	if len(v) <= 32 {
		return strconv.Quote(string(v))
	}
	sum := sha256.Sum256(v)
	return fmt.Sprintf("<%d bytes %x>", len(v), sum[:4])
}

func (s *sess) lease(id int64) string {
	if id == 0 {
		return ""
	}
	if name, ok := s.leases[clientv3.LeaseID(id)]; ok {
		return " lease=" + name
	}
	return " lease=unknown"
}

func (s *sess) kv(e *mvccpb.KeyValue) string {
	if e == nil {
		return "nil"
	}
	return fmt.Sprintf("%s=%s c%s m%s v%d%s", s.key(e.Key), value(e.Value), s.r(e.CreateRevision), s.r(e.ModRevision), e.Version, s.lease(e.Lease))
}

func (s *sess) kvs(kvs []*mvccpb.KeyValue) string {
	out := make([]string, len(kvs))
	for i, e := range kvs {
		out[i] = s.kv(e)
	}
	return "[" + strings.Join(out, ", ") + "]"
}

func (s *sess) rangeResp(r *pb.RangeResponse) string {
	return fmt.Sprintf("%s count=%d more=%v %s", s.hdr(r.Header), r.Count, r.More, s.kvs(r.Kvs))
}

func (s *sess) putResp(r *pb.PutResponse) string {
	return fmt.Sprintf("%s prev=%s", s.hdr(r.Header), s.kv(r.PrevKv))
}

func (s *sess) deleteResp(r *pb.DeleteRangeResponse) string {
	return fmt.Sprintf("%s deleted=%d prev=%s", s.hdr(r.Header), r.Deleted, s.kvs(r.PrevKvs))
}

func (s *sess) txnResp(r *pb.TxnResponse) string {
	out := make([]string, len(r.Responses))
	for i, op := range r.Responses {
		switch op := op.Response.(type) {
		case *pb.ResponseOp_ResponseRange:
			out[i] = "range " + s.rangeResp(op.ResponseRange)
		case *pb.ResponseOp_ResponsePut:
			out[i] = "put " + s.putResp(op.ResponsePut)
		case *pb.ResponseOp_ResponseDeleteRange:
			out[i] = "delete " + s.deleteResp(op.ResponseDeleteRange)
		case *pb.ResponseOp_ResponseTxn:
			out[i] = "txn " + s.txnResp(op.ResponseTxn)
		default:
			out[i] = fmt.Sprintf("unknown %T", op)
		}
	}
	return fmt.Sprintf("%s succeeded=%v {%s}", s.hdr(r.Header), r.Succeeded, strings.Join(out, "; "))
}

func errText(err error) string { return "error: " + err.Error() }

// do runs op and logs its answer.
func (s *sess) do(what string, op clientv3.Op) clientv3.OpResponse {
	s.t.Helper()
	resp, err := s.cli.Do(s.ctx, op)
	switch {
	case err != nil:
		s.log("%s: %s", what, errText(err))
	case resp.Get() != nil:
		s.log("%s: %s", what, s.rangeResp((*pb.RangeResponse)(resp.Get())))
	case resp.Put() != nil:
		s.log("%s: %s", what, s.putResp((*pb.PutResponse)(resp.Put())))
	case resp.Del() != nil:
		s.log("%s: %s", what, s.deleteResp((*pb.DeleteRangeResponse)(resp.Del())))
	case resp.Txn() != nil:
		s.log("%s: %s", what, s.txnResp((*pb.TxnResponse)(resp.Txn())))
	}
	return resp
}

func (s *sess) get(what, key string, opts ...clientv3.OpOption) {
	s.t.Helper()
	s.do(what, clientv3.OpGet(s.k(key), opts...))
}

func (s *sess) put(what, key, val string, opts ...clientv3.OpOption) {
	s.t.Helper()
	s.do(what, clientv3.OpPut(s.k(key), val, opts...))
}

func (s *sess) del(what, key string, opts ...clientv3.OpOption) {
	s.t.Helper()
	s.do(what, clientv3.OpDelete(s.k(key), opts...))
}

// puts writes each key=value of kvs, one revision each, logging nothing
// (the cases that need the answers log them).
func (s *sess) puts(kvs ...string) {
	s.t.Helper()
	for _, e := range kvs {
		k, v, _ := strings.Cut(e, "=")
		if _, err := s.cli.Put(s.ctx, s.k(k), v); err != nil {
			s.t.Fatalf("put %s: %v", e, err)
		}
	}
}

func (s *sess) txn(what string, cmps []clientv3.Cmp, then, els []clientv3.Op) {
	s.t.Helper()
	s.do(what, clientv3.OpTxn(cmps, then, els))
}

// grant grants a lease of ttl seconds, named L1, L2... in the order the
// case grants them, and logs the answer.
func (s *sess) grant(ttl int64) clientv3.LeaseID {
	s.t.Helper()
	resp, err := s.cli.Grant(s.ctx, ttl)
	if err != nil {
		s.t.Fatalf("grant: %v", err)
	}
	name := fmt.Sprintf("L%d", len(s.leases)+1)
	s.leases[resp.ID] = name
	s.log("grant %s ttl %d: %s ttl=%d", name, ttl, s.hdr(resp.ResponseHeader), resp.TTL)
	return resp.ID
}

// watch is one clientv3 watch of the case, until the case ends.
type watch struct{ ch clientv3.WatchChan }

func (s *sess) watch(cli *clientv3.Client, key string, opts ...clientv3.OpOption) *watch {
	return &watch{ch: cli.Watch(s.ctx, s.k(key), opts...)}
}

// recv returns w's next response (ok false: the channel closed), failing
// the test if none comes within waitTimeout.
func (s *sess) recv(what string, w *watch) (clientv3.WatchResponse, bool) {
	s.t.Helper()
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	select {
	case resp, ok := <-w.ch:
		return resp, ok
	case <-timer.C:
		s.t.Fatalf("%s: no watch response within %v", what, waitTimeout)
		return clientv3.WatchResponse{}, false
	}
}

func (s *sess) event(ev *clientv3.Event) string {
	line := ev.Type.String() + " "
	if ev.Type == mvccpb.DELETE {
		line += fmt.Sprintf("%s m%s", s.key(ev.Kv.Key), s.r(ev.Kv.ModRevision))
		if ev.Kv.CreateRevision != 0 || ev.Kv.Version != 0 || len(ev.Kv.Value) != 0 || ev.Kv.Lease != 0 {
			line += " (with more than key and revision: " + s.kv(ev.Kv) + ")"
		}
	} else {
		line += s.kv(ev.Kv)
	}
	if ev.PrevKv != nil {
		line += " prev=" + s.kv(ev.PrevKv)
	}
	return line
}

// control shows a watch response that carries no event.
func (s *sess) control(resp clientv3.WatchResponse) string {
	var parts []string
	if resp.Created {
		parts = append(parts, "created")
	}
	if resp.Canceled {
		parts = append(parts, "canceled")
	}
	if resp.CompactRevision != 0 {
		parts = append(parts, "compact_revision="+s.r(resp.CompactRevision))
	}
	if resp.IsProgressNotify() {
		parts = append(parts, "progress")
	}
	if err := resp.Err(); err != nil {
		parts = append(parts, errText(err))
	}
	return strings.Join(parts, " ") + " " + s.hdr(&resp.Header)
}

// events logs w's next n events, and any response that ends the watch
// before them; progress notifications are skipped.
func (s *sess) events(what string, w *watch, n int) {
	s.t.Helper()
	for got := 0; got < n; {
		resp, ok := s.recv(what, w)
		if !ok {
			s.log("%s: closed", what)
			return
		}
		if resp.IsProgressNotify() {
			continue
		}
		if len(resp.Events) == 0 {
			s.log("%s: %s", what, s.control(resp))
			if resp.Canceled || resp.Err() != nil {
				return
			}
			continue
		}
		for _, ev := range resp.Events {
			s.log("%s: %s", what, s.event(ev))
			got++
		}
	}
}

// next logs w's next response that carries no event (ending the watch,
// or a created or progress notification); events are a failure.
func (s *sess) next(what string, w *watch) clientv3.WatchResponse {
	s.t.Helper()
	resp, ok := s.recv(what, w)
	switch {
	case !ok:
		s.log("%s: closed", what)
	case len(resp.Events) > 0:
		s.t.Errorf("%s: unexpected events %v", what, resp.Events)
		s.log("%s: %d unexpected events", what, len(resp.Events))
	default:
		s.log("%s: %s", what, s.control(resp))
	}
	return resp
}

// conformanceCase is one row of the table: what it does on any store.
type conformanceCase struct {
	name string
	run  func(s *sess)
}

var conformanceCases = []conformanceCase{
	{"range", caseRange},
	{"sort", caseSort},
	{"put", casePut},
	{"delete", caseDelete},
	{"txn-compare", caseTxnCompare},
	{"txn", caseTxn},
	{"watch", caseWatch},
	{"watch-compacted", caseWatchCompacted},
	{"watch-progress", caseWatchProgress},
	{"watch-cancel", caseWatchCancel},
	{"lease", caseLease},
	{"lease-expiry", caseLeaseExpiry},
	{"large-values", caseLargeValues},
	{"maintenance", caseMaintenance},
}

// caseRange: every Range option but sorting.
func caseRange(s *sess) {
	s.puts("a=1", "b=2", "c=3", "a=1b", "d=4") // +1..+5
	s.del("delete d", "d")                     // +6
	s.get("single", "a")
	s.get("missing", "zz")
	s.get("deleted", "d")
	s.do("empty key", clientv3.OpGet(""))
	s.get("serializable", "a", clientv3.WithSerializable())
	s.get("prefix", "", clientv3.WithPrefix())
	s.get("prefix serializable", "", clientv3.WithPrefix(), clientv3.WithSerializable())
	s.get("range [a, c)", "a", clientv3.WithRange(s.k("c")))
	s.get("range [b, zz)", "b", clientv3.WithRange(s.k("zz")))
	s.get("empty range [x, y)", "x", clientv3.WithRange(s.k("y")))
	s.get("from key b", "b", clientv3.WithFromKey())
	s.get("from key b keys-only", "b", clientv3.WithFromKey(), clientv3.WithKeysOnly())
	s.get("past revision +1", "a", clientv3.WithRev(s.rev(1)))
	s.get("past revision +4", "a", clientv3.WithRev(s.rev(4)))
	s.get("past revision before the key", "c", clientv3.WithRev(s.rev(2)))
	s.get("past revision of a deleted key", "d", clientv3.WithRev(s.rev(5)))
	s.get("prefix at +2", "", clientv3.WithPrefix(), clientv3.WithRev(s.rev(2)))
	s.get("prefix at +5 serializable", "", clientv3.WithPrefix(), clientv3.WithRev(s.rev(5)), clientv3.WithSerializable())
	s.get("future revision", "a", clientv3.WithRev(s.rev(100)))
	s.get("count-only", "", clientv3.WithPrefix(), clientv3.WithCountOnly())
	s.get("count-only single", "a", clientv3.WithCountOnly())
	s.get("keys-only", "", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	s.get("keys-only at +2", "", clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithRev(s.rev(2)))
	for _, limit := range []int64{1, 2, 3, 4} {
		s.get(fmt.Sprintf("limit %d", limit), "", clientv3.WithPrefix(), clientv3.WithLimit(limit))
	}
	s.get("limit 2 serializable", "", clientv3.WithPrefix(), clientv3.WithLimit(2), clientv3.WithSerializable())
	s.get("limit 1 keys-only", "", clientv3.WithPrefix(), clientv3.WithLimit(1), clientv3.WithKeysOnly())
	s.get("limit 1 count-only", "", clientv3.WithPrefix(), clientv3.WithLimit(1), clientv3.WithCountOnly())
	s.get("limit 1 at +2", "", clientv3.WithPrefix(), clientv3.WithLimit(1), clientv3.WithRev(s.rev(2)))
	s.get("limit 1 from key b", "b", clientv3.WithFromKey(), clientv3.WithLimit(1))
}

// caseSort: every sort target and order, with limits and revision
// filters. Keys a, b, c, d sort differently by each target:
//
//	key:     a b c d
//	create:  c(+1) a(+2) d(+3) b(+4)
//	version: d(1) c(2) a(3) b(4)
//	mod:     d(+3) a(+6) c(+7) b(+10)
//	value:   b("c") d("m") a("q") c("z")
func caseSort(s *sess) {
	s.puts("c=z", "a=q", "d=m", "b=c", "a=q", "a=q", "c=z", "b=c", "b=c", "b=c")
	targets := []struct {
		name   string
		target clientv3.SortTarget
	}{
		{"key", clientv3.SortByKey}, {"create", clientv3.SortByCreateRevision}, {"version", clientv3.SortByVersion},
		{"mod", clientv3.SortByModRevision}, {"value", clientv3.SortByValue},
	}
	orders := []struct {
		name  string
		order clientv3.SortOrder
	}{{"none", clientv3.SortNone}, {"ascend", clientv3.SortAscend}, {"descend", clientv3.SortDescend}}
	for _, tg := range targets {
		for _, o := range orders {
			what := fmt.Sprintf("sort by %s %s", tg.name, o.name)
			s.get(what, "", clientv3.WithPrefix(), clientv3.WithSort(tg.target, o.order))
			s.get(what+" limit 2", "", clientv3.WithPrefix(), clientv3.WithSort(tg.target, o.order), clientv3.WithLimit(2))
			s.get(what+" keys-only", "", clientv3.WithPrefix(), clientv3.WithSort(tg.target, o.order), clientv3.WithKeysOnly())
		}
	}
	s.get("sort by value descend serializable", "", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByValue, clientv3.SortDescend), clientv3.WithSerializable())
	s.get("sort by mod descend at +5", "", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByModRevision, clientv3.SortDescend), clientv3.WithRev(s.rev(5)))
	s.get("sort by version count-only", "", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByVersion, clientv3.SortAscend), clientv3.WithCountOnly())
	filters := []struct {
		name string
		opts []clientv3.OpOption
	}{
		{"min mod +6", []clientv3.OpOption{clientv3.WithMinModRev(s.rev(6))}},
		{"max mod +6", []clientv3.OpOption{clientv3.WithMaxModRev(s.rev(6))}},
		{"min create +3", []clientv3.OpOption{clientv3.WithMinCreateRev(s.rev(3))}},
		{"max create +2", []clientv3.OpOption{clientv3.WithMaxCreateRev(s.rev(2))}},
		{"mod in [+4, +7]", []clientv3.OpOption{clientv3.WithMinModRev(s.rev(4)), clientv3.WithMaxModRev(s.rev(7))}},
		{"create in [+2, +3]", []clientv3.OpOption{clientv3.WithMinCreateRev(s.rev(2)), clientv3.WithMaxCreateRev(s.rev(3))}},
		{"min mod +6 limit 1", []clientv3.OpOption{clientv3.WithMinModRev(s.rev(6)), clientv3.WithLimit(1)}},
		{"min mod +6 limit 3", []clientv3.OpOption{clientv3.WithMinModRev(s.rev(6)), clientv3.WithLimit(3)}},
		{"max create +3 sort by create descend", []clientv3.OpOption{clientv3.WithMaxCreateRev(s.rev(3)), clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortDescend)}},
		{"min mod +6 keys-only", []clientv3.OpOption{clientv3.WithMinModRev(s.rev(6)), clientv3.WithKeysOnly()}},
		{"min mod +6 count-only", []clientv3.OpOption{clientv3.WithMinModRev(s.rev(6)), clientv3.WithCountOnly()}},
		{"max mod +6 at +8", []clientv3.OpOption{clientv3.WithMaxModRev(s.rev(6)), clientv3.WithRev(s.rev(8))}},
		{"min mod +6 serializable", []clientv3.OpOption{clientv3.WithMinModRev(s.rev(6)), clientv3.WithSerializable()}},
	}
	for _, f := range filters {
		s.get(f.name, "", append([]clientv3.OpOption{clientv3.WithPrefix()}, f.opts...)...)
	}
}

// casePut: Put's options and errors.
func casePut(s *sess) {
	s.put("create with prev_kv", "a", "1", clientv3.WithPrevKV())
	s.put("update with prev_kv", "a", "2", clientv3.WithPrevKV())
	s.put("update without prev_kv", "a", "3")
	s.put("empty value", "e", "")
	s.get("empty value", "e")
	s.do("empty key", clientv3.OpPut("", "x"))
	s.put("ignore_value with a value", "a", "x", clientv3.WithIgnoreValue())
	s.put("ignore_value of a missing key", "zz", "", clientv3.WithIgnoreValue())
	s.put("ignore_value", "a", "", clientv3.WithIgnoreValue(), clientv3.WithPrevKV())
	s.get("after ignore_value", "a")
	l1 := s.grant(60)
	l2 := s.grant(60)
	s.put("with lease", "b", "1", clientv3.WithLease(l1), clientv3.WithPrevKV())
	s.put("ignore_lease", "b", "2", clientv3.WithIgnoreLease(), clientv3.WithPrevKV())
	s.get("after ignore_lease", "b")
	s.put("ignore_lease with a lease", "b", "3", clientv3.WithIgnoreLease(), clientv3.WithLease(l2))
	s.put("ignore_lease of a missing key", "zz", "1", clientv3.WithIgnoreLease())
	s.put("ignore_value and ignore_lease", "b", "", clientv3.WithIgnoreValue(), clientv3.WithIgnoreLease(), clientv3.WithPrevKV())
	s.put("another lease", "b", "4", clientv3.WithLease(l2), clientv3.WithPrevKV())
	s.put("no lease", "b", "5", clientv3.WithPrevKV())
	s.put("ignore_value keeps no lease", "b", "", clientv3.WithIgnoreValue(), clientv3.WithPrevKV())
	s.put("unknown lease", "c", "1", clientv3.WithLease(clientv3.LeaseID(0x7fff_0000_0000_0001)))
	s.get("all", "", clientv3.WithPrefix())
}

// caseDelete: DeleteRange of a key, a prefix and a range.
func caseDelete(s *sess) {
	s.puts("a=1", "b=2", "c=3", "d/x=4", "d/y=5", "e=6")
	s.del("single", "a")
	s.del("missing", "a")
	s.del("single with prev_kv", "e", clientv3.WithPrevKV())
	s.do("empty key", clientv3.OpDelete(""))
	s.del("prefix with prev_kv", "d/", clientv3.WithPrefix(), clientv3.WithPrevKV())
	s.del("empty prefix", "q/", clientv3.WithPrefix(), clientv3.WithPrevKV())
	s.puts("a=7")
	s.del("range [a, c) with prev_kv", "a", clientv3.WithRange(s.k("c")), clientv3.WithPrevKV())
	s.del("prefix without prev_kv", "", clientv3.WithPrefix())
	s.get("all", "", clientv3.WithPrefix())
	s.get("a at +1", "a", clientv3.WithRev(s.rev(1)))
}

// caseTxnCompare: every compare target with every result, below, at
// and above the key's own, on a key, a missing key and ranges.
func caseTxnCompare(s *sess) {
	s.puts("a=2", "a=3", "b=1") // a: c+1 m+2 v2 value "3"
	l := s.grant(60)
	s.put("put with lease", "l", "x", clientv3.WithLease(l)) // +4
	// Each target compared with the key's own value, one below it and
	// one above it (a: version 2, create +1, mod +2, value "3"; l: L1).
	targets := []struct {
		name, key string
		own       func(key string, v int64) clientv3.Cmp
	}{
		{"version", "a", func(k string, v int64) clientv3.Cmp { return clientv3.Compare(clientv3.Version(k), "=", 2+v) }},
		{"create", "a", func(k string, v int64) clientv3.Cmp {
			return clientv3.Compare(clientv3.CreateRevision(k), "=", s.rev(1)+v)
		}},
		{"mod", "a", func(k string, v int64) clientv3.Cmp {
			return clientv3.Compare(clientv3.ModRevision(k), "=", s.rev(2)+v)
		}},
		{"value", "a", func(k string, v int64) clientv3.Cmp {
			return clientv3.Compare(clientv3.Value(k), "=", strconv.Itoa(3+int(v)))
		}},
		{"lease", "l", func(k string, v int64) clientv3.Cmp { return clientv3.Compare(clientv3.LeaseValue(k), "=", int64(l)+v) }},
	}
	results := []struct {
		name   string
		result pb.Compare_CompareResult
	}{{"=", pb.Compare_EQUAL}, {"!=", pb.Compare_NOT_EQUAL}, {"<", pb.Compare_LESS}, {">", pb.Compare_GREATER}}
	for _, tg := range targets {
		for _, r := range results {
			for _, v := range []int64{-1, 0, 1} {
				cmp := tg.own(s.k(tg.key), v)
				cmp.Result = r.result
				s.txn(fmt.Sprintf("%s %s own%+d", tg.name, r.name, v), []clientv3.Cmp{cmp}, nil, nil)
			}
		}
	}
	missing := s.k("zz")
	for _, c := range []struct {
		name string
		cmp  clientv3.Cmp
	}{
		{"missing version = 0", clientv3.Compare(clientv3.Version(missing), "=", 0)},
		{"missing create = 0", clientv3.Compare(clientv3.CreateRevision(missing), "=", 0)},
		{"missing mod = 0", clientv3.Compare(clientv3.ModRevision(missing), "=", 0)},
		{"missing mod < +1", clientv3.Compare(clientv3.ModRevision(missing), "<", s.rev(1))},
		{"missing lease = 0", clientv3.Compare(clientv3.LeaseValue(missing), "=", 0)},
		{"missing value = empty", clientv3.Compare(clientv3.Value(missing), "=", "")},
		{"missing value != x", clientv3.Compare(clientv3.Value(missing), "!=", "x")},
		{"missing value > empty", clientv3.Compare(clientv3.Value(missing), ">", "")},
		{"prefix version > 0", clientv3.Compare(clientv3.Version(s.k("")), ">", 0).WithPrefix()},
		{"prefix version > 1", clientv3.Compare(clientv3.Version(s.k("")), ">", 1).WithPrefix()},
		{"prefix mod < +4", clientv3.Compare(clientv3.ModRevision(s.k("")), "<", s.rev(4)).WithPrefix()},
		{"prefix mod < +5", clientv3.Compare(clientv3.ModRevision(s.k("")), "<", s.rev(5)).WithPrefix()},
		{"range [a, c) value > 0", clientv3.Compare(clientv3.Value(s.k("a")), ">", "0").WithRange(s.k("c"))},
		{"range [a, c) value = 3", clientv3.Compare(clientv3.Value(s.k("a")), "=", "3").WithRange(s.k("c"))},
		{"range [a, c) create != +3", clientv3.Compare(clientv3.CreateRevision(s.k("a")), "!=", s.rev(3)).WithRange(s.k("c"))},
		{"range [a, c) lease = 0", clientv3.Compare(clientv3.LeaseValue(s.k("a")), "=", 0).WithRange(s.k("c"))},
		{"from key a lease = 0", clientv3.Compare(clientv3.LeaseValue(s.k("a")), "=", 0).WithRange("\x00")},
		{"empty range version = 0", clientv3.Compare(clientv3.Version(s.k("q/")), "=", 0).WithPrefix()},
		{"empty range version > 0", clientv3.Compare(clientv3.Version(s.k("q/")), ">", 0).WithPrefix()},
		{"empty range value = empty", clientv3.Compare(clientv3.Value(s.k("q/")), "=", "").WithPrefix()},
		{"empty range create < +1", clientv3.Compare(clientv3.CreateRevision(s.k("q/")), "<", s.rev(1)).WithPrefix()},
	} {
		s.txn(c.name, []clientv3.Cmp{c.cmp}, nil, nil)
	}
	s.txn("all of several compares hold", []clientv3.Cmp{
		clientv3.Compare(clientv3.Version(s.k("a")), "=", 2),
		clientv3.Compare(clientv3.Value(s.k("b")), "=", "1"),
	}, nil, nil)
	s.txn("one of several fails", []clientv3.Cmp{
		clientv3.Compare(clientv3.Version(s.k("a")), "=", 2),
		clientv3.Compare(clientv3.Value(s.k("b")), "=", "2"),
	}, nil, nil)
}

// caseTxn: branches, every operation in them, nesting and the errors.
func caseTxn(s *sess) {
	s.puts("a=1", "b=2", "c=3")
	is := func(key, v string) clientv3.Cmp { return clientv3.Compare(clientv3.Value(s.k(key)), "=", v) }
	get, put, del := clientv3.OpGet, clientv3.OpPut, clientv3.OpDelete
	s.txn("no compare, no op", nil, nil, nil)
	s.txn("read only, success", []clientv3.Cmp{is("a", "1")}, []clientv3.Op{get(s.k("a")), get(s.k(""), clientv3.WithPrefix())}, []clientv3.Op{get(s.k("b"))})
	s.txn("read only, failure", []clientv3.Cmp{is("a", "0")}, []clientv3.Op{get(s.k("a"))}, []clientv3.Op{get(s.k("b")), get(s.k("zz"))})
	s.txn("success writes", []clientv3.Cmp{is("a", "1")},
		[]clientv3.Op{put(s.k("a"), "10", clientv3.WithPrevKV()), put(s.k("d"), "4"), del(s.k("c"), clientv3.WithPrevKV()), get(s.k(""), clientv3.WithPrefix())},
		[]clientv3.Op{put(s.k("x"), "no")})
	s.txn("failure writes", []clientv3.Cmp{is("a", "1")},
		[]clientv3.Op{put(s.k("x"), "no")},
		[]clientv3.Op{get(s.k("a")), put(s.k("a"), "11", clientv3.WithPrevKV()), del(s.k("zz"), clientv3.WithPrevKV()), get(s.k("a"))})
	s.txn("read before and after a write", nil,
		[]clientv3.Op{get(s.k("b")), put(s.k("b"), "20"), get(s.k("b")), del(s.k("d")), get(s.k("d"))}, nil)
	s.txn("range options in a txn", nil, []clientv3.Op{
		get(s.k(""), clientv3.WithPrefix(), clientv3.WithLimit(1)),
		get(s.k(""), clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByModRevision, clientv3.SortDescend), clientv3.WithLimit(2)),
		get(s.k(""), clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByValue, clientv3.SortAscend), clientv3.WithKeysOnly()),
		get(s.k(""), clientv3.WithPrefix(), clientv3.WithCountOnly()),
		get(s.k(""), clientv3.WithPrefix(), clientv3.WithKeysOnly()),
		get(s.k("a"), clientv3.WithRev(s.rev(1))),
		get(s.k(""), clientv3.WithPrefix(), clientv3.WithMinModRev(s.rev(5))),
		get(s.k("a"), clientv3.WithFromKey(), clientv3.WithSerializable()),
	}, nil)
	s.txn("nested", []clientv3.Cmp{is("a", "11")}, []clientv3.Op{
		clientv3.OpTxn([]clientv3.Cmp{is("b", "20")}, []clientv3.Op{put(s.k("n1"), "1"), get(s.k("n1"))}, []clientv3.Op{put(s.k("n2"), "2")}),
		clientv3.OpTxn([]clientv3.Cmp{is("b", "0")}, []clientv3.Op{put(s.k("n3"), "3")}, []clientv3.Op{
			clientv3.OpTxn(nil, []clientv3.Op{put(s.k("n4"), "4", clientv3.WithPrevKV()), del(s.k("b"), clientv3.WithPrevKV())}, nil),
		}),
		get(s.k(""), clientv3.WithPrefix(), clientv3.WithKeysOnly()),
	}, nil)
	s.txn("nested in failure", []clientv3.Cmp{is("a", "0")}, nil, []clientv3.Op{
		clientv3.OpTxn(nil, []clientv3.Op{del(s.k("n"), clientv3.WithPrefix(), clientv3.WithPrevKV())}, nil),
	})
	// The errors: the store's revision must not move.
	s.txn("duplicate put", nil, []clientv3.Op{put(s.k("a"), "1"), put(s.k("a"), "2")}, nil)
	s.txn("duplicate put and delete", nil, []clientv3.Op{put(s.k("a"), "1"), del(s.k("a"))}, nil)
	s.txn("put in a deleted range", nil, []clientv3.Op{del(s.k(""), clientv3.WithPrefix()), put(s.k("a"), "1")}, nil)
	s.txn("duplicate put in a nested txn", nil, []clientv3.Op{put(s.k("a"), "1"),
		clientv3.OpTxn(nil, []clientv3.Op{put(s.k("a"), "2")}, nil)}, nil)
	s.txn("same key in both branches", nil, []clientv3.Op{put(s.k("a"), "1")}, []clientv3.Op{put(s.k("a"), "2")})
	s.txn("two deletes of one key", nil, []clientv3.Op{del(s.k("a")), del(s.k("a"))}, nil)
	s.txn("ignore_value of a missing key", nil, []clientv3.Op{put(s.k("zz"), "", clientv3.WithIgnoreValue())}, nil)
	s.txn("empty key", nil, []clientv3.Op{get("")}, nil)
	s.txn("unknown lease", nil, []clientv3.Op{put(s.k("a"), "1", clientv3.WithLease(clientv3.LeaseID(0x7fff_0000_0000_0002)))}, nil)
	many := make([]clientv3.Op, 129)
	for i := range many {
		many[i] = get(s.k(strconv.Itoa(i)))
	}
	s.txn("too many operations", nil, many, nil)
	s.get("all", "", clientv3.WithPrefix())
}

// caseWatch: watches from a past revision, of a key, a prefix and a
// range, with prev_kv and filters, and a live watch.
func caseWatch(s *sess) {
	s.puts("a=1", "b=1", "a=2") // +1..+3
	s.del("delete a", "a")      // +4
	s.txn("two puts in one revision", nil, []clientv3.Op{clientv3.OpPut(s.k("c"), "1"), clientv3.OpPut(s.k("b"), "2")}, nil)
	s.del("delete the prefix", "", clientv3.WithPrefix()) // +6
	all := 8                                              // events
	s.events("prefix from +1 with prev_kv", s.watch(s.cli, "", clientv3.WithPrefix(), clientv3.WithRev(s.rev(1)), clientv3.WithPrevKV()), all)
	s.events("prefix from +1", s.watch(s.cli, "", clientv3.WithPrefix(), clientv3.WithRev(s.rev(1))), all)
	s.events("key a from +2", s.watch(s.cli, "a", clientv3.WithRev(s.rev(2)), clientv3.WithPrevKV()), 2)
	s.events("range [b, c) from +1", s.watch(s.cli, "b", clientv3.WithRange(s.k("c")), clientv3.WithRev(s.rev(1))), 3)
	s.events("prefix from +5", s.watch(s.cli, "", clientv3.WithPrefix(), clientv3.WithRev(s.rev(5)), clientv3.WithPrevKV()), 4)
	s.events("no put", s.watch(s.cli, "", clientv3.WithPrefix(), clientv3.WithRev(s.rev(1)), clientv3.WithFilterPut(), clientv3.WithPrevKV()), 3)
	s.events("no delete", s.watch(s.cli, "", clientv3.WithPrefix(), clientv3.WithRev(s.rev(1)), clientv3.WithFilterDelete()), 5)

	// Many watches from a past revision, opened at once on one stream:
	// each gets its events (a server that sends a watch's events before
	// its Created response makes clientv3 cancel it).
	many := make([]*watch, 50)
	for i := range many {
		many[i] = s.watch(s.cli, "", clientv3.WithPrefix(), clientv3.WithRev(s.rev(5)))
	}
	for i, w := range many {
		s.events("many watches from +5 #"+strconv.Itoa(i), w, 4)
	}

	live := s.watch(s.cli, "", clientv3.WithPrefix(), clientv3.WithCreatedNotify(), clientv3.WithPrevKV())
	s.next("live", live)
	s.puts("d=1", "d=2")
	s.events("live", live, 2)
	// Several watches of one stream (one context), one key each.
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	e := s.cli.Watch(ctx, s.k("e"), clientv3.WithRev(s.rev(7)))
	d := s.cli.Watch(ctx, s.k("d"), clientv3.WithRev(s.rev(7)))
	s.puts("e=1")
	s.events("shared stream e", &watch{ch: e}, 1)
	s.events("shared stream d", &watch{ch: d}, 2)

	// A watch reaching beyond topod's mirrored prefix ("/", every key
	// from a key on): etcd serves it, topod refuses it, as the README
	// says (no watch outside --mirror-prefixes).
	fromKey := s.watch(s.cli, "d", clientv3.WithFromKey(), clientv3.WithCreatedNotify())
	resp, _ := s.recv("from key", fromKey)
	s.differs("watch from a key", "topod watches only keys under its mirrored prefixes", s.control(resp),
		"created "+s.hdr(&resp.Header),
		"canceled error: topod serves watches only of keys under its mirrored prefixes (--mirror-prefixes) "+s.hdr(&resp.Header))
}

// caseWatchCompacted: a watch from before the oldest revision a store
// can serve is canceled with ErrCompacted and the revision to start
// from, and a watch from there gets every later event. On etcd that is
// compaction; topod cannot compact (Compact answers Unimplemented) and
// answers so for a revision older than its watch window.
func caseWatchCompacted(s *sess) {
	for i := range 10 { // +1..+10
		if _, err := s.st.window.Put(s.ctx, s.k("w"), strconv.Itoa(i+1)); err != nil {
			s.t.Fatalf("put: %v", err)
		}
	}
	_, err := s.st.window.Compact(s.ctx, s.rev(6))
	got := "ok"
	if err != nil {
		got = errText(err)
	}
	s.differs("compact", "compaction is etcd's business: topod answers Unimplemented", got, "ok",
		"error: rpc error: code = Unimplemented desc = topod does not serve etcd's Compact: use etcd directly (topod keeps its data in the etcd named by its --backend)")
	for _, from := range []int64{1, 5} {
		w := s.watch(s.st.window, "w", clientv3.WithRev(s.rev(from)))
		s.events(fmt.Sprintf("from +%d", from), w, 1)
		s.next(fmt.Sprintf("from +%d after", from), w)
	}
	// Without prev_kv: etcd has none for the event at the compact
	// revision (the state before it is compacted away).
	s.events("from the compact revision", s.watch(s.st.window, "w", clientv3.WithRev(s.rev(6))), 5)
	s.events("prefix from +1", s.watch(s.st.window, "", clientv3.WithPrefix(), clientv3.WithRev(s.rev(1))), 1)

	// A revision of more events than topod's window holds: its watchers
	// cannot be served it, and are canceled as compacted (as etcd cancels
	// a watcher that compaction overtook) with the revision after it.
	live := s.watch(s.st.window, "", clientv3.WithPrefix(), clientv3.WithCreatedNotify())
	s.next("live", live)
	var puts []clientv3.Op
	for i := range watchWindow + 1 {
		puts = append(puts, clientv3.OpPut(s.k("t"+strconv.Itoa(i)), "x"))
	}
	if _, err := s.st.window.Txn(s.ctx).Then(puts...).Commit(); err != nil { // +11
		s.t.Fatalf("txn: %v", err)
	}
	resp, _ := s.recv("live", live)
	got = fmt.Sprintf("%d events", len(resp.Events))
	if len(resp.Events) == 0 {
		got = s.control(resp)
	}
	s.differs("a revision over the window", "topod's window holds 5 events", got, fmt.Sprintf("%d events", watchWindow+1),
		"canceled compact_revision=+12 error: etcdserver: mvcc: required revision has been compacted rev0")
}

// caseWatchProgress: a progress request is answered, once the stream's
// watchers have caught up, with the revision they have seen everything
// up to; a watch that asks for progress notifications gets them while
// idle.
func caseWatchProgress(s *sess) {
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	w := &watch{ch: s.cli.Watch(ctx, s.k(""), clientv3.WithPrefix(), clientv3.WithRev(s.rev(1)))}
	s.puts("a=1", "b=1")
	s.events("watch", w, 2)
	if err := s.cli.RequestProgress(ctx); err != nil {
		s.t.Fatalf("request progress: %v", err)
	}
	s.next("progress request", w)
	// Another key's write: the watch sees no event, but its progress
	// moves past it.
	if _, err := s.cli.Put(s.ctx, "/cf-other/"+s.prefix, "x"); err != nil {
		s.t.Fatalf("put: %v", err)
	}
	defer s.cli.Delete(context.Background(), "/cf-other/"+s.prefix)
	if err := s.cli.RequestProgress(ctx); err != nil {
		s.t.Fatalf("request progress: %v", err)
	}
	s.next("progress request after another key's write", w)

	p := s.watch(s.st.progress, "", clientv3.WithPrefix(), clientv3.WithRev(s.rev(1)), clientv3.WithProgressNotify())
	s.events("notified watch", p, 2)
	resp := s.next("progress notification", p)
	if resp.IsProgressNotify() && resp.Header.Revision < s.rev(2) {
		s.t.Errorf("progress notification at revision %d, before the watch's last event (%d)", resp.Header.Revision, s.rev(2))
	}
	s.puts("c=1")
	s.events("notified watch", p, 1)
	s.next("progress notification after an event", p)
}

// caseWatchCancel: on one raw Watch stream, a canceled watch gets no
// more events, and IDs are assigned as etcd assigns them.
func caseWatchCancel(s *sess) {
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	stream, err := pb.NewWatchClient(s.cli.ActiveConnection()).Watch(ctx)
	if err != nil {
		s.t.Fatalf("watch stream: %v", err)
	}
	send := func(req *pb.WatchRequest) {
		if err := stream.Send(req); err != nil {
			s.t.Fatalf("send: %v", err)
		}
	}
	recv := func(what string) {
		resp, err := stream.Recv()
		if err != nil {
			s.t.Fatalf("%s: %v", what, err)
		}
		evs := make([]string, len(resp.Events))
		for i, ev := range resp.Events {
			evs[i] = s.event((*clientv3.Event)(ev))
		}
		s.log("%s: id=%d created=%v canceled=%v compact=%s reason=%q %s %v", what, resp.WatchId, resp.Created, resp.Canceled,
			s.r(resp.CompactRevision), resp.CancelReason, s.hdr(resp.Header), evs)
	}
	create := func(key string, id int64) {
		send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{Key: []byte(s.k(key)), WatchId: id}}})
	}
	create("a", 0)
	recv("create a")
	s.puts("a=1")
	recv("event a")
	send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CancelRequest{CancelRequest: &pb.WatchCancelRequest{WatchId: 0}}})
	recv("cancel a")
	create("b", 0)
	recv("create b")
	create("c", 7)
	recv("create c with ID 7")
	create("d", 7)
	recv("create d with ID 7 again")
	// a's write comes first: a watch that was not canceled would get it
	// before b's.
	s.puts("a=2", "b=1")
	recv("event b")
	send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CancelRequest{CancelRequest: &pb.WatchCancelRequest{WatchId: 7}}})
	recv("cancel c")
}

// caseLease: grant, keep-alive, time-to-live with keys, list, revoke.
func caseLease(s *sess) {
	l1 := s.grant(60)
	l2 := s.grant(120)
	s.put("a on L1", "a", "1", clientv3.WithLease(l1))
	s.put("b on L1", "b", "1", clientv3.WithLease(l1))
	s.put("c on L2", "c", "1", clientv3.WithLease(l2))
	ka, err := s.cli.KeepAliveOnce(s.ctx, l1)
	if err != nil {
		s.t.Fatalf("keep-alive: %v", err)
	}
	s.log("keep-alive L1: ttl=%d %s", ka.TTL, s.hdr(ka.ResponseHeader))
	s.timeToLive("L1", l1)
	s.timeToLive("L2", l2)
	s.listLeases()
	s.get("all", "", clientv3.WithPrefix())
	rv, err := s.cli.Revoke(s.ctx, l1)
	if err != nil {
		s.t.Fatalf("revoke: %v", err)
	}
	s.log("revoke L1: %s", s.hdr(rv.Header))
	s.get("all after revoking L1", "", clientv3.WithPrefix())
	s.timeToLive("L1", l1)
	s.listLeases()
	_, err = s.cli.KeepAliveOnce(s.ctx, l1)
	s.log("keep-alive of a revoked lease: %v", err)
	_, err = s.cli.Revoke(s.ctx, l1)
	s.log("revoke of a revoked lease: %v", err)
	s.put("put on a revoked lease", "d", "1", clientv3.WithLease(l1))
	rv, err = s.cli.Revoke(s.ctx, l2)
	if err != nil {
		s.t.Fatalf("revoke: %v", err)
	}
	s.log("revoke L2: %s", s.hdr(rv.Header))
	s.get("all after revoking L2", "", clientv3.WithPrefix())
	s.events("revocations", s.watch(s.cli, "", clientv3.WithPrefix(), clientv3.WithRev(s.rev(1)), clientv3.WithPrevKV()), 6)
	_, err = s.cli.Grant(s.ctx, 9_000_000_001)
	s.log("grant over the largest TTL: %v", err)
	short, err := s.cli.Grant(s.ctx, 1)
	if err != nil {
		s.t.Fatalf("grant: %v", err)
	}
	s.leases[short.ID] = "L3"
	s.expect("grant ttl 1", "etcd raises a TTL to its minimum, 1.5 election timeouts (2 s); topod on bolt runs no election",
		fmt.Sprint(short.TTL), map[string]string{"etcd": "2", "topod-etcd": "2", "topod-bolt": "1"})
}

// timeToLive logs a lease's time to live: the remaining TTL as within a
// few seconds of the granted one (it counts down), keys sorted.
func (s *sess) timeToLive(name string, id clientv3.LeaseID) {
	s.t.Helper()
	resp, err := s.cli.TimeToLive(s.ctx, id, clientv3.WithAttachedKeys())
	if err != nil {
		s.log("time-to-live %s: %s", name, errText(err))
		return
	}
	keys := make([]string, len(resp.Keys))
	for i, k := range resp.Keys {
		keys[i] = s.key(k)
	}
	slices.Sort(keys)
	ttl := strconv.FormatInt(resp.TTL, 10)
	if resp.TTL > 0 && resp.TTL <= resp.GrantedTTL && resp.TTL > resp.GrantedTTL-10 {
		ttl = "granted-ish"
	}
	s.log("time-to-live %s: ttl=%s granted=%d keys=%v id-ok=%v %s", name, ttl, resp.GrantedTTL, keys, resp.ID == id, s.hdr(resp.ResponseHeader))
}

// listLeases logs which of the case's leases the store lists.
func (s *sess) listLeases() {
	s.t.Helper()
	resp, err := s.cli.Leases(s.ctx)
	if err != nil {
		s.log("leases: %s", errText(err))
		return
	}
	var names []string
	for _, l := range resp.Leases {
		if name, ok := s.leases[l.ID]; ok {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	s.log("leases: %v %s", names, s.hdr(resp.ResponseHeader))
}

// caseLeaseExpiry: a lease that is not kept alive expires and its keys
// are deleted.
func caseLeaseExpiry(s *sess) {
	l := s.grant(2)
	s.put("a", "a", "1", clientv3.WithLease(l))
	s.put("b", "b", "1", clientv3.WithLease(l))
	s.put("c", "c", "1")
	// Waits for the deletes, however long the store takes (etcd checks
	// expiries every 500 ms).
	s.events("expiry", s.watch(s.cli, "", clientv3.WithPrefix(), clientv3.WithRev(s.rev(1)), clientv3.WithPrevKV()), 5)
	s.get("after expiry", "", clientv3.WithPrefix())
	s.timeToLive("L1", l)
	_, err := s.cli.KeepAliveOnce(s.ctx, l)
	s.log("keep-alive of an expired lease: %v", err)
	s.put("put on an expired lease", "d", "1", clientv3.WithLease(l))
	s.listLeases()
}

// caseLargeValues: values below and above topod's inline limit (32 KiB,
// kept as blobs) read back whole and identical through every path:
// Range, prev_kv of Put and DeleteRange, Txn and watch events.
func caseLargeValues(s *sess) {
	small := "small"
	v100k := randomValue(1, 100<<10)
	v1m := randomValue(2, 1400<<10) // under etcd's 1.5 MiB request limit
	s.put("small", "a", small)
	s.put("100 KiB over small", "a", v100k, clientv3.WithPrevKV())
	s.put("1.4 MiB over 100 KiB", "a", v1m, clientv3.WithPrevKV())
	s.put("100 KiB b", "b", v100k, clientv3.WithPrevKV())
	s.put("32 KiB c", "c", randomValue(3, 32<<10))
	s.put("32 KiB + 1 d", "d", randomValue(4, 32<<10+1))
	s.get("a", "a")
	s.get("prefix", "", clientv3.WithPrefix())
	s.get("prefix serializable", "", clientv3.WithPrefix(), clientv3.WithSerializable())
	s.get("prefix keys-only", "", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	s.get("sort by value", "", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByValue, clientv3.SortDescend))
	s.get("a at +2", "a", clientv3.WithRev(s.rev(2)))
	s.txn("txn", []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(s.k("a")), "=", s.rev(3))},
		[]clientv3.Op{clientv3.OpGet(s.k("b")), clientv3.OpPut(s.k("b"), small, clientv3.WithPrevKV())}, nil)
	// Value compares compare the contents, not the blob reference topod
	// stores for a value over the inline limit.
	s.txn("value compare of a large value", []clientv3.Cmp{clientv3.Compare(clientv3.Value(s.k("a")), "=", v1m)},
		[]clientv3.Op{clientv3.OpGet(s.k("c"), clientv3.WithKeysOnly())}, nil)
	s.txn("value compare of a large value, not equal", []clientv3.Cmp{clientv3.Compare(clientv3.Value(s.k("a")), "!=", v1m)}, nil,
		[]clientv3.Op{clientv3.OpGet(s.k("c"), clientv3.WithKeysOnly())})
	s.txn("value compare of large values over a range", []clientv3.Cmp{clientv3.Compare(clientv3.Value(s.k("c")), ">", "\x00").WithRange(s.k("e"))},
		[]clientv3.Op{clientv3.OpGet(s.k("d"), clientv3.WithKeysOnly())}, []clientv3.Op{clientv3.OpGet(s.k("c"), clientv3.WithKeysOnly())})
	s.events("watch", s.watch(s.cli, "", clientv3.WithPrefix(), clientv3.WithRev(s.rev(1)), clientv3.WithPrevKV()), 7)
	s.events("watch in fragments", s.watch(s.cli, "", clientv3.WithPrefix(), clientv3.WithRev(s.rev(1)), clientv3.WithPrevKV(), clientv3.WithFragment()), 7)
	s.put("ignore_value of a large value", "a", "", clientv3.WithIgnoreValue(), clientv3.WithPrevKV()) // +8
	s.get("a after ignore_value", "a")
	s.del("delete with prev_kv", "", clientv3.WithPrefix(), clientv3.WithPrevKV())
	s.events("watch the delete", s.watch(s.cli, "", clientv3.WithPrefix(), clientv3.WithRev(s.rev(9)), clientv3.WithPrevKV()), 4)
	// Over etcd's request limit (1.5 MiB) but under the client's (2
	// MiB): etcd refuses it; topod keeps it as blobs, never writing
	// more than 64 KiB to its backend.
	v16m := randomValue(5, 1600<<10)
	_, err := s.cli.Put(s.ctx, s.k("e"), v16m)
	s.differs("put of 1.6 MiB", "topod keeps large values as blobs", fmt.Sprint(err), "etcdserver: request is too large", "<nil>")
	if s.st.topod {
		if resp, err := s.cli.Get(s.ctx, s.k("e")); err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != v16m {
			s.t.Errorf("get of the 1.6 MiB value: %v (%d keys)", err, len(resp.Kvs))
		}
	}
}

// randomValue returns n bytes of a seeded random stream.
func randomValue(seed uint64, n int) string {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return string(b)
}

// caseMaintenance: what etcdctl's endpoint commands and clientv3's
// endpoint sync ask. IDs, names, URLs and the raft term are the store's
// own: topod reports itself as the one member of its cluster, with IDs
// from its name and address, and raft term 1 (it runs no raft).
func caseMaintenance(s *sess) {
	s.puts("a=1")
	ep := s.cli.Endpoints()[0]
	st, err := s.cli.Status(s.ctx, ep)
	if err != nil {
		s.t.Fatalf("status: %v", err)
	}
	s.log("status: version=%s leader-is-self=%v cluster-id-set=%v raft-term-set=%v db-size-set=%v errors=%v %s", st.Version,
		st.Leader == st.Header.MemberId, st.Header.ClusterId != 0, st.RaftTerm > 0, st.DbSize > 0 && st.DbSizeInUse <= st.DbSize,
		st.Errors, s.hdr(st.Header))
	if s.st.topod && (st.RaftTerm != 1 || st.Header.RaftTerm != 1) {
		s.t.Errorf("topod's raft term: %d, header %d; want 1 (no raft)", st.RaftTerm, st.Header.RaftTerm)
	}
	ml, err := s.cli.MemberList(s.ctx)
	if err != nil {
		s.t.Fatalf("member list: %v", err)
	}
	s.log("member list: %d members, first is the status's member: %v, has client URLs: %v, %s", len(ml.Members),
		len(ml.Members) > 0 && ml.Members[0].ID == st.Header.MemberId, len(ml.Members) > 0 && len(ml.Members[0].ClientURLs) == 1,
		s.hdr(ml.Header))
	alarms, err := s.cli.AlarmList(s.ctx)
	if err != nil {
		s.t.Fatalf("alarms: %v", err)
	}
	s.log("alarms: %v", alarms.Alarms)
	_, err = s.cli.Defragment(s.ctx, ep)
	s.differs("defragment", "defragmentation is etcd's business", fmt.Sprint(err), "<nil>",
		"rpc error: code = Unimplemented desc = topod does not serve etcd's Defragment: use etcd directly (topod keeps its data in the etcd named by its --backend)")
	_, err = s.cli.HashKV(s.ctx, ep, 0)
	s.differs("hash-kv", "topod holds no etcd database to hash", fmt.Sprint(err), "<nil>",
		"rpc error: code = Unimplemented desc = topod does not serve etcd's HashKV: use etcd directly (topod keeps its data in the etcd named by its --backend)")
}
