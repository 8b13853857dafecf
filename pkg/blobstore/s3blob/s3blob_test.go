package s3blob

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/topod-io/topod/internal/harness"
	"github.com/topod-io/topod/pkg/blobstore"
	"github.com/topod-io/topod/pkg/blobstore/blobtest"
	"github.com/topod-io/topod/pkg/content"
)

// openTimeLimit is how long Open may take to fail on a bad configuration.
const openTimeLimit = 15 * time.Second

var prefixes atomic.Int64

func config(srv *harness.MinIO, prefix string) Config {
	return Config{
		Endpoint: srv.Endpoint,
		Secure:   false,
		Region:   harness.MinIORegion,
		Bucket:   srv.Bucket,
		Prefix:   prefix,
		Creds:    credentials.NewStaticV4(srv.AccessKey, srv.SecretKey, ""),
	}
}

func mustOpen(t testing.TB, cfg Config) *Store {
	t.Helper()
	s, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	srv := harness.StartMinIO(t)
	blobtest.Run(t, func(t *testing.T) blobtest.Fixture {
		// A fresh prefix is a fresh, empty store.
		s := mustOpen(t, config(srv, fmt.Sprintf("conformance/%d", prefixes.Add(1))))
		return blobtest.Fixture{
			Store: s,
			Overwrite: func(ctx context.Context, h content.Hash, data []byte) error {
				_, err := s.Client().PutObject(ctx, s.Bucket(), s.Key(h), bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{})
				return err
			},
		}
	})
}

// TestNoChecksum runs the suite with the checksum header left out.
func TestNoChecksum(t *testing.T) {
	srv := harness.StartMinIO(t)
	blobtest.Run(t, func(t *testing.T) blobtest.Fixture {
		cfg := config(srv, fmt.Sprintf("nochecksum/%d", prefixes.Add(1)))
		cfg.NoChecksum = true
		s := mustOpen(t, cfg)
		return blobtest.Fixture{
			Store: s,
			Overwrite: func(ctx context.Context, h content.Hash, data []byte) error {
				_, err := s.Client().PutObject(ctx, s.Bucket(), s.Key(h), bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{})
				return err
			},
		}
	})
}

// TestNoPrefix runs the suite with blobs at the root of their own bucket.
func TestNoPrefix(t *testing.T) {
	srv := harness.StartMinIO(t)
	blobtest.Run(t, func(t *testing.T) blobtest.Fixture {
		bucket := fmt.Sprintf("root-%d", prefixes.Add(1))
		if err := srv.MakeBucket(context.Background(), bucket); err != nil {
			t.Fatal(err)
		}
		cfg := config(srv, "")
		cfg.Bucket = bucket
		s := mustOpen(t, cfg)
		return blobtest.Fixture{
			Store: s,
			Overwrite: func(ctx context.Context, h content.Hash, data []byte) error {
				_, err := s.Client().PutObject(ctx, bucket, s.Key(h), bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{})
				return err
			},
		}
	})
}

func TestKeys(t *testing.T) {
	srv := harness.StartMinIO(t)
	s := mustOpen(t, config(srv, "/topod/blobs/"))
	h, data := blobtest.Blob(1, 10)
	if err := s.Put(context.Background(), h, data); err != nil {
		t.Fatal(err)
	}
	want := "topod/blobs/" + h.String()[:2] + "/" + h.String()
	if _, err := s.Client().StatObject(context.Background(), srv.Bucket, want, minio.StatObjectOptions{}); err != nil {
		t.Fatalf("blob not at key %s: %v", want, err)
	}
}

