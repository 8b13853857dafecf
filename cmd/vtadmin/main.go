// Command vtadmin is Vitess 24's vtadmin-api, wired here from Vitess's own
// vtadmin packages (vitess.io/vitess/go/vt/vtadmin and below): its flags
// keep stock vtadmin's names, meanings and defaults.
//
// Stock vtadmin's main package cannot be imported the way cmd/vtgate wraps
// vtgate's cli package, so this command builds the same API from the same
// packages, and adds what stock vtadmin lacks at a large topology: the
// --grpc-max-message-size flag every other Vitess binary has (stock
// vtadmin leaves its gRPC clients at the 16 MiB default, and a cell's
// SrvVSchema decoded to text by vtctld is 32.6 MB at 2,001 keyspaces, so
// the topology browser could not open it).
//
// vtadmin-api opens no topology (it asks vtctld and vtgate), so the topod
// plugin is not linked in: there is nothing for it to serve.
package main

import (
	goflag "flag"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"vitess.io/vitess/go/trace"
	"vitess.io/vitess/go/vt/grpccommon"
	"vitess.io/vitess/go/vt/log"
	"vitess.io/vitess/go/vt/logutil"
	"vitess.io/vitess/go/vt/servenv"
	"vitess.io/vitess/go/vt/utils"
	"vitess.io/vitess/go/vt/vtadmin"
	"vitess.io/vitess/go/vt/vtadmin/cache"
	"vitess.io/vitess/go/vt/vtadmin/cluster"
	"vitess.io/vitess/go/vt/vtadmin/grpcserver"
	vtadminhttp "vitess.io/vitess/go/vt/vtadmin/http"
	"vitess.io/vitess/go/vt/vtadmin/http/debug"
	"vitess.io/vitess/go/vt/vtadmin/rbac"
	"vitess.io/vitess/go/vt/vtctl/grpcclientcommon"
	"vitess.io/vitess/go/vt/vtenv"
)

// flags holds what the command line sets.
type flags struct {
	grpc                  grpcserver.Options
	http                  vtadminhttp.Options
	clusters              cluster.ClustersFlag
	clusterFile           cluster.FileConfig
	clusterDefaults       cluster.Config
	enableDynamicClusters bool
	rbacConfigPath        string
	enableRBAC            bool
	disableRBAC           bool
	cacheRefreshKey       string
}

func main() {
	var f flags
	cmd := &cobra.Command{
		Use:     "vtadmin",
		Short:   "vtadmin-api: VTAdmin's API over the clusters' vtctlds and vtgates",
		Version: servenv.AppVersion.String(),
		PreRunE: func(cmd *cobra.Command, _ []string) error {
			// glog's flags live on Go's flag set: parse it empty so
			// glog sees it parsed (pflag has set the values already).
			if err := goflag.CommandLine.Parse(nil); err != nil {
				return err
			}
			if err := log.Init(cmd.Flags()); err != nil {
				return err
			}
			logutil.PurgeLogs()
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.grpc.EnableTracing || f.http.EnableTracing {
				closer := trace.StartTracing("vtadmin")
				defer trace.LogErrorsWhenClosing(closer)
			}
			api, err := f.api(cmd)
			if err != nil {
				return err
			}
			return api.ListenAndServe()
		},
	}
	f.register(cmd)
	cmd.SetGlobalNormalizationFunc(utils.NormalizeUnderscoresToDashes)
	if err := cmd.Execute(); err != nil {
		log.Error(fmt.Sprint(err))
		os.Exit(1)
	}
}

// api builds the API the flags describe: its clusters, RBAC and cache.
func (f *flags) api(cmd *cobra.Command) (*vtadmin.API, error) {
	configs := f.clusterFile.Combine(f.clusterDefaults, f.clusters)
	if len(configs) == 0 && !f.enableDynamicClusters {
		return nil, fmt.Errorf("vtadmin: must specify at least one cluster (--cluster, --cluster-config) or --enable-dynamic-clusters")
	}
	var rbacConfig *rbac.Config
	switch {
	case f.disableRBAC:
		rbacConfig = rbac.DefaultConfig()
	case f.enableRBAC && f.rbacConfigPath != "":
		cfg, err := rbac.LoadConfig(f.rbacConfigPath)
		if err != nil {
			return nil, fmt.Errorf("vtadmin: --rbac-config %s: %w", f.rbacConfigPath, err)
		}
		rbacConfig = cfg
	case f.enableRBAC:
		return nil, fmt.Errorf("vtadmin: --rbac needs --rbac-config")
	default:
		return nil, fmt.Errorf("vtadmin: pass --rbac (with --rbac-config) or --no-rbac")
	}
	clusters := make([]*cluster.Cluster, len(configs))
	for i, cfg := range configs {
		c, err := cfg.Cluster(cmd.Context())
		if err != nil {
			return nil, fmt.Errorf("vtadmin: cluster %s: %w", cfg.ID, err)
		}
		clusters[i] = c
	}
	if f.cacheRefreshKey == "" {
		log.Warn("no cache-refresh-key set; forcing cache refreshes will not be possible")
	}
	cache.SetCacheRefreshKey(f.cacheRefreshKey)
	env, err := vtenv.New(vtenv.Options{
		MySQLServerVersion: servenv.MySQLServerVersion(),
		TruncateUILen:      servenv.TruncateUILen,
		TruncateErrLen:     servenv.TruncateErrLen,
	})
	if err != nil {
		return nil, fmt.Errorf("vtadmin: %w", err)
	}
	return vtadmin.NewAPI(env, clusters, vtadmin.Options{
		GRPCOpts:              f.grpc,
		HTTPOpts:              f.http,
		RBAC:                  rbacConfig,
		EnableDynamicClusters: f.enableDynamicClusters,
	}), nil
}

