// Package image builds the OCI images of topod's commands with
// go-containerregistry, without a Docker engine: one layer holding static
// binaries at the paths Vitess's own images use (/vt/bin/<name>; topod and
// vschemad at /usr/local/bin), an /etc/passwd and /etc/group with the
// non-root user vitess (uid and gid 1000, as in Vitess's images), an empty
// /tmp and the host's CA bundle if it has one, on an empty base (or on a
// base image the caller gives, e.g. one with a shell for the
// vitess-operator). Every timestamp is the Unix epoch and the layer is
// written in a fixed order, so the same binaries give the same digest.
package image

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// UID and GID are those of the user vitess the images run as.
const (
	UID = 1000
	GID = 1000
)

// Spec describes one image: its name, the binaries it holds (each copied
// from the binaries directory to its path in the image) and its
// entrypoint, the first of them.
type Spec struct {
	Name     string
	Binaries []File
}

// File is one binary: Src its name in the binaries directory, Dst its
// absolute path in the image.
type File struct {
	Src, Dst string
}

// Entrypoint is the image's entrypoint: its first binary.
func (s Spec) Entrypoint() []string { return []string{s.Binaries[0].Dst} }

// vt is the path of a Vitess binary in Vitess's images.
func vt(name string) File { return File{name, "/vt/bin/" + name} }

// Images are the images `make images` builds.
var Images = []Spec{
	{"topod", []File{{"topod", "/usr/local/bin/topod"}}},
	{"vschemad", []File{{"vschemad", "/usr/local/bin/vschemad"}}},
	{"vtgate", []File{vt("vtgate")}},
	{"vttablet", []File{vt("vttablet")}},
	{"vtctld", []File{vt("vtctld")}},
	{"vtorc", []File{vt("vtorc")}},
	{"vtbackup", []File{vt("vtbackup")}},
	{"mysqlctld", []File{vt("mysqlctld"), vt("installbin")}},
	{"vtctldclient", []File{vt("vtctldclient")}},
}

// Lookup returns the image named name.
func Lookup(name string) (Spec, bool) {
	i := slices.IndexFunc(Images, func(s Spec) bool { return s.Name == name })
	if i < 0 {
		return Spec{}, false
	}
	return Images[i], true
}

// epoch is every timestamp of the images.
var epoch = time.Unix(0, 0).UTC()

// CABundle is where the host's CA certificates are looked for; the images
// carry them at the same path.
var CABundle = "/etc/ssl/certs/ca-certificates.crt"

// Build builds the image of spec from the binaries in binDir. With a nil
// base it starts from an empty image and adds the user vitess, /tmp and
// the CA bundle; with a base, only the binaries are added over it (the
// base keeps its own users and files).
func Build(spec Spec, binDir string, base v1.Image) (v1.Image, error) {
	if len(spec.Binaries) == 0 {
		return nil, fmt.Errorf("image %s: no binary", spec.Name)
	}
	var files []entry
	if base == nil {
		files = append(files,
			entry{name: "etc/", dir: true, mode: 0o755},
			entry{name: "etc/passwd", mode: 0o644, data: fmt.Appendf(nil, "root:x:0:0:root:/root:/sbin/nologin\nvitess:x:%d:%d:vitess:/tmp:/sbin/nologin\n", UID, GID)},
			entry{name: "etc/group", mode: 0o644, data: fmt.Appendf(nil, "root:x:0:\nvitess:x:%d:\n", GID)},
			entry{name: "tmp/", dir: true, mode: 0o1777},
		)
		if ca, err := os.ReadFile(CABundle); err == nil {
			files = append(files, entry{name: path.Dir(CABundle[1:]) + "/", dir: true, mode: 0o755, parents: true},
				entry{name: CABundle[1:], mode: 0o644, data: ca})
		}
	}
	for _, b := range spec.Binaries {
		data, err := os.ReadFile(filepath.Join(binDir, b.Src))
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", spec.Name, err)
		}
		if err := CheckStatic(bytes.NewReader(data)); err != nil {
			return nil, fmt.Errorf("image %s: %s: %w", spec.Name, b.Src, err)
		}
		files = append(files, entry{name: path.Dir(b.Dst[1:]) + "/", dir: true, mode: 0o755, parents: true},
			entry{name: b.Dst[1:], mode: 0o755, data: data})
	}
	layerTar, err := tarLayer(files)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", spec.Name, err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("image %s: layer: %w", spec.Name, err)
	}
	if base == nil {
		base = mutate.MediaType(empty.Image, types.OCIManifestSchema1)
		base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	}
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History:   v1.History{Created: v1.Time{Time: epoch}, CreatedBy: "topod image " + spec.Name},
	})
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", spec.Name, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("image %s: config: %w", spec.Name, err)
	}
	cf = cf.DeepCopy()
	cf.Created = v1.Time{Time: epoch}
	cf.Architecture = runtime.GOARCH
	cf.OS = "linux"
	cf.Config.User = fmt.Sprintf("%d:%d", UID, GID)
	cf.Config.Entrypoint = spec.Entrypoint()
	cf.Config.Cmd = nil
	cf.Config.WorkingDir = "/tmp"
	if !slices.ContainsFunc(cf.Config.Env, func(e string) bool { return len(e) > 5 && e[:5] == "PATH=" }) {
		cf.Config.Env = append(cf.Config.Env, "PATH=/vt/bin:/usr/local/bin:/usr/bin:/bin")
	}
	cf.Config.Env = append(cf.Config.Env, "VTROOT=/vt", "VTDATAROOT=/vt/vtdataroot")
	cf.Config.Labels = map[string]string{"org.opencontainers.image.title": spec.Name}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("image %s: config: %w", spec.Name, err)
	}
	return img, nil
}

