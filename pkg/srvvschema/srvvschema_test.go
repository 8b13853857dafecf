package srvvschema_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	vschemapb "vitess.io/vitess/go/vt/proto/vschema"

	"github.com/topod-io/topod/pkg/content"
	"github.com/topod-io/topod/pkg/srvvschema"
)

// store is an in-memory blob store that records fetches.
type store struct {
	mu       sync.Mutex
	blobs    map[content.Hash][]byte
	fetched  []content.Hash
	delay    time.Duration
	inFlight atomic.Int32
	maxIn    atomic.Int32
}

func newStore(blobs ...map[content.Hash][]byte) *store {
	s := &store{blobs: make(map[content.Hash][]byte)}
	for _, b := range blobs {
		s.add(b)
	}
	return s
}

func (s *store) add(blobs map[content.Hash][]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	maps.Copy(s.blobs, blobs)
}

func (s *store) resetCounts() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fetched = nil
}

func (s *store) get(ctx context.Context, h content.Hash) ([]byte, error) {
	n := s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	for m := s.maxIn.Load(); n > m && !s.maxIn.CompareAndSwap(m, n); m = s.maxIn.Load() {
	}
	time.Sleep(s.delay)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fetched = append(s.fetched, h)
	b, ok := s.blobs[h]
	if !ok {
		return nil, fmt.Errorf("blob %s not found", h)
	}
	return b, nil
}

// keyspace returns a keyspace of n tables; a sharded one has a hash vindex
// and every table a primary vindex on it.
func keyspace(n int, sharded bool) *vschemapb.Keyspace {
	ks := &vschemapb.Keyspace{Sharded: sharded, Tables: make(map[string]*vschemapb.Table, n)}
	if sharded {
		ks.Vindexes = map[string]*vschemapb.Vindex{"hash": {Type: "hash"}}
	}
	for i := range n {
		t := &vschemapb.Table{}
		if sharded {
			t.ColumnVindexes = []*vschemapb.ColumnVindex{{Column: "id", Name: "hash"}}
		}
		ks.Tables[fmt.Sprintf("table_%04d", i)] = t
	}
	return ks
}

// withRules sets every rule field of srv.
func withRules(srv *vschemapb.SrvVSchema) *vschemapb.SrvVSchema {
	srv.RoutingRules = &vschemapb.RoutingRules{Rules: []*vschemapb.RoutingRule{
		{FromTable: "ks0000.table_0001", ToTables: []string{"ks0001.table_0001"}},
		{FromTable: "table_0002", ToTables: []string{"ks0002.table_0002"}},
	}}
	srv.ShardRoutingRules = &vschemapb.ShardRoutingRules{Rules: []*vschemapb.ShardRoutingRule{
		{FromKeyspace: "ks0000", ToKeyspace: "ks0001", Shard: "-80"},
	}}
	srv.KeyspaceRoutingRules = &vschemapb.KeyspaceRoutingRules{Rules: []*vschemapb.KeyspaceRoutingRule{
		{FromKeyspace: "old", ToKeyspace: "ks0003"},
	}}
	srv.MirrorRules = &vschemapb.MirrorRules{Rules: []*vschemapb.MirrorRule{
		{FromTable: "ks0000.table_0003", ToTable: "ks0004.table_0003", Percent: 12.5},
	}}
	return srv
}

// srvVSchema returns n keyspaces of a few tables each, alternately sharded.
func srvVSchema(n int) *vschemapb.SrvVSchema {
	srv := &vschemapb.SrvVSchema{Keyspaces: make(map[string]*vschemapb.Keyspace, n)}
	for i := range n {
		srv.Keyspaces[fmt.Sprintf("ks%04d", i)] = keyspace(5+i%7, i%2 == 0)
	}
	return srv
}

// withUnknown returns m with an unknown field 99 appended.
func withUnknown[M proto.Message](m M) M {
	b := protowire.AppendTag(nil, 99, protowire.BytesType)
	return withRaw(m, protowire.AppendString(b, "from a newer Vitess"))
}

