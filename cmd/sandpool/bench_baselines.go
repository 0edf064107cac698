package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sandpool/sandpool/pool"
	"github.com/sandpool/sandpool/sandbox"
	"github.com/sandpool/sandpool/sandbox/podman"
)

// podmanCLI runs the podman command line with rt's runtime and the
// runtime flags of its engine's service as global options.
func (b *bench) podmanCLI(ctx context.Context, rt string, args ...string) *exec.Cmd {
	e := b.engines[rt]
	global := []string{"--runtime", e.RuntimePath()}
	for _, f := range e.RuntimeFlags() {
		global = append(global, "--runtime-flag", f)
	}
	return exec.CommandContext(ctx, "podman", append(global, args...)...)
}

func runCLI(cmd *exec.Cmd) (string, error) {
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s: %w: %.500s", strings.Join(cmd.Args[:min(len(cmd.Args), 8)], " "), err, stderr.String())
	}
	return string(out), nil
}

// runArgs are the arguments of a `podman run` of the sandbox image:
// labelled for the run, with the rlimits this kind of host needs, no
// network (as sandboxes) and the sandboxes' memory limit.
func (b *bench) runArgs(rt string, args ...string) []string {
	out := []string{"run", "--pull", "never", "--network", "none",
		"--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
		"--memory", strconv.FormatInt(sandbox.DefaultResources().Memory, 10)}
	for k, v := range b.labels(map[string]string{podman.LabelEngine: b.engines[rt].Runtime(), pool.LabelPool: "baseline"}) {
		out = append(out, "--label", k+"="+v)
	}
	return append(out, args...)
}

// runRm times one `podman run --rm IMAGE python3 -c code`.
func (b *bench) runRm(ctx context.Context, rt, code string) (time.Duration, error) {
	t0 := time.Now()
	_, err := runCLI(b.podmanCLI(ctx, rt, b.runArgs(rt, "--rm", b.o.image, "python3", "-c", code)...))
	return time.Since(t0), err
}

// runRmAtOnce starts n `podman run --rm` at once and times them until the
// last exits.
func (b *bench) runRmAtOnce(ctx context.Context, rt string, n int, code string) (time.Duration, error) {
	errs := make([]error, n)
	var wg sync.WaitGroup
	t0 := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = b.runRm(ctx, rt, code)
		}()
	}
	wg.Wait()
	return time.Since(t0), errors.Join(errs...)
}

// baselines measures rt's baselines with the podman command line.
func (b *bench) baselines(ctx context.Context, rt string) error {
	if err := b.idleBaseline(ctx, rt); err != nil {
		return err
	}
	n := b.o.burst
	b.say("%s: baseline: %d podman run --rm at once, twice", rt, n)
	preload := "import " + strings.Join(sandbox.DefaultPreload, ", ")
	d, err := b.runRmAtOnce(ctx, rt, n, benchCode)
	if err != nil {
		return err
	}
	b.baseline(rt, "burst_answered", fmt.Sprintf("%d x podman run --rm python3 -c 'x = 1' at once", n), singleValue("s", n, d.Seconds()))
	if d, err = b.runRmAtOnce(ctx, rt, n, preload); err != nil {
		return err
	}
	b.baseline(rt, "burst_refilled", fmt.Sprintf("%d x podman run --rm python3 -c '%s' at once", n, preload), singleValue("s", n, d.Seconds()))

	runs := min(maxRunSamples, max(1, b.o.samples/40))
	b.say("%s: baseline: podman run --rm per execution: %d samples", rt, runs)
	rd, err := repeat(ctx, runs, func(int) (time.Duration, error) { return b.runRm(ctx, rt, benchCode) })
	if err != nil {
		return err
	}
	return b.execBaselines(ctx, rt, rd)
}

