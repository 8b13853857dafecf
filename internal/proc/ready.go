package proc

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// pollInterval is how often WaitReady asks again.
const pollInterval = 50 * time.Millisecond

// ErrExited is wrapped by WaitReady's error when the process exited before
// it was ready.
var ErrExited = errors.New("exited before it was ready")

// WaitReady asks check until it answers nil, the process exits or ctx
// ends. The error names what was waited for, the last answer, and ends
// with the log's tail; it wraps ErrExited if the process exited.
func (p *Process) WaitReady(ctx context.Context, what string, check func(context.Context) error) error {
	var last error
	err := wait.PollUntilContextCancel(ctx, pollInterval, true, func(ctx context.Context) (bool, error) {
		if last = check(ctx); last == nil {
			return true, nil
		}
		if ok, _ := p.Exited(); ok {
			return false, ErrExited
		}
		return false, nil
	})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrExited):
		return fmt.Errorf("%s: waiting for %s: %w: %w", p.Spec.Name, what, ErrExited, p.ExitError())
	}
	return fmt.Errorf("%s: waiting for %s: %w (last answer: %v); last lines of %s:\n%s",
		p.Spec.Name, what, err, last, p.Spec.Log, LogTail(p.Spec.Log, 20))
}

// HTTPOK is a WaitReady check: a GET of url answers 200 OK.
func HTTPOK(url string) func(context.Context) error {
	client := &http.Client{Timeout: 2 * time.Second}
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return nil
	}
}

// WaitGRPCHealth waits (WaitReady) until the standard gRPC health service
// at addr reports SERVING. It dials in plaintext unless opts say otherwise
// (grpc.WithTransportCredentials).
func (p *Process) WaitGRPCHealth(ctx context.Context, addr string, opts ...grpc.DialOption) error {
	// Retry a refused connection every 100 ms, not after gRPC's default
	// one-second backoff: the server is expected up any moment.
	opts = append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1, MaxDelay: 100 * time.Millisecond}})}, opts...)
	cc, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return fmt.Errorf("%s: health client of %s: %w", p.Spec.Name, addr, err)
	}
	defer cc.Close()
	health := healthpb.NewHealthClient(cc)
	return p.WaitReady(ctx, "gRPC health of "+addr, func(ctx context.Context) error {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		resp, err := health.Check(cctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			return err
		}
		if resp.Status != healthpb.HealthCheckResponse_SERVING {
			return fmt.Errorf("status %s", resp.Status)
		}
		return nil
	})
}

// WaitHTTP waits (WaitReady) until a GET of url answers 200 OK.
func (p *Process) WaitHTTP(ctx context.Context, url string) error {
	return p.WaitReady(ctx, "GET "+url, HTTPOK(url))
}