func mustEncode(t testing.TB, srv *vschemapb.SrvVSchema) *srvvschema.Encoded {
	t.Helper()
	enc, err := srvvschema.Encode(srv)
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	return enc
}

func deterministic(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		srv  *vschemapb.SrvVSchema
	}{
		{"empty", &vschemapb.SrvVSchema{}},
		{"one keyspace", &vschemapb.SrvVSchema{Keyspaces: map[string]*vschemapb.Keyspace{"commerce": keyspace(3, false)}}},
		{"many keyspaces with rules", withRules(srvVSchema(600))},
		{"rules only", withRules(&vschemapb.SrvVSchema{})},
		{"empty rule messages", &vschemapb.SrvVSchema{
			RoutingRules: &vschemapb.RoutingRules{}, ShardRoutingRules: &vschemapb.ShardRoutingRules{},
			KeyspaceRoutingRules: &vschemapb.KeyspaceRoutingRules{}, MirrorRules: &vschemapb.MirrorRules{},
		}},
		{"empty keyspace and empty name", &vschemapb.SrvVSchema{Keyspaces: map[string]*vschemapb.Keyspace{
			"": keyspace(1, true), "empty": {},
		}}},
		{"identical keyspaces", &vschemapb.SrvVSchema{Keyspaces: map[string]*vschemapb.Keyspace{
			"a": keyspace(4, true), "b": keyspace(4, true), "c": keyspace(4, true),
		}}},
		{"unknown fields", withUnknown(withRules(&vschemapb.SrvVSchema{Keyspaces: map[string]*vschemapb.Keyspace{
			"ks": withUnknown(keyspace(2, true)),
		}}))},
		{"large keyspace", &vschemapb.SrvVSchema{Keyspaces: map[string]*vschemapb.Keyspace{"big": keyspace(20000, true)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc := mustEncode(t, tt.srv)
			if want := int64(proto.Size(tt.srv)); enc.Size != want {
				t.Errorf("Size = %d, proto.Size = %d", enc.Size, want)
			}
			for h, b := range enc.Blobs {
				if content.Sum(b) != h {
					t.Fatalf("blob %s does not match its hash", h)
				}
			}
			s := newStore(enc.Blobs)
			got, err := srvvschema.Decode(context.Background(), enc.Root, s.get)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !proto.Equal(got, tt.srv) {
				t.Fatalf("Decode returned a different SrvVSchema")
			}
			if len(s.fetched) != len(enc.Blobs) {
				t.Errorf("Decode fetched %d blobs, the encoding has %d distinct ones", len(s.fetched), len(enc.Blobs))
			}
			raw, err := srvvschema.DecodeBytes(context.Background(), enc.Root, s.get)
			if err != nil {
				t.Fatalf("DecodeBytes: %v", err)
			}
			if !bytes.Equal(raw, deterministic(t, tt.srv)) {
				t.Errorf("DecodeBytes is not the deterministic marshalling (%d bytes vs %d)", len(raw), proto.Size(tt.srv))
			}
			fromBytes, err := srvvschema.EncodeBytes(raw)
			if err != nil {
				t.Fatalf("EncodeBytes: %v", err)
			}
			if fromBytes.Root != enc.Root {
				t.Errorf("EncodeBytes root %s, Encode root %s", fromBytes.Root, enc.Root)
			}
			if m := enc.Manifest; m.Root() != enc.Root || m.Len() != len(tt.srv.Keyspaces) || m.Size() != enc.Size {
				t.Errorf("manifest: root %s, %d keyspaces, %d bytes", m.Root(), m.Len(), m.Size())
			}
		})
	}
}

