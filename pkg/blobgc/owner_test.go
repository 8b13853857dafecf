package blobgc_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/topod-io/topod/internal/harness"
	"github.com/topod-io/topod/pkg/blobgc"
	"github.com/topod-io/topod/pkg/blobstore"
	"github.com/topod-io/topod/pkg/blobstore/blobtest"
	"github.com/topod-io/topod/pkg/blobstore/fileblob"
	"github.com/topod-io/topod/pkg/blobstore/s3blob"
	"github.com/topod-io/topod/pkg/content"
	"github.com/topod-io/topod/pkg/kv"
)

// ownerStores are the blob stores the owner record is tested on: a file
// store in a temporary directory and an S3 store on a real MinIO. fresh
// makes new, empty storage and returns a function opening a handle on it
// (as each topod process opens its own).
func ownerStores(t *testing.T) []struct {
	name  string
	fresh func(t *testing.T) func() blobstore.Store
} {
	t.Helper()
	srv := harness.StartMinIO(t)
	var prefixes atomic.Int64
	return []struct {
		name  string
		fresh func(t *testing.T) func() blobstore.Store
	}{
		{"file", func(t *testing.T) func() blobstore.Store {
			dir := filepath.Join(t.TempDir(), "blobs")
			return func() blobstore.Store { return openFileStore(t, dir) }
		}},
		{"s3", func(t *testing.T) func() blobstore.Store {
			prefix := fmt.Sprintf("owner/%d", prefixes.Add(1))
			return func() blobstore.Store {
				s, err := s3blob.Open(t.Context(), s3blob.Config{
					Endpoint: srv.Endpoint,
					Region:   harness.MinIORegion,
					Bucket:   srv.Bucket,
					Prefix:   prefix,
					Creds:    credentials.NewStaticV4(srv.AccessKey, srv.SecretKey, ""),
				})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				return s
			}
		}},
	}
}

