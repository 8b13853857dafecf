package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/topod-io/topod/cmd/internal/termbar"
	"github.com/topod-io/topod/pkg/inspect"
	"github.com/topod-io/topod/pkg/tlsconfig"
)

// inspectFlags are the flags every `topod inspect` command shares: where
// to read (a running topod, or the backend and blob store themselves) and
// how to print.
type inspectFlags struct {
	commonFlags
	address  string
	tls      tlsconfig.Files
	root     string
	json     bool
	progress string
}

func newInspectCommand() *cobra.Command {
	f := &inspectFlags{}
	cmd := &cobra.Command{
		Use:   "inspect",
		Short: "show what topod stores: files decoded, SrvVSchema manifests and diffs, blob store usage",
		Long: `inspect shows what topod stores, reading either a running topod (--address,
the default, with --topod-tls-* for a topod that speaks TLS) or, for a topod
that is down, the backend and blob store themselves (--backend, --blobs,
--data-dir, as topod gc; bolt's file is held by the topod serving it, etcd
can be read beside a running topod). It never writes.

Paths are backend keys, such as /vitess/global/keyspaces/commerce/Keyspace
or /vitess/zone1/SrvVSchema; a relative path is taken under --root.
Tables by default, --json for machines.

  topod inspect ls /vitess/global --recursive
  topod inspect get /vitess/global/keyspaces/commerce/Keyspace
  topod inspect manifest /vitess/zone1/SrvVSchema
  topod inspect diff /vitess/zone1/SrvVSchema --from-version 1234
  topod inspect diff /vitess/zone1/SrvVSchema /vitess/zone2/SrvVSchema
  topod inspect versions /vitess/zone1/SrvVSchema --backend etcd://10.0.0.1:2379
  topod inspect blobs --backend etcd://10.0.0.1:2379 --blobs s3://...`,
		Args: cobra.NoArgs,
	}
	pf := cmd.PersistentFlags()
	f.commonFlags.register(pf)
	pf.StringVar(&f.address, "address", "127.0.0.1:15999", "gRPC address of the running topod to read (unless --backend, --blobs or --data-dir name the store to read directly)")
	pf.StringVar(&f.tls.CA, "topod-tls-ca", "", "CAs (PEM) to verify topod's certificate by; any --topod-tls-* flag turns TLS on")
	pf.StringVar(&f.tls.Cert, "topod-tls-cert", "", "client certificate (PEM), for a topod started with --tls-client-ca")
	pf.StringVar(&f.tls.Key, "topod-tls-key", "", "client certificate's private key (PEM)")
	pf.StringVar(&f.tls.ServerName, "topod-tls-server-name", "", "the name topod's certificate must carry (default the host of --address)")
	pf.StringVar(&f.root, "root", "/vitess/global", "the root relative paths are under")
	pf.BoolVar(&f.json, "json", false, "print JSON instead of tables")
	pf.StringVar(&f.progress, "progress", termbar.Auto, "progress on stderr while fetching blobs or walking the store: auto (a bar on a terminal, lines otherwise), bar, lines or none")
	cmd.AddCommand(
		newInspectLsCommand(f),
		newInspectGetCommand(f),
		newInspectVersionsCommand(f),
		newInspectManifestCommand(f),
		newInspectDiffCommand(f),
		newInspectBlobsCommand(f),
	)
	return cmd
}

// inspectCommand is a subcommand's cobra.Command, run with a Source.
func inspectCommand(f *inspectFlags, use, short string, args cobra.PositionalArgs, run func(ctx context.Context, cmd *cobra.Command, src inspect.Source, args []string) error) *cobra.Command {
	return &cobra.Command{
		Use:           use,
		Short:         short,
		Args:          args,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			src, closeSrc, err := f.open(ctx, cmd)
			if err != nil {
				return err
			}
			defer closeSrc()
			return run(ctx, cmd, src, args)
		},
	}
}

func newInspectLsCommand(f *inspectFlags) *cobra.Command {
	var recursive bool
	cmd := inspectCommand(f, "ls [DIR]", "list a directory's files (type, size, how stored, version) and subdirectories; default /", cobra.MaximumNArgs(1),
		func(ctx context.Context, cmd *cobra.Command, src inspect.Source, args []string) error {
			dir := "/"
			if len(args) == 1 {
				var err error
				if dir, err = inspect.Key(f.root, args[0]); err != nil {
					return err
				}
			}
			entries, err := inspect.Ls(ctx, src, dir, recursive)
			if err != nil {
				return err
			}
			if f.json {
				return inspect.WriteJSON(cmd.OutOrStdout(), entries)
			}
			return inspect.WriteLs(cmd.OutOrStdout(), entries)
		})
	cmd.Flags().BoolVarP(&recursive, "recursive", "r", false, "list every file under DIR instead of its direct entries")
	return cmd
}