// TestServerVerifiesChecksum shows that the checksum Put sends is enforced
// by the server: an upload whose bytes do not match it is refused.
func TestServerVerifiesChecksum(t *testing.T) {
	srv := harness.StartMinIO(t)
	s := mustOpen(t, config(srv, "checksum"))
	h, _ := blobtest.Blob(1, 1000)
	_, other := blobtest.Blob(2, 1000)
	_, err := s.Client().PutObject(context.Background(), srv.Bucket, s.Key(h), bytes.NewReader(other), int64(len(other)), minio.PutObjectOptions{
		DisableMultipart: true,
		UserMetadata:     map[string]string{"X-Amz-Checksum-Sha256": base64.StdEncoding.EncodeToString(h[:])},
	})
	if err == nil {
		t.Fatal("MinIO accepted bytes not matching their x-amz-checksum-sha256")
	}
	t.Logf("refused as expected: %v", err)
	if m, err := s.Missing(context.Background(), []content.Hash{h}); err != nil || len(m) != 1 {
		t.Fatalf("after the refused upload Missing = %v, %v; want the blob missing", m, err)
	}
}

func TestParseURL(t *testing.T) {
	tests := []struct {
		url     string
		want    Config // Creds not compared
		wantErr string
	}{
		{url: "s3://b", want: Config{Endpoint: DefaultEndpoint, Secure: true, Bucket: "b"}},
		{url: "s3://b/", want: Config{Endpoint: DefaultEndpoint, Secure: true, Bucket: "b"}},
		{url: "s3://b/p/q/?region=eu-west-1", want: Config{Endpoint: DefaultEndpoint, Secure: true, Bucket: "b", Prefix: "p/q", Region: "eu-west-1"}},
		{url: "s3://b/p?endpoint=127.0.0.1:9000&secure=false", want: Config{Endpoint: "127.0.0.1:9000", Bucket: "b", Prefix: "p"}},
		{url: "s3://key:secret@b/p", wantErr: "must not carry credentials"},
		{url: "s3:///p", wantErr: "no bucket"},
		{url: "s3://b?secure=maybe", wantErr: "secure="},
		{url: "s3://b?endpont=x", wantErr: `unknown parameter "endpont"`},
		{url: "s3://b?endpoint=http://x:9000", wantErr: "want host or host:port"},
		{url: "s3://b?region=a&region=b", wantErr: "given 2 times"},
		{url: "s3://b?endpoint=", wantErr: "want host or host:port"},
		{url: "s3://b?checksum=false", want: Config{Endpoint: DefaultEndpoint, Secure: true, Bucket: "b", NoChecksum: true}},
		{url: "s3://b?checksum=no", wantErr: "checksum="},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			u, err := url.Parse(tt.url)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseURL(u, blobstore.Options{})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseURL error = %v, want one containing %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "secret") && strings.Contains(tt.url, "secret") && strings.Contains(err.Error(), ":secret@") {
					t.Fatalf("error leaks the secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Creds == nil {
				t.Error("no credentials provider")
			}
			got.Creds = nil
			if got != tt.want {
				t.Fatalf("ParseURL = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func writeCredsFile(t *testing.T, profiles map[string][2]string) string {
	var b strings.Builder
	for name, kv := range profiles {
		fmt.Fprintf(&b, "[%s]\naws_access_key_id = %s\naws_secret_access_key = %s\n\n", name, kv[0], kv[1])
	}
	p := filepath.Join(t.TempDir(), "credentials")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestOpen opens s3:// URLs through blobstore.Open: good configurations
// work, and every bad one fails at Open, quickly, with a message naming
// what is wrong and where.
func TestOpen(t *testing.T) {
	srv := harness.StartMinIO(t)
	credsFile := writeCredsFile(t, map[string][2]string{
		"default": {srv.AccessKey, srv.SecretKey},
		"wrong":   {srv.AccessKey, "not-the-secret"},
	})
	down := closedPort(t)
	tests := []struct {
		name    string
		url     string
		env     [2]string // AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
		opts    blobstore.Options
		wantErr []string // substrings of the error; none: Open succeeds
	}{
		{name: "environment", url: srv.URL("env"), env: [2]string{srv.AccessKey, srv.SecretKey}},
		{name: "credentials file", url: srv.URL("file"), opts: blobstore.Options{CredentialsFile: credsFile}},
		{
			name:    "credentials file, profile with a wrong secret",
			url:     srv.URL("file"),
			opts:    blobstore.Options{CredentialsFile: credsFile, CredentialsProfile: "wrong"},
			wantErr: []string{"wrong secret key", srv.Endpoint, srv.Bucket},
		},
		{
			name:    "credentials file missing",
			url:     srv.URL("file"),
			opts:    blobstore.Options{CredentialsFile: filepath.Join(t.TempDir(), "nope")},
			wantErr: []string{"credentials file", "nope"},
		},
		{
			name:    "credentials file, missing profile",
			url:     srv.URL("file"),
			opts:    blobstore.Options{CredentialsFile: credsFile, CredentialsProfile: "prod"},
			wantErr: []string{"credentials file", "prod"},
		},
		{
			name:    "no credentials",
			url:     srv.URL("env"),
			wantErr: []string{"no access key", "AWS_ACCESS_KEY_ID"},
		},
		{
			name:    "unknown access key",
			url:     srv.URL("env"),
			env:     [2]string{"nobody", srv.SecretKey},
			wantErr: []string{"access key refused", srv.Endpoint, srv.Bucket},
		},
		{
			name:    "wrong secret key",
			url:     srv.URL("env"),
			env:     [2]string{srv.AccessKey, "wrong-secret"},
			wantErr: []string{"wrong secret key", srv.Endpoint, srv.Bucket},
		},
		{
			name:    "missing bucket",
			url:     strings.Replace(srv.URL("p"), "s3://"+srv.Bucket, "s3://no-such-bucket", 1),
			env:     [2]string{srv.AccessKey, srv.SecretKey},
			wantErr: []string{"bucket does not exist", "no-such-bucket", srv.Endpoint},
		},
		{
			name:    "unreachable endpoint",
			url:     "s3://" + srv.Bucket + "/p?secure=false&endpoint=" + down,
			env:     [2]string{srv.AccessKey, srv.SecretKey},
			wantErr: []string{"cannot reach the endpoint", down, srv.Bucket, "connection refused"},
		},
		{
			name:    "HTTPS to an HTTP server",
			url:     "s3://" + srv.Bucket + "/p?endpoint=" + srv.Endpoint,
			env:     [2]string{srv.AccessKey, srv.SecretKey},
			wantErr: []string{"https://" + srv.Endpoint, srv.Bucket},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("AWS_ACCESS_KEY_ID", tt.env[0])
			t.Setenv("AWS_SECRET_ACCESS_KEY", tt.env[1])
			t.Setenv("AWS_SESSION_TOKEN", "")
			t.Setenv("AWS_PROFILE", "")
			start := time.Now()
			s, err := blobstore.Open(context.Background(), tt.url, tt.opts)
			took := time.Since(start)
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Open(%s): %v", tt.url, err)
				}
				defer s.Close()
				h, data := blobtest.Blob(1, 10)
				if err := s.Put(context.Background(), h, data); err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				s.Close()
				t.Fatalf("Open(%s) succeeded, want an error", tt.url)
			}
			t.Logf("Open failed in %v: %v", took.Round(time.Millisecond), err)
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
			if strings.Contains(err.Error(), srv.SecretKey) {
				t.Errorf("error leaks the secret key: %v", err)
			}
			if took > openTimeLimit {
				t.Errorf("Open took %v to fail, want < %v", took, openTimeLimit)
			}
		})
	}
}

// TestOpenUnresponsive points Open at a server that accepts connections
// but never answers: Open gives up after Options.Timeout.
func TestOpenUnresponsive(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var conns sync.WaitGroup
	conns.Go(func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			held = append(held, c) // read nothing, answer nothing
		}
	})
	defer conns.Wait()
	defer l.Close()
	start := time.Now()
	_, err = Open(context.Background(), Config{
		Endpoint: l.Addr().String(),
		Bucket:   "bucket",
		Creds:    credentials.NewStaticV4("k", "secret-key", ""),
		Timeout:  2 * time.Second,
	})
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "no answer within 2s") || !strings.Contains(err.Error(), l.Addr().String()) {
		t.Fatalf("Open of a silent server: %v, want no answer within 2s naming the endpoint", err)
	}
	if took > 5*time.Second {
		t.Fatalf("Open of a silent server took %v with a 2s timeout", took)
	}
}

