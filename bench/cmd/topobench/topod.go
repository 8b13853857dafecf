package main

import (
	"context"
	"fmt"

	"github.com/topod-io/topod/internal/harness"
)

// topodBuildFlags are extra flags of the go build of topod (the smoke test
// builds it with -race when it runs with -race).
var topodBuildFlags []string

// startTopod starts replicas topod processes of bin on the etcd at
// endpoint, with their data and logs under dir.
func startTopod(ctx context.Context, bin, endpoint, dir string, replicas int, extra []string) (*harness.TopodProcs, error) {
	t, err := harness.StartTopodProcs(ctx, bin, []string{endpoint}, dir, replicas, extra)
	if err != nil {
		return nil, fmt.Errorf("start topod: %w", err)
	}
	return t, nil
}
