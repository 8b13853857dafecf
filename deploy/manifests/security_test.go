package manifests

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/topod-io/topod/pkg/authz"
)

// Hardened are the overlays that must keep the topology from everyone but
// topod: CheckHardened runs on them.
var Hardened = []string{"overlays/prod"}

// copyObjects deep-copies objs, for a test to change the copy.
func copyObjects(objs []Object) []Object {
	out := make([]Object, len(objs))
	for i, o := range objs {
		out[i] = Object{YAML: o.YAML, Unstructured: o.Unstructured.DeepCopy()}
		if o.Typed != nil {
			out[i].Typed = o.Typed.DeepCopyObject()
		}
	}
	return out
}

// find returns the object of kind and name in objs.
func find(t *testing.T, objs []Object, kind, name string) Object {
	t.Helper()
	for _, o := range objs {
		if o.GVK().Kind == kind && o.Unstructured.GetName() == name {
			return o
		}
	}
	t.Fatalf("no %s %s", kind, name)
	return Object{}
}

// without returns objs without the object of kind and name.
func without(t *testing.T, objs []Object, kind, name string) []Object {
	t.Helper()
	find(t, objs, kind, name)
	return slices.DeleteFunc(objs, func(o Object) bool { return o.GVK().Kind == kind && o.Unstructured.GetName() == name })
}

// podSpec is the pod spec of workload kind/name in objs, to change.
func podSpec(t *testing.T, objs []Object, kind, name string) *corev1.PodSpec {
	t.Helper()
	spec, _, _, ok := PodSpec(find(t, objs, kind, name))
	if !ok {
		t.Fatalf("%s %s has no pod", kind, name)
	}
	return spec
}

// setArg replaces --flag=... in the first container of spec by
// --flag=value, or removes it when value is "-".
func setArg(t *testing.T, spec *corev1.PodSpec, flag, value string) {
	t.Helper()
	c := &spec.Containers[0]
	for i, a := range c.Args {
		if a == "--"+flag || strings.HasPrefix(a, "--"+flag+"=") {
			if value == "-" {
				c.Args = slices.Delete(c.Args, i, i+1)
			} else {
				c.Args[i] = "--" + flag + "=" + value
			}
			return
		}
	}
	t.Fatalf("container %s has no --%s", c.Name, flag)
}

// volume returns the volume name of spec.
func volume(t *testing.T, spec *corev1.PodSpec, name string) *corev1.Volume {
	t.Helper()
	for i := range spec.Volumes {
		if spec.Volumes[i].Name == name {
			return &spec.Volumes[i]
		}
	}
	t.Fatalf("no volume %s", name)
	return nil
}

// policy returns NetworkPolicy name of objs, to change.
func policy(t *testing.T, objs []Object, name string) *networkingv1.NetworkPolicy {
	t.Helper()
	return find(t, objs, "NetworkPolicy", name).Typed.(*networkingv1.NetworkPolicy)
}

func matchName(name string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": name}}
}

