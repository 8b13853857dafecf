package manifests

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// CheckHardened runs the checks an overlay that keeps the topology from
// everyone but topod must pass (prod): etcd admits topod's client
// certificate only, and NetworkPolicies let only topod reach etcd's client
// port and MinIO's S3 port.
func CheckHardened(objs []Object) error {
	cs, err := Containers(objs)
	return errors.Join(err,
		CheckEtcdAdmitsOnlyTopod(cs),
		CheckNetworkPolicies(objs, cs),
	)
}

// argFlag returns the value of --name (as --name=value or --name value) in
// argv, and whether it is there.
func argFlag(argv []string, name string) (string, bool) {
	for i, a := range argv {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
		if a == "--"+name {
			if i+1 < len(argv) && !strings.HasPrefix(argv[i+1], "-") {
				return argv[i+1], true
			}
			return "", true
		}
	}
	return "", false
}

// SecretFile is a file a container reads from a Secret volume.
type SecretFile struct {
	Secret, Key string
}

// SecretOf returns the Secret and key that the file at path comes from in
// container c (through its volume mounts and the pod's Secret or projected
// volumes), or false when it comes from no Secret.
func SecretOf(c Container, file string) (SecretFile, bool) {
	spec, _, _, ok := PodSpec(c.Object)
	if !ok {
		return SecretFile{}, false
	}
	// The mount holding the file: the longest mount path it is under.
	var mount *corev1.VolumeMount
	for i, m := range c.Spec.VolumeMounts {
		mp := strings.TrimSuffix(m.MountPath, "/")
		if (file == mp || strings.HasPrefix(file, mp+"/")) && (mount == nil || len(mp) > len(mount.MountPath)) {
			mount = &c.Spec.VolumeMounts[i]
		}
	}
	if mount == nil {
		return SecretFile{}, false
	}
	rel := strings.TrimPrefix(strings.TrimPrefix(file, strings.TrimSuffix(mount.MountPath, "/")), "/")
	if mount.SubPath != "" {
		rel = path.Join(mount.SubPath, rel)
	}
	keyOf := func(items []corev1.KeyToPath) (string, bool) {
		if len(items) == 0 {
			return rel, true
		}
		for _, it := range items {
			if path.Clean(it.Path) == path.Clean(rel) {
				return it.Key, true
			}
		}
		return "", false
	}
	for _, v := range spec.Volumes {
		if v.Name != mount.Name {
			continue
		}
		switch {
		case v.Secret != nil:
			if k, ok := keyOf(v.Secret.Items); ok {
				return SecretFile{v.Secret.SecretName, k}, true
			}
		case v.Projected != nil:
			for _, s := range v.Projected.Sources {
				if s.Secret == nil {
					continue
				}
				if k, ok := keyOf(s.Secret.Items); ok && (len(s.Secret.Items) > 0 || len(v.Projected.Sources) == 1) {
					return SecretFile{s.Secret.Name, k}, true
				}
			}
		}
	}
	return SecretFile{}, false
}

// tlsFlags are the flags of the commands deployed here that name a TLS
// file (certificate, key or CA), and what the file is.
var tlsFlags = map[string]string{
	// topod serve, vschemad serve
	"tls-cert": "server certificate", "tls-key": "server key", "tls-client-ca": "client CA",
	// the topod plugin, topod health
	"topod-tls-cert": "client certificate", "topod-tls-key": "client key", "topod-tls-ca": "server CA",
	// topod's etcd client
	"etcd-tls-cert": "client certificate", "etcd-tls-key": "client key", "etcd-tls-ca": "server CA",
	// etcd
	"cert-file": "server certificate", "key-file": "server key", "trusted-ca-file": "client CA",
	"client-cert-file": "client certificate", "client-key-file": "client key",
	"peer-cert-file": "peer certificate", "peer-key-file": "peer key", "peer-trusted-ca-file": "peer CA",
}

// TLSUse is one TLS file a container (or its exec probe) reads from a
// Secret: who reads it, by which flag, and as which identity.
type TLSUse struct {
	Container Container
	// Probe reports a file read by the container's exec probe.
	Probe bool
	Flag  string
	File  SecretFile
	// Identity names the party whose certificate (or key) this is, for a
	// certificate or key flag: the Vitess command (vtgate, vttablet, ...),
	// "topod-health" (topod's probe), "topod" (topod's etcd client),
	// "topod server", "vschemad server", "etcd". Empty for a CA.
	Identity string
}

