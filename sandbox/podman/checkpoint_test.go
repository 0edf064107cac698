package podman_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sandpool/sandpool/internal/errcode"
	"github.com/sandpool/sandpool/internal/podmantest"
	"github.com/sandpool/sandpool/pool"
	"github.com/sandpool/sandpool/sandbox"
	"github.com/sandpool/sandpool/sandbox/podman"
)

// The podman engine has the optional capability pools find by assertion.
var _ pool.Checkpointer = (*podman.Engine)(nil)

// checkpointed creates a runsc sandbox with state in its kernel (x), in
// /mnt/data and /tmp, and a background process, and checkpoints it into a
// new directory; it returns the spec, the image and the kernel's generation.
func checkpointed(t *testing.T, e *podman.Engine) (sandbox.Spec, sandbox.CheckpointImage, int64) {
	t.Helper()
	spec := podmantest.Spec(podmantest.Runsc)
	sb := podmantest.Create(t, e, spec)
	res, out := run(t, sb, strings.Join([]string{
		"x = 41",
		"open('/mnt/data/kept.txt', 'w').write('in data')",
		"open('/tmp/kept.txt', 'w').write('in tmp')",
		"open('/dev/shm/kept.txt', 'w').write('in shm')",
		"import subprocess; bg = subprocess.Popen(['sleep', '600'])",
		"print(bg.pid)",
	}, "\n"), 30*time.Second)
	if res.Status != sandbox.StatusOK {
		t.Fatalf("setup: %s %+v", res.Status, out.Error)
	}
	info, err := sb.Info(context.Background(), false, 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	img, err := e.Checkpoint(ctx, sb, filepath.Join(t.TempDir(), "img"), sandbox.CheckpointOptions{})
	if err != nil {
		t.Fatalf("Checkpoint: %v", err)
	}
	return spec, img, info.Kernel.Generation
}

// restore restores img and removes the sandbox when the test ends.
func restore(t *testing.T, e *podman.Engine, spec sandbox.Spec, dir string) (*sandbox.Sandbox, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sb, err := e.Restore(ctx, spec, dir)
	if err == nil {
		t.Cleanup(func() { podmantest.Remove(t, e, sb) })
	}
	return sb, err
}

// TestCheckpointRestore: a checkpointed sandbox stops; its image restores
// into a new container that podman knows as running, reached over a new
// connection, with the kernel's variables, the files of /mnt/data, /tmp and
// /dev/shm (tmpfs under gVisor is part of the checkpoint) and background
// processes.
func TestCheckpointRestore(t *testing.T) {
	e := podmantest.Engine(t, podmantest.Runsc)
	spec, img, gen := checkpointed(t, e)
	if img.Bytes <= 0 || img.Took <= 0 {
		t.Errorf("image: %+v", img)
	}
	for _, f := range []string{"checkpoint.img", "sandpool-checkpoint.json"} {
		if _, err := os.Stat(filepath.Join(img.Dir, f)); err != nil {
			t.Errorf("image lacks %s: %v", f, err)
		}
	}
	if left, _ := filepath.Glob(img.Dir + ".tmp-*"); len(left) > 0 {
		t.Errorf("temporary image left: %v", left)
	}
	sb, err := restore(t, e, spec, img.Dir)
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	res, out := run(t, sb, strings.Join([]string{
		"print(x + 1)",
		"print(open('/mnt/data/kept.txt').read())",
		"print(open('/tmp/kept.txt').read())",
		"print(open('/dev/shm/kept.txt').read())",
		"print(bg.poll() is None)",
	}, "\n"), 30*time.Second)
	if res.Status != sandbox.StatusOK || string(out.Stdout) != "42\nin data\nin tmp\nin shm\nTrue\n" {
		t.Errorf("restored state: %s %q %+v", res.Status, out.Stdout, out.Error)
	}
	ctx := context.Background()
	info, err := sb.Info(ctx, false, 0)
	if err != nil || info.Kernel.Generation != gen {
		t.Errorf("kernel generation %d (want %d, the same kernel): %v", info.Kernel.Generation, gen, err)
	}
	// podman knows it as running: inspect, exec (the bridge) and
	// adoption by a new handle work as for any sandbox.
	sb2, err := e.Open(ctx, sb.ID)
	if err != nil {
		t.Fatalf("Open (adoption) of the restored sandbox: %v", err)
	}
	defer sb2.Close()
	if _, out := run(t, sb2, "x", 30*time.Second); result(out) != "41" {
		t.Errorf("x through a second connection: %q", result(out))
	}
	if st, err := sb2.Stat(ctx, "kept.txt"); err != nil || st.Size != int64(len("in data")) {
		t.Errorf("file API on the restored sandbox: %+v %v", st, err)
	}
	// One image, one sandbox at a time: a second restore while the first
	// runs is refused (the container name is taken), nothing is left.
	if _, err := restore(t, e, spec, img.Dir); err == nil {
		t.Error("a second sandbox was restored from the same image while the first runs")
	}
}

// TestCheckpointRestoreEgress: an egress sandbox (created by the engine's
// second service, gVisor's own netstack) restores with its network.
func TestCheckpointRestoreEgress(t *testing.T) {
	e := podmantest.Engine(t, podmantest.Runsc)
	spec := podmantest.Spec(podmantest.Runsc)
	spec.Network = sandbox.NetworkEgress
	sb := podmantest.Create(t, e, spec)
	run(t, sb, "x = 5", 30*time.Second)
	img, err := e.Checkpoint(context.Background(), sb, filepath.Join(t.TempDir(), "img"), sandbox.CheckpointOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := restore(t, e, spec, img.Dir)
	if err != nil {
		t.Fatal(err)
	}
	_, out := run(t, rs, "x", 30*time.Second)
	_, probe := run(t, rs, egressProbe, 30*time.Second)
	if result(out) != "5" || !strings.Contains(string(probe.Stdout), "eth0") || !strings.HasSuffix(string(probe.Stdout), "hi\n") {
		t.Errorf("restored egress sandbox: x %q, network %q", result(out), probe.Stdout)
	}
}

// TestCheckpointFaults: every bad input or fault gives a clear error and
// loses nothing: the session keeps running, no partial image is left, no
// container is half-restored.
func TestCheckpointFaults(t *testing.T) {
	e := podmantest.Engine(t, podmantest.Runsc)
	ctx := context.Background()

	t.Run("execution in flight is refused", func(t *testing.T) {
		sb := podmantest.Create(t, e, podmantest.Spec(podmantest.Runsc))
		run(t, sb, "y = 7", 30*time.Second)
		done := make(chan struct{})
		go func() {
			defer close(done)
			col := sandbox.Collector{Max: 1 << 20}
			_, _ = sb.Execute(ctx, sandbox.ExecRequest{Code: "import time; time.sleep(3)", Timeout: 30 * time.Second}, col.Sink())
		}()
		deadline := time.Now().Add(10 * time.Second)
		for sb.InFlight() == 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		dir := filepath.Join(t.TempDir(), "img")
		_, err := e.Checkpoint(ctx, sb, dir, sandbox.CheckpointOptions{})
		if errcode.Of(err) != errcode.Busy {
			t.Errorf("checkpoint during an execution: %v (want %s)", err, errcode.Busy)
		}
		<-done
		if _, err := os.Stat(dir); err == nil {
			t.Error("an image was left")
		}
		if _, out := run(t, sb, "y", 30*time.Second); result(out) != "7" {
			t.Errorf("session after the refusal: %q", result(out))
		}
	})

	t.Run("disk full keeps the session and removes the partial image", func(t *testing.T) {
		sb := podmantest.Create(t, e, podmantest.Spec(podmantest.Runsc))
		run(t, sb, "z = 'still here'", 30*time.Second)
		small := t.TempDir()
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", small).CombinedOutput(); err != nil {
			t.Fatalf("mount a small tmpfs: %v %s", err, out)
		}
		t.Cleanup(func() { _ = exec.Command("umount", "-l", small).Run() })
		_, err := e.Checkpoint(ctx, sb, filepath.Join(small, "img"), sandbox.CheckpointOptions{})
		if errcode.Of(err) != errcode.NoSpace {
			t.Errorf("checkpoint onto a full disk: %v (want %s)", err, errcode.NoSpace)
		}
		if ents, _ := os.ReadDir(small); len(ents) != 0 {
			t.Errorf("partial image left: %d entries", len(ents))
		}
		if _, out := run(t, sb, "z", 30*time.Second); result(out) != "'still here'" {
			t.Errorf("session after the failed checkpoint: %q", result(out))
		}
	})

	t.Run("bad images are refused and nothing is left", func(t *testing.T) {
		spec, img, _ := checkpointed(t, e)
		damage := []struct {
			name string
			do   func(t *testing.T, dir string)
			want string
		}{
			{"a flipped byte", func(t *testing.T, dir string) {
				p := filepath.Join(dir, "checkpoint.img")
				b, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				b[len(b)/2] ^= 0xff
				if err := os.WriteFile(p, b, 0o600); err != nil {
					t.Fatal(err)
				}
			}, "corrupt"},
			{"a missing file", func(t *testing.T, dir string) {
				if err := os.Remove(filepath.Join(dir, "pages_meta.img")); err != nil {
					t.Fatal(err)
				}
			}, "corrupt"},
			{"no manifest", func(t *testing.T, dir string) {
				if err := os.Remove(filepath.Join(dir, "sandpool-checkpoint.json")); err != nil {
					t.Fatal(err)
				}
			}, "corrupt"},
			{"another gVisor version", func(t *testing.T, dir string) {
				editManifest(t, dir, func(m map[string]any) { m["runtimeVersion"] = "release-20221219.0" })
			}, "taken under runsc release-20221219.0; this engine runs runsc " + sandbox.GVisorVersion},
			{"another platform", func(t *testing.T, dir string) {
				editManifest(t, dir, func(m map[string]any) { m["platform"] = "systrap" })
			}, "systrap platform"},
		}
		for _, d := range damage {
			t.Run(d.name, func(t *testing.T) {
				dir := filepath.Join(t.TempDir(), "img")
				copyDir(t, img.Dir, dir)
				d.do(t, dir)
				_, err := restore(t, e, spec, dir)
				if errcode.Of(err) != errcode.CheckpointInvalid || !strings.Contains(errcode.Public(err), d.want) {
					t.Errorf("restore: %v (want %s, %q)", err, errcode.CheckpointInvalid, d.want)
				}
				if strings.Contains(errcode.Public(err), "/") {
					t.Errorf("the public message shows a path: %q", errcode.Public(err))
				}
			})
		}
		t.Run("another spec", func(t *testing.T) {
			other := spec
			other.Resources.Memory = 512 * sandbox.MiB
			if _, err := restore(t, e, other, img.Dir); errcode.Of(err) != errcode.CheckpointInvalid {
				t.Errorf("restore into another spec: %v", err)
			}
		})
		// None of the refused restores left a container behind.
		list, err := e.List(ctx, map[string]string{podmantest.LabelRun: podmantest.RunID()})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range list {
			if !c.Running {
				t.Errorf("container %s left after a refused restore", c.Name)
			}
		}
		// The undamaged image still restores.
		sb, err := restore(t, e, spec, img.Dir)
		if err != nil {
			t.Fatalf("restore of the intact image: %v", err)
		}
		if _, out := run(t, sb, "x", 30*time.Second); result(out) != "41" {
			t.Errorf("x after restore: %q", result(out))
		}
	})
}

// TestCheckpointUnsupported: engines without checkpoint say so.
func TestCheckpointUnsupported(t *testing.T) {
	for _, rt := range []podmantest.Runtime{podmantest.Runc, podmantest.RunscDebian} {
		t.Run(rt.Name, func(t *testing.T) {
			e := podmantest.Engine(t, rt)
			sb := podmantest.Create(t, e, podmantest.Spec(rt))
			_, err := e.Checkpoint(context.Background(), sb, filepath.Join(t.TempDir(), "img"), sandbox.CheckpointOptions{})
			if errcode.Of(err) != errcode.Unsupported {
				t.Errorf("checkpoint under %s: %v", rt.Name, err)
			}
			if _, out := run(t, sb, "1 + 1", 30*time.Second); result(out) != "2" {
				t.Errorf("sandbox after the refusal: %q", result(out))
			}
		})
	}
}

func editManifest(t *testing.T, dir string, edit func(map[string]any)) {
	t.Helper()
	p := filepath.Join(dir, "sandpool-checkpoint.json")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	if b, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, bytes.TrimSpace(out))
	}
}
