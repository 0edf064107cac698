// Package runscwrap is the OCI runtime podman is pointed at for the current
// gVisor: it passes every call through to the real runsc, except the start
// of a container whose spec carries the restore annotation, which it turns
// into `runsc restore` of the checkpoint image the annotation names. That
// way a restored sandbox comes up through podman's own create and start, and
// podman knows it as running (exec, inspect and removal work as for any
// sandbox); a restore done beside podman leaves podman thinking the
// container is only created.
//
// The wrapper is installed beside a file named "target" holding the real
// runsc's absolute path (see sandbox/podman).
package runscwrap

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// AnnotationRestore names the checkpoint image directory a container is to
// be restored from. Only the engine sets it (annotations are not part of
// any surface a user reaches).
const AnnotationRestore = "sandpool.restore"

// TargetFile is the name of the file beside the wrapper that holds the
// real runsc's path.
const TargetFile = "target"

// Main runs the wrapper with args (without the program name). It only
// returns on failure, with the exit status to use.
func Main(args []string) int {
	target, err := Target()
	if err != nil {
		fmt.Fprintln(os.Stderr, "sandpool-runsc:", err)
		return 125
	}
	argv, err := Rewrite(target, args)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sandpool-runsc:", err)
		return 125
	}
	err = syscall.Exec(target, argv, os.Environ())
	fmt.Fprintln(os.Stderr, "sandpool-runsc: exec runsc:", err)
	return 125
}

// Target reads the real runsc's path from the file beside the executable.
func Target() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(filepath.Join(filepath.Dir(exe), TargetFile))
	if err != nil {
		return "", fmt.Errorf("no runsc configured: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if !filepath.IsAbs(t) {
		return "", fmt.Errorf("runsc path %q is not absolute", t)
	}
	return t, nil
}

// Rewrite returns the argv to exec target with for the runtime call args.
// A call other than `start ID`, or the start of a container without the
// restore annotation, passes through unchanged.
func Rewrite(target string, args []string) ([]string, error) {
	argv := append([]string{target}, args...)
	// podman puts global flags first and "start" takes the id alone.
	n := len(args)
	if n < 2 || args[n-2] != "start" || strings.HasPrefix(args[n-1], "-") {
		return argv, nil
	}
	globals, id := args[:n-2], args[n-1]
	for _, g := range globals {
		if !strings.HasPrefix(g, "-") {
			return argv, nil // "start" was a flag's value, not the command
		}
	}
	dir, bundle, err := restoreDir(target, globals, id)
	if err != nil || dir == "" {
		return argv, err
	}
	out := append([]string{target}, globals...)
	return append(out, "restore", "--image-path="+dir, "--bundle="+bundle, "--detach", id), nil
}

// restoreDir reads the container's bundle from runsc and the restore
// annotation from the bundle's config.json.
func restoreDir(target string, globals []string, id string) (dir, bundle string, err error) {
	cmd := exec.Command(target, append(append([]string(nil), globals...), "state", id)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", "", fmt.Errorf("runsc state: %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	var st struct {
		Bundle string `json:"bundle"`
	}
	if err := json.Unmarshal(out, &st); err != nil || st.Bundle == "" {
		return "", "", fmt.Errorf("runsc state: no bundle in %q", out)
	}
	b, err := os.ReadFile(filepath.Join(st.Bundle, "config.json"))
	if err != nil {
		return "", "", err
	}
	var spec struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(b, &spec); err != nil {
		return "", "", fmt.Errorf("config.json: %w", err)
	}
	dir = spec.Annotations[AnnotationRestore]
	if dir == "" {
		return "", st.Bundle, nil
	}
	if !filepath.IsAbs(dir) || filepath.Clean(dir) != dir {
		return "", "", errors.New("the restore annotation is not a clean absolute path")
	}
	return dir, st.Bundle, nil
}