func TestDeterministic(t *testing.T) {
	a := withRules(srvVSchema(300))
	b := proto.Clone(a).(*vschemapb.SrvVSchema)
	// Rebuild b's maps in another insertion order.
	names := slices.Sorted(maps.Keys(b.Keyspaces))
	slices.Reverse(names)
	ks := make(map[string]*vschemapb.Keyspace)
	for _, n := range names {
		ks[n] = b.Keyspaces[n]
	}
	b.Keyspaces = ks
	ea, eb := mustEncode(t, a), mustEncode(t, b)
	if ea.Root != eb.Root || len(ea.Blobs) != len(eb.Blobs) {
		t.Fatalf("roots %s and %s, %d and %d blobs", ea.Root, eb.Root, len(ea.Blobs), len(eb.Blobs))
	}
	for h, blob := range ea.Blobs {
		if !bytes.Equal(blob, eb.Blobs[h]) {
			t.Fatalf("blob %s differs", h)
		}
	}
	if e := mustEncode(t, nil); e.Root != mustEncode(t, &vschemapb.SrvVSchema{}).Root {
		t.Error("Encode(nil) differs from Encode(empty)")
	}
}

// added returns the blobs of b not in a.
func added(a, b map[content.Hash][]byte) map[content.Hash][]byte {
	out := make(map[content.Hash][]byte)
	for h, v := range b {
		if _, ok := a[h]; !ok {
			out[h] = v
		}
	}
	return out
}

func TestEncodeIncremental(t *testing.T) {
	base := withRules(srvVSchema(1000))
	changed := keyspace(9, true)
	changed.Tables["new_table"] = &vschemapb.Table{Type: "reference"}
	tests := []struct {
		name      string
		keyspace  string
		value     *vschemapb.Keyspace
		wantBlobs int // new blobs: piece + leaf + root, or fewer
	}{
		{"change a keyspace", "ks0042", changed, 3},
		{"add a keyspace", "zz_new", keyspace(3, false), 3},
		{"add a keyspace equal to another", "zz_copy", proto.Clone(base.Keyspaces["ks0007"]).(*vschemapb.Keyspace), 3},
		{"delete a keyspace", "ks0042", nil, 2},
		{"delete an absent keyspace", "nope", nil, 0},
		{"set a keyspace to its value", "ks0042", proto.Clone(base.Keyspaces["ks0042"]).(*vschemapb.Keyspace), 0},
	}
	prev := mustEncode(t, base)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next := proto.Clone(base).(*vschemapb.SrvVSchema)
			if tt.value == nil {
				delete(next.Keyspaces, tt.keyspace)
			} else {
				next.Keyspaces[tt.keyspace] = tt.value
			}
			full := mustEncode(t, next)
			inc, err := srvvschema.EncodeIncremental(prev.Manifest, tt.keyspace, tt.value)
			if err != nil {
				t.Fatal(err)
			}
			if inc.Root != full.Root || inc.Size != full.Size {
				t.Fatalf("incremental root %s (%d bytes), full encode %s (%d bytes)", inc.Root, inc.Size, full.Root, full.Size)
			}
			if len(inc.Blobs) != tt.wantBlobs {
				t.Errorf("incremental encode has %d new blobs, want %d", len(inc.Blobs), tt.wantBlobs)
			}
			// Versus the full encodings: exactly the same new blobs,
			// except that a piece already stored under another keyspace
			// is new to this keyspace only.
			diff := added(prev.Blobs, full.Blobs)
			for h := range diff {
				if _, ok := inc.Blobs[h]; !ok {
					t.Errorf("blob %s is new in the full encoding but not in the incremental one", h)
				}
			}
			for h := range inc.Blobs {
				if _, ok := full.Blobs[h]; !ok {
					t.Errorf("incremental blob %s is not part of the full encoding", h)
				}
			}
			if _, ok := diff[inc.Root]; !ok && tt.wantBlobs > 0 {
				t.Error("the root did not change")
			}
			got, err := srvvschema.Decode(context.Background(), inc.Root, newStore(prev.Blobs, inc.Blobs).get)
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, next) {
				t.Fatal("decoded SrvVSchema differs")
			}
		})
	}
	if _, err := srvvschema.EncodeIncremental(nil, "ks", nil); err == nil {
		t.Error("EncodeIncremental with no previous manifest succeeded")
	}
}

