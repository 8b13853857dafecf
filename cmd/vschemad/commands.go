package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/topod-io/topod/pkg/vschemaapi/wire"
	"github.com/topod-io/topod/pkg/vschemaclient"
)

// clientFlags are the flags every client subcommand shares.
type clientFlags struct {
	server    string
	token     string
	tokenFile string
	caFile    string
	certFile  string
	keyFile   string
	timeout   time.Duration
	output    string
}

// register adds the flags to a client subcommand.
func (f *clientFlags) register(cmd *cobra.Command) {
	pf := cmd.Flags()
	pf.StringVar(&f.server, "server", envOr("VSCHEMAD_SERVER", vschemaclient.DefaultServer), "vschemad URL ($VSCHEMAD_SERVER)")
	pf.StringVar(&f.token, "token", "", "bearer token ($VSCHEMAD_TOKEN)")
	pf.StringVar(&f.tokenFile, "token-file", "", "file holding the bearer token")
	pf.StringVar(&f.caFile, "ca-file", "", "CA bundle (PEM) to verify the server's certificate")
	pf.StringVar(&f.certFile, "cert", "", "client certificate (PEM), for servers that require one")
	pf.StringVar(&f.keyFile, "key", "", "client certificate's key (PEM)")
	pf.DurationVar(&f.timeout, "timeout", 10*time.Minute, "deadline of each request")
	pf.StringVarP(&f.output, "output", "o", "text", "text or json")
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// client returns the client of the flags.
func (f *clientFlags) client() (*vschemaclient.Client, error) {
	if f.output != "text" && f.output != "json" {
		return nil, usageError{fmt.Errorf("--output %q: want text or json", f.output)}
	}
	u, err := vschemaclient.ParseServer(f.server)
	if err != nil {
		return nil, usageError{fmt.Errorf("--server: %w", err)}
	}
	tok := f.token
	if tok == "" {
		tok = os.Getenv("VSCHEMAD_TOKEN")
	}
	if f.tokenFile != "" {
		b, err := os.ReadFile(f.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("--token-file: %w", err)
		}
		tok = strings.TrimSpace(string(b))
	}
	c, err := vschemaclient.New(vschemaclient.Options{Server: u, Token: tok, CAFile: f.caFile, CertFile: f.certFile, KeyFile: f.keyFile, Timeout: f.timeout})
	if err != nil {
		return nil, fmt.Errorf("--ca-file/--cert/--key: %w", err)
	}
	return c, nil
}

// keyspaceFlag adds the -k/--keyspace flag, required.
func keyspaceFlag(cmd *cobra.Command, ks *string) {
	cmd.Flags().StringVarP(ks, "keyspace", "k", "", "the keyspace (required)")
	_ = cmd.MarkFlagRequired("keyspace")
}

// readInput reads a file, or stdin for "-".
func readInput(cmd *cobra.Command, file string) ([]byte, error) {
	if file == "" {
		return nil, usageError{errors.New("-f/--file is required (\"-\" for stdin)")}
	}
	if file == "-" {
		return io.ReadAll(cmd.InOrStdin())
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("-f: %w", err)
	}
	return b, nil
}

func newApplyCmd(cf *clientFlags) *cobra.Command {
	var ks, file string
	var opts vschemaclient.WriteOptions
	cmd := &cobra.Command{
		Use:   "apply -k KEYSPACE -f vschema.json",
		Short: "Validate and apply a keyspace's vschema",
		Long: `Validate and apply a keyspace's vschema, in the JSON that
vtctldclient ApplyVSchema --vschema accepts. With --dry-run, show the diff and
the validation result without writing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			body, err := readInput(cmd, file)
			if err != nil {
				return err
			}
			res, err := c.ApplyVSchema(cmd.Context(), ks, body, opts)
			return reportApply(cmd, cf, res, err)
		},
	}
	keyspaceFlag(cmd, &ks)
	cmd.Flags().StringVarP(&file, "file", "f", "", "the vschema JSON (\"-\" for stdin)")
	cmd.Flags().BoolVar(&opts.DryRun, "dry-run", false, "validate and diff only")
	cmd.Flags().BoolVar(&opts.Strict, "strict", false, "refuse unknown vindex parameters")
	cmd.Flags().StringVar(&opts.IfMatch, "if-match", "", "apply only if the current version is this one")
	return cmd
}

// reportApply prints the outcome of a write.
func reportApply(cmd *cobra.Command, cf *clientFlags, res *wire.ApplyResponse, err error) error {
	w := cmd.OutOrStdout()
	var ae *vschemaclient.APIError
	if errors.As(err, &ae) {
		if cf.output == "json" {
			if err := printJSON(w, ae); err != nil {
				return err
			}
		}
		if ae.Validation != nil { // the errors are in err
			printValidation(cmd.ErrOrStderr(), &wire.Validation{Warnings: ae.Validation.Warnings})
		}
		return err
	}
	if err != nil {
		return err
	}
	if cf.output == "json" {
		return printJSON(w, res)
	}
	printValidation(cmd.ErrOrStderr(), res.Validation)
	for _, k := range res.Keyspaces {
		switch {
		case res.DryRun:
			fmt.Fprintf(w, "dry run: keyspace %s (version %s): %s\n", k.Keyspace, orNone(k.OldVersion), k.Diff.Summary)
			printChanges(w, k.Diff)
		case !k.Written:
			fmt.Fprintf(w, "keyspace %s: unchanged (version %s)\n", k.Keyspace, orNone(k.OldVersion))
		default:
			fmt.Fprintf(w, "keyspace %s: version %s -> %s: %s\n", k.Keyspace, orNone(k.OldVersion), orNone(k.NewVersion), k.Diff.Summary)
		}
	}
	for _, c := range res.Cells {
		fmt.Fprintf(w, "  cell %s: %s, version %s\n", c.Cell, c.Mode, c.Version)
	}
	if res.NoCells {
		fmt.Fprintf(w, "  %s\n", res.CellsNote)
	}
	return nil
}

// printJSON prints v as the server does: indented JSON.
func printJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("print JSON: %w", err)
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}

func orNone(v string) string {
	if v == "" {
		return "none"
	}
	return v
}

func printValidation(w io.Writer, v *wire.Validation) {
	if v == nil {
		return
	}
	for _, p := range v.Errors {
		fmt.Fprintf(w, "error: %s\n", p)
	}
	for _, p := range v.Warnings {
		fmt.Fprintf(w, "warning: %s\n", p)
	}
}

// printChanges prints a diff's changes, one per path, with the old and new
// JSON of changed entries.
func printChanges(w io.Writer, d *wire.KeyspaceDiff) {
	if d == nil {
		return
	}
	for _, c := range d.Changes {
		switch c.Op {
		case wire.OpAdd:
			fmt.Fprintf(w, "+ %s: %s\n", c.Path, compact(c.New))
		case wire.OpRemove:
			fmt.Fprintf(w, "- %s: %s\n", c.Path, compact(c.Old))
		default:
			fmt.Fprintf(w, "~ %s\n  - %s\n  + %s\n", c.Path, compact(c.Old), compact(c.New))
		}
	}
}

func compact(raw json.RawMessage) string {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return string(raw)
	}
	return b.String()
}

func newGetCmd(cf *clientFlags) *cobra.Command {
	var ks, version string
	cmd := &cobra.Command{
		Use:   "get -k KEYSPACE [--version V]",
		Short: "Print a keyspace's vschema (JSON), current or at a version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			var d *vschemaclient.Document
			if version != "" {
				d, err = c.GetVSchemaAt(cmd.Context(), ks, version)
			} else {
				d, err = c.GetVSchema(cmd.Context(), ks)
			}
			if err != nil {
				return err
			}
			var b bytes.Buffer
			if err := json.Indent(&b, d.Data, "", "  "); err != nil {
				return fmt.Errorf("keyspace %s: bad vschema JSON from the server: %w", ks, err)
			}
			if d.Version != "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "# keyspace %s, version %s\n", ks, d.Version)
			}
			_, err = cmd.OutOrStdout().Write(b.Bytes())
			return err
		},
	}
	keyspaceFlag(cmd, &ks)
	cmd.Flags().StringVar(&version, "version", "", "a past version (from history)")
	return cmd
}

func newDiffCmd(cf *clientFlags) *cobra.Command {
	var ks, file string
	cmd := &cobra.Command{
		Use:   "diff -k KEYSPACE -f vschema.json",
		Short: "Show what applying a vschema would change, and whether it is valid",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			body, err := readInput(cmd, file)
			if err != nil {
				return err
			}
			res, err := c.ApplyVSchema(cmd.Context(), ks, body, vschemaclient.WriteOptions{DryRun: true})
			return reportApply(cmd, cf, res, err)
		},
	}
	keyspaceFlag(cmd, &ks)
	cmd.Flags().StringVarP(&file, "file", "f", "", "the vschema JSON (\"-\" for stdin)")
	return cmd
}

func newDeleteCmd(cf *clientFlags) *cobra.Command {
	var ks string
	var opts vschemaclient.WriteOptions
	cmd := &cobra.Command{
		Use:   "delete -k KEYSPACE",
		Short: "Delete a keyspace's vschema",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			res, err := c.DeleteVSchema(cmd.Context(), ks, opts)
			return reportApply(cmd, cf, res, err)
		},
	}
	keyspaceFlag(cmd, &ks)
	cmd.Flags().StringVar(&opts.IfMatch, "if-match", "", "delete only if the current version is this one")
	return cmd
}

func newRollbackCmd(cf *clientFlags) *cobra.Command {
	var ks, to string
	var previous bool
	var opts vschemaclient.WriteOptions
	cmd := &cobra.Command{
		Use:   "rollback -k KEYSPACE --to-version V | --to-previous",
		Short: "Apply a past version of a keyspace's vschema again",
		Long: `Apply a past version of a keyspace's vschema again: --to-version V (see
vschemad history), or --to-previous, the version before vschemad's last
write of the keyspace (refused if the vschema changed outside vschemad
since).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			switch {
			case to != "" && previous:
				return usageError{errors.New("--to-version and --to-previous exclude each other")}
			case previous:
				if to, err = c.PreviousVersion(cmd.Context(), ks); err != nil {
					return err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "# rolling keyspace %s back to version %s\n", ks, to)
			case to == "":
				return usageError{errors.New("--to-version or --to-previous is required (see vschemad history)")}
			}
			res, err := c.Rollback(cmd.Context(), ks, to, opts)
			return reportApply(cmd, cf, res, err)
		},
	}
	keyspaceFlag(cmd, &ks)
	cmd.Flags().StringVar(&to, "to-version", "", "the version to go back to")
	cmd.Flags().BoolVar(&previous, "to-previous", false, "go back to the version before vschemad's last write of the keyspace")
	cmd.Flags().BoolVar(&opts.DryRun, "dry-run", false, "validate and diff only")
	cmd.Flags().StringVar(&opts.IfMatch, "if-match", "", "roll back only if the current version is this one")
	return cmd
}

