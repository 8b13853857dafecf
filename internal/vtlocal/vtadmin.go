package vtlocal

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// VtgateGRPCArgs returns the arguments that make a vtgate serve its gRPC
// API (vtgateservice, what VTAdmin queries tablets and schemas through) on
// 127.0.0.1:port, as Vitess's local example's vtgate does.
func VtgateGRPCArgs(port int) []string {
	return []string{
		"--grpc-port", strconv.Itoa(port),
		"--grpc-bind-address", "127.0.0.1",
		"--service-map", "grpc-vtgateservice",
	}
}

// VTAdmin is a vtadmin-api (bin/vtadmin, cmd/vtadmin) for one cluster,
// set up as Vitess's local example sets it up
// (examples/common/scripts/vtadmin-up.sh): static file discovery of one
// vtctld and one vtgate, RBAC on with a config that allows everything, no
// credentials (the local vtctld and vtgate ask for none).
type VTAdmin struct {
	// Port is vtadmin-api's HTTP and gRPC port, on 127.0.0.1.
	Port int
	// Origins are the vtadmin-web origins vtadmin-api allows (CORS), e.g.
	// "http://127.0.0.1:14201".
	Origins []string
	// ClusterID names the cluster (the example's "local").
	ClusterID string
	// Vtctld is the vtctld: its HTTP port and its gRPC API's (vtctldclient's)
	// port, on 127.0.0.1.
	VtctldPort, VtctldGRPCPort int
	// Vtgate is the vtgate: its HTTP port and its gRPC API's port, on
	// 127.0.0.1.
	VtgatePort, VtgateGRPCPort int
	// TabletHTTPPorts are the tablets' HTTP ports by uid: VTAdmin links a
	// tablet to its status page there (it lists tablets from vtgate's SHOW
	// VITESS_TABLETS, which gives no port).
	TabletHTTPPorts map[uint32]int
	// TopoReadTimeout is how long a topology read (GetKeyspace,
	// FindAllShardsInKeyspace: one for each keyspace on the keyspaces page)
	// waits for a slot of the cluster's topo-read-pool (500 slots);
	// VTAdmin's default is 100 ms, which 2,001 keyspaces at once exceed on
	// a loaded 2-core machine.
	TopoReadTimeout time.Duration
}

// staticDiscovery is the staticfile discovery's JSON
// (go/vt/vtadmin/cluster/discovery/discovery_static_file.go): "hostname"
// is the address vtadmin-api dials (gRPC), "fqdn" the one a browser opens
// (HTTP).
type staticDiscovery struct {
	Vtctlds []discoveryHost `json:"vtctlds"`
	Vtgates []discoveryHost `json:"vtgates"`
}

type discoveryHost struct {
	Host struct {
		FQDN     string `json:"fqdn"`
		Hostname string `json:"hostname"`
	} `json:"host"`
}

func host(httpPort, grpcPort int) discoveryHost {
	var h discoveryHost
	h.Host.FQDN = fmt.Sprintf("127.0.0.1:%d", httpPort)
	h.Host.Hostname = fmt.Sprintf("127.0.0.1:%d", grpcPort)
	return h
}

// rbacAllowAll is the local example's RBAC config
// (examples/common/vtadmin/rbac.yaml): every action on every resource of
// every cluster, for anyone. For a demo on loopback only.
const rbacAllowAll = `rules:
  - resource: "*"
    actions: ["*"]
    subjects: ["*"]
    clusters: ["*"]
`

// WriteConfig writes the discovery file and the RBAC config into dir, and
// returns vtadmin-api's arguments that read them.
func (v VTAdmin) WriteConfig(dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	disc, err := json.MarshalIndent(staticDiscovery{
		Vtctlds: []discoveryHost{host(v.VtctldPort, v.VtctldGRPCPort)},
		Vtgates: []discoveryHost{host(v.VtgatePort, v.VtgateGRPCPort)},
	}, "", "  ")
	if err != nil {
		return nil, err
	}
	discovery, rbac := filepath.Join(dir, "discovery.json"), filepath.Join(dir, "rbac.yaml")
	if err := os.WriteFile(discovery, append(disc, '\n'), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(rbac, []byte(rbacAllowAll), 0o644); err != nil {
		return nil, err
	}
	id := v.ClusterID
	tabletURL := v.tabletURLTmpl()
	cluster := fmt.Sprintf("id=%s,name=%s,discovery=staticfile,discovery-staticfile-path=%s,tablet-fqdn-tmpl=%s,schema-cache-default-expiration=1m",
		id, id, discovery, tabletURL)
	if v.TopoReadTimeout > 0 {
		cluster += ",topo-read-pool-timeout=" + v.TopoReadTimeout.String()
	}
	return []string{
		"--addr", fmt.Sprintf("127.0.0.1:%d", v.Port),
		"--http-origin", strings.Join(v.Origins, ","),
		"--http-tablet-url-tmpl", tabletURL,
		"--rbac",
		"--rbac-config", rbac,
		"--cluster", cluster,
		"--log-format", "text",
		"--grpc-max-message-size", strconv.Itoa(GRPCMaxMessageSize),
	}, nil
}

// tabletURLTmpl is the Go template of a tablet's HTTP address, as VTAdmin
// takes it (--http-tablet-url-tmpl, tablet-fqdn-tmpl): the port of the
// tablet's uid in TabletHTTPPorts (Vitess's local example instead writes
// "15{{ .Tablet.Alias.Uid }}", its tablets' convention).
func (v VTAdmin) tabletURLTmpl() string {
	uids := make([]uint32, 0, len(v.TabletHTTPPorts))
	for uid := range v.TabletHTTPPorts {
		uids = append(uids, uid)
	}
	slices.Sort(uids)
	var b strings.Builder
	b.WriteString("http://{{ .Tablet.Hostname }}:")
	for i, uid := range uids {
		if i > 0 {
			b.WriteString("{{ else }}")
		}
		fmt.Fprintf(&b, "{{ if eq .Tablet.Alias.Uid %d }}%d", uid, v.TabletHTTPPorts[uid])
	}
	if len(uids) > 0 {
		b.WriteString("{{ else }}80")
		b.WriteString(strings.Repeat("{{ end }}", len(uids)))
	} else {
		b.WriteString("80")
	}
	return b.String()
}