func openFileStore(t *testing.T, dir string) blobstore.Store {
	t.Helper()
	s, err := fileblob.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// readRecord returns the store's owner record.
func readRecord(t *testing.T, s blobstore.Store) blobgc.Owner {
	t.Helper()
	data, _, err := s.GetMeta(t.Context(), blobgc.OwnerName)
	if err != nil {
		t.Fatal(err)
	}
	var o blobgc.Owner
	if err := json.Unmarshal(data, &o); err != nil {
		t.Fatalf("owner record %q: %v", data, err)
	}
	return o
}

func backendID(t *testing.T, b kv.Backend) string {
	t.Helper()
	id, err := blobgc.BackendID(t.Context(), b, false)
	if err != nil || id == "" {
		t.Fatalf("backend id %q, %v", id, err)
	}
	return id
}

// TestClaim: the first claim of a store writes its owner record; the same
// backend, root and grace pass; another backend (bolt or etcd), another
// root or another grace is refused, naming both sides; a takeover replaces
// only the record it names.
func TestClaim(t *testing.T) {
	const hour = time.Hour
	type claimer struct {
		backend int // index into the test's backends
		opts    blobgc.ClaimOptions
	}
	tests := []struct {
		name   string
		second func(*testing.T) kv.Backend // the other backend: bolt, or etcd
		first  claimer
		then   claimer
		// wantErr is what the second claim fails with; nil: it passes.
		wantErr    error
		wantInErr  []string // besides both owners, which every refusal names
		wantRecord claimer  // whose record the store holds at the end
	}{
		{name: "same backend, root and grace",
			first: claimer{0, blobgc.ClaimOptions{}}, then: claimer{0, blobgc.ClaimOptions{Grace: hour}},
			wantRecord: claimer{0, blobgc.ClaimOptions{}}},
		{name: "another bolt backend", second: openBolt,
			first: claimer{0, blobgc.ClaimOptions{}}, then: claimer{1, blobgc.ClaimOptions{}},
			wantErr: blobgc.ErrOwnerMismatch, wantInErr: []string{"another bucket or prefix", "--blob-owner-takeover="},
			wantRecord: claimer{0, blobgc.ClaimOptions{}}},
		{name: "an etcd backend after a bolt one", second: openEtcd,
			first: claimer{0, blobgc.ClaimOptions{Backend: "bolt:///a/topo.db"}}, then: claimer{1, blobgc.ClaimOptions{Backend: "etcd://b:2379"}},
			wantErr: blobgc.ErrOwnerMismatch, wantInErr: []string{"bolt:///a/topo.db", "etcd://b:2379"},
			wantRecord: claimer{0, blobgc.ClaimOptions{}}},
		{name: "another root",
			first: claimer{0, blobgc.ClaimOptions{}}, then: claimer{0, blobgc.ClaimOptions{Root: "/vitess/zone1"}},
			wantErr: blobgc.ErrOwnerMismatch, wantInErr: []string{"/vitess/zone1"},
			wantRecord: claimer{0, blobgc.ClaimOptions{}}},
		{name: "another grace",
			first: claimer{0, blobgc.ClaimOptions{Grace: hour}}, then: claimer{0, blobgc.ClaimOptions{Grace: 2 * hour}},
			wantErr: blobgc.ErrGraceMismatch, wantInErr: []string{"grace 1h0m0s", "--gc-grace is 2h0m0s"},
			wantRecord: claimer{0, blobgc.ClaimOptions{Grace: hour}}},
		{name: "a dry run of another backend", second: openBolt,
			first: claimer{0, blobgc.ClaimOptions{}}, then: claimer{1, blobgc.ClaimOptions{ReadOnly: true}},
			wantErr: blobgc.ErrOwnerMismatch, wantInErr: []string{"never claimed"},
			wantRecord: claimer{0, blobgc.ClaimOptions{}}},
		{name: "takeover by another backend", second: openBolt,
			first: claimer{0, blobgc.ClaimOptions{}}, then: claimer{1, blobgc.ClaimOptions{Takeover: "OWNER0"}},
			wantRecord: claimer{1, blobgc.ClaimOptions{}}},
		{name: "takeover naming another owner", second: openBolt,
			first: claimer{0, blobgc.ClaimOptions{}}, then: claimer{1, blobgc.ClaimOptions{Takeover: "0123456789abcdef0123456789abcdef/"}},
			wantErr: blobgc.ErrOwnerMismatch, wantInErr: []string{"the takeover asked for names owner \"0123456789abcdef0123456789abcdef/\""},
			wantRecord: claimer{0, blobgc.ClaimOptions{}}},
		{name: "grace changed by a takeover",
			first: claimer{0, blobgc.ClaimOptions{}}, then: claimer{0, blobgc.ClaimOptions{Grace: 2 * hour, Takeover: "OWNER0"}},
			wantRecord: claimer{0, blobgc.ClaimOptions{Grace: 2 * hour}}},
		{name: "no takeover in a dry run", second: openBolt,
			first: claimer{0, blobgc.ClaimOptions{}}, then: claimer{1, blobgc.ClaimOptions{Takeover: "OWNER0", ReadOnly: true}},
			wantErr:    blobgc.ErrOwnerMismatch,
			wantRecord: claimer{0, blobgc.ClaimOptions{}}},
	}
	for _, st := range ownerStores(t) {
		t.Run(st.name, func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					ctx := t.Context()
					backends := []kv.Backend{openBolt(t)}
					if tt.second != nil {
						backends = append(backends, tt.second(t))
					}
					open := st.fresh(t)
					s, other := open(), open()

					c, err := blobgc.Claim(ctx, backends[tt.first.backend], s, tt.first.opts)
					if err != nil || !c.Created || c.Record == nil {
						t.Fatalf("first claim: %+v, %v; want the record created", c, err)
					}
					owner := func(i int, root string) string { return backendID(t, backends[i]) + root }
					first := readRecord(t, other)
					if want := owner(tt.first.backend, "/"); first.Owner != want || first.Grace != "1h0m0s" && tt.first.opts.Grace == 0 {
						t.Fatalf("record after the first claim %+v, want owner %q", first, want)
					}
					if first.Created.IsZero() || first.CreatedBy == "" || !strings.Contains(first.CreatedBy, fmt.Sprint(os.Getpid())) {
						t.Errorf("record %+v: want its creation time and process", first)
					}

					opts := tt.then.opts
					opts.Takeover = strings.ReplaceAll(opts.Takeover, "OWNER0", first.Owner)
					c, err = blobgc.Claim(ctx, backends[tt.then.backend], other, opts)
					switch {
					case tt.wantErr == nil && err != nil:
						t.Fatalf("second claim: %v", err)
					case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
						t.Fatalf("second claim: %+v, %v; want %v", c, err, tt.wantErr)
					case tt.wantErr != nil:
						msg := err.Error()
						wantIn := append([]string{first.Owner}, tt.wantInErr...)
						if id, _ := blobgc.BackendID(ctx, backends[tt.then.backend], false); id != "" {
							wantIn = append(wantIn, id+cmpOr(opts.Root, "/"))
						}
						for _, w := range wantIn {
							if !strings.Contains(msg, w) {
								t.Errorf("error %q does not say %q", msg, w)
							}
						}
					}

					rec := readRecord(t, s)
					want := tt.wantRecord
					if wantOwner := owner(want.backend, "/"); rec.Owner != wantOwner || rec.Grace != cmpOr(want.opts.Grace, hour).String() {
						t.Fatalf("record at the end %+v, want owner %q, grace %v", rec, wantOwner, cmpOr(want.opts.Grace, hour))
					}
					if c != nil && c.TakenOver && (rec.Previous == "" || !strings.Contains(rec.Previous, first.Owner) || c.Previous == nil) {
						t.Errorf("record after a takeover %+v, claimed %+v: want the previous record named", rec, c)
					}
					// A refused claim changed nothing: the first backend
					// still passes, unless a takeover moved the store.
					if err != nil {
						if _, err := blobgc.Claim(ctx, backends[0], s, tt.first.opts); err != nil {
							t.Errorf("the first backend after a refused claim: %v", err)
						}
					}
				})
			}
		})
	}
}

