package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/topod-io/topod/pkg/blobgc"
	"github.com/topod-io/topod/pkg/blobstore"
	"github.com/topod-io/topod/pkg/kv"
	"github.com/topod-io/topod/pkg/tlsconfig"
)

// commonFlags are the flags of every topod command: where the data is, and
// how to log.
type commonFlags struct {
	backend         string
	etcdTLS         tlsconfig.Files
	blobs           string
	credentialsFile string
	dataDir         string
	logLevel        string
	// readOnly opens the backend for reading only (topod inspect): bolt's
	// file read-only; etcd is simply not written.
	readOnly bool
}

func (f *commonFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.backend, "backend", "", "backend URL: bolt:///path/to/topo.db or etcd://host:port[,host:port...] (default bolt in --data-dir)")
	fs.StringVar(&f.etcdTLS.CA, "etcd-tls-ca", "", "CA certificates (PEM) to verify etcd's certificates by; setting any --etcd-tls-* flag makes an etcd:// backend use TLS (with the system's roots if this one is empty)")
	fs.StringVar(&f.etcdTLS.Cert, "etcd-tls-cert", "", "client certificate (PEM) to present to etcd (etcd's --client-cert-auth)")
	fs.StringVar(&f.etcdTLS.Key, "etcd-tls-key", "", "private key (PEM) of --etcd-tls-cert")
	fs.StringVar(&f.blobs, "blobs", "", "blob store URL: file:///path/to/blobs or s3://BUCKET/PREFIX?endpoint=host:port&secure=false&region=... (default file store in --data-dir/blobs); S3 credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or --blobs-credentials-file")
	fs.StringVar(&f.credentialsFile, "blobs-credentials-file", "", "AWS-style shared credentials file for an s3:// blob store (profile from $AWS_PROFILE, else default)")
	fs.StringVar(&f.dataDir, "data-dir", "./topod-data", "directory of topod's own data (topo.db and blobs/ when --backend and --blobs are not given)")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
}

// logger returns the logger --log-level asks for, on stderr.
func (f *commonFlags) logger() (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", f.logLevel)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})), nil
}

// registerGCGrace adds --gc-grace and --blob-owner-takeover, which serving
// and collecting share: every topod of a deployment, and `topod gc`, must
// use the same grace, and the blob store's owner record says which.
func registerGCGrace(fs *pflag.FlagSet, grace *time.Duration, takeover *string) {
	fs.DurationVar(grace, "gc-grace", blobgc.DefaultGrace, "blob garbage collection keeps unreferenced blobs this long after they were stored or last asked about; the same on every topod of a deployment and for topod gc: the blob store records it on first use, and a topod or topod gc with another grace refuses to run")
	fs.StringVar(takeover, "blob-owner-takeover", "", "replace the blob store's owner record, if it names `OWNER` (as a refusal printed it), with this backend and --gc-grace. The record (_topod/owner.json in the store, written on first use) says which backend, root and grace may collect the store; topod refuses to start, and topod gc to run, on a store whose record says otherwise. Use it once, when this backend replaces a retired one on the same blobs, or to change the deployment's --gc-grace; a record naming another owner is still refused")
}

// claimBlobs checks that the blob store belongs to this backend under root
// with grace, as its owner record says, writing the record on first use
// (blobgc.Claim), and logs what it found. readOnly (a dry run) writes
// nothing.
func claimBlobs(ctx context.Context, backend kv.Backend, blobs blobstore.Store, f commonFlags, root string, grace time.Duration, takeover string, readOnly bool, log *slog.Logger) error {
	c, err := blobgc.Claim(ctx, backend, blobs, blobgc.ClaimOptions{
		Root:     root,
		Grace:    grace,
		Backend:  describeBackend(ctx, f, backend),
		Takeover: takeover,
		ReadOnly: readOnly,
	})
	if err != nil {
		return fmt.Errorf("blob store %s: %w", blobsURL(f), err)
	}
	switch {
	case c.Absent:
		log.Info("blob store has no owner record yet (a dry run writes none)", "blobs", blobsURL(f))
	case c.Created:
		log.Info("blob store claimed: owner record written", "blobs", blobsURL(f), "owner", c.Record.Owner, "grace", c.Record.Grace)
	case c.TakenOver:
		log.Warn("blob store taken over (--blob-owner-takeover): owner record replaced; remove the flag", "blobs", blobsURL(f), "owner", c.Record.Owner, "grace", c.Record.Grace, "previous", c.Previous.String())
	default:
		log.Debug("blob store owner record checked", "blobs", blobsURL(f), "owner", c.Record.Owner, "grace", c.Record.Grace)
	}
	if c.TakeoverUnneeded {
		log.Warn("--blob-owner-takeover is set but the blob store's owner record already names this backend and grace: remove the flag", "blobs", blobsURL(f), "owner", c.Record.Owner)
	}
	return nil
}

// describeBackend names the backend for the blob store's owner record: its
// URL and, on etcd, the cluster id etcd reports.
func describeBackend(ctx context.Context, f commonFlags, backend kv.Backend) string {
	desc := f.backend
	if desc == "" {
		db := filepath.Join(f.dataDir, "topo.db")
		if abs, err := filepath.Abs(db); err == nil {
			db = abs
		}
		desc = "bolt://" + db
	}
	if e, ok := backend.(interface{ Client() *clientv3.Client }); ok {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if resp, err := e.Client().MemberList(ctx); err == nil && resp.Header != nil {
			desc += fmt.Sprintf(" (etcd cluster id %x)", resp.Header.ClusterId)
		}
	}
	return desc
}