func TestEncodeEdit(t *testing.T) {
	base := withRules(srvVSchema(200))
	prev := mustEncode(t, base)

	newRules := withRules(&vschemapb.SrvVSchema{})
	newRules.RoutingRules.Rules = append(newRules.RoutingRules.Rules, &vschemapb.RoutingRule{FromTable: "x", ToTables: []string{"ks0001.x"}})
	noMirror := withRules(&vschemapb.SrvVSchema{})
	noMirror.MirrorRules = nil
	tests := []struct {
		name      string
		edit      srvvschema.Edit
		wantBlobs int
	}{
		{"routing rules", srvvschema.Edit{Rules: newRules}, 2}, // part + root
		{"drop mirror rules", srvvschema.Edit{Rules: noMirror}, 1},
		{"unknown fields", srvvschema.Edit{Rules: withUnknown(withRules(&vschemapb.SrvVSchema{}))}, 2},
		{"same rules", srvvschema.Edit{Rules: withRules(&vschemapb.SrvVSchema{})}, 0},
		{"two keyspaces and rules", srvvschema.Edit{
			Keyspaces: map[string]*vschemapb.Keyspace{"ks0001": keyspace(1, false), "ks0150": nil},
			Rules:     newRules,
		}, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next := proto.Clone(base).(*vschemapb.SrvVSchema)
			for name, ks := range tt.edit.Keyspaces {
				if ks == nil {
					delete(next.Keyspaces, name)
				} else {
					next.Keyspaces[name] = ks
				}
			}
			if r := tt.edit.Rules; r != nil {
				ks := next.Keyspaces
				next = proto.Clone(r).(*vschemapb.SrvVSchema)
				next.Keyspaces = ks
			}
			inc, err := srvvschema.EncodeEdit(prev.Manifest, tt.edit)
			if err != nil {
				t.Fatal(err)
			}
			full := mustEncode(t, next)
			if inc.Root != full.Root {
				t.Fatalf("edit root %s, full encode %s", inc.Root, full.Root)
			}
			if tt.wantBlobs >= 0 && len(inc.Blobs) != tt.wantBlobs {
				t.Errorf("%d new blobs, want %d", len(inc.Blobs), tt.wantBlobs)
			}
			got, err := srvvschema.Decode(context.Background(), inc.Root, newStore(prev.Blobs, inc.Blobs).get)
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, next) {
				t.Fatal("decoded SrvVSchema differs")
			}
		})
	}
}

func TestDecodeDelta(t *testing.T) {
	base := withRules(srvVSchema(500))
	prev := mustEncode(t, base)
	changed := keyspace(3, true)
	newRules := withRules(&vschemapb.SrvVSchema{})
	newRules.ShardRoutingRules = nil
	tests := []struct {
		name        string
		edit        srvvschema.Edit
		wantFetches int
		want        srvvschema.Diff
	}{
		{"change one keyspace", srvvschema.Edit{Keyspaces: map[string]*vschemapb.Keyspace{"ks0100": changed}}, 3,
			srvvschema.Diff{Upserted: []string{"ks0100"}}},
		{"add one keyspace", srvvschema.Edit{Keyspaces: map[string]*vschemapb.Keyspace{"added": changed}}, 3,
			srvvschema.Diff{Upserted: []string{"added"}}},
		{"delete one keyspace", srvvschema.Edit{Keyspaces: map[string]*vschemapb.Keyspace{"ks0100": nil}}, 2,
			srvvschema.Diff{Deleted: []string{"ks0100"}}},
		{"change rules", srvvschema.Edit{Rules: newRules}, 1 + 3, // root + the 3 remaining parts
			srvvschema.Diff{RulesChanged: true}},
		{"no change", srvvschema.Edit{}, 1, srvvschema.Diff{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inc, err := srvvschema.EncodeEdit(prev.Manifest, tt.edit)
			if err != nil {
				t.Fatal(err)
			}
			s := newStore(prev.Blobs, inc.Blobs)
			want, err := srvvschema.Decode(context.Background(), inc.Root, s.get)
			if err != nil {
				t.Fatal(err)
			}
			s.resetCounts()

			d, err := srvvschema.DecodeDelta(context.Background(), prev.Manifest, inc.Root, s.get)
			if err != nil {
				t.Fatal(err)
			}
			if len(s.fetched) != tt.wantFetches {
				t.Errorf("DecodeDelta fetched %d blobs, want %d", len(s.fetched), tt.wantFetches)
			}
			if !slices.Equal(d.Upserted, tt.want.Upserted) || !slices.Equal(d.Deleted, tt.want.Deleted) || d.RulesChanged != tt.want.RulesChanged {
				t.Errorf("diff %+v, want %+v", d.Diff, tt.want)
			}
			if d.Empty() != (tt.name == "no change") {
				t.Errorf("Empty() = %v for %v", d.Empty(), d.Diff)
			}
			if d.Manifest.Root() != inc.Root {
				t.Errorf("delta manifest root %s, want %s", d.Manifest.Root(), inc.Root)
			}
			if got := d.Apply(base); !proto.Equal(got, want) {
				t.Error("Apply(old) differs from the decoded new SrvVSchema")
			}
			if c := srvvschema.Compare(prev.Manifest, inc.Manifest); !slices.Equal(c.Upserted, d.Upserted) || !slices.Equal(c.Deleted, d.Deleted) {
				t.Errorf("Compare %v, DecodeDelta %v", c, d.Diff)
			}
		})
	}
}

