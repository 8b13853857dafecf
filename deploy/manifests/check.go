package manifests

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// VitessBinaries are the commands that open the Vitess topology and so
// must all carry the same topology flags.
var VitessBinaries = []string{"vtgate", "vttablet", "vtctld", "vtorc", "vtbackup", "vschemad"}

// Check runs every check on the objects of one overlay. userSecrets are
// the Secrets the user creates (documented in deploy/README.md): a
// reference to any other Secret must be satisfied by the overlay.
func Check(objs []Object, userSecrets []string) error {
	cs, err := Containers(objs)
	return errors.Join(err,
		CheckImages(cs),
		CheckProbes(cs),
		CheckResources(cs),
		CheckReferences(objs, userSecrets),
		CheckUnexpanded(cs),
		CheckServiceAddresses(objs, cs),
		CheckTabletAntiAffinity(objs, cs),
		CheckTopoFlags(objs, cs),
		CheckOwnClientCertificates(cs),
	)
}

// CheckImages requires every image to name a tag or a digest, not latest.
func CheckImages(cs []Container) error {
	var errs []error
	for _, c := range cs {
		img := c.Spec.Image
		if strings.Contains(img, "@sha256:") {
			continue
		}
		name := img[strings.LastIndex(img, "/")+1:]
		_, tag, ok := strings.Cut(name, ":")
		if !ok || tag == "" || tag == "latest" {
			errs = append(errs, fmt.Errorf("%s: image %q has no pinned tag (a tag other than latest, or a digest)", c.Where(), img))
		}
	}
	return errors.Join(errs...)
}

// CheckProbes requires a readiness and a liveness probe on every container
// that runs for good (not init containers, not Jobs').
func CheckProbes(cs []Container) error {
	var errs []error
	for _, c := range cs {
		if !c.LongRunning {
			continue
		}
		if c.Spec.ReadinessProbe == nil {
			errs = append(errs, fmt.Errorf("%s: no readiness probe", c.Where()))
		}
		if c.Spec.LivenessProbe == nil {
			errs = append(errs, fmt.Errorf("%s: no liveness probe", c.Where()))
		}
	}
	return errors.Join(errs...)
}

// CheckResources requires CPU and memory requests and a memory limit on
// every container.
func CheckResources(cs []Container) error {
	var errs []error
	for _, c := range cs {
		r := c.Spec.Resources
		_, cpu := r.Requests[corev1.ResourceCPU]
		_, mem := r.Requests[corev1.ResourceMemory]
		_, memLimit := r.Limits[corev1.ResourceMemory]
		if !cpu || !mem || !memLimit {
			errs = append(errs, fmt.Errorf("%s: needs cpu and memory requests and a memory limit", c.Where()))
		}
	}
	return errors.Join(errs...)
}

// CheckUnexpanded refuses a command line that still holds a $(VAR)
// reference no environment variable resolves: Kubernetes would pass it on
// as it is.
func CheckUnexpanded(cs []Container) error {
	var errs []error
	for _, c := range cs {
		for _, a := range c.Argv {
			if i := strings.Index(a, "$("); i >= 0 {
				errs = append(errs, fmt.Errorf("%s: %q refers to a variable the container does not have", c.Where(), a))
			}
		}
	}
	return errors.Join(errs...)
}

