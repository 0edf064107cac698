// Package image builds sandpool's preinstalled Python image offline, from
// Debian packages: debootstrap a root filesystem with the packages listed in
// packages.txt, harden it with finalize.sh (in a chroot), and `podman import`
// it. The image's tag is a hash of those inputs, so a build is skipped when
// an image with the same inputs exists. Containerfile builds the same image
// where a registry is reachable.
package image

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

//go:embed packages.txt
var packagesTxt []byte

//go:embed finalize.sh
var finalizeSh []byte

// Repository is the image's name; tags are input hashes, plus "latest".
const Repository = "localhost/sandpool-python"

// Latest is the tag the newest build also gets.
const Latest = Repository + ":latest"

// suite is the Debian release the image is built from.
const suite = "bookworm"

// changes are the image config settings `podman import` applies.
var changes = []string{
	"USER=1000:1000",
	"WORKDIR=/mnt/data",
	"ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"ENV=LANG=C.UTF-8",
	"ENV=HOME=/tmp",
	"ENV=MPLBACKEND=Agg",
	"ENV=PYTHONDONTWRITEBYTECODE=1",
	`CMD=["python3"]`,
}

// Packages returns the Debian packages of the image (packages.txt without
// comments and blank lines).
func Packages() []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(packagesTxt))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		if line != "" {
			out = append(out, line)
		}
	}
	return out
}

// InputsHash is a hash of everything that decides the image's contents.
func InputsHash() string {
	h := sha256.New()
	fmt.Fprintf(h, "suite=%s\n", suite)
	for _, p := range Packages() {
		fmt.Fprintf(h, "pkg=%s\n", p)
	}
	h.Write(finalizeSh)
	for _, c := range changes {
		fmt.Fprintf(h, "change=%s\n", c)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// Tag is the image reference for the current inputs.
func Tag() string { return Repository + ":" + InputsHash() }

// Options configures Build.
type Options struct {
	// Mirror is the Debian mirror; default http://deb.debian.org/debian.
	Mirror string
	// WorkDir holds the temporary root filesystem (about 2 GB); default /var/tmp.
	WorkDir string
	// Force rebuilds even when the image exists.
	Force bool
	// Podman is the podman binary; default "podman".
	Podman string
	// Log receives the build's progress; default io.Discard.
	Log io.Writer
}

// Exists reports whether the image for the current inputs is present.
func Exists(ctx context.Context, podman string) bool {
	if podman == "" {
		podman = "podman"
	}
	return exec.CommandContext(ctx, podman, "image", "exists", Tag()).Run() == nil
}

// Build builds the image unless it exists already, tags it with Tag() and
// Latest, and returns Tag(). It needs root, debootstrap and podman.
func Build(ctx context.Context, opts Options) (string, error) {
	if opts.Mirror == "" {
		opts.Mirror = "http://deb.debian.org/debian"
	}
	if opts.WorkDir == "" {
		opts.WorkDir = "/var/tmp"
	}
	if opts.Podman == "" {
		opts.Podman = "podman"
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	tag := Tag()
	if !opts.Force && Exists(ctx, opts.Podman) {
		fmt.Fprintf(opts.Log, "image %s is up to date\n", tag)
		return tag, tagLatest(ctx, opts.Podman, tag)
	}
	if os.Geteuid() != 0 {
		return "", errors.New("building the image needs root (debootstrap and chroot)")
	}
	for _, tool := range []string{"debootstrap", "chroot", opts.Podman} {
		if _, err := exec.LookPath(tool); err != nil {
			return "", fmt.Errorf("building the image needs %s: %w", tool, err)
		}
	}
	dir, err := os.MkdirTemp(opts.WorkDir, "sandpool-image-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	root := filepath.Join(dir, "rootfs")

	fmt.Fprintf(opts.Log, "debootstrap %s with %d packages (a few minutes)\n", suite, len(Packages()))
	logf, err := os.Create(filepath.Join(dir, "debootstrap.log"))
	if err != nil {
		return "", err
	}
	defer logf.Close()
	deb := exec.CommandContext(ctx, "debootstrap", "--variant=minbase",
		"--include="+strings.Join(Packages(), ","), suite, root, opts.Mirror)
	deb.Stdout, deb.Stderr = logf, logf
	if err := deb.Run(); err != nil {
		return "", fmt.Errorf("debootstrap: %w\n%s", err, tail(logf.Name(), 2000))
	}

	fmt.Fprintln(opts.Log, "finalize (harden, add user, check imports)")
	fin := exec.CommandContext(ctx, "chroot", root, "/bin/sh", "-s")
	fin.Stdin = bytes.NewReader(finalizeSh)
	fin.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "HOME=/root"}
	if out, err := fin.CombinedOutput(); err != nil {
		return "", fmt.Errorf("finalize: %w\n%s", err, out)
	}

	fmt.Fprintf(opts.Log, "podman import %s\n", tag)
	args := []string{"import"}
	for _, c := range changes {
		args = append(args, "--change", c)
	}
	args = append(args, "--change", "LABEL=io.sandpool.image.inputs="+InputsHash(), "-", tag)
	tar := exec.CommandContext(ctx, "tar", "-C", root, "--numeric-owner", "-cf", "-", ".")
	imp := exec.CommandContext(ctx, opts.Podman, args...)
	pipe, err := tar.StdoutPipe()
	if err != nil {
		return "", err
	}
	imp.Stdin = pipe
	var impOut bytes.Buffer
	imp.Stdout, imp.Stderr = &impOut, &impOut
	var tarErr bytes.Buffer
	tar.Stderr = &tarErr
	if err := tar.Start(); err != nil {
		return "", err
	}
	impErr := imp.Run()
	if err := tar.Wait(); err != nil {
		return "", fmt.Errorf("tar: %w: %s", err, tarErr.String())
	}
	if impErr != nil {
		return "", fmt.Errorf("podman import: %w: %s", impErr, impOut.String())
	}
	return tag, tagLatest(ctx, opts.Podman, tag)
}

func tagLatest(ctx context.Context, podman, tag string) error {
	if out, err := exec.CommandContext(ctx, podman, "tag", tag, Latest).CombinedOutput(); err != nil {
		return fmt.Errorf("podman tag: %w: %s", err, out)
	}
	return nil
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
