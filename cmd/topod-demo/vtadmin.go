package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/topod-io/topod/internal/proc"
	"github.com/topod-io/topod/internal/vtlocal"
)

// vtadminCluster is the cluster's id and name in VTAdmin, as in Vitess's
// local example.
const vtadminCluster = "local"

// startVTAdmin starts vtadmin-api on the demo's vtctld and vtgate, as
// Vitess's local example does (static file discovery, RBAC allowing
// everything, in DATA/vtadmin), and, if there is a vtadmin-web build, this
// program's `vtadmin-web` serving it.
func startVTAdmin(ctx context.Context, c config, id *proc.Identity) error {
	v := vtlocal.VTAdmin{
		Port:       c.vtadminPort,
		Origins:    []string{c.vtadminWebURL(), fmt.Sprintf("http://localhost:%d", c.vtadminWebPort)},
		ClusterID:  vtadminCluster,
		VtctldPort: c.vtctldPort, VtctldGRPCPort: c.vtctldGRPCPort,
		VtgatePort: c.vtgatePort, VtgateGRPCPort: c.vtgateGRPCPort,
		TabletHTTPPorts: map[uint32]int{},
		// The keyspaces page reads each keyspace's shards at once: 2,001
		// reads through a pool of 500 (vtlocal.VTAdmin).
		TopoReadTimeout: 30 * time.Second,
	}
	for _, t := range commerceTablets(c) {
		v.TabletHTTPPorts[t.UID] = t.Port
	}
	args, err := v.WriteConfig(c.path("vtadmin"))
	if err != nil {
		return fmt.Errorf("vtadmin: %w", err)
	}
	err = startProcess(ctx, c, id, process{
		spec:  proc.Spec{Name: "vtadmin", Binary: c.bin("vtadmin"), Args: args},
		ports: []int{c.vtadminPort},
		wait: func(ctx context.Context, p *proc.Process) error {
			return p.WaitHTTP(ctx, c.vtadminURL()+"/api/clusters")
		},
	})
	if err != nil || c.vtadminWeb == "" {
		return err
	}
	if _, err := os.Stat(filepath.Join(c.vtadminWeb, "index.html")); err != nil {
		return fmt.Errorf("vtadmin-web: no build in %s (`make vtadmin-web` builds it): %w", c.vtadminWeb, err)
	}
	if err := id.CheckAccess(filepath.Join(c.vtadminWeb, "index.html"), false); err != nil {
		return fmt.Errorf("vtadmin-web: %w", err)
	}
	return startProcess(ctx, c, id, process{
		spec: proc.Spec{Name: "vtadmin-web", Binary: c.bin("topod-demo"), Args: []string{"vtadmin-web",
			"--listen", fmt.Sprintf("127.0.0.1:%d", c.vtadminWebPort), "--dir", c.vtadminWeb, "--api", c.vtadminURL()}},
		ports: []int{c.vtadminWebPort},
		wait: func(ctx context.Context, p *proc.Process) error {
			return p.WaitHTTP(ctx, c.vtadminWebURL()+"/config/config.js")
		},
	})
}

// newWebCommand is `topod-demo vtadmin-web`, the demo's vtadmin-web server:
// the static files of vtadmin-web's build, any other path answered with
// its index.html (the app routes in the browser), and /config/config.js,
// the run-time configuration the build reads (its public/config/config.js),
// naming vtadmin-api's address.
func newWebCommand() *cobra.Command {
	var listen, dir, api string
	cmd := &cobra.Command{
		Use:    "vtadmin-web",
		Short:  "Serve vtadmin-web's build, configured for the vtadmin-api at --api (the demo runs it)",
		Args:   cobra.NoArgs,
		Hidden: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			h, err := webHandler(dir, api)
			if err != nil {
				return err
			}
			srv := &http.Server{Addr: listen, Handler: h, ReadHeaderTimeout: 10 * time.Second}
			fmt.Printf("vtadmin-web: serving %s on http://%s, vtadmin-api at %s\n", dir, listen, api)
			return srv.ListenAndServe()
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "127.0.0.1:14201", "address to serve on")
	f.StringVar(&dir, "dir", "", "vtadmin-web's build directory")
	f.StringVar(&api, "api", "http://127.0.0.1:14200", "vtadmin-api's HTTP address, as the browser reaches it")
	return cmd
}

// webConfig is vtadmin-web's run-time configuration (window.env; the
// build's own public/config/config.js has the same keys, the API address
// empty).
func webConfig(api string) ([]byte, error) {
	env, err := json.MarshalIndent(map[string]any{
		"VITE_VTADMIN_API_ADDRESS":                   api,
		"VITE_FETCH_CREDENTIALS":                     "omit",
		"VITE_ENABLE_EXPERIMENTAL_TABLET_DEBUG_VARS": true,
		"VITE_BUGSNAG_API_KEY":                       "",
		"VITE_DOCUMENT_TITLE":                        "",
		"VITE_READONLY_MODE":                         false,
	}, "", "  ")
	if err != nil {
		return nil, err
	}
	return fmt.Appendf(nil, "window.env = %s;\n", env), nil
}

// webHandler serves vtadmin-web's build in dir, configured for api.
func webHandler(dir, api string) (http.Handler, error) {
	if dir == "" {
		return nil, errors.New("--dir is required")
	}
	index := filepath.Join(dir, "index.html")
	if _, err := os.Stat(index); err != nil {
		return nil, fmt.Errorf("no vtadmin-web build: %w", err)
	}
	config, err := webConfig(api)
	if err != nil {
		return nil, err
	}
	files := http.FileServer(http.Dir(dir))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := path.Clean("/" + r.URL.Path)
		switch {
		case p == "/config/config.js":
			w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
			w.Header().Set("Cache-Control", "no-store")
			w.Write(config)
		case p != "/" && !strings.HasSuffix(p, "/index.html") && isFile(filepath.Join(dir, filepath.FromSlash(p))):
			files.ServeHTTP(w, r)
		default:
			// The app's own routes (/keyspaces, /topology/...).
			w.Header().Set("Cache-Control", "no-cache")
			http.ServeFile(w, r, index)
		}
	}), nil
}

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}