// TLSUses lists every TLS file every container and exec probe of cs reads
// from a Secret.
func TLSUses(cs []Container) []TLSUse {
	var uses []TLSUse
	for _, c := range cs {
		lines := [][]string{c.Argv}
		lines = append(lines, c.ProbeArgvs...)
		for i, argv := range lines {
			if len(argv) == 0 {
				continue
			}
			bin := path.Base(argv[0])
			probe := i > 0
			flags := make([]string, 0, len(tlsFlags))
			for f := range tlsFlags {
				flags = append(flags, f)
			}
			sort.Strings(flags)
			for _, f := range flags {
				file, ok := argFlag(argv, f)
				if !ok || file == "" {
					continue
				}
				sf, ok := SecretOf(c, file)
				if !ok {
					continue
				}
				u := TLSUse{Container: c, Probe: probe, Flag: f, File: sf}
				if !strings.Contains(tlsFlags[f], "CA") {
					u.Identity = identity(bin, argv, f)
				}
				uses = append(uses, u)
			}
		}
	}
	return uses
}

// identity names whose certificate flag f of command line argv (binary
// bin) presents.
func identity(bin string, argv []string, f string) string {
	switch {
	case bin == "topod" && slices.Contains(argv, "health"):
		return "topod-health"
	case bin == "topod" && strings.HasPrefix(f, "etcd-tls-"):
		return "topod"
	case bin == "etcd":
		return "etcd"
	case strings.HasPrefix(f, "tls-"):
		return bin + " server"
	}
	return bin
}

