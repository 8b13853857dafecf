package blobgc_test

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/topod-io/topod/internal/harness"
	"github.com/topod-io/topod/pkg/blobgc"
	"github.com/topod-io/topod/pkg/blobstore/blobtest"
	"github.com/topod-io/topod/pkg/blobstore/s3blob"
	"github.com/topod-io/topod/pkg/content"
)

// TestCollectMinIO runs a collection against the S3 store on a real MinIO
// (on etcd): referenced blobs, current and past, are kept; an unreferenced
// one goes. Objects' times cannot be set on S3, so the collection's clock
// is moved two hours ahead instead; a blob refreshed after that is kept.
func TestCollectMinIO(t *testing.T) {
	ctx := t.Context()
	srv := harness.StartMinIO(t)
	s, err := s3blob.Open(ctx, s3blob.Config{
		Endpoint: srv.Endpoint,
		Region:   harness.MinIORegion,
		Bucket:   srv.Bucket,
		Prefix:   "gc",
		Creds:    credentials.NewStaticV4(srv.AccessKey, srv.SecretKey, ""),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	b := openEtcd(t)
	w := &writer{t: t, backend: b, store: s, grace: time.Hour}
	rng := rand.New(rand.NewPCG(5, 6))
	v1 := w.write("/files/f", randomBytes(rng, 200<<10))
	v2 := w.write("/files/f", randomBytes(rng, 200<<10))
	srvBlobs := w.write("/cells/c1/SrvVSchema", srvVSchema(t))
	orphan, data := blobtest.Blob(1, 1000)
	if err := s.Put(ctx, orphan, data); err != nil {
		t.Fatal(err)
	}

	later := time.Now().Add(2 * time.Hour)
	opts := blobgc.Options{Now: func() time.Time { return later }}
	dry := opts
	dry.DryRun = true
	r, err := blobgc.Collect(ctx, b, s, dry)
	if err != nil {
		t.Fatal(err)
	}
	if got := hashesOf(r.Candidates); !slices.Equal(got, []content.Hash{orphan}) || !stored(t, s)[orphan] {
		t.Fatalf("dry run: candidates %v, want [%s], and nothing deleted", got, orphan)
	}
	r, err = blobgc.Collect(ctx, b, s, opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := hashesOf(r.Deleted); !slices.Equal(got, []content.Hash{orphan}) || len(r.Dangling) != 0 {
		t.Fatalf("deleted %v, dangling %v; want [%s] deleted, nothing dangling", got, r.Dangling, orphan)
	}
	after := stored(t, s)
	for _, h := range slices.Concat(v1, v2, srvBlobs) {
		if !after[h] {
			t.Fatalf("referenced blob %s deleted", h)
		}
	}
	if after[orphan] {
		t.Fatal("unreferenced blob still stored")
	}
}
