package main

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/topod-io/topod/cmd/internal/termbar"
	"github.com/topod-io/topod/pkg/vschemaclient"
)

func newImportCmd(cf *clientFlags) *cobra.Command {
	opts := vschemaclient.DefaultImportOptions
	progress := termbar.Auto
	cmd := &cobra.Command{
		Use:   "import DIR|FILE.tar",
		Short: "Apply many keyspaces' vschemas at once",
		Long: `Apply the vschemas of many keyspaces: a directory, or a tar file (.tar,
.tar.gz, .tgz), holding KEYSPACE.json or KEYSPACE/vschema.json files.

Keyspaces are sent in batches, several at a time, those referred to by
others' sequences and reference tables first. What was applied is recorded in
a journal (--journal, by default next to the input): running the same import
again resumes, skipping the keyspaces already applied with the same content.
A keyspace the server refuses is reported and the rest go on.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			if opts.BatchSize < 1 || opts.Concurrency < 1 || opts.BatchBytes < 1 {
				return usageError{errors.New("--batch-size, --batch-bytes and --concurrency must be positive")}
			}
			if err := termbar.CheckMode("--progress", progress); err != nil {
				return usageError{err}
			}
			stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
			var bar *termbar.Progress
			opts.Progress = func(p vschemaclient.ImportProgress) {
				if bar == nil {
					bar = termbar.New(stderr, progress, "keyspaces", p.Total)
				}
				if p.Retry != "" {
					bar.Note(p.Retry)
				}
				bar.Set(p.Done, p.Failed)
			}
			res, err := vschemaclient.Import(cmd.Context(), c, args[0], opts)
			if bar != nil {
				bar.Finish()
			}
			if err != nil {
				return err
			}
			verb := "imported"
			if res.DryRun {
				verb = "validated (dry run)"
			}
			fmt.Fprintf(stdout, "%s %d keyspaces from %s in %v: %d written, %d unchanged, %d skipped (in the journal), %d failed\n",
				verb, res.Keyspaces, res.Source, res.Took.Round(time.Millisecond), res.Written, res.Unchanged, res.Skipped, len(res.Failed))
			if res.CellsNote != "" {
				fmt.Fprintln(stdout, res.CellsNote)
			}
			for _, w := range res.Warnings {
				fmt.Fprintf(stderr, "warning: %s\n", w)
			}
			for _, why := range res.Retried {
				fmt.Fprintf(stderr, "retried: %s\n", why)
			}
			for _, name := range slices.Sorted(maps.Keys(res.Failed)) {
				fmt.Fprintf(stderr, "failed: %s: %s\n", name, res.Failed[name])
			}
			if len(res.Failed) > 0 {
				return fmt.Errorf("%d of %d keyspaces failed (run the same import again to retry them)", len(res.Failed), res.Keyspaces)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&opts.BatchSize, "batch-size", opts.BatchSize, "keyspaces per request")
	f.IntVar(&opts.BatchBytes, "batch-bytes", opts.BatchBytes, "largest request body (bytes of JSON); a batch is cut before it")
	f.IntVar(&opts.Concurrency, "concurrency", opts.Concurrency, "requests in flight")
	f.StringVar(&opts.Journal, "journal", "", "journal of applied keyspaces, to resume (default INPUT.vschemad-journal)")
	f.BoolVar(&opts.Restart, "restart", false, "ignore the journal: apply every keyspace again")
	f.BoolVar(&opts.DryRun, "dry-run", false, "validate only")
	f.BoolVar(&opts.Strict, "strict", false, "refuse unknown vindex parameters")
	f.StringVar(&progress, "progress", progress, "auto (a bar on a terminal, lines otherwise), bar, lines or none")
	f.IntVar(&opts.Retries, "retries", opts.Retries, "retries of a batch after a server or network error")
	return cmd
}
