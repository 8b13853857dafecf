package kvmirror_test

import (
	"fmt"
	"testing"

	"github.com/topod-io/topod/pkg/kv"
	"github.com/topod-io/topod/pkg/kv/boltkv"
	"github.com/topod-io/topod/pkg/kvmirror"
)

// TestRangePage: pages of a range, walked from after the last key of the
// previous one, hold every key once, within their bound (at least one key
// however large), values the mirror does not hold (over its memory bound)
// included; a page at a revision is served only while the mirror is
// exactly there.
func TestRangePage(t *testing.T) {
	ctx := t.Context()
	b := open(t, boltkv.Options{})
	m := run(t, b, kvmirror.Options{MaxBytes: 4096})
	var rev int64
	for i := range 40 {
		v := fmt.Sprintf("%0100d", i)
		if i == 7 {
			v = fmt.Sprintf("%01000d", i) // larger than a page
		}
		rev, _ = b.Update(ctx, fmt.Sprintf("/k/%02d", i), []byte(v), 0)
	}
	b.Update(ctx, "/l", []byte("outside"), 0)
	rev, _ = b.Update(ctx, "/j", []byte("outside"), 0)
	if err := m.WaitRev(ctx, rev); err != nil {
		t.Fatal(err)
	}
	if m.Stats().EvictedValues == 0 {
		t.Fatal("no value evicted: the test needs some")
	}
	for _, p := range []kvmirror.Page{{Bytes: 500}, {Keys: 3}, {Keys: 3, Bytes: 250}, {Bytes: 1}, {}} {
		t.Run(fmt.Sprintf("%+v", p), func(t *testing.T) {
			var all []kv.KV
			key, atRev := "/k/", int64(0)
			for pages := 0; ; pages++ {
				if pages > 100 {
					t.Fatal("over 100 pages")
				}
				kvs, r, more, ok, err := m.RangePage(ctx, key, "/k0", rev, atRev, p)
				if err != nil || !ok {
					t.Fatalf("page %d: ok %v, %v", pages, ok, err)
				}
				if atRev != 0 && r != atRev {
					t.Fatalf("page %d at revision %d, want %d", pages, r, atRev)
				}
				atRev = r
				size := 0
				for _, e := range kvs {
					size += kvmirror.Size(e)
				}
				if len(kvs) == 0 || (len(kvs) > 1 && ((p.Bytes > 0 && size > p.Bytes) || (p.Keys > 0 && len(kvs) > p.Keys))) {
					t.Fatalf("page %d: %d keys, %d bytes, over %+v", pages, len(kvs), size, p)
				}
				all = append(all, kvs...)
				if !more {
					break
				}
				key = kvs[len(kvs)-1].Key + "\x00"
			}
			if len(all) != 40 {
				t.Fatalf("%d keys over the pages, want 40", len(all))
			}
			for i, e := range all {
				if e.Key != fmt.Sprintf("/k/%02d", i) || len(e.Value) < 100 {
					t.Fatalf("key %d: %s (%d bytes)", i, e.Key, len(e.Value))
				}
			}
		})
	}
	// Once the mirror moves on, a page at the old revision is not served.
	next, _ := b.Update(ctx, "/z", []byte("later"), 0)
	if err := m.WaitRev(ctx, next); err != nil {
		t.Fatal(err)
	}
	if _, _, _, ok, _ := m.RangePage(ctx, "/k/", "/k0", 0, rev, kvmirror.Page{}); ok {
		t.Error("a page at a revision the mirror has left was served")
	}
	if kvs, _, _, ok, _ := m.RangePage(ctx, "/k/", "/k0", 0, next, kvmirror.Page{}); !ok || len(kvs) != 40 {
		t.Errorf("a page at the mirror's revision: ok %v, %d keys", ok, len(kvs))
	}
}