// TestHardeningCatchesEachMistake puts each protection of the prod overlay
// back out, one at a time, on a copy of its rendered objects, and requires
// the checks to fail with the matching error: etcd admitting a client
// without topod's certificate, a NetworkPolicy missing or letting the wrong
// pods reach etcd's client port (or its peer port, or MinIO's), two
// components sharing a client certificate Secret.
func TestHardeningCatchesEachMistake(t *testing.T) {
	secrets := userSecrets(t)
	prod := render(t, "overlays/prod")
	if err := errors.Join(Check(prod, secrets), CheckHardened(prod)); err != nil {
		t.Fatalf("the prod overlay itself fails: %v", err)
	}
	for _, tc := range []struct {
		name   string
		mutate func(t *testing.T, objs []Object) []Object
		want   string
	}{
		// etcd's client TLS.
		{"etcd without --client-cert-auth", func(t *testing.T, objs []Object) []Object {
			setArg(t, podSpec(t, objs, "StatefulSet", "etcd"), "client-cert-auth", "-")
			return objs
		}, "no --client-cert-auth: client certificates are required only as a side effect of --trusted-ca-file"},
		{"etcd without --client-cert-auth and --trusted-ca-file", func(t *testing.T, objs []Object) []Object {
			spec := podSpec(t, objs, "StatefulSet", "etcd")
			setArg(t, spec, "client-cert-auth", "-")
			setArg(t, spec, "trusted-ca-file", "-")
			return objs
		}, "no --client-cert-auth: etcd admits a client without a certificate"},
		{"etcd with --client-cert-auth=false", func(t *testing.T, objs []Object) []Object {
			setArg(t, podSpec(t, objs, "StatefulSet", "etcd"), "client-cert-auth", "false")
			return objs
		}, "no --client-cert-auth"},
		{"etcd listening on http://", func(t *testing.T, objs []Object) []Object {
			setArg(t, podSpec(t, objs, "StatefulSet", "etcd"), "listen-client-urls", "http://0.0.0.0:2379")
			return objs
		}, "--listen-client-urls http://0.0.0.0:2379: clients connect without TLS"},
		{"etcd without --trusted-ca-file", func(t *testing.T, objs []Object) []Object {
			setArg(t, podSpec(t, objs, "StatefulSet", "etcd"), "trusted-ca-file", "-")
			return objs
		}, "no --trusted-ca-file"},
		{"etcd trusting its members' CA for clients", func(t *testing.T, objs []Object) []Object {
			setArg(t, podSpec(t, objs, "StatefulSet", "etcd"), "trusted-ca-file", "/etc/etcd/tls/ca.crt")
			return objs
		}, "--trusted-ca-file is key ca.crt of Secret etcd-tls, not the ca.crt of topod's etcd client certificate"},
		{"etcd trusting the CA of every component's certificate", func(t *testing.T, objs []Object) []Object {
			volume(t, podSpec(t, objs, "StatefulSet", "etcd"), "client-ca").Secret.SecretName = "topod-server-tls"
			return objs
		}, "--trusted-ca-file is key ca.crt of Secret topod-server-tls"},
		{"topod presenting no certificate to etcd", func(t *testing.T, objs []Object) []Object {
			setArg(t, podSpec(t, objs, "Deployment", "topod"), "etcd-tls-cert", "-")
			return objs
		}, "topod presents no client certificate to etcd"},
		{"vtgate holding topod's etcd client certificate", func(t *testing.T, objs []Object) []Object {
			volume(t, podSpec(t, objs, "Deployment", "vtgate"), "topod-client-tls").Secret.SecretName = "topod-etcd-client-tls"
			return objs
		}, "Deployment/topod/vtgate mounts Secret topod-etcd-client-tls, topod's etcd client certificate"},
		{"topod's server CA signing its etcd certificate", func(t *testing.T, objs []Object) []Object {
			spec := podSpec(t, objs, "Deployment", "topod")
			volume(t, spec, "etcd-client-tls").Secret.SecretName = "topod-server-tls"
			volume(t, podSpec(t, objs, "StatefulSet", "etcd"), "client-ca").Secret.SecretName = "topod-server-tls"
			return objs
		}, "--tls-client-ca reads Secret topod-server-tls, the CA of which etcd trusts for clients"},

		// NetworkPolicies.
		{"no NetworkPolicy for etcd", func(t *testing.T, objs []Object) []Object {
			return without(t, objs, "NetworkPolicy", "etcd")
		}, "StatefulSet/topod/etcd: no NetworkPolicy isolates its pods for ingress: every pod of the cluster reaches etcd's client port (port 2379)"},
		{"etcd's policy selecting other pods", func(t *testing.T, objs []Object) []Object {
			policy(t, objs, "etcd").Spec.PodSelector = *matchName("etcd-typo")
			return objs
		}, "no NetworkPolicy isolates its pods for ingress: every pod of the cluster reaches etcd's client port"},
		{"etcd's policy for egress only", func(t *testing.T, objs []Object) []Object {
			policy(t, objs, "etcd").Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
			return objs
		}, "no NetworkPolicy isolates its pods for ingress: every pod of the cluster reaches etcd's client port"},
		{"etcd's client port open to vtgate instead of topod", func(t *testing.T, objs []Object) []Object {
			policy(t, objs, "etcd").Spec.Ingress[0].From[0].PodSelector = matchName("vtgate")
			return objs
		}, "admits Deployment/topod/vtgate's pods to etcd's client port"},
		{"etcd's client port open to vtgate too", func(t *testing.T, objs []Object) []Object {
			p := policy(t, objs, "etcd")
			p.Spec.Ingress[0].From = append(p.Spec.Ingress[0].From, networkingv1.NetworkPolicyPeer{PodSelector: matchName("vtgate")})
			return objs
		}, "admits Deployment/topod/vtgate's pods to etcd's client port"},
		{"etcd's client port open to the namespace", func(t *testing.T, objs []Object) []Object {
			policy(t, objs, "etcd").Spec.Ingress[0].From[0].PodSelector = &metav1.LabelSelector{}
			return objs
		}, "admits every pod of the namespace to etcd's client port"},
		{"etcd's client port open to other namespaces", func(t *testing.T, objs []Object) []Object {
			policy(t, objs, "etcd").Spec.Ingress[0].From[0].NamespaceSelector = &metav1.LabelSelector{}
			return objs
		}, "admits pods of other namespaces to etcd's client port"},
		{"etcd's client rule with no sources", func(t *testing.T, objs []Object) []Object {
			policy(t, objs, "etcd").Spec.Ingress[0].From = nil
			return objs
		}, "admits every source to etcd's client port"},
		{"etcd's metrics rule on every port", func(t *testing.T, objs []Object) []Object {
			policy(t, objs, "etcd").Spec.Ingress[2].Ports = nil
			return objs
		}, "NetworkPolicy etcd ingress rule 3 admits every source to etcd's client port"},
		{"etcd's client port by an IP block", func(t *testing.T, objs []Object) []Object {
			policy(t, objs, "etcd").Spec.Ingress[0].From = []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8"}}}
			return objs
		}, "admits IP block 10.0.0.0/8 to etcd's client port"},
		{"etcd's peer port open to topod", func(t *testing.T, objs []Object) []Object {
			policy(t, objs, "etcd").Spec.Ingress[1].From[0].PodSelector = matchName("topod")
			return objs
		}, "admits Deployment/topod/topod's pods to etcd's peer port"},
		{"no NetworkPolicy for MinIO", func(t *testing.T, objs []Object) []Object {
			return without(t, objs, "NetworkPolicy", "minio")
		}, "StatefulSet/topod/minio: no NetworkPolicy isolates its pods for ingress: every pod of the cluster reaches MinIO's S3 port (port 9000)"},
		{"MinIO open to vtctld", func(t *testing.T, objs []Object) []Object {
			p := policy(t, objs, "minio")
			p.Spec.Ingress[0].From = append(p.Spec.Ingress[0].From, networkingv1.NetworkPolicyPeer{PodSelector: matchName("vtctld")})
			return objs
		}, "admits Deployment/topod/vtctld's pods to MinIO's S3 port"},
		{"MinIO closed to topod", func(t *testing.T, objs []Object) []Object {
			policy(t, objs, "minio").Spec.Ingress[0].From = []networkingv1.NetworkPolicyPeer{{PodSelector: matchName("minio-bucket")}}
			return objs
		}, "no NetworkPolicy lets topod reach MinIO's S3 port"},

		// One client certificate per component.
		{"vtgate presenting vtctld's certificate", func(t *testing.T, objs []Object) []Object {
			volume(t, podSpec(t, objs, "Deployment", "vtgate"), "topod-client-tls").Secret.SecretName = "vtctld-client-tls"
			return objs
		}, "Secret vtctld-client-tls holds the certificate of vtctld (Deployment/topod/vtctld container vtctld), vtgate (Deployment/topod/vtgate container vtgate)"},
		{"topod's probe presenting vttablet's certificate", func(t *testing.T, objs []Object) []Object {
			volume(t, podSpec(t, objs, "Deployment", "topod"), "topod-health-client-tls").Secret.SecretName = "vttablet-client-tls"
			return objs
		}, "Secret vttablet-client-tls holds the certificate of topod-health"},
		{"topod's etcd client certificate as its server certificate", func(t *testing.T, objs []Object) []Object {
			volume(t, podSpec(t, objs, "Deployment", "topod"), "etcd-client-tls").Secret.SecretName = "topod-server-tls"
			return objs
		}, "Secret topod-server-tls holds the certificate of topod (Deployment/topod/topod container topod), topod server"},
		{"every component on one Secret (before issue 22)", func(t *testing.T, objs []Object) []Object {
			for _, o := range objs {
				spec, _, _, ok := PodSpec(o)
				if !ok {
					continue
				}
				for i := range spec.Volumes {
					if v := &spec.Volumes[i]; v.Name == "topod-client-tls" || v.Name == "topod-health-client-tls" {
						v.Secret.SecretName = "topod-client-tls"
					}
				}
			}
			return objs
		}, "Secret topod-client-tls holds the certificate of topod-health (Deployment/topod/topod container topod), vschemad"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := tc.mutate(t, copyObjects(prod))
			err := errors.Join(Check(objs, secrets), CheckHardened(objs))
			if err == nil {
				t.Fatal("passed every check")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error does not say %q:\n%v", tc.want, err)
			}
			t.Logf("caught: %.400s", err)
		})
	}
}