func newInspectGetCommand(f *inspectFlags) *cobra.Command {
	var version int64
	cmd := inspectCommand(f, "get PATH", "print a file decoded as its Vitess type, as JSON (as vtctldclient GetTopologyPath --data-as-json)", cobra.ExactArgs(1),
		func(ctx context.Context, cmd *cobra.Command, src inspect.Source, args []string) error {
			key, err := inspect.Key(f.root, args[0])
			if err != nil {
				return err
			}
			file, err := inspect.Get(ctx, src, key, version, f.options(cmd))
			if file == nil {
				return err
			}
			var werr error
			if f.json {
				werr = inspect.WriteJSON(cmd.OutOrStdout(), file)
			} else {
				werr = file.WriteText(cmd.OutOrStdout())
			}
			return errors.Join(err, werr)
		})
	cmd.Flags().Int64Var(&version, "version", 0, "read the file as it was at this version (a backend revision still held: see topod inspect versions); 0: the current one")
	return cmd
}

func newInspectVersionsCommand(f *inspectFlags) *cobra.Command {
	return inspectCommand(f, "versions PATH", "list the versions of a file the backend still holds (needs --backend: topod's API does not list them)", cobra.ExactArgs(1),
		func(ctx context.Context, cmd *cobra.Command, src inspect.Source, args []string) error {
			key, err := inspect.Key(f.root, args[0])
			if err != nil {
				return err
			}
			versions, err := inspect.Versions(ctx, src, key)
			if err != nil {
				return err
			}
			if f.json {
				return inspect.WriteJSON(cmd.OutOrStdout(), versions)
			}
			return inspect.WriteVersions(cmd.OutOrStdout(), versions)
		})
}

func newInspectManifestCommand(f *inspectFlags) *cobra.Command {
	var version int64
	cmd := inspectCommand(f, "manifest PATH", "print a SrvVSchema's manifest: its keyspaces, each one's piece (size, hash), the blobs and their total", cobra.ExactArgs(1),
		func(ctx context.Context, cmd *cobra.Command, src inspect.Source, args []string) error {
			key, err := inspect.Key(f.root, args[0])
			if err != nil {
				return err
			}
			m, err := inspect.ReadManifest(ctx, src, key, version, f.options(cmd))
			if err != nil {
				return err
			}
			if f.json {
				return inspect.WriteJSON(cmd.OutOrStdout(), m)
			}
			return m.WriteText(cmd.OutOrStdout())
		})
	cmd.Flags().Int64Var(&version, "version", 0, "the SrvVSchema as it was at this version; 0: the current one")
	return cmd
}

func newInspectDiffCommand(f *inspectFlags) *cobra.Command {
	var from, to int64
	cmd := inspectCommand(f, "diff PATH [PATH2]", "which keyspaces differ between two SrvVSchemas: two versions of PATH (--from-version, --to-version), or PATH and PATH2 (two cells')", cobra.RangeArgs(1, 2),
		func(ctx context.Context, cmd *cobra.Command, src inspect.Source, args []string) error {
			a, err := inspect.Key(f.root, args[0])
			if err != nil {
				return err
			}
			b := a
			if len(args) == 2 {
				if b, err = inspect.Key(f.root, args[1]); err != nil {
					return err
				}
			} else if from == 0 && to == 0 {
				return errors.New("diff of one path needs --from-version (and optionally --to-version; default the current version): see topod inspect versions")
			}
			d, err := inspect.Compare(ctx, src, inspect.Ref{Key: a, Version: from}, inspect.Ref{Key: b, Version: to}, f.options(cmd))
			if err != nil {
				return err
			}
			if f.json {
				return inspect.WriteJSON(cmd.OutOrStdout(), d)
			}
			return d.WriteText(cmd.OutOrStdout())
		})
	cmd.Flags().Int64Var(&from, "from-version", 0, "version of the first SrvVSchema; 0: the current one")
	cmd.Flags().Int64Var(&to, "to-version", 0, "version of the second SrvVSchema (PATH2, or PATH again); 0: the current one")
	return cmd
}