// idleBaseline measures plain containers of the image holding an idle
// python3 with the same imports as a warm sandbox's kernel.
func (b *bench) idleBaseline(ctx context.Context, rt string) error {
	k := b.o.idle
	b.say("%s: baseline: memory of %d plain containers idling in python3 with the same imports", rt, k)
	code := "import sys, time, " + strings.Join(sandbox.DefaultPreload, ", ") + "\nprint('ready', flush=True)\ntime.sleep(86400)"
	var ids []string
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), benchCleanupTimeout)
		defer cancel()
		for _, id := range ids {
			_ = b.engines[rt].Remove(rctx, id)
		}
	}()
	for range k {
		out, err := runCLI(b.podmanCLI(ctx, rt, b.runArgs(rt, "-d", b.o.image, "python3", "-c", code)...))
		if err != nil {
			return err
		}
		ids = append(ids, strings.TrimSpace(out))
	}
	deadline := time.Now().Add(benchPoolTimeout)
	for _, id := range ids {
		for {
			logs, err := runCLI(exec.CommandContext(ctx, "podman", "logs", id))
			if err != nil {
				return err
			}
			if strings.Contains(logs, "ready") {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("plain container %.12s did not finish its imports within %s", id, benchPoolTimeout)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	mib, err := settledMemory(ctx, ids)
	if err != nil {
		return err
	}
	name := "plain container, idle python3, same imports"
	b.baseline(rt, "idle_memory", name, singleValue("MiB/sandbox", k, mib))
	b.baseline(rt, "idle_density", name, singleValue("sandboxes/GiB", k, 1024/mib))
	return nil
}

// execBaselines measures podman exec into a sandbox (created as `sandpool
// exec` creates one: hardened, the agent running) and records them with
// the podman run samples rd.
func (b *bench) execBaselines(ctx context.Context, rt string, rd []time.Duration) (retErr error) {
	e := b.engines[rt]
	sb, err := e.Create(ctx, sandbox.Spec{Image: b.o.image, Isolation: sandbox.IsolationOf(e.Runtime()), Labels: b.labels(map[string]string{pool.LabelPool: "baseline"})})
	if err != nil {
		return err
	}
	defer func() {
		sb.Close()
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), benchCleanupTimeout)
		defer cancel()
		if err := e.Remove(rctx, sb.ID); err != nil {
			retErr = errors.Join(retErr, err)
		}
	}()
	n := min(b.o.samples, maxExecSamples)
	b.say("%s: baseline: podman exec per execution: %d samples, then %d streaming", rt, n, n)
	ed, err := repeat(ctx, n, func(int) (time.Duration, error) {
		t0 := time.Now()
		_, err := runCLI(b.podmanCLI(ctx, rt, "exec", sb.ID, "python3", "-c", benchCode))
		return time.Since(t0), err
	})
	if err != nil {
		return err
	}
	b.baseline(rt, "execute", "podman exec python3 -c 'x = 1' (CLI)", latencyValue(ed))
	b.baseline(rt, "execute", "podman run --rm python3 -c 'x = 1' (CLI)", latencyValue(rd))
	sd, err := repeat(ctx, n, func(int) (time.Duration, error) {
		return firstByte(ctx, b.podmanCLI(ctx, rt, "exec", sb.ID, "python3", "-u", "-c", benchStreamCode))
	})
	if err != nil {
		return err
	}
	b.baseline(rt, "ws_first_chunk", "podman exec python3 -u (CLI): first stdout byte", latencyValue(sd))
	return nil
}

// firstByte starts cmd and times it until its first byte of stdout; it
// waits for cmd to exit.
func firstByte(ctx context.Context, cmd *exec.Cmd) (time.Duration, error) {
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	one := make([]byte, 1)
	_, rerr := io.ReadFull(out, one)
	d := time.Since(t0)
	_, _ = io.Copy(io.Discard, out)
	if err := cmd.Wait(); err != nil {
		return 0, fmt.Errorf("podman exec: %w: %.500s", err, stderr.String())
	}
	if rerr != nil {
		return 0, fmt.Errorf("podman exec printed nothing: %w", rerr)
	}
	return d, ctx.Err()
}