// CheckReferences requires every ConfigMap, Secret and PersistentVolumeClaim
// a workload refers to to be in the overlay (a StatefulSet's claim
// templates count), except the user's own Secrets; every StatefulSet's
// Service, every HPA's target and every PodDisruptionBudget's pods too.
func CheckReferences(objs []Object, userSecrets []string) error {
	have := map[string]bool{}
	for _, o := range objs {
		have[o.GVK().Kind+"/"+o.Unstructured.GetNamespace()+"/"+o.Unstructured.GetName()] = true
	}
	var errs []error
	need := func(o Object, kind, name string, optional *bool) {
		if optional != nil && *optional {
			return
		}
		if have[kind+"/"+o.Unstructured.GetNamespace()+"/"+name] {
			return
		}
		if kind == "Secret" && slices.Contains(userSecrets, name) {
			return
		}
		what := "is not in the overlay"
		if kind == "Secret" {
			what = "is neither in the overlay nor a documented user-provided Secret (deploy/README.md)"
		}
		errs = append(errs, fmt.Errorf("%s refers to %s %s, which %s", o.Name(), kind, name, what))
	}
	for _, o := range objs {
		spec, _, _, ok := PodSpec(o)
		if ok {
			claims := map[string]bool{}
			if ss, ok := o.Typed.(*appsv1.StatefulSet); ok {
				for _, t := range ss.Spec.VolumeClaimTemplates {
					claims[t.Name] = true
				}
				need(o, "Service", ss.Spec.ServiceName, nil)
			}
			for _, v := range spec.Volumes {
				switch {
				case v.ConfigMap != nil:
					need(o, "ConfigMap", v.ConfigMap.Name, v.ConfigMap.Optional)
				case v.Secret != nil:
					need(o, "Secret", v.Secret.SecretName, v.Secret.Optional)
				case v.PersistentVolumeClaim != nil:
					need(o, "PersistentVolumeClaim", v.PersistentVolumeClaim.ClaimName, nil)
				case v.Projected != nil:
					for _, s := range v.Projected.Sources {
						if s.ConfigMap != nil {
							need(o, "ConfigMap", s.ConfigMap.Name, s.ConfigMap.Optional)
						}
						if s.Secret != nil {
							need(o, "Secret", s.Secret.Name, s.Secret.Optional)
						}
					}
				}
			}
			volumes := map[string]bool{}
			for _, v := range spec.Volumes {
				volumes[v.Name] = true
			}
			for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
				for _, m := range c.VolumeMounts {
					if !volumes[m.Name] && !claims[m.Name] {
						errs = append(errs, fmt.Errorf("%s container %s mounts volume %s, which the pod does not have", o.Name(), c.Name, m.Name))
					}
				}
				for _, f := range c.EnvFrom {
					if f.ConfigMapRef != nil {
						need(o, "ConfigMap", f.ConfigMapRef.Name, f.ConfigMapRef.Optional)
					}
					if f.SecretRef != nil {
						need(o, "Secret", f.SecretRef.Name, f.SecretRef.Optional)
					}
				}
				for _, e := range c.Env {
					if e.ValueFrom == nil {
						continue
					}
					if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
						need(o, "ConfigMap", r.Name, r.Optional)
					}
					if r := e.ValueFrom.SecretKeyRef; r != nil {
						need(o, "Secret", r.Name, r.Optional)
					}
				}
			}
		}
		switch t := o.Typed.(type) {
		case *autoscalingv2.HorizontalPodAutoscaler:
			need(o, t.Spec.ScaleTargetRef.Kind, t.Spec.ScaleTargetRef.Name, nil)
		case *policyv1.PodDisruptionBudget:
			if !selectsAny(objs, t.Namespace, t.Spec.Selector) {
				errs = append(errs, fmt.Errorf("%s selects no pod of the overlay", o.Name()))
			}
		case *corev1.Service:
			if len(t.Spec.Selector) > 0 && !selectsAny(objs, t.Namespace, metav1.SetAsLabelSelector(t.Spec.Selector)) {
				errs = append(errs, fmt.Errorf("%s selects no pod of the overlay", o.Name()))
			}
		}
	}
	return errors.Join(errs...)
}

// selectsAny reports whether sel matches the pod template of a workload of
// objs in namespace ns.
func selectsAny(objs []Object, ns string, sel *metav1.LabelSelector) bool {
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil || s.Empty() {
		return false
	}
	for _, o := range objs {
		if _, l, _, ok := PodSpec(o); ok && o.Unstructured.GetNamespace() == ns && s.Matches(labels.Set(l)) {
			return true
		}
	}
	return false
}

// addressFlags name the flags whose value is a host:port a container
// dials; a host without a dot must be a Service of the overlay with that
// port.
var addressFlags = []string{"topo-global-server-address", "server", "server-address"}

