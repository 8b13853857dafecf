package manifests

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/topod-io/topod/internal/freeport"
	"github.com/topod-io/topod/internal/harness"
)

// The CRDs of the custom resources in deploy/examples: cert-manager's and
// the Prometheus operator's from their Go modules (the module proxy serves
// them, with their published CRD YAML inside), the vitess-operator's
// vendored (its module is not served here).
var crdModules = []struct{ module, file string }{
	{"github.com/cert-manager/cert-manager@v1.21.2", "deploy/crds/cert-manager.io_certificates.yaml"},
	{"github.com/cert-manager/cert-manager@v1.21.2", "deploy/crds/cert-manager.io_issuers.yaml"},
	{"github.com/prometheus-operator/prometheus-operator@v0.85.0", "example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml"},
	{"github.com/prometheus-operator/prometheus-operator@v0.85.0", "example/prometheus-operator-crd/monitoring.coreos.com_podmonitors.yaml"},
	{"github.com/prometheus-operator/prometheus-operator@v0.85.0", "example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml"},
}

const vendoredCRDs = "testdata/crds"

// kubeAPIServer is the binary `make test-deploy` builds.
func kubeAPIServer(t *testing.T) string {
	bin := os.Getenv("KUBE_APISERVER")
	if bin == "" {
		bin, _ = filepath.Abs("../../.cache/kube/kube-apiserver")
	}
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("DEPLOY_REQUIRE_APISERVER") != "" {
			t.Fatalf("kube-apiserver not found at %s: `make test-deploy` builds it (%v)", bin, err)
		}
		t.Skipf("kube-apiserver not built (%s): `make test-deploy` builds it and runs this test", bin)
	}
	return bin
}

// startAPIServer runs Kubernetes' kube-apiserver on an in-process etcd
// 3.6.10 and returns a client configuration for it (a bearer token in
// system:masters).
func startAPIServer(t *testing.T) *rest.Config {
	bin := kubeAPIServer(t)
	etcd := harness.StartEtcd(t, 1)
	dir := t.TempDir()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "sa.key")
	der := x509.MarshalPKCS1PrivateKey(key)
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	const token = "deploy-test-token"
	tokens := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(token+`,admin,admin,"system:masters"`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ports, err := freeport.Pick(1)
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ports[0])
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin,
		"--etcd-servers="+etcd.Endpoint(0),
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port="+port,
		"--cert-dir="+filepath.Join(dir, "certs"),
		"--token-auth-file="+tokens,
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+keyFile,
		"--service-account-signing-key-file="+keyFile,
		"--service-cluster-ip-range=10.0.0.0/24",
		"--allow-privileged=true",
		"--enable-priority-and-fairness=false",
		// The endpoint reconciler refuses a loopback advertise address;
		// nothing here needs the kubernetes Service's endpoints.
		"--endpoint-reconciler-type=none",
	)
	logFile, err := os.Create(filepath.Join(dir, "kube-apiserver.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cancel()
		<-exited
		logFile.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logFile.Name())
			t.Logf("kube-apiserver log (tail):\n%s", tail(string(b), 4000))
		}
	})
	cfg := &rest.Config{Host: "https://127.0.0.1:" + port, BearerToken: token,
		TLSClientConfig: rest.TLSClientConfig{Insecure: true}, QPS: 200, Burst: 400}
	// Ready: /readyz answers 200.
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		resp, err := hc.Get(cfg.Host + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("kube-apiserver not ready after 3 minutes (last: %v)", err)
		}
		select {
		case werr := <-exited:
			exited <- werr
			t.Fatalf("kube-apiserver exited: %v", werr)
		case <-time.After(500 * time.Millisecond):
		}
	}
	return cfg
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// crdFiles returns the CRD files to install: from the module cache
// (`go mod download` through the module proxy) and the vendored ones.
func crdFiles(t *testing.T) []string {
	var files []string
	dirs := map[string]string{}
	for _, c := range crdModules {
		dir, ok := dirs[c.module]
		if !ok {
			out, err := exec.Command("go", "mod", "download", "-json", c.module).Output()
			if err != nil {
				t.Fatalf("go mod download %s: %v", c.module, err)
			}
			var m struct{ Dir, Error string }
			if err := json.Unmarshal(out, &m); err != nil || m.Dir == "" {
				t.Fatalf("go mod download %s: %s %v", c.module, m.Error, err)
			}
			dir, dirs[c.module] = m.Dir, m.Dir
		}
		files = append(files, filepath.Join(dir, c.file))
	}
	vendored, _ := filepath.Glob(filepath.Join(vendoredCRDs, "*.yaml"))
	return append(files, vendored...)
}

// client holds what applying needs.
type client struct {
	dyn    dynamic.Interface
	mapper meta.RESTMapper
}

func newClient(t *testing.T, cfg *rest.Config) *client {
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := &client{dyn: dyn}
	c.refreshMapper(t, cfg)
	return c
}

func (c *client) refreshMapper(t *testing.T, cfg *rest.Config) {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	groups, err := restmapper.GetAPIGroupResources(dc)
	if err != nil {
		t.Fatal(err)
	}
	c.mapper = restmapper.NewDiscoveryRESTMapper(groups)
}

