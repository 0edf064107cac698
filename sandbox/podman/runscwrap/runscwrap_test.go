package runscwrap

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fakeRunsc writes a stand-in for runsc whose `state` prints the bundle
// dir, and a config.json there with annotations.
func fakeRunsc(t *testing.T, annotations map[string]string) (target, bundle string) {
	t.Helper()
	dir := t.TempDir()
	bundle = filepath.Join(dir, "bundle")
	if err := os.Mkdir(bundle, 0o755); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(map[string]any{"annotations": annotations})
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	target = filepath.Join(dir, "runsc")
	script := "#!/bin/sh\nfor a; do last=$a; done\ncase \" $* \" in *' state '*) printf '{\"id\":\"%s\",\"bundle\":\"" + bundle + "\"}' \"$last\";; *) exit 3;; esac\n"
	if err := os.WriteFile(target, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return target, bundle
}

func TestRewrite(t *testing.T) {
	const id = "0123abcd"
	tests := []struct {
		name        string
		annotations map[string]string
		args        []string
		want        func(target, bundle string) []string
		wantErr     string
	}{
		{"create passes through", map[string]string{AnnotationRestore: "/img"},
			[]string{"--network=none", "create", "--bundle", "/b", id},
			func(target, _ string) []string {
				return []string{target, "--network=none", "create", "--bundle", "/b", id}
			}, ""},
		{"exec passes through", nil,
			[]string{"--network=none", "exec", "--process", "/p", id},
			func(target, _ string) []string {
				return []string{target, "--network=none", "exec", "--process", "/p", id}
			}, ""},
		{"start without the annotation passes through", map[string]string{"other": "x"},
			[]string{"--network=none", "--platform=ptrace", "start", id},
			func(target, _ string) []string {
				return []string{target, "--network=none", "--platform=ptrace", "start", id}
			}, ""},
		{"start with the annotation restores, with the same global flags", map[string]string{AnnotationRestore: "/var/lib/sandpool/img"},
			[]string{"--network=none", "--platform=ptrace", "start", id},
			func(target, bundle string) []string {
				return []string{target, "--network=none", "--platform=ptrace", "restore", "--image-path=/var/lib/sandpool/img", "--bundle=" + bundle, "--detach", id}
			}, ""},
		{"a start that is a flag's value is not the command", map[string]string{AnnotationRestore: "/img"},
			[]string{"--log", "start", "state", id},
			func(target, _ string) []string { return []string{target, "--log", "start", "state", id} }, ""},
		{"a relative image path is refused", map[string]string{AnnotationRestore: "img"},
			[]string{"start", id}, nil, "clean absolute path"},
		{"an unclean image path is refused", map[string]string{AnnotationRestore: "/a/../etc"},
			[]string{"start", id}, nil, "clean absolute path"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			target, bundle := fakeRunsc(t, tc.annotations)
			got, err := Rewrite(target, tc.args)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Rewrite: %v %v, want an error with %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := tc.want(target, bundle); !slices.Equal(got, want) {
				t.Errorf("Rewrite:\n got %q\nwant %q", got, want)
			}
		})
	}
}

func TestRewriteStateFails(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "runsc")
	if err := os.WriteFile(target, []byte("#!/bin/sh\necho 'container not found' >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Rewrite(target, []string{"start", "x"}); err == nil || !strings.Contains(err.Error(), "container not found") {
		t.Errorf("Rewrite with a failing state: %v", err)
	}
}
