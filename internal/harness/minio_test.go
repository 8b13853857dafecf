package harness_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/topod-io/topod/internal/harness"
)

func TestStartMinIO(t *testing.T) {
	start := time.Now()
	s := harness.StartMinIO(t)
	t.Logf("MinIO live with a bucket in %v", time.Since(start))
	c, err := s.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ok, err := c.BucketExists(ctx, s.Bucket)
	if err != nil || !ok {
		t.Fatalf("BucketExists(%s) = %v, %v", s.Bucket, ok, err)
	}
	if u := s.URL("p/q"); !strings.HasPrefix(u, "s3://blobs/p/q?") || !strings.Contains(u, "endpoint=127.0.0.1%3A") {
		t.Errorf("URL = %s", u)
	}
	s.Stop()
	s.Stop() // idempotent
	if _, err := c.BucketExists(ctx, s.Bucket); err == nil {
		t.Fatal("server still answers after Stop")
	}
	s.Restart(t)
	ok, err = c.BucketExists(ctx, s.Bucket)
	if err != nil || !ok {
		t.Fatalf("after Restart, BucketExists(%s) = %v, %v; want the bucket kept", s.Bucket, ok, err)
	}
}

func TestMinIOBinary(t *testing.T) {
	bin, err := harness.MinIOBinary()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(bin, "/bin/minio") {
		t.Fatalf("Binary() = %s", bin)
	}
}