// register adds stock vtadmin's flags, and grpccommon's.
func (f *flags) register(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&f.grpc.Addr, "addr", ":15000", "address to serve on")
	fs.DurationVar(&f.grpc.CMuxReadTimeout, "lmux-read-timeout", time.Second, "how long to spend connection muxing")
	fs.DurationVar(&f.grpc.LameDuckDuration, "lame-duck-duration", 5*time.Second, "length of lame duck period at shutdown")

	fs.Var(&f.clusters, "cluster", "per-cluster configuration. any values here take precedence over those in --cluster-defaults or --cluster-config")
	fs.Var(&f.clusterFile, "cluster-config", "path to a yaml cluster configuration")
	fs.Var(&f.clusterDefaults, "cluster-defaults", "default options for all clusters")
	fs.BoolVar(&f.enableDynamicClusters, "enable-dynamic-clusters", false, "whether to enable dynamic clusters that are set by request header cookies or gRPC metadata")

	trace.RegisterFlags(fs)
	fs.BoolVar(&f.grpc.EnableTracing, "grpc-tracing", false, "whether to enable tracing on the gRPC server")
	fs.BoolVar(&f.http.EnableTracing, "http-tracing", false, "whether to enable tracing on the HTTP server")
	fs.BoolVar(&f.grpc.AllowReflection, "grpc-allow-reflection", false, "whether to register the gRPC server for reflection; this is required to use tools like grpc_cli")
	fs.BoolVar(&f.grpc.EnableChannelz, "grpc-enable-channelz", false, "whether to enable the channelz service on the gRPC server")

	fs.BoolVar(&f.http.DisableCompression, "http-no-compress", false, "whether to disable compression of HTTP API responses")
	fs.BoolVar(&f.http.DisableDebug, "http-no-debug", false, "whether to disable /debug/pprof/* and /debug/env HTTP endpoints")
	fs.Var(&debug.OmitEnv, "http-debug-omit-env", "name of an environment variable to omit from /debug/env, if http debug endpoints are enabled. specify multiple times to omit multiple env vars")
	fs.Var(&debug.SanitizeEnv, "http-debug-sanitize-env", "name of an environment variable to sanitize in /debug/env, if http debug endpoints are enabled. specify multiple times to sanitize multiple env vars")
	fs.StringVar(&f.grpc.MetricsEndpoint, "http-metrics-endpoint", "/metrics", "HTTP endpoint to expose prometheus metrics on. Omit to disable scraping metrics.")
	fs.StringSliceVar(&f.http.CORSOrigins, "http-origin", []string{}, "repeated, comma-separated flag of allowed CORS origins. omit to disable CORS")
	fs.StringVar(&f.http.ExperimentalOptions.TabletURLTmpl, "http-tablet-url-tmpl", "https://{{ .Tablet.Hostname }}:80",
		"[EXPERIMENTAL] Go template string to generate a reachable http(s) address for a tablet. Currently used to make passthrough requests to /debug/vars endpoints.")

	fs.StringVar(&f.rbacConfigPath, "rbac-config", "", "path to an RBAC config file. must be set if passing --rbac")
	fs.BoolVar(&f.enableRBAC, "rbac", false, "whether to enable RBAC. must be set if not passing --no-rbac")
	fs.BoolVar(&f.disableRBAC, "no-rbac", false, "whether to disable RBAC. must be set if not passing --rbac")
	fs.StringVar(&f.cacheRefreshKey, "cache-refresh-key", "vt-cache-refresh",
		"instructs a request to ignore any cached data (if applicable) and refresh the cache; usable as an HTTP header named 'X-<key>' and as a gRPC metadata key '<key>'. Any whitespace characters are replaced with hyphens.")

	log.RegisterFlags(fs)
	servenv.RegisterMySQLServerFlags(fs)
	grpcclientcommon.RegisterFlags(fs)
	// Not in stock vtadmin: --grpc-max-message-size and the rest of
	// grpccommon's flags, which every other Vitess binary has.
	grpccommon.RegisterFlags(fs)
}