// cmpOr is cmp.Or for the test's two types.
func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// TestClaimReadOnly: a dry run's claim writes nothing, neither the record
// nor the backend's id, and finds no record absent without error.
func TestClaimReadOnly(t *testing.T) {
	for _, st := range ownerStores(t) {
		t.Run(st.name, func(t *testing.T) {
			ctx := t.Context()
			b := openBolt(t)
			s := st.fresh(t)()
			c, err := blobgc.Claim(ctx, b, s, blobgc.ClaimOptions{ReadOnly: true})
			if err != nil || !c.Absent || c.Record != nil {
				t.Fatalf("read-only claim of a new store: %+v, %v; want it absent", c, err)
			}
			if _, _, err := s.GetMeta(ctx, blobgc.OwnerName); !errors.Is(err, blobstore.ErrNotFound) {
				t.Fatalf("record after a read-only claim: %v, want none", err)
			}
			if _, err := b.Get(ctx, blobgc.IDKey); !errors.Is(err, kv.ErrNotFound) {
				t.Fatalf("backend id after a read-only claim: %v, want none", err)
			}
		})
	}
}

// TestClaimConcurrentFirstUse: topods of several backends claiming one new
// store at once: exactly one wins and writes the record, every other is
// refused, naming the winner; replicas of one backend claiming at once
// all pass.
func TestClaimConcurrentFirstUse(t *testing.T) {
	const n = 6
	for _, st := range ownerStores(t) {
		t.Run(st.name, func(t *testing.T) {
			for _, sameBackend := range []bool{false, true} {
				t.Run(fmt.Sprintf("same backend %v", sameBackend), func(t *testing.T) {
					ctx := t.Context()
					var backends []kv.Backend
					for i := range n {
						if i == 0 || !sameBackend {
							backends = append(backends, openBolt(t))
						} else {
							backends = append(backends, backends[0])
						}
					}
					// Each claimer opens its own handle on the storage.
					open := st.fresh(t)
					stores := make([]blobstore.Store, n)
					for i := range stores {
						stores[i] = open()
					}
					errs := make([]error, n)
					created := make([]bool, n)
					start := make(chan struct{})
					var wg sync.WaitGroup
					for i := range n {
						wg.Go(func() {
							<-start
							c, err := blobgc.Claim(ctx, backends[i], stores[i], blobgc.ClaimOptions{})
							errs[i] = err
							created[i] = err == nil && c.Created
						})
					}
					close(start)
					wg.Wait()
					rec := readRecord(t, stores[0])
					var won, refused, creators int
					for i, err := range errs {
						switch {
						case err == nil:
							won++
							if id, _ := blobgc.BackendID(ctx, backends[i], false); rec.Owner != id+"/" {
								t.Errorf("claimer %d passed, but the record names %q", i, rec.Owner)
							}
						case errors.Is(err, blobgc.ErrOwnerMismatch) && strings.Contains(err.Error(), rec.Owner):
							refused++
						default:
							t.Errorf("claimer %d: %v; want success or a refusal naming the winner %q", i, err, rec.Owner)
						}
						if created[i] {
							creators++
						}
					}
					wantWon := 1
					if sameBackend {
						wantWon = n
					}
					if won != wantWon || refused != n-wantWon || creators != 1 {
						t.Fatalf("%d claims passed, %d refused, %d wrote the record; want %d, %d, 1", won, refused, creators, wantWon, n-wantWon)
					}
				})
			}
		})
	}
}

