// Command vschemad is the vschema upload API of a Vitess topology, and its
// client.
//
// `vschemad serve` serves an HTTP/JSON API (under /api/v1) to read, validate,
// apply, diff, delete and roll back keyspace vschemas, routing rules and the
// cells' SrvVSchemas, on any Vitess topology (topod, etcd2) through
// topo.Server. A write is validated with Vitess's own vindexes package, as
// vtctld's ApplyVSchema does, then written to the global topology, then only
// the changed keyspace's piece of each cell's SrvVSchema is updated
// (compare-and-set): a change costs what the keyspace costs, not what all of
// them do. Every write is appended to an audit log.
//
// The other subcommands are clients of that API:
//
//	vschemad apply -k KS -f vschema.json [--dry-run]
//	vschemad get -k KS [--version V]
//	vschemad diff -k KS -f vschema.json
//	vschemad delete -k KS
//	vschemad history -k KS
//	vschemad rollback -k KS --to-version V | --to-previous
//	vschemad import DIR|FILE.tar
//	vschemad audit
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// run runs the command line args and returns the exit status: 0, 1 for an
// error, 2 for a usage error.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "vschemad: %v\n", err)
			return 2
		}
		fmt.Fprintf(stderr, "vschemad: %v\n", err)
		return 1
	}
	return 0
}

// usageError is a command-line mistake.
type usageError struct{ error }

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "vschemad",
		Short: "The vschema upload API of a Vitess topology, and its client",
		Long: `vschemad serves, and calls, an HTTP/JSON API to validate, apply, diff,
roll back and audit Vitess vschemas. A change rewrites only the changed
keyspace's piece of every cell's SrvVSchema.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	cf := &clientFlags{}
	root.AddCommand(newServeCmd())
	for _, c := range []*cobra.Command{newApplyCmd(cf), newGetCmd(cf), newDiffCmd(cf), newDeleteCmd(cf),
		newHistoryCmd(cf), newRollbackCmd(cf), newImportCmd(cf), newAuditCmd(cf)} {
		cf.register(c)
		root.AddCommand(c)
	}
	return root
}
