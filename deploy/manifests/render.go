// Package manifests renders the kustomize overlays under deploy/ with the
// kustomize Go API, decodes every object strictly into the k8s.io/api types
// (an unknown or misspelled field is an error), and checks the invariants
// the overlays promise: tablets of one shard never on one node, every
// ConfigMap, Secret and volume claim referenced present (or a documented
// user-provided Secret), pinned images, probes and resources on every
// long-running container, and the same topology flags on every Vitess
// component. It also gives each container's command line with Kubernetes'
// $(VAR) references expanded, for the tests to run against the real
// binaries.
package manifests

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// Object is one rendered object: its YAML as kustomize wrote it, the same
// as unstructured content, and, for a kind of the k8s.io/api types, the
// typed object it strictly decodes into (nil for a custom resource).
type Object struct {
	YAML         []byte
	Unstructured *unstructured.Unstructured
	Typed        runtime.Object
}

// GVK is the object's group, version and kind.
func (o Object) GVK() schema.GroupVersionKind {
	return o.Unstructured.GroupVersionKind()
}

// Name is the object's kind/namespace/name, for messages.
func (o Object) Name() string {
	u := o.Unstructured
	if u.GetNamespace() == "" {
		return u.GetKind() + "/" + u.GetName()
	}
	return u.GetKind() + "/" + u.GetNamespace() + "/" + u.GetName()
}

// Render builds the kustomization in dir (a directory on disk) and decodes
// every object it yields. An object of a built-in kind that does not
// decode strictly into its k8s.io/api type fails the render.
func Render(dir string) ([]Object, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	out, err := m.AsYaml()
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	objs, err := DecodeAll(out)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	return objs, nil
}

// DecodeAll splits a multi-document YAML stream and decodes each document
// with Decode.
func DecodeAll(stream []byte) ([]Object, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(stream)))
	var objs []Object
	var errs []error
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read YAML: %w", err)
		}
		if onlyComments(doc) {
			continue
		}
		o, err := Decode(doc)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		objs = append(objs, o)
	}
	return objs, errors.Join(errs...)
}

// onlyComments reports whether a YAML document holds nothing but
// comments and blank lines.
func onlyComments(doc []byte) bool {
	for _, line := range bytes.Split(doc, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) > 0 && line[0] != '#' && !bytes.Equal(line, []byte("---")) {
			return false
		}
	}
	return true
}

// strictCodec decodes into the types of client-go's scheme (every built-in
// API group), refusing unknown and duplicate fields.
var strictCodec = json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme.Scheme, scheme.Scheme,
	json.SerializerOptions{Yaml: true, Strict: true})

// Decode decodes one YAML document. A kind the k8s.io/api types know is
// decoded strictly into its type; any other kind (a custom resource) is
// kept unstructured, to be checked by an API server with its CRD.
func Decode(doc []byte) (Object, error) {
	u := &unstructured.Unstructured{}
	j, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return Object{}, fmt.Errorf("YAML: %w", err)
	}
	if err := u.UnmarshalJSON(j); err != nil {
		return Object{}, fmt.Errorf("object: %w", err)
	}
	o := Object{YAML: doc, Unstructured: u}
	gvk := u.GroupVersionKind()
	if !scheme.Scheme.Recognizes(gvk) {
		return o, nil
	}
	typed, _, err := strictCodec.Decode(doc, &gvk, nil)
	if err != nil {
		return Object{}, fmt.Errorf("%s: strict decoding into %s: %w", o.Name(), gvk, err)
	}
	o.Typed = typed
	return o, nil
}

// PodSpec returns the pod template's spec of a workload (Deployment,
// StatefulSet, DaemonSet, Job, or a bare Pod), and whether it runs for
// good (a Job's pods do not).
func PodSpec(o Object) (spec *corev1.PodSpec, meta map[string]string, longRunning bool, ok bool) {
	switch t := o.Typed.(type) {
	case *appsv1.Deployment:
		return &t.Spec.Template.Spec, t.Spec.Template.Labels, true, true
	case *appsv1.StatefulSet:
		return &t.Spec.Template.Spec, t.Spec.Template.Labels, true, true
	case *appsv1.DaemonSet:
		return &t.Spec.Template.Spec, t.Spec.Template.Labels, true, true
	case *batchv1.Job:
		return &t.Spec.Template.Spec, t.Spec.Template.Labels, false, true
	case *corev1.Pod:
		return &t.Spec, t.Labels, true, true
	}
	return nil, nil, false, false
}

// Kinds lists the object kinds of objs, in order, for messages.
func Kinds(objs []Object) string {
	var s []string
	for _, o := range objs {
		s = append(s, o.Name())
	}
	return strings.Join(s, ", ")
}