// gcFlags are the flags of `topod gc`.
type gcFlags struct {
	commonFlags
	dryRun   bool
	grace    time.Duration
	takeover string
	prefix   string
}

func newGCCommand() *cobra.Command {
	f := gcFlags{}
	cmd := &cobra.Command{
		Use:   "gc",
		Short: "delete the blobs no record refers to any more (blob garbage collection)",
		Long: `gc runs one blob garbage collection: it marks every blob referred to by a
current record or by a past version GetVersion can still read, and deletes
the unmarked blobs stored (or last asked about) more than --gc-grace ago.
It prints a line per blob deleted (with --dry-run: that it would delete),
then a summary. Only one collection runs at a time across topod replicas
(a lock in the backend); a dry run needs no lock.

The blob store records which backend (and --prefix) may collect it and
with what --gc-grace, on first use (_topod/owner.json in the store): gc
refuses to run on a store whose record names another backend, prefix or
grace, saying which (see --blob-owner-takeover). A dry run writes no
record.

On the bolt backend, topod holds the file while it serves: run gc with
topod stopped, or let the server collect (--gc-interval).`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return runGC(ctx, cmd.OutOrStdout(), f)
		},
	}
	fs := cmd.Flags()
	f.commonFlags.register(fs)
	fs.BoolVar(&f.dryRun, "dry-run", false, "print what would be deleted, delete nothing")
	registerGCGrace(fs, &f.grace, &f.takeover)
	fs.StringVar(&f.prefix, "prefix", "/", "key prefix of the records to mark from (every record refers to blobs of the same store: keep /; the blob store's owner record names the prefix, and gc refuses another)")
	return cmd
}

func runGC(ctx context.Context, out io.Writer, f gcFlags) error {
	log, err := f.logger()
	if err != nil {
		return err
	}
	if f.grace < blobgc.MinGrace {
		return fmt.Errorf("--gc-grace %v: want at least %v (a writer's upload-then-publish window)", f.grace, blobgc.MinGrace)
	}
	backend, blobs, err := open(ctx, f.commonFlags)
	if err != nil {
		return err
	}
	defer func() {
		if err := blobs.Close(); err != nil {
			log.Error("close blob store", "err", err)
		}
		if err := backend.Close(); err != nil {
			log.Error("close backend", "err", err)
		}
	}()
	// Collect claims the store itself; this is for the log, and for a
	// takeover.
	if err := claimBlobs(ctx, backend, blobs, f.commonFlags, f.prefix, f.grace, f.takeover, f.dryRun, log); err != nil {
		return err
	}
	r, err := blobgc.Collect(ctx, backend, blobs, blobgc.Options{Grace: f.grace, DryRun: f.dryRun, Prefix: f.prefix, Logger: log, Backend: describeBackend(ctx, f.commonFlags, backend)})
	printReport(out, r)
	if err != nil && isOwnerRefusal(err) {
		return fmt.Errorf("blob store %s: %w", blobsURL(f.commonFlags), err)
	}
	return err
}

// isOwnerRefusal says whether err is a refusal by the blob store's owner
// record.
func isOwnerRefusal(err error) bool {
	return errors.Is(err, blobgc.ErrOwnerMismatch) || errors.Is(err, blobgc.ErrGraceMismatch) || errors.Is(err, blobgc.ErrBadOwnerRecord)
}

// printReport writes a line per blob deleted (or to delete), one per
// dangling reference, and the summary.
func printReport(w io.Writer, r *blobgc.Report) {
	if r == nil {
		return
	}
	verb, blobs := "deleted", r.Deleted
	if r.DryRun {
		verb, blobs = "would delete", r.Candidates
	}
	for _, b := range blobs {
		fmt.Fprintf(w, "%s %s %d bytes, stored %v ago\n", verb, b.Hash, b.Size, b.Age.Round(time.Second))
	}
	for _, d := range r.Dangling {
		fmt.Fprintf(w, "dangling %s version %d: blob %s: %s\n", d.Key, d.ModRevision, d.Hash, d.Err)
	}
	fmt.Fprintln(w, r.Summary())
}

// startPeriodicGC runs a collection every interval until ctx ends, logging
// each one's summary. It returns a function that stops it and waits for a
// collection in progress to end.
func startPeriodicGC(ctx context.Context, backend kv.Backend, blobs blobstore.Store, interval, grace time.Duration, describe string, log *slog.Logger) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			r, err := blobgc.Collect(ctx, backend, blobs, blobgc.Options{Grace: grace, Logger: log, Backend: describe})
			switch {
			case ctx.Err() != nil:
				return
			case err != nil && isOwnerRefusal(err):
				// The store's owner record changed since this topod
				// started (a takeover): collect no more, say so each time.
				log.Error("blob gc refused by the blob store's owner record; restart this topod with the store's grace, or point it at its own store", "err", err)
			case err != nil:
				log.Error("blob gc failed", "err", err)
			case len(r.Dangling) > 0:
				log.Warn(r.Summary())
				for _, d := range r.Dangling {
					log.Warn("blob gc: dangling reference", "key", d.Key, "version", d.ModRevision, "blob", d.Hash.String(), "err", d.Err)
				}
			default:
				log.Info(r.Summary())
			}
		}
	})
	log.Info("blob gc scheduled", "interval", interval, "grace", grace)
	return func() { cancel(); wg.Wait() }
}