// CheckServiceAddresses requires every in-cluster address a container
// dials (topology, vtctld, etcd and S3 endpoints) to be a Service of the
// overlay that has the port.
func CheckServiceAddresses(objs []Object, cs []Container) error {
	ports := map[string]map[int32]bool{}
	for _, o := range objs {
		if s, ok := o.Typed.(*corev1.Service); ok {
			ports[s.Namespace+"/"+s.Name] = map[int32]bool{}
			for _, p := range s.Spec.Ports {
				ports[s.Namespace+"/"+s.Name][p.Port] = true
			}
		}
	}
	var errs []error
	check := func(c Container, what, hostport string) {
		for _, hp := range strings.Split(hostport, ",") {
			host, port, err := net.SplitHostPort(hp)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %s %q is not host:port", c.Where(), what, hp))
				continue
			}
			if strings.Contains(host, ".") || net.ParseIP(host) != nil {
				continue // outside the namespace: the user's
			}
			p, _ := strconv.Atoi(port)
			svc, ok := ports[c.Object.Unstructured.GetNamespace()+"/"+host]
			if !ok {
				errs = append(errs, fmt.Errorf("%s: %s %q names Service %s, which the overlay does not have", c.Where(), what, hp, host))
			} else if !svc[int32(p)] {
				errs = append(errs, fmt.Errorf("%s: %s %q: Service %s has no port %s", c.Where(), what, hp, host, port))
			}
		}
	}
	for _, c := range cs {
		for _, f := range addressFlags {
			if v, ok := c.Flag(f); ok {
				check(c, "--"+f, v)
			}
		}
		for _, f := range []string{"backend", "blobs"} {
			v, ok := c.Flag(f)
			if !ok {
				continue
			}
			u, err := url.Parse(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: --%s %q: %v", c.Where(), f, v, err))
				continue
			}
			switch u.Scheme {
			case "etcd":
				check(c, "--"+f, u.Host)
			case "s3":
				if ep := u.Query().Get("endpoint"); ep != "" {
					check(c, "--"+f+" endpoint", ep)
				}
			}
		}
	}
	return errors.Join(errs...)
}

// tabletShard returns the keyspace/shard and cell of a vttablet container,
// from its expanded command line.
func tabletShard(c Container) (shard, cell string, ok bool) {
	if c.Binary() != "vttablet" {
		return "", "", false
	}
	ks, _ := c.Flag("init-keyspace")
	sh, _ := c.Flag("init-shard")
	path, _ := c.Flag("tablet-path")
	cell, _, _ = strings.Cut(path, "-")
	return ks + "/" + sh, cell, true
}

// CheckTabletAntiAffinity requires that no two tablets of one shard can
// run on one node: for every pair of tablet pod templates of the same
// shard (a template with itself included, as its replicas are such
// pairs), a required pod anti-affinity term of the first, by node
// (kubernetes.io/hostname), selects the second's pods.
func CheckTabletAntiAffinity(objs []Object, cs []Container) error {
	type tablet struct {
		c     Container
		shard string
	}
	var tablets []tablet
	for _, c := range cs {
		if shard, _, ok := tabletShard(c); ok {
			tablets = append(tablets, tablet{c, shard})
		}
	}
	var errs []error
	for _, a := range tablets {
		spec, _, _, _ := PodSpec(a.c.Object)
		for _, b := range tablets {
			if a.shard != b.shard {
				continue
			}
			if !antiAffinitySelects(spec, a.c.Labels, a.c.Object.Unstructured.GetNamespace(), b.c.Labels, b.c.Object.Unstructured.GetNamespace()) {
				errs = append(errs, fmt.Errorf("%s: tablets of shard %s may share a node with those of %s: no required pod anti-affinity by kubernetes.io/hostname selects them",
					a.c.Object.Name(), a.shard, b.c.Object.Name()))
			}
		}
	}
	return errors.Join(errs...)
}

// antiAffinitySelects reports whether a required anti-affinity term by
// node of spec (a pod with labels own, in ns) selects pods with labels
// other in otherNS, matchLabelKeys taking their values from own.
func antiAffinitySelects(spec *corev1.PodSpec, own map[string]string, ns string, other map[string]string, otherNS string) bool {
	if spec.Affinity == nil || spec.Affinity.PodAntiAffinity == nil {
		return false
	}
	for _, t := range spec.Affinity.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
		if t.TopologyKey != corev1.LabelHostname || t.LabelSelector == nil {
			continue
		}
		if len(t.Namespaces) == 0 && t.NamespaceSelector == nil && ns != otherNS {
			continue
		}
		sel := t.LabelSelector.DeepCopy()
		for _, k := range t.MatchLabelKeys {
			v, ok := own[k]
			if !ok {
				continue
			}
			sel.MatchExpressions = append(sel.MatchExpressions, metav1.LabelSelectorRequirement{Key: k, Operator: metav1.LabelSelectorOpIn, Values: []string{v}})
		}
		s, err := metav1.LabelSelectorAsSelector(sel)
		if err == nil && !s.Empty() && s.Matches(labels.Set(other)) {
			return true
		}
	}
	return false
}