// apply server-side applies u (dryRun=All unless real) with strict field
// validation: an unknown or duplicate field is an error.
func (c *client) apply(ctx context.Context, u *unstructured.Unstructured, dryRun bool) error {
	gvk := u.GroupVersionKind()
	m, err := c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return fmt.Errorf("%s %s: %w", gvk.Kind, u.GetName(), err)
	}
	data, err := u.MarshalJSON()
	if err != nil {
		return err
	}
	var r dynamic.ResourceInterface = c.dyn.Resource(m.Resource)
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		r = c.dyn.Resource(m.Resource).Namespace(u.GetNamespace())
	}
	force := true
	opts := metav1.PatchOptions{FieldManager: "topod-deploy-test", Force: &force, FieldValidation: "Strict"}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	_, err = r.Patch(ctx, u.GetName(), types.ApplyPatchType, data, opts)
	return err
}

// installCRDs applies the CRDs for real and waits until each is served.
func installCRDs(t *testing.T, ctx context.Context, cfg *rest.Config, c *client) {
	for _, f := range crdFiles(t) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := DecodeAll(b)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, o := range objs {
			if err := c.apply(ctx, o.Unstructured, false); err != nil {
				t.Fatalf("install CRD %s: %v", f, err)
			}
		}
	}
	crdGVR := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	deadline := time.Now().Add(time.Minute)
	for {
		list, err := c.dyn.Resource(crdGVR).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		established := 0
		for _, crd := range list.Items {
			conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
			for _, cd := range conds {
				m, _ := cd.(map[string]any)
				if m["type"] == "Established" && m["status"] == "True" {
					established++
				}
			}
		}
		if established == len(list.Items) && established >= len(crdModules)+1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("CRDs not established: %d of %d", established, len(list.Items))
		}
		time.Sleep(300 * time.Millisecond)
	}
	c.refreshMapper(t, cfg)
}

// renderUnstructured renders dir without decoding into typed objects, for
// a fixture that is meant not to decode.
func renderUnstructured(t *testing.T, dir string) []*unstructured.Unstructured {
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []*unstructured.Unstructured
	for _, r := range m.Resources() {
		b, err := r.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(b); err != nil {
			t.Fatal(err)
		}
		out = append(out, u)
	}
	return out
}

// TestAPIServerAcceptsEveryObject starts a real kube-apiserver (built by
// `make test-deploy`; skipped under plain go test when it is absent,
// required when DEPLOY_REQUIRE_APISERVER is set), installs the CRDs, and
// server-side applies, with dryRun=All and strict field validation, every
// object of every overlay and example: the server must accept each one.
// The misspelled-field fixture must be refused.
func TestAPIServerAcceptsEveryObject(t *testing.T) {
	cfg := startAPIServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c := newClient(t, cfg)
	installCRDs(t, ctx, cfg, c)

	applied := 0
	for _, dir := range append(append([]string{}, Overlays...), Examples...) {
		objs := render(t, dir)
		// Namespaces for real first (a dry run creates nothing), the
		// examples' too.
		namespaces := map[string]bool{}
		for _, o := range objs {
			if ns := o.Unstructured.GetNamespace(); ns != "" {
				namespaces[ns] = true
			}
		}
		for ns := range namespaces {
			n := &unstructured.Unstructured{}
			n.SetAPIVersion("v1")
			n.SetKind("Namespace")
			n.SetName(ns)
			if err := c.apply(ctx, n, false); err != nil {
				t.Fatalf("namespace %s: %v", ns, err)
			}
		}
		for _, o := range objs {
			if err := c.apply(ctx, o.Unstructured, true); err != nil {
				t.Errorf("%s: the API server refuses %s: %v", dir, o.Name(), err)
				continue
			}
			applied++
		}
	}
	t.Logf("the API server accepted %d objects (dry run, strict field validation)", applied)

	// The VitessCluster is checked against the operator's schema: a
	// misspelled field of it is refused too.
	for _, o := range render(t, "examples/vitess-operator") {
		if o.GVK().Kind != "VitessCluster" {
			continue
		}
		bad := o.Unstructured.DeepCopy()
		unstructured.SetNestedField(bad.Object, "topod", "spec", "globalLockServer", "external", "implementation")
		err := c.apply(ctx, bad, true)
		if err == nil || !strings.Contains(err.Error(), "globalLockServer") {
			t.Errorf("the API server did not refuse a misspelled VitessCluster field: %v", err)
		} else {
			t.Logf("misspelled VitessCluster field refused: %v", err)
		}
	}

	// The misspelled fixture: the server refuses the misspelled field.
	var refused error
	for _, u := range renderUnstructured(t, filepath.Join(deployDir, "manifests/testdata/bad/misspelled-field")) {
		if u.GetKind() == "Deployment" && u.GetName() == "vtgate" {
			refused = c.apply(ctx, u, true)
		}
	}
	if refused == nil || !strings.Contains(refused.Error(), "imagePullPolicyy") {
		t.Fatalf("the API server did not refuse the misspelled field: %v", refused)
	}
	t.Logf("misspelled field refused: %v", refused)
}
