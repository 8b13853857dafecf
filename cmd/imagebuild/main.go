// Command imagebuild writes the OCI images of topod's commands (package
// deploy/image) into one OCI image layout, each image annotated with its
// reference, from binaries built with CGO_ENABLED=0 (`make images` builds
// them into bin/ first):
//
//	imagebuild --bin-dir bin --out .cache/images/oci --repo registry.example.com/topod --tag v0.1.0
//
// It prints each image's reference and digest. --base layers the
// binaries over an image tarball instead of an empty base (e.g. one with
// a shell, for the vitess-operator's tablet pods).
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/topod-io/topod/deploy/image"
)

func main() {
	binDir := flag.String("bin-dir", "bin", "directory of the static binaries")
	out := flag.String("out", ".cache/images/oci", "OCI image layout to write (replaced)")
	repo := flag.String("repo", "registry.example.com/topod", "repository prefix of the images' tags")
	tag := flag.String("tag", "v0.1.0", "tag of the images")
	base := flag.String("base", "", "image tarball to build on (default: an empty base)")
	only := flag.String("only", "", "comma-separated image names (default: every image)")
	flag.Parse()
	if err := run(*binDir, *out, *repo, *tag, *base, *only); err != nil {
		fmt.Fprintln(os.Stderr, "imagebuild:", err)
		os.Exit(1)
	}
}

func run(binDir, out, repo, tag, basePath, only string) error {
	var base v1.Image
	if basePath != "" {
		var err error
		if base, err = tarball.ImageFromPath(basePath, nil); err != nil {
			return fmt.Errorf("base %s: %w", basePath, err)
		}
	}
	specs := image.Images
	if only != "" {
		specs = nil
		for _, n := range strings.Split(only, ",") {
			s, ok := image.Lookup(n)
			if !ok {
				return fmt.Errorf("no image named %q", n)
			}
			specs = append(specs, s)
		}
	}
	images := map[string]v1.Image{}
	var refs []string
	for _, s := range specs {
		img, err := image.Build(s, binDir, base)
		if err != nil {
			return err
		}
		ref := repo + "/" + s.Name + ":" + tag
		d, err := img.Digest()
		if err != nil {
			return err
		}
		images[ref] = img
		refs = append(refs, ref)
		fmt.Printf("%s %s\n", ref, d)
	}
	return image.WriteLayout(out, refs, images)
}
