package main

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/topod-io/topod/pkg/vschemaclient"
)

func newImportCmd(cf *clientFlags) *cobra.Command {
	opts := vschemaclient.ImportOptions{}
	def := vschemaclient.DefaultImportOptions
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
			return vschemaclient.Import(cmd.Context(), c, args[0], opts, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.IntVar(&opts.BatchSize, "batch-size", def.BatchSize, "keyspaces per request")
	f.IntVar(&opts.BatchBytes, "batch-bytes", def.BatchBytes, "largest request body (bytes of JSON); a batch is cut before it")
	f.IntVar(&opts.Concurrency, "concurrency", def.Concurrency, "requests in flight")
	f.StringVar(&opts.Journal, "journal", "", "journal of applied keyspaces, to resume (default INPUT.vschemad-journal)")
	f.BoolVar(&opts.Restart, "restart", false, "ignore the journal: apply every keyspace again")
	f.BoolVar(&opts.DryRun, "dry-run", false, "validate only")
	f.BoolVar(&opts.Strict, "strict", false, "refuse unknown vindex parameters")
	f.StringVar(&opts.Progress, "progress", def.Progress, "auto (a bar on a terminal, lines otherwise), bar, lines or none")
	f.IntVar(&opts.Retries, "retries", def.Retries, "retries of a batch after a server or network error")
	return cmd
}