// CheckOwnClientCertificates requires every party to present a certificate
// of its own: no Secret holds the certificate or key of two of them (two
// Vitess commands, topod's probe, topod's etcd client, a server). topod's
// authorization policy tells clients apart by their certificates' names,
// so one shared Secret would make every holder any of them.
func CheckOwnClientCertificates(cs []Container) error {
	holders := map[string]map[string]string{} // Secret -> identity -> where
	for _, u := range TLSUses(cs) {
		if u.Identity == "" {
			continue
		}
		if holders[u.File.Secret] == nil {
			holders[u.File.Secret] = map[string]string{}
		}
		if _, ok := holders[u.File.Secret][u.Identity]; !ok {
			holders[u.File.Secret][u.Identity] = u.Container.Where()
		}
	}
	var errs []error
	for _, secret := range sortedKeys(holders) {
		ids := holders[secret]
		if len(ids) < 2 {
			continue
		}
		var who []string
		for _, id := range sortedKeys(ids) {
			who = append(who, fmt.Sprintf("%s (%s)", id, ids[id]))
		}
		errs = append(errs, fmt.Errorf("Secret %s holds the certificate of %s: components share a client certificate; give each its own Secret",
			secret, strings.Join(who, ", ")))
	}
	return errors.Join(errs...)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// enabled reports whether a boolean flag is on: --flag, --flag=true.
func enabled(c Container, name string) bool {
	v, ok := c.Flag(name)
	if !ok {
		return false
	}
	b, err := strconv.ParseBool(v)
	return v == "" || (err == nil && b)
}

// etcdBackend reports whether c is a topod server on an etcd backend.
func etcdBackend(c Container) bool {
	if c.Binary() != "topod" || !c.LongRunning {
		return false
	}
	b, _ := c.Flag("backend")
	return strings.HasPrefix(b, "etcd://")
}

// CheckEtcdAdmitsOnlyTopod requires every etcd of the overlay to admit
// clients only over TLS with a client certificate (--client-cert-auth, no
// http:// client URL), and to trust for clients exactly the CA of topod's
// etcd client certificate: the ca.crt of the Secret topod presents to etcd
// (--etcd-tls-cert), a Secret nothing but topod and etcd reads and no
// other TLS flag uses. etcd admits any certificate its trusted CA signed;
// that CA must sign topod's certificate alone (deploy/README.md), which a
// CA that also verifies topod's own clients, or etcd's members, does not.
func CheckEtcdAdmitsOnlyTopod(cs []Container) error {
	var errs []error
	var etcds, topods []Container
	for _, c := range cs {
		switch {
		case c.LongRunning && c.Binary() == "etcd":
			etcds = append(etcds, c)
		case etcdBackend(c):
			topods = append(topods, c)
		}
	}
	if len(etcds) == 0 {
		return errors.New("no etcd in the overlay")
	}
	// The Secrets of topod's etcd client certificate.
	topodSecrets := map[string]bool{}
	for _, t := range topods {
		cert, ok := t.Flag("etcd-tls-cert")
		if !ok {
			errs = append(errs, fmt.Errorf("%s: topod presents no client certificate to etcd (--etcd-tls-cert)", t.Where()))
			continue
		}
		sf, ok := SecretOf(t, cert)
		if !ok {
			errs = append(errs, fmt.Errorf("%s: --etcd-tls-cert %s is not read from a Secret", t.Where(), cert))
			continue
		}
		topodSecrets[sf.Secret] = true
	}
	uses := TLSUses(cs)
	for _, e := range etcds {
		for _, f := range []string{"listen-client-urls", "advertise-client-urls"} {
			v, _ := e.Flag(f)
			for _, u := range strings.Split(v, ",") {
				if !strings.HasPrefix(u, "https://") && !strings.HasPrefix(u, "unixs://") {
					errs = append(errs, fmt.Errorf("%s: --%s %s: clients connect without TLS, so without a client certificate", e.Where(), f, u))
				}
			}
		}
		if !enabled(e, "client-cert-auth") {
			if v, _ := e.Flag("trusted-ca-file"); v != "" {
				// etcd 3.6 then requires a client certificate all the
				// same (transport.TLSInfo.ServerConfig), as a side effect.
				errs = append(errs, fmt.Errorf("%s: no --client-cert-auth: client certificates are required only as a side effect of --trusted-ca-file; name it, so that dropping the CA file cannot let clients in without one", e.Where()))
			} else {
				errs = append(errs, fmt.Errorf("%s: no --client-cert-auth: etcd admits a client without a certificate", e.Where()))
			}
		}
		for _, f := range []string{"cert-file", "key-file"} {
			if v, _ := e.Flag(f); v == "" {
				errs = append(errs, fmt.Errorf("%s: no --%s: etcd serves no TLS", e.Where(), f))
			}
		}
		ca, _ := e.Flag("trusted-ca-file")
		if ca == "" {
			errs = append(errs, fmt.Errorf("%s: no --trusted-ca-file: etcd verifies client certificates by nothing of the overlay's", e.Where()))
			continue
		}
		trusted, ok := SecretOf(e, ca)
		if !ok {
			errs = append(errs, fmt.Errorf("%s: --trusted-ca-file %s is not read from a Secret", e.Where(), ca))
			continue
		}
		if len(topods) == 0 {
			errs = append(errs, fmt.Errorf("%s: no topod of the overlay uses this etcd", e.Where()))
		}
		if !topodSecrets[trusted.Secret] || trusted.Key != "ca.crt" {
			theirs := "topod presents none"
			if len(topodSecrets) > 0 {
				theirs = "Secret " + strings.Join(sortedKeys(topodSecrets), ", ")
			}
			errs = append(errs, fmt.Errorf("%s: --trusted-ca-file is key %s of Secret %s, not the ca.crt of topod's etcd client certificate (%s): etcd admits every certificate that CA signs, not topod's alone",
				e.Where(), trusted.Key, trusted.Secret, theirs))
		}
		// Nothing else reads the Secret etcd trusts, and no other TLS
		// flag uses it: its CA signs topod's etcd certificate only.
		for _, u := range uses {
			if u.File.Secret != trusted.Secret {
				continue
			}
			switch {
			case u.Container.Binary() == "etcd" && u.Flag == "trusted-ca-file":
			case etcdBackend(u.Container) && !u.Probe && (u.Flag == "etcd-tls-cert" || u.Flag == "etcd-tls-key"):
			default:
				errs = append(errs, fmt.Errorf("%s: --%s reads Secret %s, the CA of which etcd trusts for clients (%s): that CA must sign topod's etcd client certificate and nothing else",
					u.Container.Where(), u.Flag, trusted.Secret, e.Where()))
			}
		}
	}
	// Workloads mounting topod's etcd client Secret: only topod and etcd.
	for secret := range topodSecrets {
		seen := map[string]bool{}
		for _, c := range cs {
			if seen[c.Object.Name()] || !mountsSecret(c.Object, secret) {
				continue
			}
			seen[c.Object.Name()] = true
			if !podRuns(cs, c.Object, func(c Container) bool { return etcdBackend(c) || (c.LongRunning && c.Binary() == "etcd") }) {
				errs = append(errs, fmt.Errorf("%s mounts Secret %s, topod's etcd client certificate: only topod (and etcd, for its ca.crt) may", c.Object.Name(), secret))
			}
		}
	}
	return errors.Join(errs...)
}

// mountsSecret reports whether a workload's pod has a volume of Secret
// name.
func mountsSecret(o Object, name string) bool {
	spec, _, _, ok := PodSpec(o)
	if !ok {
		return false
	}
	for _, v := range spec.Volumes {
		if v.Secret != nil && v.Secret.SecretName == name {
			return true
		}
		if v.Projected != nil {
			for _, s := range v.Projected.Sources {
				if s.Secret != nil && s.Secret.Name == name {
					return true
				}
			}
		}
	}
	return false
}

// podRuns reports whether a container of workload o satisfies is.
func podRuns(cs []Container, o Object, is func(Container) bool) bool {
	for _, c := range cs {
		if c.Object.Name() == o.Name() && is(c) {
			return true
		}
	}
	return false
}

// protectedPort is a port of some pods that only some other pods may
// reach.
type protectedPort struct {
	what string // for messages: "etcd's client port"
	// server picks the container listening on the port, port its number.
	server func(Container) (port int32, ok bool)
	// allowed are the pods that may reach it, who names them; needed
	// those that must (some of allowed), needs names them.
	allowed, needed func(Container) bool
	who, needs      string
}

// urlPort is the port of the first URL of a comma-separated flag value.
func urlPort(v string) (int32, bool) {
	u, err := url.Parse(strings.Split(v, ",")[0])
	if err != nil {
		return 0, false
	}
	p, err := strconv.Atoi(u.Port())
	return int32(p), err == nil
}

var protectedPorts = []protectedPort{
	{
		what: "etcd's client port",
		server: func(c Container) (int32, bool) {
			if c.Binary() != "etcd" || !c.LongRunning {
				return 0, false
			}
			v, _ := c.Flag("listen-client-urls")
			return urlPort(v)
		},
		allowed: etcdBackend,
		needed:  etcdBackend,
		who:     "topod",
		needs:   "topod",
	},
	{
		what: "etcd's peer port",
		server: func(c Container) (int32, bool) {
			if c.Binary() != "etcd" || !c.LongRunning {
				return 0, false
			}
			v, _ := c.Flag("listen-peer-urls")
			return urlPort(v)
		},
		allowed: func(c Container) bool { return c.LongRunning && c.Binary() == "etcd" },
		needed:  func(c Container) bool { return c.LongRunning && c.Binary() == "etcd" },
		who:     "etcd's members",
		needs:   "etcd's members",
	},
	{
		what: "MinIO's S3 port",
		server: func(c Container) (int32, bool) {
			if c.Binary() != "minio" || !c.LongRunning {
				return 0, false
			}
			v, ok := c.Flag("address")
			if !ok {
				v = ":9000" // MinIO's default
			}
			_, port, err := net.SplitHostPort(v)
			p, err2 := strconv.Atoi(port)
			return int32(p), err == nil && err2 == nil
		},
		// topod, and the Job that creates its bucket with MinIO's client.
		allowed: func(c Container) bool { return c.Binary() == "topod" || c.Binary() == "mc" },
		needed:  func(c Container) bool { return c.Binary() == "topod" && c.LongRunning },
		who:     "topod (and the bucket Job)",
		needs:   "topod",
	},
}

// CheckNetworkPolicies requires, for etcd's client port, etcd's peer port
// and MinIO's S3 port, that a NetworkPolicy isolates the pods serving it
// (selects them, for Ingress) and that every ingress rule covering the
// port admits only pods of the overlay allowed there (topod; etcd's
// members; topod and the bucket Job): a rule with no sources, an IP block,
// a namespace selector or a pod selector matching another workload's pods
// fails, and so does no rule letting the allowed pods in.
func CheckNetworkPolicies(objs []Object, cs []Container) error {
	var policies []*networkingv1.NetworkPolicy
	for _, o := range objs {
		if p, ok := o.Typed.(*networkingv1.NetworkPolicy); ok {
			policies = append(policies, p)
		}
	}
	var errs []error
	for _, pp := range protectedPorts {
		found := false
		for _, c := range cs {
			port, ok := pp.server(c)
			if !ok {
				continue
			}
			found = true
			ns := c.Object.Unstructured.GetNamespace()
			isolated, admitted := false, false
			for _, p := range policies {
				if p.Namespace != ns || !selects(&p.Spec.PodSelector, c.Labels) || !isolatesIngress(p) {
					continue
				}
				isolated = true
				for i, rule := range p.Spec.Ingress {
					if !ruleCovers(rule.Ports, port, c.Spec.Ports) {
						continue
					}
					where := fmt.Sprintf("NetworkPolicy %s ingress rule %d", p.Name, i+1)
					if len(rule.From) == 0 {
						errs = append(errs, fmt.Errorf("%s admits every source to %s (%s, port %d): only %s may reach it", where, pp.what, c.Object.Name(), port, pp.who))
						continue
					}
					for _, peer := range rule.From {
						switch {
						case peer.IPBlock != nil:
							errs = append(errs, fmt.Errorf("%s admits IP block %s to %s (port %d): only %s may reach it", where, peer.IPBlock.CIDR, pp.what, port, pp.who))
						case peer.NamespaceSelector != nil:
							errs = append(errs, fmt.Errorf("%s admits pods of other namespaces to %s (port %d): only %s may reach it", where, pp.what, port, pp.who))
						case peer.PodSelector != nil:
							if len(peer.PodSelector.MatchLabels) == 0 && len(peer.PodSelector.MatchExpressions) == 0 {
								errs = append(errs, fmt.Errorf("%s admits every pod of the namespace to %s (port %d): only %s may reach it", where, pp.what, port, pp.who))
								continue
							}
							for _, w := range workloads(objs, ns) {
								if !selects(peer.PodSelector, w.labels) {
									continue
								}
								if podRuns(cs, w.o, pp.allowed) {
									admitted = admitted || podRuns(cs, w.o, pp.needed)
								} else {
									errs = append(errs, fmt.Errorf("%s admits %s's pods to %s (port %d): only %s may reach it", where, w.o.Name(), pp.what, port, pp.who))
								}
							}
						}
					}
				}
			}
			switch {
			case !isolated:
				errs = append(errs, fmt.Errorf("%s: no NetworkPolicy isolates its pods for ingress: every pod of the cluster reaches %s (port %d)", c.Object.Name(), pp.what, port))
			case !admitted:
				errs = append(errs, fmt.Errorf("%s: no NetworkPolicy lets %s reach %s (port %d)", c.Object.Name(), pp.needs, pp.what, port))
			}
		}
		if !found {
			errs = append(errs, fmt.Errorf("no container serves %s", pp.what))
		}
	}
	return errors.Join(errs...)
}

type workload struct {
	o      Object
	labels map[string]string
}

// workloads are the workloads of namespace ns and their pods' labels.
func workloads(objs []Object, ns string) []workload {
	var out []workload
	for _, o := range objs {
		if _, l, _, ok := PodSpec(o); ok && o.Unstructured.GetNamespace() == ns {
			out = append(out, workload{o, l})
		}
	}
	return out
}

func selects(sel *metav1.LabelSelector, l map[string]string) bool {
	s, err := metav1.LabelSelectorAsSelector(sel)
	return err == nil && s.Matches(labels.Set(l))
}

// isolatesIngress reports whether policy p restricts ingress to the pods
// it selects: policyTypes lists Ingress, or is empty (Ingress implied).
func isolatesIngress(p *networkingv1.NetworkPolicy) bool {
	return len(p.Spec.PolicyTypes) == 0 || slices.Contains(p.Spec.PolicyTypes, networkingv1.PolicyTypeIngress)
}

// ruleCovers reports whether a rule's ports cover TCP port (served by a
// container with ports cports, for named ports): no ports means every
// port.
func ruleCovers(ports []networkingv1.NetworkPolicyPort, port int32, cports []corev1.ContainerPort) bool {
	if len(ports) == 0 {
		return true
	}
	for _, p := range ports {
		if p.Protocol != nil && *p.Protocol != corev1.ProtocolTCP {
			continue
		}
		switch {
		case p.Port == nil:
			return true
		case p.Port.Type == intstr.String:
			for _, cp := range cports {
				if cp.Name == p.Port.StrVal && cp.ContainerPort == port {
					return true
				}
			}
		case p.EndPort != nil:
			if p.Port.IntVal <= port && port <= *p.EndPort {
				return true
			}
		case p.Port.IntVal == port:
			return true
		}
	}
	return false
}