// topoFlags are the flags every Vitess component must agree on.
var topoFlags = []string{
	"topo-implementation", "topo-global-server-address", "topo-global-root",
	"topod-tls-ca", "topod-tls-cert", "topod-tls-key", "topod-tls-server-name",
}

// CheckTopoFlags requires every Vitess component of the overlay to carry
// the same topology flags (the global topology is one), the topod servers
// to speak TLS exactly when the clients do, and each cell's vtgates and
// tablets to have their CellInfo written by a cell-init Job of the
// overlay, pointing at that cell's own topod when the overlay runs one
// for the cell (a topod labelled topod.io/cell with the cell's name), and
// at the global topod otherwise.
func CheckTopoFlags(objs []Object, cs []Container) error {
	var errs []error
	var first *Container
	want := map[string]string{}
	for i, c := range cs {
		if !slices.Contains(VitessBinaries, c.Binary()) {
			continue
		}
		got := map[string]string{}
		for _, f := range topoFlags {
			got[f], _ = c.Flag(f)
		}
		if got["topo-implementation"] != "topod" {
			errs = append(errs, fmt.Errorf("%s: --topo-implementation is %q, not topod", c.Where(), got["topo-implementation"]))
		}
		if first == nil {
			first, want = &cs[i], got
			continue
		}
		for _, f := range topoFlags {
			if got[f] != want[f] {
				errs = append(errs, fmt.Errorf("%s: --%s is %q but %s has %q: every Vitess component must use the same topology flags",
					c.Where(), f, got[f], first.Where(), want[f]))
			}
		}
	}
	clientTLS := want["topod-tls-ca"] != "" || want["topod-tls-cert"] != ""
	clientCert := want["topod-tls-cert"] != ""
	// The topod servers: TLS exactly when the clients speak it, client
	// certificates required exactly when they present one.
	topods := map[string]Container{} // cell label ("" for none) -> topod
	for _, c := range cs {
		if c.Binary() != "topod" || !c.LongRunning {
			continue
		}
		_, serverTLS := c.Flag("tls-cert")
		_, clientCA := c.Flag("tls-client-ca")
		if first != nil && serverTLS != clientTLS {
			errs = append(errs, fmt.Errorf("%s: topod TLS is %v but the Vitess components' is %v", c.Where(), serverTLS, clientTLS))
		}
		if first != nil && clientCA != clientCert {
			errs = append(errs, fmt.Errorf("%s: topod requires client certificates: %v, the Vitess components present one: %v", c.Where(), clientCA, clientCert))
		}
		topods[c.Labels["topod.io/cell"]] = c
	}
	// Cells: each one a vtgate or tablet is in needs its CellInfo.
	cellInfo := map[string]string{} // cell -> --server-address
	for _, c := range cs {
		if c.Binary() == "vtctldclient" && slices.Contains(c.Argv, "UpdateCellInfo") {
			addr, _ := c.Flag("server-address")
			cellInfo[c.Argv[len(c.Argv)-1]] = addr
		}
	}
	for _, c := range cs {
		cell := ""
		switch c.Binary() {
		case "vtgate":
			cell, _ = c.Flag("cell")
		case "vttablet":
			_, cell, _ = tabletShard(c)
		default:
			continue
		}
		addr, ok := cellInfo[cell]
		if !ok {
			errs = append(errs, fmt.Errorf("%s: cell %q has no CellInfo (no cell-init Job runs UpdateCellInfo for it)", c.Where(), cell))
			continue
		}
		topod, own := topods[cell]
		if !own {
			topod, own = topods["global"]
			if !own {
				topod = topods[""]
			}
		}
		host, _, _ := net.SplitHostPort(addr)
		if topod.Spec.Name == "" || !serviceSelects(objs, c.Object.Unstructured.GetNamespace(), host, topod.Labels) {
			errs = append(errs, fmt.Errorf("%s: cell %q's CellInfo points at %q, which is not the Service of the cell's topod", c.Where(), cell, addr))
		}
	}
	return errors.Join(errs...)
}

// serviceSelects reports whether Service name in ns selects pods with the
// labels podLabels.
func serviceSelects(objs []Object, ns, name string, podLabels map[string]string) bool {
	for _, o := range objs {
		s, ok := o.Typed.(*corev1.Service)
		if ok && s.Namespace == ns && s.Name == name && len(s.Spec.Selector) > 0 {
			return labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(podLabels))
		}
	}
	return false
}