// TestClaimCorruptRecord: a record that is not one is an error saying so,
// naming the object and what to do, and is not overwritten.
func TestClaimCorruptRecord(t *testing.T) {
	tests := []struct {
		name, data, want string
	}{
		{"empty", "", "is not JSON"},
		{"not JSON", "owner=me\n", "is not JSON"},
		{"truncated", `{"owner": "0123456789abcdef0123456789abcdef/", "gra`, "is not JSON"},
		{"two values", `{"owner": "0123456789abcdef0123456789abcdef/", "grace": "1h"} {}`, "more than one JSON value"},
		{"no owner", `{"grace": "1h0m0s"}`, "names no valid owner"},
		{"bad owner", `{"owner": "me/", "grace": "1h0m0s"}`, "names no valid owner (\"me/\")"},
		{"no grace", `{"owner": "0123456789abcdef0123456789abcdef/"}`, "names no valid grace"},
		{"bad grace", `{"owner": "0123456789abcdef0123456789abcdef/", "grace": "an hour"}`, "names no valid grace (\"an hour\")"},
		{"negative grace", `{"owner": "0123456789abcdef0123456789abcdef/", "grace": "-1h"}`, "names no valid grace"},
	}
	for _, st := range ownerStores(t) {
		t.Run(st.name, func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					ctx := t.Context()
					b := openBolt(t)
					s := st.fresh(t)()
					if err := s.PutMeta(ctx, blobgc.OwnerName, []byte(tt.data), ""); err != nil {
						t.Fatal(err)
					}
					for _, opts := range []blobgc.ClaimOptions{{}, {ReadOnly: true}, {Takeover: "0123456789abcdef0123456789abcdef/"}} {
						_, err := blobgc.Claim(ctx, b, s, opts)
						if !errors.Is(err, blobgc.ErrBadOwnerRecord) {
							t.Fatalf("claim %+v: %v, want ErrBadOwnerRecord", opts, err)
						}
						for _, w := range []string{tt.want, "_topod/owner.json", "remove it"} {
							if !strings.Contains(err.Error(), w) {
								t.Errorf("error %q does not say %q", err, w)
							}
						}
					}
					if got, _, err := s.GetMeta(ctx, blobgc.OwnerName); err != nil || string(got) != tt.data {
						t.Fatalf("record after the refused claims: %q, %v; want it untouched", got, err)
					}
				})
			}
		})
	}
}

// TestBackendID: the id is made once, kept by the backend (bolt, etcd),
// and a value that is not an id is an error.
func TestBackendID(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			ctx := t.Context()
			b := be.open(t)
			if id, err := blobgc.BackendID(ctx, b, false); id != "" || err != nil {
				t.Fatalf("id of a new backend without create: %q, %v; want none", id, err)
			}
			id, err := blobgc.BackendID(ctx, b, true)
			if err != nil || len(id) != 32 {
				t.Fatalf("id: %q, %v", id, err)
			}
			if again, err := blobgc.BackendID(ctx, b, true); again != id || err != nil {
				t.Fatalf("id asked again: %q, %v; want %q", again, err, id)
			}
			if _, err := b.Update(ctx, blobgc.IDKey, []byte("not an id"), 0); err != nil {
				t.Fatal(err)
			}
			if _, err := blobgc.BackendID(ctx, b, true); !errors.Is(err, blobgc.ErrBadBackendID) || !strings.Contains(err.Error(), "not an id") {
				t.Fatalf("id over a bad value: %v, want ErrBadBackendID quoting it", err)
			}
		})
	}
}