func newInspectBlobsCommand(f *inspectFlags) *cobra.Command {
	var grace time.Duration
	var prefix string
	cmd := inspectCommand(f, "blobs", "blob store usage: blobs and bytes stored, referenced and not, and which are unreferenced (a dry run of topod gc's mark; needs --backend and --blobs)", cobra.NoArgs,
		func(ctx context.Context, cmd *cobra.Command, src inspect.Source, _ []string) error {
			d, ok := src.(*inspect.Direct)
			if !ok {
				return fmt.Errorf("blobs reads the blob store and every record's past versions, which %s's API does not serve: give the store itself (--backend and --blobs, or --data-dir with topod stopped on bolt)", src)
			}
			if grace < 0 {
				return fmt.Errorf("--gc-grace %v: want a positive duration (or 0: the store's)", grace)
			}
			opts := inspect.BlobOptions{Options: f.options(cmd), Grace: grace, Prefix: prefix}
			u, err := inspect.Blobs(ctx, d.Backend(), d.Store(), blobsURL(f.commonFlags), opts)
			if err != nil {
				return err
			}
			if f.json {
				return inspect.WriteJSON(cmd.OutOrStdout(), u)
			}
			return u.WriteText(cmd.OutOrStdout(), time.Now())
		})
	cmd.Flags().DurationVar(&grace, "gc-grace", 0, "judge which unreferenced blobs a collection would delete by this grace (default: the grace the store's owner record names, else 1h)")
	cmd.Flags().StringVar(&prefix, "prefix", "/", "key prefix of the records to mark from (as topod gc's)")
	return cmd
}

// options are the package's options from the flags: progress on stderr,
// a bar (termbar) per count of blobs, a line per note.
func (f *inspectFlags) options(cmd *cobra.Command) inspect.Options {
	if f.progress == termbar.None {
		return inspect.Options{}
	}
	w := cmd.ErrOrStderr()
	var bar *termbar.Progress
	return inspect.Options{Progress: func(p inspect.Progress) {
		if p.Note != "" {
			fmt.Fprintln(w, p.Note)
		}
		if p.What == "" {
			return
		}
		if bar == nil {
			bar = termbar.New(w, f.progress, p.What, p.Total)
		}
		bar.Set(p.Done, p.Failed)
		if p.Final {
			bar.Finish()
			bar = nil
		}
	}}
}

// direct says whether the flags name the store itself rather than a topod.
func (f *inspectFlags) direct(cmd *cobra.Command) bool {
	fs := cmd.Flags()
	return fs.Changed("backend") || fs.Changed("blobs") || fs.Changed("data-dir")
}

// open opens the Source the flags name: the topod at --address, or the
// backend and blob store themselves.
func (f *inspectFlags) open(ctx context.Context, cmd *cobra.Command) (inspect.Source, func(), error) {
	if err := termbar.CheckMode("--progress", f.progress); err != nil {
		return nil, nil, err
	}
	if !f.direct(cmd) {
		var tlsConfig *tls.Config
		if f.tls.Enabled() {
			var err error
			if tlsConfig, err = tlsconfig.Client(f.tls); err != nil {
				return nil, nil, fmt.Errorf("--topod-tls-*: %w", err)
			}
		}
		t, err := inspect.DialTopod(f.address, tlsConfig)
		if err != nil {
			return nil, nil, err
		}
		return t, func() { t.Close() }, nil
	}
	if cmd.Flags().Changed("address") {
		return nil, nil, errors.New("give either --address (read a running topod) or --backend, --blobs, --data-dir (read the store itself), not both")
	}
	log, err := f.logger()
	if err != nil {
		return nil, nil, err
	}
	// Read what is there: never create an empty bolt file or blob
	// directory where the flags point by mistake (open would).
	backendURL := f.backend
	if backendURL == "" {
		backendURL = "bolt://" + filepath.Join(f.dataDir, "topo.db")
	}
	if file, ok := strings.CutPrefix(backendURL, "bolt://"); ok {
		if _, err := os.Stat(file); err != nil {
			return nil, nil, fmt.Errorf("backend %s: %w", backendURL, err)
		}
	}
	if dir, ok := strings.CutPrefix(blobsURL(f.commonFlags), "file://"); ok {
		if _, err := os.Stat(dir); err != nil {
			return nil, nil, fmt.Errorf("blobs %s: %w", blobsURL(f.commonFlags), err)
		}
	}
	ro := f.commonFlags
	ro.readOnly = true
	backend, blobs, err := open(ctx, ro)
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, nil, fmt.Errorf("%s is held by another process, a topod serving it: read that topod (--address), or stop it first: %w", backendURL, err)
	}
	if err != nil {
		return nil, nil, err
	}
	closeAll := func() {
		if err := blobs.Close(); err != nil {
			log.Error("close blob store", "err", err)
		}
		if err := backend.Close(); err != nil {
			log.Error("close backend", "err", err)
		}
	}
	return inspect.NewDirect(backend, blobs, describeStore(f.commonFlags, backendURL)), closeAll, nil
}

// describeStore names a backend and its blob store for messages.
func describeStore(f commonFlags, backendURL string) string {
	return fmt.Sprintf("backend %s with blobs %s", backendURL, blobsURL(f))
}
