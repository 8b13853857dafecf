package vtlocal

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"vitess.io/vitess/config"
	"vitess.io/vitess/go/mysql"
	"vitess.io/vitess/go/vt/topo/topoproto"

	topodatapb "vitess.io/vitess/go/vt/proto/topodata"

	"github.com/topod-io/topod/internal/proc"
)

// Tablet is one tablet of a local cluster: a mysqld that mysqlctl
// initializes and starts in the tablet's directory of VTDATAROOT, and the
// vttablet in front of it, which finds the mysqld's my.cnf and socket there
// from its uid (as in Vitess's local examples).
type Tablet struct {
	Cell     string
	UID      uint32
	Keyspace string
	Shard    string
	// Port and GRPCPort are vttablet's: status pages, and the tablet
	// manager and query service. MySQLPort is mysqld's.
	Port, GRPCPort, MySQLPort int
}

// Alias is the tablet's alias.
func (t Tablet) Alias() *topodatapb.TabletAlias {
	return &topodatapb.TabletAlias{Cell: t.Cell, Uid: t.UID}
}

// Name is the tablet's alias as Vitess prints it: "zone1-0000000100".
func (t Tablet) Name() string { return topoproto.TabletAliasString(t.Alias()) }

// Target is the tablet's keyspace/shard as vtctldclient prints it.
func (t Tablet) Target() string { return t.Keyspace + "/" + t.Shard }

// MySQL is where the tablets' mysqld run: Root is VTDATAROOT, under which
// each tablet's my.cnf, data, socket and logs live in vt_<uid, 10 digits>.
// VTMySQLRoot is VT_MYSQL_ROOT, the prefix of the mysqld installation (FindMySQL).
type MySQL struct {
	Root        string
	VTMySQLRoot string
}

// Dir is tablet t's directory.
func (m MySQL) Dir(t Tablet) string { return filepath.Join(m.Root, fmt.Sprintf("vt_%010d", t.UID)) }

// Socket is the Unix socket of tablet t's mysqld.
func (m MySQL) Socket(t Tablet) string { return filepath.Join(m.Dir(t), "mysql.sock") }

// InitSQL is the file mysqlctl init runs on a fresh data directory.
func (m MySQL) InitSQL() string { return filepath.Join(m.Root, "init_db.sql") }

// Credentials is the --db-credentials-file of the tablets: Vitess's init
// SQL creates its users without passwords, and an unmanaged tablet wants
// its app user's password from somewhere.
func (m MySQL) Credentials() string { return filepath.Join(m.Root, "db-credentials.json") }

// Env is the environment mysqlctl and vttablet need.
func (m MySQL) Env() []string {
	return []string{"VTDATAROOT=" + m.Root, "VT_MYSQL_ROOT=" + m.VTMySQLRoot}
}

// FindMySQL returns the VT_MYSQL_ROOT of the mysqld on PATH (or in
// /usr/sbin, where Debian puts it): the directory above the one holding it.
func FindMySQL() (string, error) {
	p, err := exec.LookPath("mysqld")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/mysqld"); serr != nil {
			return "", fmt.Errorf("no mysqld on PATH nor in /usr/sbin: install MariaDB (`make mariadb` installs Debian's mariadb-server): %w", err)
		}
		p = "/usr/sbin/mysqld"
	}
	return filepath.Dir(filepath.Dir(p)), nil
}

// InitDBSQL is Vitess's own init_db.sql, which mysqlctl init runs on a
// fresh data directory, without the statements that set super_read_only:
// MariaDB has no such variable and fails the whole file ("Unknown system
// variable 'super_read_only'").
func InitDBSQL() string {
	var b strings.Builder
	for line := range strings.Lines(config.DefaultInitDB) {
		if strings.Contains(line, "super_read_only") && !strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		b.WriteString(line)
	}
	return b.String()
}

// MysqlctlArgs returns the arguments of mysqlctl for tablet t running action
// ("init", "start", "shutdown"); init runs initSQL.
func MysqlctlArgs(t Tablet, action, initSQL string) []string {
	args := []string{
		"--tablet-uid", strconv.FormatUint(uint64(t.UID), 10),
		"--mysql-port", strconv.Itoa(t.MySQLPort),
		"--log-format", "text",
		action,
	}
	if action == "init" {
		args = append(args, "--init-db-sql-file", initSQL)
	}
	return args
}

