package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	vtlog "vitess.io/vitess/go/vt/log"
	"vitess.io/vitess/go/vt/topo"
	_ "vitess.io/vitess/go/vt/topo/etcd2topo" // the etcd2 implementation

	"github.com/topod-io/topod/cmd/internal/termbar"
	"github.com/topod-io/topod/pkg/migrate"
	"github.com/topod-io/topod/pkg/topoplugin" // the topod implementation
)

// migrateFlags are the flags of `topod migrate`.
type migrateFlags struct {
	fromImpl, fromAddr, fromRoot string
	toImpl, toAddr, toRoot       string
	cellAddr, cellRootPrefix     string
	cellAddrs                    map[string]string
	verifyOnly                   bool
	concurrency                  int
	progress                     string
}

func newMigrateCommand() *cobra.Command {
	f := migrateFlags{}
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "copy a Vitess topology from etcd2 into topod (or back) and verify the copy",
		Long: `migrate copies an existing Vitess topology from one topo implementation
into another, through Vitess's own topo.Conn on both sides: the global
files (CellInfos, cells aliases, keyspaces, VSchemas, shards, routing,
shard routing, keyspace routing and mirror rules, external clusters,
metadata), then each cell's (tablets, ShardReplication, SrvKeyspaces,
SrvVSchema). Files are copied as stored; a file the destination already
holds unchanged is skipped, so a second run copies nothing and an
interrupted run is resumed by running it again. Nothing is deleted from
the destination.

Cells are moved onto the destination: each destination CellInfo gets
--to-cell-address (default --to-address), or its own address from
--to-cell-addresses (zone1=host:port,zone2=host:port: one store per cell,
each cell's topod on its own etcd), and the root
--to-cell-root-prefix/<cell> (default: the parent of --to-root, so with
--to-root /vitess/global, cell zone1's root is /vitess/zone1). A cell that
already exists in the destination with another address or root is an
error for its files, not overwritten.

Then migrate verifies: it compares every file of the source with the
destination (decoded into its Vitess type when it has one) and prints
each difference by path; --verify-only does only that. It exits non-zero
if a file was not copied or a difference remains.

The reverse direction (--from-implementation topod --to-implementation
etcd2) copies what fits: a file etcd refuses (over its request limit,
1.5 MiB by default: a large SrvVSchema) is reported by path with etcd's
error, and the rest copied.

  topod migrate --from-address etcd1:2379 --from-root /vitess/global \
    --to-address topod:15999 --to-root /vitess/global`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return runMigrate(ctx, cmd.OutOrStdout(), cmd.ErrOrStderr(), f)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.fromImpl, "from-implementation", "etcd2", "topo implementation of the source")
	fs.StringVar(&f.fromAddr, "from-address", "", "global server address of the source (etcd2: host:port[,host:port...])")
	fs.StringVar(&f.fromRoot, "from-root", "/vitess/global", "global root of the source")
	fs.StringVar(&f.toImpl, "to-implementation", "topod", "topo implementation of the destination")
	fs.StringVar(&f.toAddr, "to-address", "", "global server address of the destination (topod: its gRPC address, host:port)")
	fs.StringVar(&f.toRoot, "to-root", "/vitess/global", "global root of the destination")
	fs.StringVar(&f.cellAddr, "to-cell-address", "", "server address of the destination cells, written into their CellInfo (default --to-address)")
	fs.StringToStringVar(&f.cellAddrs, "to-cell-addresses", nil, "cell=address,...: cells with a destination store of their own (each cell's topod), written into their CellInfo instead of --to-cell-address")
	fs.StringVar(&f.cellRootPrefix, "to-cell-root-prefix", "", "cell C's destination root is this/C (default the parent of --to-root: /vitess/global gives /vitess/C)")
	fs.BoolVar(&f.verifyOnly, "verify-only", false, "copy nothing: only compare the source with the destination and print the differences")
	fs.IntVar(&f.concurrency, "concurrency", migrate.DefaultConcurrency, "files copied or compared at once")
	fs.StringVar(&f.progress, "progress", termbar.Auto, "auto (a bar on a terminal, lines otherwise), bar, lines or none")
	topoplugin.RegisterFlags(fs) // --topod-tls-* and the others, for a topod side
	return cmd
}

