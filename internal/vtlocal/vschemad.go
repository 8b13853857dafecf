package vtlocal

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"google.golang.org/protobuf/encoding/protojson"

	vschemapb "vitess.io/vitess/go/vt/proto/vschema"

	"github.com/topod-io/topod/internal/jd"
	"github.com/topod-io/topod/pkg/vschemaclient"
)

// VschemadArgs returns the arguments of `vschemad serve` on the topology t,
// on 127.0.0.1:port without authentication (vschemad serves
// unauthenticated only on loopback), appending every write to auditLog.
func VschemadArgs(t Topo, port int, auditLog string) []string {
	return append([]string{"serve", "--listen", "127.0.0.1:" + strconv.Itoa(port), "--audit-log", auditLog}, t.FlagsOf("vschemad")...)
}

// Tables the tour adds.
const (
	// TourTable is the table the tour's apply adds to its keyspace.
	TourTable = "demo_vschemad"
	// TourImportTable is the table the tour's import adds to each of its
	// keyspaces.
	TourImportTable = "demo_imported"
)

// VschemadTour is a walk through vschemad on a cluster loaded with a
// internal/jd profile: example vschema files (WriteFiles) and the shell
// commands that use them (Commands), in the order to run them. The demo
// prints the commands; its test runs the same ones.
type VschemadTour struct {
	// Vschemad is the vschemad binary and Dir the directory of the example
	// files, as the commands name them.
	Vschemad, Dir string
	// Server is vschemad's URL; the commands name it (--server) unless it
	// is vschemaclient.DefaultServer.
	Server string
	// MySQLPort is vtgate's MySQL port on 127.0.0.1.
	MySQLPort int
	// Profile is what the cluster holds.
	Profile jd.Profile
}

// Keyspace is the index of the keyspace the tour applies to, rolls back and
// refuses a vschema of: the profile's first sharded one (its vschema has the
// vindex "hash").
func (t VschemadTour) Keyspace() int {
	for i := range t.Profile.Keyspaces {
		if t.Profile.ShardCount(i) > 1 {
			return i
		}
	}
	return 0
}

// Imports are the indexes of the keyspaces the tour's import changes: the
// profile's last tenth, at most 200 and at least one.
func (t VschemadTour) Imports() []int {
	n := min(max(t.Profile.Keyspaces/10, 1), 200)
	var idx []int
	for i := t.Profile.Keyspaces - n; i < t.Profile.Keyspaces; i++ {
		idx = append(idx, i)
	}
	return idx
}

// TryCommand is a shell command to try, and what it gives.
type TryCommand struct {
	// Line is the command, as printed and as run (bash -c).
	Line string
	// Comment says what it shows.
	Comment string
	// Fails says that it exits non-zero (a refused write).
	Fails bool
	// Want is text its output (stdout and stderr together) holds.
	Want string
	// Serves, if set, is a change of an earlier command that the command
	// reads back from vtgate: a table of a keyspace.
	Serves *ServedTable
}

// ServedTable is a table of a keyspace's vschema as vtgate serves it.
type ServedTable struct{ Keyspace, Table string }

// file names of the example files, under Dir.
const (
	tourImportDir = "import"
	invalidSuffix = "-invalid"
)