// VttabletArgs returns the arguments of tablet t's vttablet on the topology
// tp, its mysqld at m. It registers as a replica; PlannedReparentShard makes
// it primary.
//
// The tablet is unmanaged (--unmanaged, connecting through the mysqld's
// socket as m's users): vttablet never touches replication. On MariaDB a
// replica's vttablet that finds a primary in its shard record points its
// mysqld at it, fails on MySQL's server_uuid ("invalid MySQL 5.6 SID") and
// exits; Tablets.Replicate sets replication up instead.
func VttabletArgs(tp Topo, t Tablet, m MySQL) []string {
	return append(tp.FlagsOf("vttablet"),
		"--tablet-path", t.Name(),
		"--tablet-hostname", "127.0.0.1",
		"--init-keyspace", t.Keyspace,
		"--init-shard", t.Shard,
		"--init-tablet-type", "replica",
		"--port", strconv.Itoa(t.Port),
		"--bind-address", "127.0.0.1",
		"--grpc-port", strconv.Itoa(t.GRPCPort),
		"--grpc-bind-address", "127.0.0.1",
		"--service-map", "grpc-queryservice,grpc-tabletmanager,grpc-updatestream",
		"--health-check-interval", "2s",
		"--unmanaged",
		"--db-socket", m.Socket(t),
		"--db-host", "127.0.0.1",
		"--db-port", strconv.Itoa(t.MySQLPort),
		"--db-credentials-file", m.Credentials(),
		"--log-format", "text",
	)
}

// Tablets runs tablets' processes: mysqlctl (which leaves mysqld running)
// and vttablet, from the binaries in Bin, as User, with logs in Logs.
type Tablets struct {
	MySQL MySQL
	Topo  Topo
	Bin   string
	Logs  string
	User  *proc.Identity
	// Detach makes the vttablets outlive the caller (the demo). mysqld
	// always does: mysqlctl starts it in the background and exits.
	Detach bool
}

func (r Tablets) spec(name, binary string, args []string) proc.Spec {
	return proc.Spec{
		Name: name, Binary: filepath.Join(r.Bin, binary), Args: args,
		Log: filepath.Join(r.Logs, name+".log"), Dir: r.MySQL.Root, User: r.User,
		Detach: r.Detach, Env: r.MySQL.Env(),
	}
}

// Prepare creates VTDATAROOT, owned by User, and writes the init SQL there.
func (r Tablets) Prepare() error {
	if err := r.User.MkdirAll(r.MySQL.Root); err != nil {
		return err
	}
	if err := os.WriteFile(r.MySQL.InitSQL(), []byte(InitDBSQL()), 0o644); err != nil {
		return fmt.Errorf("write init SQL: %w", err)
	}
	creds := `{"vt_app": [""], "vt_dba": [""], "vt_filtered": [""], "vt_repl": [""], "vt_allprivs": [""], "vt_appdebug": [""]}`
	if err := os.WriteFile(r.MySQL.Credentials(), []byte(creds+"\n"), 0o644); err != nil {
		return fmt.Errorf("write credentials: %w", err)
	}
	return nil
}

// StartMySQL starts tablet t's mysqld with mysqlctl: init on the first
// start (no tablet directory yet), start after. It does nothing when the
// mysqld is already running.
func (r Tablets) StartMySQL(ctx context.Context, t Tablet) error {
	if r.MySQLRunning(t) {
		return nil
	}
	action := "start"
	if _, err := os.Stat(r.MySQL.Dir(t)); errors.Is(err, os.ErrNotExist) {
		action = "init"
	}
	name := "mysqlctl-" + t.Name()
	return proc.Run(ctx, r.spec(name, "mysqlctl", MysqlctlArgs(t, action, r.MySQL.InitSQL())))
}

// StopMySQL shuts tablet t's mysqld down with mysqlctl, if it runs.
func (r Tablets) StopMySQL(ctx context.Context, t Tablet) error {
	if !r.MySQLRunning(t) {
		return nil
	}
	name := "mysqlctl-" + t.Name()
	return proc.Run(ctx, r.spec(name, "mysqlctl", MysqlctlArgs(t, "shutdown", "")))
}

// MySQLRunning reports whether tablet t's mysqld runs: its pid file names a
// live mysqld (MariaDB's is mariadbd).
func (r Tablets) MySQLRunning(t Tablet) bool {
	b, err := os.ReadFile(filepath.Join(r.MySQL.Dir(t), "mysql.pid"))
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return false
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return false
	}
	c := strings.TrimSpace(string(comm))
	return c == "mysqld" || c == "mariadbd"
}