// TestPutWhenStopped stops MinIO, then Puts: the Put fails with an error
// naming the endpoint, and once MinIO is back no part of the blob is there.
func TestPutWhenStopped(t *testing.T) {
	srv := harness.StartMinIO(t)
	s := mustOpen(t, config(srv, "stopped"))
	defer s.Close()
	ctx := context.Background()
	h, data := blobtest.Blob(1, 1<<20)
	srv.Stop()
	start := time.Now()
	err := s.Put(ctx, h, data)
	took := time.Since(start)
	if err == nil {
		t.Fatal("Put with MinIO stopped succeeded")
	}
	t.Logf("Put failed in %v: %v", took.Round(time.Millisecond), err)
	for _, want := range []string{h.String(), srv.Endpoint, srv.Bucket, "connection refused"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if took > openTimeLimit {
		t.Errorf("Put took %v to fail", took)
	}
	if _, err := s.Get(ctx, h); err == nil || errors.Is(err, blobstore.ErrNotFound) {
		t.Errorf("Get with MinIO stopped: %v, want a connection error (not ErrNotFound)", err)
	}
	srv.Restart(t)
	if m, err := s.Missing(ctx, []content.Hash{h}); err != nil || len(m) != 1 {
		t.Fatalf("after restart, Missing = %v, %v; want the blob missing", m, err)
	}
	if err := s.Put(ctx, h, data); err != nil {
		t.Fatalf("Put after restart: %v", err)
	}
	if got, err := s.Get(ctx, h); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Get after restart: %d bytes, %v", len(got), err)
	}
}

