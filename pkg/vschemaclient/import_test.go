package vschemaclient_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/topod-io/topod/internal/jd"
	"github.com/topod-io/topod/internal/vschematest"
	"github.com/topod-io/topod/pkg/vschemaclient"
)

// importAt imports src through srv with the command's default options,
// adjusted by mod, and returns 0 or 1 (the command's exit status), and what
// it wrote to stdout and stderr.
func importAt(t testing.TB, srv *vschematest.VSchemad, src string, mod func(*vschemaclient.ImportOptions)) (code int, stdout, stderr string) {
	t.Helper()
	u, err := vschemaclient.ParseServer(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	c, err := vschemaclient.New(vschemaclient.Options{Server: u, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	opts := vschemaclient.DefaultImportOptions
	opts.Progress = "lines"
	if mod != nil {
		mod(&opts)
	}
	var out, errb bytes.Buffer
	if err := vschemaclient.Import(context.Background(), c, src, opts, &out, &errb); err != nil {
		fmt.Fprintf(&errb, "vschemad: %v\n", err)
		code = 1
	}
	return code, out.String(), errb.String()
}

var summaryRE = regexp.MustCompile(`(\d+) written, (\d+) unchanged, (\d+) skipped \(in the journal\), (\d+) failed`)

// importCounts parses the summary line of an import.
func importCounts(t testing.TB, out string) (written, unchanged, skipped, failed int) {
	t.Helper()
	m := summaryRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no summary in %q", out)
	}
	n := func(s string) int { v, _ := strconv.Atoi(s); return v }
	return n(m[1]), n(m[2]), n(m[3]), n(m[4])
}

// assertImported checks every keyspace of p against the global topology.
func assertImported(t *testing.T, tp *vschematest.Topology, p jd.Profile) {
	t.Helper()
	for i := range p.Keyspaces {
		name, want := p.Keyspace(i)
		got, err := tp.TS.GetVSchema(context.Background(), name)
		if err != nil || !proto.Equal(got.Keyspace, want) {
			t.Fatalf("keyspace %s: %v", name, err)
		}
	}
}

// TestImport imports a directory of vschemas on each topology: a broken
// file is reported and the rest imported; running again resumes from the
// journal; after the fix only the fixed keyspace is sent.
func TestImport(t *testing.T) {
	for _, kind := range vschematest.Kinds {
		t.Run(kind.Name, func(t *testing.T) {
			tp := kind.Start(t, vschematest.Options{})
			srv := vschematest.StartVSchemad(t, tp, nil)
			p := jd.JD().Sized(60)
			tp.CreateProfileKeyspaces(t, p)
			tp.CreateKeyspaces(t, "broken")
			dir := vschematest.WriteProfileDir(t, p)
			broken := filepath.Join(dir, "broken.json")
			if err := os.WriteFile(broken, []byte(`{"sharded": `), 0o644); err != nil {
				t.Fatal(err)
			}

			code, out, errOut := importAt(t, srv, dir, func(o *vschemaclient.ImportOptions) { o.BatchSize, o.Concurrency = 7, 3 })
			if code != 1 || !strings.Contains(errOut, "failed: broken: broken.json") || !strings.Contains(errOut, "malformed vschema JSON") {
				t.Fatalf("import: %d %q %q", code, out, errOut)
			}
			if w, u, s, f := importCounts(t, out); w != p.Keyspaces || u != 0 || s != 0 || f != 1 {
				t.Fatalf("import: %d written, %d unchanged, %d skipped, %d failed: %s", w, u, s, f, out)
			}
			if !strings.Contains(errOut, "/61 keyspaces (") {
				t.Fatalf("no progress lines: %q", errOut)
			}
			assertImported(t, tp, p)
			vschematest.AssertCellsAsRebuilt(t, context.Background(), tp)

			// Again: everything in the journal is skipped.
			code, out, _ = importAt(t, srv, dir, nil)
			if w, u, s, f := importCounts(t, out); code != 1 || w != 0 || u != 0 || s != p.Keyspaces || f != 1 {
				t.Fatalf("resume: %d %s", code, out)
			}
			// Fixed, then only it is sent.
			if err := os.WriteFile(broken, []byte(`{"tables": {"t": {}}}`), 0o644); err != nil {
				t.Fatal(err)
			}
			code, out, errOut = importAt(t, srv, dir, nil)
			if w, u, s, f := importCounts(t, out); code != 0 || w != 1 || u != 0 || s != p.Keyspaces || f != 0 {
				t.Fatalf("after the fix: %d %s %s", code, out, errOut)
			}
			// Without the journal, everything is sent again and is unchanged.
			code, out, _ = importAt(t, srv, dir, func(o *vschemaclient.ImportOptions) { o.Restart = true })
			if w, u, s, f := importCounts(t, out); code != 0 || w != 0 || u != p.Keyspaces+1 || s != 0 || f != 0 {
				t.Fatalf("--restart: %d %s", code, out)
			}
			vschematest.AssertCellsAsRebuilt(t, context.Background(), tp)
		})
	}
}

// TestImportTar imports a .tar.gz, with a dry run first.
func TestImportTar(t *testing.T) {
	tp := vschematest.StartTopodBolt(t, vschematest.Options{})
	srv := vschematest.StartVSchemad(t, tp, nil)
	p := jd.JD().Sized(30)
	tp.CreateProfileKeyspaces(t, p)
	dir := vschematest.WriteProfileDir(t, p)
	tarFile := filepath.Join(t.TempDir(), "vschemas.tar.gz")
	writeTarGz(t, dir, tarFile)

	before := tp.Snapshot(t)
	code, out, errOut := importAt(t, srv, tarFile, func(o *vschemaclient.ImportOptions) { o.DryRun = true })
	if code != 0 || !strings.Contains(out, "validated (dry run) 30 keyspaces") {
		t.Fatalf("dry run: %d %q %q", code, out, errOut)
	}
	if !before.Equal(tp.Snapshot(t)) {
		t.Fatal("a dry-run import wrote to the topology")
	}
	code, out, errOut = importAt(t, srv, tarFile, func(o *vschemaclient.ImportOptions) { o.BatchSize = 4 })
	if w, _, _, f := importCounts(t, out); code != 0 || w != 30 || f != 0 {
		t.Fatalf("import: %d %q %q", code, out, errOut)
	}
	if _, err := os.Stat(tarFile + ".vschemad-journal"); err != nil {
		t.Fatal(err)
	}
	assertImported(t, tp, p)
	vschematest.AssertCellsAsRebuilt(t, context.Background(), tp)
}

func writeTarGz(t testing.TB, dir, file string) {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(filepath.Dir(dir), p)
		if err := tw.WriteHeader(&tar.Header{Name: "./" + filepath.ToSlash(rel), Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err = tw.Write(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestImportJD imports the JD profile, 1,911 keyspaces, through vschemad on
// topod (bolt, and a real etcd), and checks the cells against
// RebuildSrvVSchema. Stock etcd2 cannot hold the 13.5 MiB SrvVSchema: its
// etcd client refuses requests over 2 MiB (and etcd itself over 1.5 MiB by
// default; Vitess reports either as "larger than max" or "server resource
// exhausted"); the import says so, naming the cell, and goes on with nothing
// else.
func TestImportJD(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("JD scale: not in -short or under the race detector")
	}
	p := jd.JD()
	dir := vschematest.WriteProfileDir(t, p)
	for _, kind := range vschematest.Kinds[:2] {
		t.Run(kind.Name, func(t *testing.T) {
			tp := kind.Start(t, vschematest.Options{Cells: p.CellNames()})
			srv := vschematest.StartVSchemad(t, tp, nil)
			tp.CreateProfileKeyspaces(t, p)
			start := time.Now()
			code, out, errOut := importAt(t, srv, dir, func(o *vschemaclient.ImportOptions) {
				o.Journal, o.BatchSize, o.Concurrency = filepath.Join(t.TempDir(), "journal"), 200, 4
			})
			if w, _, _, f := importCounts(t, out); code != 0 || w != p.Keyspaces || f != 0 {
				t.Fatalf("import: %d %q %q", code, out, lastLines(errOut, 5))
			}
			t.Logf("imported %d keyspaces, %d cells, in %v", p.Keyspaces, len(tp.Cells), time.Since(start).Round(time.Millisecond))
			assertImported(t, tp, p)
			vschematest.AssertCellsAsRebuilt(t, context.Background(), tp)
		})
	}

	t.Run("etcd2", func(t *testing.T) {
		tp := vschematest.StartEtcd2(t, vschematest.Options{})
		srv := vschematest.StartVSchemad(t, tp, nil)
		tp.CreateProfileKeyspaces(t, p)
		code, out, errOut := importAt(t, srv, dir, func(o *vschemaclient.ImportOptions) {
			o.Journal, o.BatchSize, o.Retries = filepath.Join(t.TempDir(), "journal"), 200, 0
		})
		cause := regexp.MustCompile(`SrvVSchema of cell zone\d: write SrvVSchema: [^\n]*(larger than max|too large|resource exhausted)[^\n]*`).FindString(errOut)
		if code != 1 || cause == "" {
			t.Fatalf("import on etcd2: %d %q %q", code, out, regexp.MustCompile(`(?m)^failed: .*$`).FindAllString(errOut, 8))
		}
		t.Logf("etcd2: %s; %s", strings.TrimSpace(out), cause)
	})
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