// TestCollectRefusesAnotherBackendsStore: two backends pointed at one blob
// store (a bolt file and an etcd, or two bolt files). The first to collect
// claims the store; the other's collection is refused and deletes
// nothing, though every blob of the first is unreferenced in its own
// records; its dry run is refused too. Without the owner record it would
// have deleted them all.
func TestCollectRefusesAnotherBackendsStore(t *testing.T) {
	for _, pair := range []struct {
		name   string
		second func(t *testing.T) kv.Backend
	}{
		{"bolt then bolt", openBolt},
		{"bolt then etcd", openEtcd},
	} {
		t.Run(pair.name, func(t *testing.T) {
			ctx := t.Context()
			first, second, s := openBolt(t), pair.second(t), openStore(t)
			rng := rand.New(rand.NewPCG(7, 8))
			w1 := &writer{t: t, backend: first, store: s, grace: time.Hour}
			w2 := &writer{t: t, backend: second, store: s, grace: time.Hour}
			firsts := w1.write("/files/a", randomBytes(rng, 200<<10))
			seconds := w2.write("/files/b", randomBytes(rng, 200<<10))
			ageAll(t, s, time.Now().Add(-2*time.Hour))

			r, err := blobgc.Collect(ctx, first, s, blobgc.Options{})
			if err != nil {
				t.Fatal(err)
			}
			// The first backend claimed the store; the second's blobs,
			// unreferenced in it, went: what sharing a store does.
			if len(r.Deleted) != len(seconds) {
				t.Fatalf("first collection deleted %d blobs, want the second backend's %d", len(r.Deleted), len(seconds))
			}
			for _, dry := range []bool{true, false} {
				r, err := blobgc.Collect(ctx, second, s, blobgc.Options{DryRun: dry})
				if !errors.Is(err, blobgc.ErrOwnerMismatch) {
					t.Errorf("dry run %v: second backend's collection: %v; want ErrOwnerMismatch", dry, err)
				}
				if len(r.Deleted) != 0 || len(r.Candidates) != 0 {
					t.Errorf("dry run %v: refused collection reports %d candidates, %d deleted", dry, len(r.Candidates), len(r.Deleted))
				}
			}
			after := stored(t, s)
			for _, h := range firsts {
				if !after[h] {
					t.Errorf("first backend's blob %s deleted by the second's collection", h)
				}
			}
		})
	}
}

// takingOver is a store whose Walk, once, lets another backend take the
// store over first: a takeover landing while a collection marks.
type takingOver struct {
	blobstore.Store
	once     sync.Once
	takeover func() error
}

func (s *takingOver) Walk(ctx context.Context, fn func(h content.Hash, size int64, modTime time.Time) error) error {
	var err error
	s.once.Do(func() { err = s.takeover() })
	if err != nil {
		return err
	}
	return s.Store.Walk(ctx, fn)
}

// TestCollectTakenOverMeanwhile: a collection whose store was taken over
// by another backend after it started deletes nothing.
func TestCollectTakenOverMeanwhile(t *testing.T) {
	ctx := t.Context()
	b, other, files := openBolt(t), openBolt(t), openStore(t)
	orphan, data := blobtest.Blob(1, 100)
	if err := files.Put(ctx, orphan, data); err != nil {
		t.Fatal(err)
	}
	ageAll(t, files, time.Now().Add(-2*time.Hour))
	if _, err := blobgc.Claim(ctx, b, files, blobgc.ClaimOptions{}); err != nil {
		t.Fatal(err)
	}
	s := &takingOver{Store: files, takeover: func() error {
		_, err := blobgc.Claim(ctx, other, files, blobgc.ClaimOptions{Takeover: backendID(t, b) + "/"})
		return err
	}}
	r, err := blobgc.Collect(ctx, b, s, blobgc.Options{})
	if !errors.Is(err, blobgc.ErrOwnerMismatch) || len(r.Deleted) != 0 {
		t.Fatalf("collection taken over: %v, deleted %d; want ErrOwnerMismatch and nothing deleted", err, len(r.Deleted))
	}
	if !stored(t, files)[orphan] {
		t.Fatal("blob deleted")
	}
}
