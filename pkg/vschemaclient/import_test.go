package vschemaclient_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/topod-io/topod/internal/jd"
	"github.com/topod-io/topod/internal/vschematest"
	"github.com/topod-io/topod/pkg/vschemaclient"
)

// importAt imports src through srv with the command's default options,
// adjusted by mod, and returns the result and the progress reported.
func importAt(t testing.TB, srv *vschematest.VSchemad, src string, mod func(*vschemaclient.ImportOptions)) (*vschemaclient.ImportResult, []vschemaclient.ImportProgress) {
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
	var progress []vschemaclient.ImportProgress
	opts.Progress = func(p vschemaclient.ImportProgress) { progress = append(progress, p) }
	if mod != nil {
		mod(&opts)
	}
	res, err := vschemaclient.Import(context.Background(), c, src, opts)
	if err != nil {
		t.Fatalf("import %s: %v", src, err)
	}
	return res, progress
}

// counts are an import's counts, to compare.
type counts struct{ written, unchanged, skipped, failed int }

func countsOf(r *vschemaclient.ImportResult) counts {
	return counts{r.Written, r.Unchanged, r.Skipped, len(r.Failed)}
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

			res, progress := importAt(t, srv, dir, func(o *vschemaclient.ImportOptions) { o.BatchSize, o.Concurrency = 7, 3 })
			if why := res.Failed["broken"]; !strings.HasPrefix(why, "broken.json: ") || !strings.Contains(why, "malformed vschema JSON") {
				t.Fatalf("import: broken failed with %q", why)
			}
			if got, want := countsOf(res), (counts{written: p.Keyspaces, failed: 1}); got != want {
				t.Fatalf("import: %+v, want %+v", got, want)
			}
			// Progress from the start (the broken file failed already) to
			// every keyspace done, a batch (at most 7) at a time.
			first, last := progress[0], progress[len(progress)-1]
			if first != (vschemaclient.ImportProgress{Total: 61, Done: 1, Failed: 1}) || last != (vschemaclient.ImportProgress{Total: 61, Done: 61, Failed: 1}) {
				t.Fatalf("progress: %+v", progress)
			}
			for i := 1; i < len(progress); i++ {
				if step := progress[i].Done - progress[i-1].Done; step < 1 || step > 7 {
					t.Fatalf("progress: a step of %d: %+v", step, progress)
				}
			}
			assertImported(t, tp, p)
			vschematest.AssertCellsAsRebuilt(t, context.Background(), tp)

			// Again: everything in the journal is skipped.
			res, _ = importAt(t, srv, dir, nil)
			if got, want := countsOf(res), (counts{skipped: p.Keyspaces, failed: 1}); got != want {
				t.Fatalf("resume: %+v, want %+v", got, want)
			}
			// Fixed, then only it is sent.
			if err := os.WriteFile(broken, []byte(`{"tables": {"t": {}}}`), 0o644); err != nil {
				t.Fatal(err)
			}
			res, _ = importAt(t, srv, dir, nil)
			if got, want := countsOf(res), (counts{written: 1, skipped: p.Keyspaces}); got != want {
				t.Fatalf("after the fix: %+v, want %+v", got, want)
			}
			// Without the journal, everything is sent again and is unchanged.
			res, _ = importAt(t, srv, dir, func(o *vschemaclient.ImportOptions) { o.Restart = true })
			if got, want := countsOf(res), (counts{unchanged: p.Keyspaces + 1}); got != want {
				t.Fatalf("--restart: %+v, want %+v", got, want)
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
	res, _ := importAt(t, srv, tarFile, func(o *vschemaclient.ImportOptions) { o.DryRun = true })
	if got, want := countsOf(res), (counts{written: 30}); !res.DryRun || res.Keyspaces != 30 || got != want {
		t.Fatalf("dry run: %+v", res)
	}
	if !before.Equal(tp.Snapshot(t)) {
		t.Fatal("a dry-run import wrote to the topology")
	}
	res, _ = importAt(t, srv, tarFile, func(o *vschemaclient.ImportOptions) { o.BatchSize = 4 })
	if got, want := countsOf(res), (counts{written: 30}); got != want {
		t.Fatalf("import: %+v, want %+v", got, want)
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
			res, _ := importAt(t, srv, dir, func(o *vschemaclient.ImportOptions) {
				o.Journal, o.BatchSize, o.Concurrency = filepath.Join(t.TempDir(), "journal"), 200, 4
			})
			// A batch retried after its answer was lost (the machine is
			// loaded) finds its keyspaces already written: unchanged.
			got, want := countsOf(res), (counts{written: p.Keyspaces})
			if got.unchanged <= res.RetriedKeyspaces {
				got.written, got.unchanged = got.written+got.unchanged, 0
			}
			if got != want {
				t.Fatalf("import: %+v (retries: %q), want %+v: %v", countsOf(res), res.Retried, want, firstFailures(res, 5))
			}
			t.Logf("imported %d keyspaces, %d cells, in %v; batches retried: %q", p.Keyspaces, len(tp.Cells), time.Since(start).Round(time.Millisecond), res.Retried)
			assertImported(t, tp, p)
			vschematest.AssertCellsAsRebuilt(t, context.Background(), tp)
		})
	}

	t.Run("etcd2", func(t *testing.T) {
		tp := vschematest.StartEtcd2(t, vschematest.Options{})
		srv := vschematest.StartVSchemad(t, tp, nil)
		tp.CreateProfileKeyspaces(t, p)
		res, _ := importAt(t, srv, dir, func(o *vschemaclient.ImportOptions) {
			o.Journal, o.BatchSize, o.Retries = filepath.Join(t.TempDir(), "journal"), 200, 0
		})
		causeRE := regexp.MustCompile(`SrvVSchema of cell zone\d: write SrvVSchema: .*(larger than max|too large|resource exhausted)`)
		cause := ""
		for _, why := range res.Failed {
			if cause = causeRE.FindString(why); cause != "" {
				break
			}
		}
		if len(res.Failed) == 0 || cause == "" {
			t.Fatalf("import on etcd2: %+v %v", countsOf(res), firstFailures(res, 8))
		}
		t.Logf("etcd2: %+v; %s", countsOf(res), cause)
	})
}

// firstFailures returns n of an import's failures, by keyspace.
func firstFailures(r *vschemaclient.ImportResult, n int) []string {
	var out []string
	for _, ks := range slices.Sorted(maps.Keys(r.Failed))[:min(n, len(r.Failed))] {
		out = append(out, ks+": "+r.Failed[ks])
	}
	return out
}
