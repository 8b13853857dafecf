// Command installbin copies executable files into a directory. The images
// `make images` builds have no shell and no cp, so a tablet pod's init
// container runs it to hand /vt/bin/mysqlctld from the topod mysqlctld image
// to the mysqld container, whose image (MySQL of the user's choice) lacks
// it:
//
//	installbin --dir /mnt/vt/bin /vt/bin/mysqlctld
//
// Each file is written to a temporary name in --dir and renamed into place,
// so a container restarted mid-copy never runs half a binary.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/pflag"
)

func main() {
	fs := pflag.NewFlagSet("installbin", pflag.ContinueOnError)
	dir := fs.String("dir", "", "directory to copy the files into (created if missing)")
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: installbin --dir DIR FILE...\n%s", fs.FlagUsages())
	}
	// Flags may follow the files (pflag): --help anywhere prints the usage
	// and copies nothing.
	switch err := fs.Parse(os.Args[1:]); {
	case errors.Is(err, pflag.ErrHelp):
		return
	case err != nil:
		fmt.Fprintln(os.Stderr, "installbin:", err)
		os.Exit(2)
	}
	if *dir == "" || fs.NArg() == 0 {
		fs.Usage()
		os.Exit(2)
	}
	for _, f := range fs.Args() {
		if err := install(f, *dir); err != nil {
			fmt.Fprintln(os.Stderr, "installbin:", err)
			os.Exit(1)
		}
	}
}

// install copies file into dir with mode 0755.
func install(file, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	src, err := os.Open(file)
	if err != nil {
		return err
	}
	defer src.Close()
	tmp, err := os.CreateTemp(dir, ".installbin-*")
	if err != nil {
		return fmt.Errorf("copy %s: %w", file, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, src); err != nil {
		tmp.Close()
		return fmt.Errorf("copy %s into %s: %w", file, dir, err)
	}
	if err := tmp.Chmod(0o755); err != nil {
		tmp.Close()
		return fmt.Errorf("copy %s into %s: %w", file, dir, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("copy %s into %s: %w", file, dir, err)
	}
	dst := filepath.Join(dir, filepath.Base(file))
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("install %s: %w", dst, err)
	}
	return nil
}