// VttabletSpec is tablet t's vttablet process.
func (r Tablets) VttabletSpec(t Tablet) proc.Spec {
	return r.spec("vttablet-"+t.Name(), "vttablet", VttabletArgs(r.Topo, t, r.MySQL))
}

// StartVttablet starts tablet t's vttablet and waits until it answers its
// status page (it registers in the topology before that).
func (r Tablets) StartVttablet(ctx context.Context, t Tablet) (*proc.Process, error) {
	p, err := proc.Start(r.VttabletSpec(t))
	if err != nil {
		return nil, err
	}
	if err := p.WaitHTTP(ctx, fmt.Sprintf("http://127.0.0.1:%d/debug/status", t.Port)); err != nil {
		p.Kill()
		return nil, err
	}
	return p, nil
}

// SetWritable turns read_only off on tablet t's mysqld. A primary's mysqld
// restarted by mysqlctl starts read-only (Vitess's my.cnf), and stock Vitess
// cannot make it writable on MariaDB: VTOrc does not run on it, and
// vtctldclient SetWritable reads super_read_only, which MariaDB does not
// have ("Unknown system variable 'super_read_only'").
func (r Tablets) SetWritable(ctx context.Context, t Tablet) error {
	conn, err := mysql.Connect(ctx, &mysql.ConnParams{UnixSocket: r.MySQL.Socket(t), Uname: "vt_dba"})
	if err != nil {
		return fmt.Errorf("make %s writable: connect: %w", t.Name(), err)
	}
	defer conn.Close()
	if _, err := conn.ExecuteFetch("SET GLOBAL read_only = OFF", 0, false); err != nil {
		return fmt.Errorf("make %s writable: %w", t.Name(), err)
	}
	return nil
}

// Replicate points replica's mysqld at primary's with MariaDB's GTID
// replication and waits until both replication threads run. It is what
// PlannedReparentShard does to the other tablets of a shard, which stock
// Vitess cannot do on MariaDB (its SetReplicationSource reads MySQL's
// server_uuid: "invalid MySQL 5.6 SID"). A replica already replicating from
// primary is left alone.
func (r Tablets) Replicate(ctx context.Context, replica, primary Tablet) error {
	conn, err := mysql.Connect(ctx, &mysql.ConnParams{UnixSocket: r.MySQL.Socket(replica), Uname: "vt_dba"})
	if err != nil {
		return fmt.Errorf("replicate %s from %s: connect: %w", replica.Name(), primary.Name(), err)
	}
	defer conn.Close()
	status := func() (map[string]string, error) {
		qr, err := conn.ExecuteFetch("SHOW SLAVE STATUS", 1, true)
		if err != nil || len(qr.Rows) == 0 {
			return nil, err
		}
		s := make(map[string]string, len(qr.Fields))
		for i, f := range qr.Fields {
			s[f.Name] = qr.Rows[0][i].ToString()
		}
		return s, nil
	}
	s, err := status()
	if err != nil {
		return fmt.Errorf("replicate %s from %s: %w", replica.Name(), primary.Name(), err)
	}
	if s == nil || s["Master_Host"] != "127.0.0.1" || s["Master_Port"] != strconv.Itoa(primary.MySQLPort) {
		for _, q := range []string{
			"STOP SLAVE",
			fmt.Sprintf("CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=%d, MASTER_USER='vt_repl', MASTER_USE_GTID=current_pos", primary.MySQLPort),
			"START SLAVE",
		} {
			if _, err := conn.ExecuteFetch(q, 0, false); err != nil {
				return fmt.Errorf("replicate %s from %s: %s: %w", replica.Name(), primary.Name(), q, err)
			}
		}
	} else if s["Slave_IO_Running"] != "Yes" || s["Slave_SQL_Running"] != "Yes" {
		if _, err := conn.ExecuteFetch("START SLAVE", 0, false); err != nil {
			return fmt.Errorf("replicate %s from %s: START SLAVE: %w", replica.Name(), primary.Name(), err)
		}
	}
	for {
		if s, err = status(); err != nil {
			return fmt.Errorf("replicate %s from %s: %w", replica.Name(), primary.Name(), err)
		}
		if s != nil && s["Slave_IO_Running"] == "Yes" && s["Slave_SQL_Running"] == "Yes" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("replicate %s from %s: replication not running (IO %q: %s; SQL %q: %s): %w", replica.Name(), primary.Name(),
				s["Slave_IO_Running"], s["Last_IO_Error"], s["Slave_SQL_Running"], s["Last_SQL_Error"], ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