func runMigrate(ctx context.Context, stdout, stderr io.Writer, f migrateFlags) error {
	if f.fromAddr == "" || f.toAddr == "" {
		return errors.New("--from-address and --to-address are required")
	}
	if f.concurrency < 1 {
		return fmt.Errorf("--concurrency %d: want at least 1", f.concurrency)
	}
	if err := termbar.CheckMode("--progress", f.progress); err != nil {
		return err
	}
	// Vitess's own logging (connections, retries) only when it matters.
	vtlog.SwapLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))

	opts := migrate.Options{
		CellAddress:    f.cellAddr,
		CellAddresses:  f.cellAddrs,
		CellRootPrefix: f.cellRootPrefix,
		Concurrency:    f.concurrency,
	}
	bar := &migrateBar{w: stderr, mode: f.progress}
	opts.Progress = bar.report
	if opts.CellAddress == "" {
		opts.CellAddress = f.toAddr
	}
	if opts.CellRootPrefix == "" {
		opts.CellRootPrefix = migrate.DefaultCellRootPrefix(f.toRoot)
	}
	from, err := topo.OpenServer(f.fromImpl, f.fromAddr, f.fromRoot)
	if err != nil {
		return fmt.Errorf("open the source (%s at %s, root %s): %w", f.fromImpl, f.fromAddr, f.fromRoot, err)
	}
	defer from.Close()
	to, err := topo.OpenServer(f.toImpl, f.toAddr, f.toRoot)
	if err != nil {
		return fmt.Errorf("open the destination (%s at %s, root %s): %w", f.toImpl, f.toAddr, f.toRoot, err)
	}
	defer to.Close()
	fmt.Fprintf(stdout, "from %s at %s, root %s, to %s at %s, root %s (cells on %s, roots %s/<cell>)\n",
		f.fromImpl, f.fromAddr, f.fromRoot, f.toImpl, f.toAddr, f.toRoot, opts.CellAddress, opts.CellRootPrefix)

	var copyErr error
	if !f.verifyOnly {
		start := time.Now()
		r, err := migrate.Copy(ctx, from, to, opts)
		bar.finish()
		if r == nil {
			return err
		}
		fmt.Fprintf(stdout, "copied in %v: %s\n", time.Since(start).Round(time.Millisecond), r.Summary())
		for _, fl := range r.Failed {
			fmt.Fprintf(stdout, "not copied: %s: %v\n", fl.File, fl.Err)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted (run again to resume): %w", err)
		}
		copyErr = err
	}
	start := time.Now()
	diffs, err := migrate.Verify(ctx, from, to, opts)
	bar.finish()
	if err != nil {
		return errors.Join(copyErr, err)
	}
	for _, d := range diffs {
		fmt.Fprintf(stdout, "difference: %s\n", d)
	}
	fmt.Fprintf(stdout, "verified in %v: %d differences\n", time.Since(start).Round(time.Millisecond), len(diffs))
	if len(diffs) > 0 {
		return errors.Join(copyErr, fmt.Errorf("%d differences between the source and the destination", len(diffs)))
	}
	return copyErr
}

// migrateBar draws a Copy's or a Verify's progress on w in mode
// (termbar), a bar per step, and each file that failed to copy.
type migrateBar struct {
	w    io.Writer
	mode string
	bar  *termbar.Progress
	step string
}

func (m *migrateBar) report(p migrate.Progress) {
	if p.Step != m.step {
		m.finish()
		m.step = p.Step
		m.bar = termbar.New(m.w, m.mode, map[string]string{"copy": "files", "verify": "files verified"}[p.Step], p.Total)
	}
	if p.Failure != nil {
		m.bar.Note(fmt.Sprintf("failed: %s: %v", p.Failure.File, p.Failure.Err))
	}
	m.bar.Set(p.Done, p.Failed)
}

// finish ends the step's bar, if any.
func (m *migrateBar) finish() {
	if m.bar != nil {
		m.bar.Finish()
	}
	m.bar, m.step = nil, ""
}