func TestLoadManifest(t *testing.T) {
	srv := withRules(srvVSchema(40)) // fewer keyspaces than buckets: many empty leaves
	enc := mustEncode(t, srv)
	s := newStore(enc.Blobs)
	m, err := srvvschema.LoadManifest(context.Background(), enc.Root, s.get)
	if err != nil {
		t.Fatal(err)
	}
	leaves := map[content.Hash]bool{}
	for _, b := range enc.Blobs {
		if bytes.HasPrefix(b, []byte("TDVL")) {
			leaves[content.Sum(b)] = true
		}
	}
	if len(s.fetched) != 1+len(leaves) {
		t.Errorf("LoadManifest fetched %d blobs, want the root and %d distinct leaves", len(s.fetched), len(leaves))
	}
	if !slices.Equal(m.Keyspaces(), enc.Manifest.Keyspaces()) || !slices.Equal(m.Parts(), enc.Manifest.Parts()) {
		t.Error("loaded manifest differs from the encoded one")
	}
	names := slices.Sorted(maps.Keys(srv.Keyspaces))
	for i, e := range m.Keyspaces() {
		if e.Name != names[i] {
			t.Fatalf("Keyspaces()[%d] = %q, want %q", i, e.Name, names[i])
		}
		if got, ok := m.Keyspace(e.Name); !ok || got != e {
			t.Errorf("Keyspace(%q) = %v, %v", e.Name, got, ok)
		}
	}
	if _, ok := m.Keyspace("absent"); ok {
		t.Error("Keyspace(absent) found")
	}
	if _, err := srvvschema.LoadManifest(context.Background(), content.Sum([]byte("nothing")), s.get); err == nil {
		t.Error("LoadManifest of a missing root succeeded")
	}
}

func TestDecodeDeltaFromNothing(t *testing.T) {
	srv := withUnknown(withRules(srvVSchema(50)))
	enc := mustEncode(t, srv)
	d, err := srvvschema.DecodeDelta(context.Background(), nil, enc.Root, newStore(enc.Blobs).get)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Upserted) != 50 || len(d.Deleted) != 0 || !d.RulesChanged {
		t.Errorf("diff from nothing: %v", d.Diff)
	}
	if got := d.Apply(nil); !proto.Equal(got, srv) {
		t.Error("Apply(nil) of a delta from nothing differs from the SrvVSchema")
	}
	if c := srvvschema.Compare(enc.Manifest, nil); len(c.Deleted) != 50 || !c.RulesChanged {
		t.Errorf("Compare to nothing: %v", c)
	}
}

