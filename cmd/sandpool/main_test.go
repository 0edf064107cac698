package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sandpool/sandpool/internal/podmantest"
	"github.com/sandpool/sandpool/sandbox/image"
)

func TestMain(m *testing.M) { podmantest.Main(m) }

// sandpool runs the CLI in-process. Each call starts and stops its own
// podman service, like a separate sandpool process would.
func sandpool(t *testing.T, rt podmantest.Runtime, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	args = append([]string{args[0], "--runtime", rt.Name, "--agent", podmantest.Agent(t),
		"--state-dir", podmantest.StateDir(t), "--image", image.Tag()}, args[1:]...)
	code := run(ctx, args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

var sandboxName = regexp.MustCompile(`sandbox: (sandpool-[0-9a-f]+)`)

// TestExecAcrossProcesses: a sandbox kept by one sandpool process is found
// by the next one with its variables intact.
func TestExecAcrossProcesses(t *testing.T) {
	for _, rt := range podmantest.Runtimes() {
		t.Run(rt.Name, func(t *testing.T) {
			t.Parallel()
			eng := podmantest.Engine(t, rt)
			code, out, errs := sandpool(t, rt, "exec", "--keep", "-c", "x = 40 + 2\nprint('set')")
			m := sandboxName.FindStringSubmatch(errs)
			if code != 0 || out != "set\n" || m == nil {
				t.Fatalf("first process: exit %d, stdout %q, stderr %q", code, out, errs)
			}
			name := m[1]
			t.Cleanup(func() { _ = eng.Remove(context.Background(), name) })

			code, out, errs = sandpool(t, rt, "exec", "--sandbox", name, "--remove", "-c", "print(x)")
			if code != 0 || out != "42\n" {
				t.Errorf("second process: exit %d, stdout %q, stderr %q", code, out, errs)
			}
			if left, _ := eng.List(context.Background(), map[string]string{"sandpool.pool": "cli"}); len(left) != 0 {
				for _, c := range left {
					if c.Name == name {
						t.Errorf("--remove left the sandbox")
					}
				}
			}
		})
	}
}

func TestExecExitCodes(t *testing.T) {
	rt := podmantest.Runc
	podmantest.Engine(t, rt)
	tests := []struct {
		code     string
		exit     int
		stdout   string
		inStderr string
	}{
		{"print('hi')\n6 * 7", 0, "hi\n42\n", ""},
		{"1/0", 1, "", "ZeroDivisionError: division by zero"},
		{"import time\ntime.sleep(30)", 2, "", "timeout: the execution exceeded its 1s timeout"},
	}
	for _, tc := range tests {
		exit, out, errs := sandpool(t, rt, "exec", "--timeout", "1s", "-c", tc.code)
		if exit != tc.exit || out != tc.stdout || !strings.Contains(errs, tc.inStderr) {
			t.Errorf("%q: exit %d stdout %q stderr %q", tc.code, exit, out, errs)
		}
	}
}
