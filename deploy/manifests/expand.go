package manifests

import (
	"fmt"
	"path"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Placeholders stand for the values Kubernetes gives a pod only once it
// runs (the downward API) when a command line is expanded here.
var Placeholders = map[string]string{
	"metadata.name":      "pod-0",
	"metadata.namespace": "namespace",
	"metadata.uid":       "00000000-0000-0000-0000-000000000000",
	"status.podIP":       "10.0.0.1",
	"status.hostIP":      "10.0.0.2",
	"spec.nodeName":      "node-0",
	"metadata.labels['apps.kubernetes.io/pod-index']": "0",
}

// SecretPlaceholder stands for a value read from a Secret.
const SecretPlaceholder = "secret-value"

// Container is one container of a workload with its command line and
// environment resolved as the kubelet resolves them.
type Container struct {
	Object Object
	// Init reports an init container.
	Init bool
	// LongRunning reports a container of a workload that runs for good
	// (not a Job's).
	LongRunning bool
	Spec        corev1.Container
	// Labels are the pod template's labels.
	Labels map[string]string
	// Env is the container's environment, ConfigMaps read from the
	// rendered objects, Secrets and downward-API values as placeholders.
	Env map[string]string
	// Argv is the command followed by the args, each with its $(VAR)
	// references expanded from Env.
	Argv []string
	// ProbeArgvs are the command lines of the container's exec probes
	// (the kubelet does not expand them).
	ProbeArgvs [][]string
}

// Binary is the base name of the container's executable.
func (c Container) Binary() string {
	if len(c.Argv) == 0 {
		return ""
	}
	return path.Base(c.Argv[0])
}

// Where names the container for messages.
func (c Container) Where() string {
	return c.Object.Name() + " container " + c.Spec.Name
}

// Flag returns the value of --name (as --name=value or --name value) in
// the expanded command line, and whether it is there.
func (c Container) Flag(name string) (string, bool) {
	return argFlag(c.Argv, name)
}

// Containers returns every container and init container of every workload
// in objs, resolved.
func Containers(objs []Object) ([]Container, error) {
	configMaps := map[string]map[string]string{}
	for _, o := range objs {
		if cm, ok := o.Typed.(*corev1.ConfigMap); ok {
			configMaps[cm.Namespace+"/"+cm.Name] = cm.Data
		}
	}
	var out []Container
	var errs []string
	for _, o := range objs {
		spec, labels, longRunning, ok := PodSpec(o)
		if !ok {
			continue
		}
		ns := o.Unstructured.GetNamespace()
		add := func(c corev1.Container, init bool) {
			env, err := resolveEnv(c, ns, configMaps)
			if err != nil {
				errs = append(errs, fmt.Sprintf("%s container %s: %v", o.Name(), c.Name, err))
			}
			var argv []string
			for _, a := range append(append([]string{}, c.Command...), c.Args...) {
				argv = append(argv, Expand(a, env))
			}
			var probes [][]string
			for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe, c.StartupProbe} {
				if p != nil && p.Exec != nil && len(p.Exec.Command) > 0 {
					probes = append(probes, p.Exec.Command)
				}
			}
			out = append(out, Container{Object: o, Init: init, LongRunning: longRunning && !init,
				Spec: c, Labels: labels, Env: env, Argv: argv, ProbeArgvs: probes})
		}
		for _, c := range spec.InitContainers {
			add(c, true)
		}
		for _, c := range spec.Containers {
			add(c, false)
		}
	}
	if len(errs) > 0 {
		return out, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return out, nil
}

// resolveEnv builds a container's environment in the kubelet's order:
// envFrom sources, then env entries, each value expanded with what came
// before it.
func resolveEnv(c corev1.Container, ns string, configMaps map[string]map[string]string) (map[string]string, error) {
	env := map[string]string{}
	for _, from := range c.EnvFrom {
		switch {
		case from.ConfigMapRef != nil:
			data, ok := configMaps[ns+"/"+from.ConfigMapRef.Name]
			if !ok {
				if from.ConfigMapRef.Optional != nil && *from.ConfigMapRef.Optional {
					continue
				}
				return env, fmt.Errorf("envFrom names ConfigMap %s, which the overlay does not have", from.ConfigMapRef.Name)
			}
			for k, v := range data {
				env[from.Prefix+k] = v
			}
		case from.SecretRef != nil:
			// Keys unknown: a Secret's keys are the user's.
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = Expand(e.Value, env)
		case e.ValueFrom.FieldRef != nil:
			v, ok := Placeholders[e.ValueFrom.FieldRef.FieldPath]
			if !ok {
				v = "field-value"
			}
			env[e.Name] = v
		case e.ValueFrom.ConfigMapKeyRef != nil:
			ref := e.ValueFrom.ConfigMapKeyRef
			v, ok := configMaps[ns+"/"+ref.Name][ref.Key]
			if !ok && (ref.Optional == nil || !*ref.Optional) {
				return env, fmt.Errorf("env %s names key %s of ConfigMap %s, which the overlay does not have", e.Name, ref.Key, ref.Name)
			}
			env[e.Name] = v
		case e.ValueFrom.SecretKeyRef != nil:
			env[e.Name] = SecretPlaceholder
		default:
			env[e.Name] = "resource-value"
		}
	}
	return env, nil
}

// Expand replaces $(VAR) in s by env's VAR as the kubelet does: $$ is a
// literal $, and a reference to a variable env lacks is left as it is.
func Expand(s string, env map[string]string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+2+end]
			if v, ok := env[name]; ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}