func TestCorruptBlobs(t *testing.T) {
	srv := withRules(srvVSchema(100))
	enc := mustEncode(t, srv)
	m := enc.Manifest
	piece, _ := m.Keyspace("ks0050")
	part := m.Parts()[0]
	var leaf content.Hash // a non-empty leaf: a blob that is neither root nor piece
	for h, b := range enc.Blobs {
		if bytes.HasPrefix(b, []byte("TDVL")) && len(b) > 8 {
			leaf = h
			break
		}
	}
	tests := []struct {
		name    string
		victim  content.Hash
		mutate  func([]byte) []byte // nil: remove the blob
		corrupt bool
	}{
		{"flipped piece", piece.Hash, flip, true},
		{"flipped leaf", leaf, flip, true},
		{"flipped root", enc.Root, flip, true},
		{"flipped part", part.Hash, flip, true},
		{"truncated piece", piece.Hash, func(b []byte) []byte { return b[:len(b)-1] }, true},
		{"missing piece", piece.Hash, nil, false},
		{"missing leaf", leaf, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			blobs := maps.Clone(enc.Blobs)
			if tt.mutate == nil {
				delete(blobs, tt.victim)
			} else {
				blobs[tt.victim] = tt.mutate(bytes.Clone(blobs[tt.victim]))
			}
			decoders := map[string]func() error{
				"Decode": func() error {
					_, err := srvvschema.Decode(context.Background(), enc.Root, newStore(blobs).get)
					return err
				},
				"DecodeBytes": func() error {
					_, err := srvvschema.DecodeBytes(context.Background(), enc.Root, newStore(blobs).get)
					return err
				},
			}
			for name, decode := range decoders {
				err := decode()
				if err == nil {
					t.Fatalf("%s succeeded", name)
				}
				if errors.Is(err, srvvschema.ErrCorrupt) != tt.corrupt {
					t.Errorf("%s: errors.Is(%v, ErrCorrupt) = %v, want %v", name, err, !tt.corrupt, tt.corrupt)
				}
				if !strings.Contains(err.Error(), tt.victim.String()) {
					t.Errorf("%s: error %q does not name blob %s", name, err, tt.victim)
				}
			}
		})
	}
}

func flip(b []byte) []byte {
	b[len(b)/2] ^= 0x40
	return b
}

func TestDecodeConcurrency(t *testing.T) {
	enc := mustEncode(t, srvVSchema(300))
	s := newStore(enc.Blobs)
	s.delay = 200 * time.Microsecond
	if _, err := srvvschema.Decode(context.Background(), enc.Root, s.get); err != nil {
		t.Fatal(err)
	}
	if n := s.maxIn.Load(); n > 16 || n < 2 {
		t.Errorf("%d fetches in flight at most, want between 2 and 16", n)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := srvvschema.Decode(ctx, enc.Root, s.get); !errors.Is(err, context.Canceled) {
		t.Errorf("Decode with a cancelled context: %v", err)
	}
}

// TestDecodeRefusesWhatParsersReadDifferently: a piece that vtprotobuf
// (Vitess's topo client) and proto.Unmarshal read differently, which only
// a writer of raw unknown fields can make, is served by DecodeBytes as
// written, and refused as corrupt by Decode and FetchKeyspace.
func TestDecodeRefusesWhatParsersReadDifferently(t *testing.T) {
	mismatchedGroup := protowire.AppendTag(protowire.AppendTag(nil, 98, protowire.StartGroupType), 99, protowire.EndGroupType)
	wrongWireType := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "sharded")
	vindex := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "bad\xff")
	invalidUTF8 := protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), vindex)
	tests := []struct {
		name string
		srv  *vschemapb.SrvVSchema
	}{
		{"a keyspace's group closed by another field (vtprotobuf reads it)", &vschemapb.SrvVSchema{
			Keyspaces: map[string]*vschemapb.Keyspace{"ks": withRaw(keyspace(1, true), mismatchedGroup)}}},
		{"a keyspace's bool field as bytes (proto keeps it as unknown)", &vschemapb.SrvVSchema{
			Keyspaces: map[string]*vschemapb.Keyspace{"ks": withRaw(keyspace(1, true), wrongWireType)}}},
		{"a vindex name that is not UTF-8 (vtprotobuf reads it)", &vschemapb.SrvVSchema{
			Keyspaces: map[string]*vschemapb.Keyspace{"ks": withRaw(keyspace(1, true), invalidUTF8)}}},
		{"routing rules' group closed by another field", &vschemapb.SrvVSchema{
			RoutingRules: withRaw(&vschemapb.RoutingRules{}, mismatchedGroup)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc := mustEncode(t, tt.srv)
			get := newStore(enc.Blobs).get
			raw, err := srvvschema.DecodeBytes(t.Context(), enc.Root, get)
			if err != nil {
				t.Fatalf("DecodeBytes: %v", err)
			}
			if !bytes.Equal(raw, deterministic(t, tt.srv)) {
				t.Error("DecodeBytes is not what was written")
			}
			if _, err := srvvschema.Decode(t.Context(), enc.Root, get); !errors.Is(err, srvvschema.ErrCorrupt) {
				t.Errorf("Decode: %v, want ErrCorrupt", err)
			}
			if _, found, err := srvvschema.FetchKeyspace(t.Context(), get, enc.Manifest, "ks"); tt.srv.Keyspaces != nil && !errors.Is(err, srvvschema.ErrCorrupt) {
				t.Errorf("FetchKeyspace: found %v, %v, want ErrCorrupt", found, err)
			}
		})
	}
}