// cutProxy forwards TCP connections to target, but cuts every connection
// once limit bytes of request have gone through.
type cutProxy struct {
	l      net.Listener
	target string
	limit  int64
	wg     sync.WaitGroup
}

func startCutProxy(t *testing.T, target string, limit int64) *cutProxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{l: l, target: target, limit: limit}
	p.wg.Go(p.serve)
	t.Cleanup(func() {
		l.Close()
		p.wg.Wait()
	})
	return p
}

func (p *cutProxy) serve() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		p.wg.Go(func() {
			defer c.Close()
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				return
			}
			defer up.Close()
			go io.Copy(c, up)
			io.CopyN(up, c, p.limit)
			// Cut mid-request: both sides see the connection drop.
		})
	}
}

// TestPutConnectionCut cuts the connection in the middle of an upload:
// the Put fails and no partial object is visible.
func TestPutConnectionCut(t *testing.T) {
	srv := harness.StartMinIO(t)
	direct := mustOpen(t, config(srv, "cut"))
	defer direct.Close()
	p := startCutProxy(t, srv.Endpoint, 256<<10)
	cfg := config(srv, "cut")
	cfg.Endpoint = p.l.Addr().String()
	viaProxy := mustOpen(t, cfg) // Open's small requests get through
	defer viaProxy.Close()
	ctx := context.Background()
	h, data := blobtest.Blob(1, 4<<20)
	err := viaProxy.Put(ctx, h, data)
	if err == nil {
		t.Fatal("Put through a connection cut after 256 KiB succeeded")
	}
	t.Logf("Put failed: %v", err)
	if !strings.Contains(err.Error(), h.String()) {
		t.Errorf("error %q does not name the blob", err)
	}
	if m, err := direct.Missing(ctx, []content.Hash{h}); err != nil || len(m) != 1 {
		t.Fatalf("after the cut upload, Missing = %v, %v; want the blob missing", m, err)
	}
	if _, err := direct.Get(ctx, h); !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatalf("after the cut upload, Get: %v, want ErrNotFound", err)
	}
	n := 0
	if err := direct.Walk(ctx, func(content.Hash, int64, time.Time) error { n++; return nil }); err != nil || n != 0 {
		t.Fatalf("after the cut upload, Walk saw %d blobs, %v", n, err)
	}
}

func BenchmarkStore(b *testing.B) {
	srv := harness.StartMinIO(b)
	s := mustOpen(b, config(srv, "bench"))
	defer s.Close()
	blobtest.Bench(b, s)
}
