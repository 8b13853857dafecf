package harness

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/topod-io/topod/internal/freeport"
	"github.com/topod-io/topod/internal/proc"
)

// MinIOStartTimeout bounds how long StartMinIO waits for the server to be
// live and to accept the bucket creation.
const MinIOStartTimeout = 60 * time.Second

// MinIORegion is the region MinIO reports (its default).
const MinIORegion = "us-east-1"

// MinIO is a MinIO server run as a child process: the bin/minio that `make
// bin/minio` builds at the module root (MinIO is AGPL: it is only ever run,
// never imported; tests talk to it through minio-go).
type MinIO struct {
	Endpoint  string // host:port, plain HTTP
	AccessKey string // root user
	SecretKey string // root password
	Bucket    string // created by StartMinIO, empty
	DataDir   string

	bin  string
	root string // the test's directory: data, certs, HOME, log

	mu   sync.Mutex
	proc *proc.Process // nil when stopped
}

// MinIOBinary returns the path of bin/minio under the module root. It does
// not check that the file exists.
func MinIOBinary() (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "bin", "minio"), nil
}

// StartMinIO starts a MinIO server on a free loopback port with fresh root
// credentials and an empty bucket, and stops it when the test ends (its log
// is printed if the test failed). If bin/minio has not been built the test
// fails, telling how to build it: it never skips.
func StartMinIO(tb testing.TB) *MinIO {
	tb.Helper()
	bin, err := MinIOBinary()
	if err != nil {
		tb.Fatalf("harness: %v", err)
	}
	if _, err := os.Stat(bin); err != nil {
		tb.Fatalf("harness: the MinIO server is not built (%v): run `make bin/minio` at the module root (it takes a few minutes, once)", err)
	}
	for attempt := 1; ; attempt++ {
		s, err := startMinIO(tb, bin)
		if err == nil {
			return s
		}
		if attempt == 3 {
			tb.Fatalf("harness: %v", err)
		}
	}
}

func startMinIO(tb testing.TB, bin string) (*MinIO, error) {
	ports, err := freeport.Pick(1)
	if err != nil {
		return nil, err
	}
	root := tb.TempDir()
	s := &MinIO{
		Endpoint:  net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])),
		AccessKey: "harness-root",
		SecretKey: "harness-secret-" + strconv.FormatInt(time.Now().UnixNano(), 36),
		Bucket:    "blobs",
		DataDir:   filepath.Join(root, "data"),
		bin:       bin,
		root:      root,
	}
	tb.Cleanup(func() {
		s.Stop()
		if tb.Failed() {
			b, _ := os.ReadFile(s.logPath())
			tb.Logf("MinIO at %s output:\n%s", s.Endpoint, b)
		}
	})
	ctx, cancel := context.WithTimeout(tb.Context(), MinIOStartTimeout)
	defer cancel()
	if err := s.launch(ctx); err != nil {
		return nil, err
	}
	if err := s.MakeBucket(ctx, s.Bucket); err != nil {
		s.Stop()
		return nil, fmt.Errorf("MinIO at %s: %w", s.Endpoint, err)
	}
	return s, nil
}

func (s *MinIO) logPath() string { return filepath.Join(s.root, "minio.log") }

// launch starts the server process and waits until it is live.
func (s *MinIO) launch(ctx context.Context) error {
	p, err := startProcess("minio", s.bin, []string{"server",
		"--address", s.Endpoint,
		"--certs-dir", filepath.Join(s.root, "certs"),
		"--quiet",
		s.DataDir,
	}, []string{
		"MINIO_ROOT_USER=" + s.AccessKey,
		"MINIO_ROOT_PASSWORD=" + s.SecretKey,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
		"MINIO_REGION=" + MinIORegion,
		"HOME=" + s.root, // anything MinIO keeps per user stays in the test's directory
	}, s.logPath())
	if err != nil {
		return err
	}
	if err := waitMinIOLive(ctx, p, s.Endpoint); err != nil {
		p.Kill()
		return err
	}
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()
	return nil
}

// waitMinIOLive polls /minio/health/live until it answers 200 with its
// object layer initialized (MinIO answers 200 before that, marking the
// answer x-minio-server-status: offline, and refuses S3 requests with
// "Server not initialized yet" meanwhile).
func waitMinIOLive(ctx context.Context, p *proc.Process, endpoint string) error {
	client := &http.Client{Timeout: time.Second}
	liveURL := "http://" + endpoint + "/minio/health/live"
	return waitReady(ctx, p, MinIOStartTimeout, func(ctx context.Context) error { return p.WaitReady(ctx, "GET "+liveURL, minIOLive(client, liveURL)) })
}

// minIOLive is a WaitReady check: MinIO's liveness answers 200 with its
// object layer initialized.
func minIOLive(client *http.Client, liveURL string) func(context.Context) error {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, liveURL, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("x-minio-server-status") == "offline" {
			return fmt.Errorf("status %s, %s", resp.Status, resp.Header.Get("x-minio-server-status"))
		}
		return nil
	}
}

// Restart starts the server again after Stop, on the same address, data
// and credentials.
func (s *MinIO) Restart(tb testing.TB) {
	tb.Helper()
	s.Stop()
	ctx, cancel := context.WithTimeout(tb.Context(), MinIOStartTimeout)
	defer cancel()
	if err := s.launch(ctx); err != nil {
		tb.Fatalf("harness: restart MinIO: %v", err)
	}
}

// Client returns a minio-go client with the root credentials.
func (s *MinIO) Client() (*minio.Client, error) {
	c, err := minio.New(s.Endpoint, &minio.Options{
		Creds:      credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
		Secure:     false,
		Region:     MinIORegion,
		MaxRetries: 1,
	})
	if err != nil {
		return nil, fmt.Errorf("MinIO client: %w", err)
	}
	return c, nil
}

// MakeBucket creates a bucket, retrying while the server is still starting.
func (s *MinIO) MakeBucket(ctx context.Context, bucket string) error {
	c, err := s.Client()
	if err != nil {
		return err
	}
	var last error
	err = wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		last = c.MakeBucket(ctx, bucket, minio.MakeBucketOptions{Region: MinIORegion})
		return last == nil, nil
	})
	if err != nil {
		return fmt.Errorf("make bucket %s: %w (last answer: %v)", bucket, err, last)
	}
	return nil
}

// URL returns the s3:// URL of prefix in the server's bucket, for
// blobstore.Open (credentials go in the environment or a file, not here).
func (s *MinIO) URL(prefix string) string {
	q := url.Values{"endpoint": {s.Endpoint}, "secure": {"false"}, "region": {MinIORegion}}
	return (&url.URL{Scheme: "s3", Host: s.Bucket, Path: "/" + prefix, RawQuery: q.Encode()}).String()
}

// Stop kills the server and waits for it to exit. Stopping a stopped
// server does nothing; StartMinIO arranges a Stop at cleanup.
func (s *MinIO) Stop() {
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	s.mu.Unlock()
	if p != nil {
		p.Kill()
	}
}

// Log returns what the server has written so far.
func (s *MinIO) Log() string {
	b, err := os.ReadFile(s.logPath())
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	return string(b)
}