// withRaw appends b to m's unknown fields.
func withRaw[M proto.Message](m M, b []byte) M {
	r := m.ProtoReflect()
	r.SetUnknown(append(r.GetUnknown(), b...))
	return m
}

func TestEncodeRejectsInvalidUTF8(t *testing.T) {
	srv := &vschemapb.SrvVSchema{Keyspaces: map[string]*vschemapb.Keyspace{"bad\xff": {}}}
	if _, err := srvvschema.Encode(srv); err == nil {
		t.Error("Encode of a keyspace name that is not UTF-8 succeeded")
	}
	prev := mustEncode(t, &vschemapb.SrvVSchema{})
	if _, err := srvvschema.EncodeIncremental(prev.Manifest, "bad\xff", &vschemapb.Keyspace{}); err == nil {
		t.Error("EncodeIncremental of a keyspace name that is not UTF-8 succeeded")
	}
}

// TestDecodeBytesChecked: for a Getter whose blobs are already checked, the
// pieces are not hashed again, and everything else still is: the result is
// DecodeBytes', a root or leaf that does not match its hash, a piece of the
// wrong size or a missing one is still an error, and only a same-size
// piece with other bytes (what a checked cache cannot hold) goes through.
func TestDecodeBytesChecked(t *testing.T) {
	srv := withRules(srvVSchema(100))
	enc := mustEncode(t, srv)
	piece, _ := enc.Manifest.Keyspace("ks0050")
	want, err := srvvschema.DecodeBytes(context.Background(), enc.Root, newStore(enc.Blobs).get)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		victim  content.Hash
		mutate  func([]byte) []byte // nil: remove the blob
		wantErr bool
	}{
		{"as encoded", content.Hash{}, func(b []byte) []byte { return b }, false},
		{"flipped root", enc.Root, flip, true},
		{"truncated piece", piece.Hash, func(b []byte) []byte { return b[:len(b)-1] }, true},
		{"missing piece", piece.Hash, nil, true},
		{"flipped piece, not hashed", piece.Hash, flip, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			blobs := maps.Clone(enc.Blobs)
			switch {
			case tt.mutate == nil:
				delete(blobs, tt.victim)
			case !tt.victim.IsZero():
				blobs[tt.victim] = tt.mutate(bytes.Clone(blobs[tt.victim]))
			}
			got, err := srvvschema.DecodeBytesChecked(context.Background(), enc.Root, newStore(blobs).get)
			if (err != nil) != tt.wantErr {
				t.Fatalf("DecodeBytesChecked: %v, want an error: %v", err, tt.wantErr)
			}
			if err == nil && tt.victim.IsZero() && !bytes.Equal(got, want) {
				t.Error("DecodeBytesChecked differs from DecodeBytes")
			}
		})
	}
}