// entry is one file or directory of the layer.
type entry struct {
	name    string
	dir     bool
	parents bool // also write the parent directories
	mode    int64
	data    []byte
}

// tarLayer writes files as a tar stream, each directory once, in the
// order given, with epoch times and root ownership.
func tarLayer(files []entry) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	written := map[string]bool{}
	var writeDir func(name string, mode int64) error
	writeDir = func(name string, mode int64) error {
		if name == "./" || name == "/" || written[name] {
			return nil
		}
		if parent := path.Dir(name[:len(name)-1]); parent != "." {
			if err := writeDir(parent+"/", 0o755); err != nil {
				return err
			}
		}
		written[name] = true
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, ModTime: epoch, Format: tar.FormatPAX})
	}
	for _, f := range files {
		if f.dir {
			if err := writeDir(f.name, f.mode); err != nil {
				return nil, err
			}
			continue
		}
		if err := writeDir(path.Dir(f.name)+"/", 0o755); err != nil {
			return nil, err
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: f.mode, Size: int64(len(f.data)), ModTime: epoch, Format: tar.FormatPAX}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ErrNotStatic is returned for a binary that needs a dynamic loader.
var ErrNotStatic = errors.New("not a static binary (it has an ELF interpreter): build it with CGO_ENABLED=0")

// CheckStatic requires r to be an ELF executable with no interpreter (no
// dynamic loader): the images have no libc.
func CheckStatic(r io.ReaderAt) error {
	f, err := elf.NewFile(r)
	if err != nil {
		return fmt.Errorf("not an ELF executable: %w", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return ErrNotStatic
		}
	}
	return nil
}

// RefAnnotation is the OCI annotation that names an image of a layout.
const RefAnnotation = "org.opencontainers.image.ref.name"

// WriteLayout writes images (by reference, e.g.
// registry.example.com/topod/vtgate:v0.1.0) as a fresh OCI image layout in
// dir, each manifest annotated with its reference, in the order of refs.
// skopeo (oci:DIR:REF) and crane read it.
func WriteLayout(dir string, refs []string, images map[string]v1.Image) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("layout %s: %w", dir, err)
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("layout %s: %w", dir, err)
	}
	for _, ref := range refs {
		if _, err := parseTag(ref); err != nil {
			return err
		}
		if err := p.AppendImage(images[ref], layout.WithAnnotations(map[string]string{RefAnnotation: ref})); err != nil {
			return fmt.Errorf("layout %s: %s: %w", dir, ref, err)
		}
	}
	return nil
}

// ReadLayout returns the image of the layout in dir annotated ref.
func ReadLayout(dir, ref string) (v1.Image, error) {
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("layout %s: %w", dir, err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("layout %s: %w", dir, err)
	}
	for _, d := range m.Manifests {
		if d.Annotations[RefAnnotation] == ref {
			return idx.Image(d.Digest)
		}
	}
	return nil, fmt.Errorf("layout %s: no image %s", dir, ref)
}

// Extract unpacks img's filesystem (its layers flattened) into dir.
func Extract(img v1.Image, dir string) error {
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("extract: %w", err)
		}
		p := filepath.Join(dir, filepath.FromSlash(path.Clean("/"+h.Name)))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return fmt.Errorf("extract: %w", err)
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return fmt.Errorf("extract: %w", err)
			}
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode&0o777))
			if err != nil {
				return fmt.Errorf("extract: %w", err)
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("extract %s: %w", h.Name, err)
			}
		}
	}
}

// parseTag parses an image reference with a tag.
func parseTag(ref string) (name.Tag, error) {
	t, err := name.NewTag(ref)
	if err != nil {
		return name.Tag{}, fmt.Errorf("image reference %q: %w", ref, err)
	}
	return t, nil
}