// certificate is what TestCertManagerIssuesProdCertificates reads of a
// cert-manager Certificate.
type certificate struct {
	Metadata struct{ Name string }
	Spec     struct {
		SecretName string
		IssuerRef  struct{ Kind, Name string }
		CommonName string
		DNSNames   []string
		URIs       []string
		IsCA       bool
		Usages     []string
	}
}

// TestCertManagerIssuesProdCertificates checks examples/cert-manager
// against what the prod overlay mounts: every certificate and key a prod
// container reads comes from a Certificate of the example; each client
// certificate names its component (subject CN and the URI SAN
// spiffe://topod.local/ns/<namespace>/sa/<component>) and is for client
// auth; topod's etcd client certificate comes from an Issuer that issues
// nothing else (etcd admits what that CA signs); and the authorization
// policy of prod (topod-authz-policy.yaml) knows every Vitess component by
// both its names.
func TestCertManagerIssuesProdCertificates(t *testing.T) {
	prod := render(t, "overlays/prod")
	cs, err := Containers(prod)
	if err != nil {
		t.Fatal(err)
	}
	ns := find(t, prod, "Deployment", "topod").Unstructured.GetNamespace()
	certs := map[string]certificate{} // by Secret
	issued := map[string][]string{}   // Issuer -> Secrets
	for _, o := range render(t, "examples/cert-manager") {
		if o.GVK().Kind != "Certificate" {
			continue
		}
		if o.Unstructured.GetNamespace() != ns {
			t.Errorf("Certificate %s is in namespace %q, prod in %q", o.Unstructured.GetName(), o.Unstructured.GetNamespace(), ns)
		}
		var c certificate
		if err := yaml.Unmarshal(o.YAML, &c); err != nil {
			t.Fatal(err)
		}
		if _, dup := certs[c.Spec.SecretName]; dup {
			t.Errorf("two Certificates write Secret %s", c.Spec.SecretName)
		}
		certs[c.Spec.SecretName] = c
		issued[c.Spec.IssuerRef.Name] = append(issued[c.Spec.IssuerRef.Name], c.Spec.SecretName)
	}

	clients := map[string]string{} // identity -> Secret, for topod's clients
	checked := map[string]bool{}
	for _, u := range TLSUses(cs) {
		if u.Identity == "" || checked[u.File.Secret+"/"+u.Identity] {
			continue
		}
		checked[u.File.Secret+"/"+u.Identity] = true
		c, ok := certs[u.File.Secret]
		if !ok {
			t.Errorf("%s: --%s reads Secret %s, which examples/cert-manager does not issue", u.Container.Where(), u.Flag, u.File.Secret)
			continue
		}
		switch {
		case u.Identity == "etcd":
			for _, usage := range []string{"server auth", "client auth"} {
				if !slices.Contains(c.Spec.Usages, usage) {
					t.Errorf("Certificate %s (etcd's members, for clients and peers) lacks usage %q", c.Metadata.Name, usage)
				}
			}
		case strings.HasSuffix(u.Identity, " server"):
			if !slices.Contains(c.Spec.Usages, "server auth") || slices.Contains(c.Spec.Usages, "client auth") {
				t.Errorf("Certificate %s (%s) has usages %v: want server auth, not client auth", c.Metadata.Name, u.Identity, c.Spec.Usages)
			}
		default:
			wantURI := "spiffe://topod.local/ns/" + ns + "/sa/" + u.Identity
			if c.Spec.CommonName != u.Identity || !slices.Equal(c.Spec.URIs, []string{wantURI}) {
				t.Errorf("Certificate %s (%s's client certificate): CN %q, URIs %v; want CN %q and URI %s",
					c.Metadata.Name, u.Identity, c.Spec.CommonName, c.Spec.URIs, u.Identity, wantURI)
			}
			if !slices.Equal(c.Spec.Usages, []string{"client auth"}) {
				t.Errorf("Certificate %s (%s's client certificate) has usages %v: want client auth only", c.Metadata.Name, u.Identity, c.Spec.Usages)
			}
			if u.Flag == "topod-tls-cert" {
				clients[u.Identity] = u.File.Secret
			}
		}
	}
	for _, want := range []string{"vtctld", "vtgate", "vttablet", "vtorc", "vschemad", "topod-health"} {
		if _, ok := clients[want]; !ok {
			t.Errorf("no client certificate of %s to topod in prod (have %v)", want, clients)
		}
	}

	// etcd trusts the CA of topod's etcd client certificate: the Issuer
	// of that certificate must issue nothing else.
	for _, c := range cs {
		if c.Binary() != "etcd" || !c.LongRunning {
			continue
		}
		ca, _ := c.Flag("trusted-ca-file")
		sf, ok := SecretOf(c, ca)
		if !ok {
			t.Fatalf("%s: --trusted-ca-file %s from no Secret", c.Where(), ca)
		}
		cert, ok := certs[sf.Secret]
		if !ok {
			t.Fatalf("etcd trusts the CA of Secret %s, which examples/cert-manager does not issue", sf.Secret)
		}
		if got := issued[cert.Spec.IssuerRef.Name]; !slices.Equal(got, []string{sf.Secret}) {
			t.Errorf("Issuer %s, whose CA etcd trusts for clients, issues %v: it must issue %s alone", cert.Spec.IssuerRef.Name, got, sf.Secret)
		}
		if cert.Spec.IssuerRef.Name == "topod-ca" {
			t.Errorf("etcd trusts topod-ca, which signs every component's certificate")
		}
	}

	// The policy knows every client of topod by its URI SAN and its CN;
	// topod's probe calls only the gRPC health service, which topod
	// answers without asking the policy.
	b, err := os.ReadFile(filepath.Join(deployDir, "overlays/prod/topod-authz-policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := authz.Parse(b)
	if err != nil {
		t.Fatalf("topod-authz-policy.yaml: %v", err)
	}
	for id, secret := range clients {
		if id == "topod-health" {
			continue
		}
		// Each of the certificate's names alone is the component's
		// principal.
		c := certs[secret]
		for _, name := range []string{c.Spec.URIs[0], "cn:" + c.Spec.CommonName} {
			if _, principals := p.Allows([]string{name}, authz.Access{Role: authz.Read, Anywhere: true}); !slices.Equal(principals, []string{id}) {
				t.Errorf("topod-authz-policy.yaml: %s's certificate (Secret %s) name %s matches principals %q, want %s", id, secret, name, principals, id)
			}
		}
	}
}

// TestNetworkPolicyPorts covers ruleCovers's port forms.
func TestNetworkPolicyPorts(t *testing.T) {
	cports := []corev1.ContainerPort{{Name: "client", ContainerPort: 2379}}
	for _, tc := range []struct {
		yaml string
		want bool
	}{
		{`[]`, true},
		{`[{port: 2379}]`, true},
		{`[{port: 2380}]`, false},
		{`[{port: client}]`, true},
		{`[{port: peer}]`, false},
		{`[{port: 2000, endPort: 3000}]`, true},
		{`[{port: 2380, endPort: 3000}]`, false},
		{`[{protocol: UDP, port: 2379}]`, false},
		{`[{protocol: TCP}]`, true},
	} {
		var ports []networkingv1.NetworkPolicyPort
		if err := yaml.UnmarshalStrict([]byte(tc.yaml), &ports); err != nil {
			t.Fatal(err)
		}
		if got := ruleCovers(ports, 2379, cports); got != tc.want {
			t.Errorf("%s covers 2379: %v, want %v", tc.yaml, got, tc.want)
		}
	}
}