func newHistoryCmd(cf *clientFlags) *cobra.Command {
	var ks string
	var limit int
	cmd := &cobra.Command{
		Use:   "history -k KEYSPACE",
		Short: "List the writes of a keyspace's vschema, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			h, err := c.History(cmd.Context(), ks, limit)
			if err != nil {
				return err
			}
			if cf.output == "json" {
				return printJSON(cmd.OutOrStdout(), h)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "keyspace %s, current version %s\n", h.Keyspace, orNone(h.CurrentVersion))
			printEntries(cmd.OutOrStdout(), h.Entries)
			return nil
		},
	}
	keyspaceFlag(cmd, &ks)
	cmd.Flags().IntVar(&limit, "limit", 50, "how many writes")
	return cmd
}

func printEntries(w io.Writer, entries []wire.AuditEntry) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tPREVIOUS\tTIME\tUSER\tACTION\tKEYSPACE\tSUMMARY")
	for _, e := range entries {
		what := e.Keyspace
		if e.Rules != "" {
			what = e.Rules
		} else if e.Cell != "" {
			what = "cell " + e.Cell
		}
		summary := e.Summary
		switch {
		case e.Result != wire.ResultOK && e.Error != "":
			summary += " [" + e.Result + ": " + e.Error + "]"
		case e.Result != wire.ResultOK:
			summary += " [" + e.Result + "]"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", orNone(e.NewVersion), orNone(e.OldVersion),
			e.Time.Local().Format(time.DateTime), e.User, e.Action, what, summary)
	}
	tw.Flush()
}

func newAuditCmd(cf *clientFlags) *cobra.Command {
	var q vschemaclient.AuditQuery
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Print the audit log, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			entries, err := c.Audit(cmd.Context(), q)
			if err != nil {
				return err
			}
			if cf.output == "json" {
				return printJSON(cmd.OutOrStdout(), wire.AuditResponse{Entries: entries})
			}
			printEntries(cmd.OutOrStdout(), entries)
			return nil
		},
	}
	cmd.Flags().StringVarP(&q.Keyspace, "keyspace", "k", "", "only this keyspace")
	cmd.Flags().StringVar(&q.Action, "action", "", "only this action (apply, delete, rollback, import, rules, rebuild)")
	cmd.Flags().StringVar(&q.User, "user", "", "only this user")
	cmd.Flags().IntVar(&q.Limit, "limit", 100, "how many entries")
	return cmd
}
