// Package miniotest runs a real MinIO server for tests, as a separate
// process: the bin/minio that `make bin/minio` builds at the module root
// (MinIO is AGPL: it is only ever run, never imported; the tests talk to it
// through minio-go).
//
// Start picks a free loopback port, gives the server a data directory in the
// test's temporary directory and fresh root credentials, waits until it is
// live, creates a bucket and stops the server at cleanup. If bin/minio has
// not been built the test fails, telling how to build it: it never skips.
//
// The server's output is kept and printed only when the test fails; set
// MINIOTEST_LOG=1 to stream it to stderr instead.
package miniotest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/topod-io/topod/internal/freeport"
)

// StartTimeout bounds how long Start waits for the server to be live and
// to accept the bucket creation.
const StartTimeout = 60 * time.Second

// startAttempts is how many times Start picks a fresh port when another
// process took the one picked before MinIO bound it.
const startAttempts = 3

// Region is the region MinIO reports (its default).
const Region = "us-east-1"

// Server is a running MinIO server.
type Server struct {
	Endpoint  string // host:port, plain HTTP
	AccessKey string // root user
	SecretKey string // root password
	Bucket    string // created by Start, empty
	DataDir   string

	bin  string
	root string // the test's directory: data, certs, HOME
	log  *syncBuffer

	mu     sync.Mutex
	cmd    *exec.Cmd     // nil when stopped
	exited chan struct{} // closed when cmd has exited
}

// Binary returns the path of bin/minio under the module root, found by
// walking up from the working directory to go.mod. It does not check that
// the file exists.
func Binary() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "bin", "minio"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("miniotest: no go.mod above the working directory")
		}
		dir = parent
	}
}

// Start starts a MinIO server with an empty bucket and stops it when the
// test ends.
func Start(tb testing.TB) *Server {
	tb.Helper()
	bin, err := Binary()
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		tb.Fatalf("miniotest: the MinIO server is not built (%v): run `make bin/minio` at the module root (it takes a few minutes, once)", err)
	}
	var lastErr error
	for range startAttempts {
		s, err := start(tb, bin)
		if err == nil {
			return s
		}
		lastErr = err
	}
	tb.Fatalf("miniotest: %v", lastErr)
	return nil
}

func start(tb testing.TB, bin string) (*Server, error) {
	ports, err := freeport.Pick(1)
	if err != nil {
		return nil, err
	}
	root := tb.TempDir()
	s := &Server{
		Endpoint:  net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])),
		AccessKey: "miniotest-root",
		SecretKey: "miniotest-secret-" + strconv.FormatInt(time.Now().UnixNano(), 36),
		Bucket:    "blobs",
		DataDir:   filepath.Join(root, "data"),
		bin:       bin,
		root:      root,
		log:       &syncBuffer{},
	}
	tb.Cleanup(func() {
		s.Stop()
		if tb.Failed() {
			tb.Logf("MinIO at %s output:\n%s", s.Endpoint, s.log.String())
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	if err := s.launch(ctx); err != nil {
		return nil, err
	}
	if err := s.MakeBucket(ctx, s.Bucket); err != nil {
		s.Stop()
		return nil, fmt.Errorf("MinIO at %s: %w\noutput:\n%s", s.Endpoint, err, s.log.String())
	}
	return s, nil
}

// launch starts the server process and waits until it is live.
func (s *Server) launch(ctx context.Context) error {
	cmd := exec.Command(s.bin, "server",
		"--address", s.Endpoint,
		"--certs-dir", filepath.Join(s.root, "certs"),
		"--quiet",
		s.DataDir)
	cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+s.AccessKey,
		"MINIO_ROOT_PASSWORD="+s.SecretKey,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
		"MINIO_REGION="+Region,
		"HOME="+s.root, // anything MinIO keeps per user stays in the test's directory
	)
	var out io.Writer = s.log
	if os.Getenv("MINIOTEST_LOG") != "" {
		out = io.MultiWriter(s.log, os.Stderr)
	}
	cmd.Stdout, cmd.Stderr = out, out
	setParentDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	if err := s.waitLive(ctx, cmd, exited); err != nil {
		s.Stop()
		return fmt.Errorf("MinIO at %s: %w\noutput:\n%s", s.Endpoint, err, s.log.String())
	}
	return nil
}

// Restart starts the server again after Stop, on the same address, data
// and credentials.
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	s.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	if err := s.launch(ctx); err != nil {
		tb.Fatalf("miniotest: restart: %v", err)
	}
}

// waitLive polls /minio/health/live until it answers 200 with its object
// layer initialized (MinIO answers 200 before that, marking the answer
// x-minio-server-status: offline, and refuses S3 requests with "Server not
// initialized yet" meanwhile), the process exits or ctx ends.
func (s *Server) waitLive(ctx context.Context, cmd *exec.Cmd, exited <-chan struct{}) error {
	client := &http.Client{Timeout: time.Second}
	liveURL := "http://" + s.Endpoint + "/minio/health/live"
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := client.Get(liveURL)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && resp.Header.Get("x-minio-server-status") != "offline" {
				return nil
			}
		}
		select {
		case <-exited:
			return fmt.Errorf("exited before it was live: %v", cmd.ProcessState)
		case <-ctx.Done():
			return fmt.Errorf("not live after %v: last answer %v", StartTimeout, err)
		case <-tick.C:
		}
	}
}

// Client returns a minio-go client with the root credentials.
func (s *Server) Client() (*minio.Client, error) {
	return minio.New(s.Endpoint, &minio.Options{
		Creds:      credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
		Secure:     false,
		Region:     Region,
		MaxRetries: 1,
	})
}

// MakeBucket creates a bucket, retrying while the server is still starting.
func (s *Server) MakeBucket(ctx context.Context, bucket string) error {
	c, err := s.Client()
	if err != nil {
		return err
	}
	for {
		err = c.MakeBucket(ctx, bucket, minio.MakeBucketOptions{Region: Region})
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("make bucket %s: %w", bucket, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// URL returns the s3:// URL of prefix in the server's bucket, for
// blobstore.Open (credentials go in the environment or a file, not here).
func (s *Server) URL(prefix string) string {
	q := url.Values{"endpoint": {s.Endpoint}, "secure": {"false"}, "region": {Region}}
	return (&url.URL{Scheme: "s3", Host: s.Bucket, Path: "/" + prefix, RawQuery: q.Encode()}).String()
}

// Stop kills the server and waits for it to exit. Stopping a stopped
// server does nothing; Start arranges a Stop at cleanup.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd, s.exited = nil, nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Kill()
	<-exited
}

// Log returns what the server has written so far.
func (s *Server) Log() string { return s.log.String() }

// syncBuffer is a bytes.Buffer safe for the process's writers and readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
