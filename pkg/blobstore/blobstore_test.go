package blobstore

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
)

// Calls of the test's opener, set by the test (the registry is
// process-wide, so it is registered once, even under -count).
var (
	testOpenerOnce sync.Once
	got            *url.URL
	gotOpts        Options
)

func TestOpenDispatch(t *testing.T) {
	testOpenerOnce.Do(func() {
		Register("Test-Scheme", func(_ context.Context, u *url.URL, opts Options) (Store, error) {
			got, gotOpts = u, opts
			if u.Host == "fail" {
				return nil, errors.New("boom")
			}
			return nil, nil
		})
	})
	if !slices.Contains(Schemes(), "test-scheme") {
		t.Fatalf("Schemes() = %v, want test-scheme in it", Schemes())
	}
	if _, err := Open(context.Background(), "TEST-scheme://host/path?x=1", Options{CredentialsProfile: "p"}); err != nil {
		t.Fatal(err)
	}
	if got.Scheme != "test-scheme" || got.Host != "host" || got.Path != "/path" || got.Query().Get("x") != "1" || gotOpts.CredentialsProfile != "p" {
		t.Fatalf("opener got %v, %+v", got, gotOpts)
	}
	_, err := Open(context.Background(), "test-scheme://fail", Options{})
	if err == nil || !strings.Contains(err.Error(), "boom") || !strings.Contains(err.Error(), "test-scheme://fail") {
		t.Fatalf("Open error = %v, want the opener's error with the URL", err)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("registering a scheme twice did not panic")
			}
		}()
		Register("test-scheme", func(context.Context, *url.URL, Options) (Store, error) { return nil, nil })
	}()
}

func TestOpenErrors(t *testing.T) {
	tests := []struct {
		url  string
		want string
	}{
		{"/var/lib/topod/blobs", "no scheme"},
		{"gs://bucket/x", `unknown scheme "gs"`},
		{"s3://bucket/x", "pkg/blobstore/s3blob"}, // not linked into this test
		{"file:///tmp/x", "pkg/blobstore/fileblob"},
		{"s3://key:secret@bucket/x", "xxxxx"}, // redacted
		{"://", "missing protocol scheme"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			_, err := Open(context.Background(), tt.url, Options{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Open(%q) error = %v, want one containing %q", tt.url, err, tt.want)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Fatalf("Open(%q) error leaks the password: %v", tt.url, err)
			}
		})
	}
}