// Commands returns the tour's commands: a dry run with its diff, the apply,
// the change read back from vtgate, the keyspace's history, a rollback, a
// refused invalid vschema, and an import of a directory of vschemas with its
// progress, the import read back from vtgate.
func (t VschemadTour) Commands() []TryCommand {
	ks := t.Profile.KeyspaceName(t.Keyspace())
	imports := t.Imports()
	lastImport := t.Profile.KeyspaceName(imports[len(imports)-1])
	v := func(sub, args string) string {
		line := t.Vschemad + " " + sub
		if t.Server != vschemaclient.DefaultServer {
			line += " --server " + t.Server
		}
		return line + " " + args
	}
	file := filepath.Join(t.Dir, ks+".json")
	showTables := func(ks, table string) string {
		return fmt.Sprintf("mysql -h 127.0.0.1 -P %d -D %s -e 'show vschema tables' | grep %s", t.MySQLPort, ks, table)
	}
	return []TryCommand{
		{Line: v("apply", "-k "+ks+" -f "+file+" --dry-run"),
			Comment: "the diff and the validation; nothing written",
			Want:    "+ tables." + TourTable + ":"},
		{Line: v("apply", "-k "+ks+" -f "+file),
			Comment: "validated, written, and only " + ks + "'s piece of the SrvVSchema rewritten",
			Want:    "keyspace " + ks + ": version "},
		{Line: showTables(ks, TourTable), Comment: "vtgate serves it a second or two after the apply's answer, at 2,001 keyspaces",
			Want: TourTable, Serves: &ServedTable{ks, TourTable}},
		{Line: v("history", "-k "+ks), Comment: "its writes through vschemad, newest first (the audit log)",
			Want: "1 table added"},
		{Line: v("rollback", "-k "+ks+" --to-previous"), Comment: "back to the version before the apply",
			Want: "1 table removed"},
		{Line: v("apply", "-k "+ks+" -f "+filepath.Join(t.Dir, ks+invalidSuffix+".json")),
			Comment: "refused: a vindex of a type Vitess does not know", Fails: true,
			Want: `unknown vindex type "no_such_vindex_type"`},
		{Line: v("import", filepath.Join(t.Dir, tourImportDir)),
			Comment: fmt.Sprintf("%d keyspaces' vschemas, with progress; run again, it resumes from its journal", len(imports)),
			Want:    fmt.Sprintf("imported %d keyspaces from ", len(imports))},
		{Line: showTables(lastImport, TourImportTable), Comment: "vtgate serves them",
			Want: TourImportTable, Serves: &ServedTable{lastImport, TourImportTable}},
	}
}

// WriteFiles writes the example files of the tour into dir (the directory
// Dir names): KS.json, the profile's vschema of the tour's keyspace with
// table TourTable added; KS-invalid.json, with a vindex of an unknown type
// instead; and import/, the vschemas of the import's keyspaces, each with
// table TourImportTable added. Files that are there already are rewritten
// (the same content).
func (t VschemadTour) WriteFiles(dir string) error {
	write := func(file string, ks *vschemapb.Keyspace) error {
		b, err := protojson.MarshalOptions{Multiline: true, UseProtoNames: true}.Marshal(ks)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
			return err
		}
		return os.WriteFile(file, append(b, '\n'), 0o644)
	}
	name, ks := t.Profile.Keyspace(t.Keyspace())
	ks.Tables[TourTable] = addedTable(ks)
	if err := write(filepath.Join(dir, name+".json"), ks); err != nil {
		return err
	}
	name, ks = t.Profile.Keyspace(t.Keyspace())
	ks.Vindexes["demo_bad"] = &vschemapb.Vindex{Type: "no_such_vindex_type"}
	ks.Tables[TourTable] = &vschemapb.Table{ColumnVindexes: []*vschemapb.ColumnVindex{{Column: "id", Name: "demo_bad"}}}
	if err := write(filepath.Join(dir, name+invalidSuffix+".json"), ks); err != nil {
		return err
	}
	for _, i := range t.Imports() {
		name, ks := t.Profile.Keyspace(i)
		ks.Tables[TourImportTable] = addedTable(ks)
		if err := write(filepath.Join(dir, tourImportDir, name+".json"), ks); err != nil {
			return err
		}
	}
	return nil
}

// addedTable is a new table of ks: placed by the vindex "hash" on column id
// if ks is sharded, plain otherwise.
func addedTable(ks *vschemapb.Keyspace) *vschemapb.Table {
	if !ks.Sharded {
		return &vschemapb.Table{}
	}
	return &vschemapb.Table{ColumnVindexes: []*vschemapb.ColumnVindex{{Column: "id", Name: "hash"}}}
}
