package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/sandpool/sandpool/internal/podmantest"
	"github.com/sandpool/sandpool/sandbox/image"
	"github.com/sandpool/sandpool/sandbox/podman"
)

// TestBench runs `sandpool bench --json` with tiny sample counts under runc:
// every figure is there with positive numbers beside at least one
// baseline, and the run leaves no container behind.
func TestBench(t *testing.T) {
	rt := podmantest.Runc
	eng := podmantest.Engine(t, rt)
	// The run's containers carry this test run's label, so that the leak
	// check of TestMain sees any left; removed here whatever happens.
	mine := map[string]string{podmantest.LabelRun: podmantest.RunID(), labelBench: ""}
	podmantest.RemoveLabelled(t, eng, mine)

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	t0 := time.Now()
	code := run(ctx, []string{"bench", "--runtime", rt.Name, "--samples", "3", "--burst", "2", "--idle", "2", "--json",
		"--agent", podmantest.Agent(t), "--image", image.Tag(), "--label", podmantest.LabelRun + "=" + podmantest.RunID()},
		strings.NewReader(""), &out, &errb)
	t.Logf("bench took %s; progress:\n%s", time.Since(t0).Round(time.Second), errb.String())
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	var r benchReport
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("not the JSON report: %v\n%s", err, out.String())
	}
	positive := func(what string, v *benchValue) {
		t.Helper()
		switch {
		case v == nil:
			t.Errorf("%s: missing", what)
		case v.N < 1:
			t.Errorf("%s: n = %d", what, v.N)
		case v.Value != nil:
			if *v.Value <= 0 {
				t.Errorf("%s: value %v", what, *v.Value)
			}
		case v.P50 == nil || v.P99 == nil || *v.P50 <= 0 || *v.P99 < *v.P50:
			t.Errorf("%s: p50 %v, p99 %v", what, v.P50, v.P99)
		}
	}
	got := map[string]*benchFigure{}
	for _, f := range r.Figures {
		if f.Runtime != rt.Name {
			t.Errorf("figure %s of runtime %q, want only %s", f.Figure, f.Runtime, rt.Name)
		}
		got[f.Figure] = f
	}
	for _, want := range benchFigures {
		f := got[want.id]
		if checkpointFigures[want.id] {
			// runc has no checkpoint: TestBenchCheckpoint measures them.
			if f != nil {
				t.Errorf("figure %s under runc", want.id)
			}
			continue
		}
		if f == nil {
			t.Errorf("figure %s missing", want.id)
			continue
		}
		positive(want.id, f.Sandpool)
		if len(f.Baselines) == 0 {
			t.Errorf("%s: no baseline", want.id)
		}
		for _, b := range f.Baselines {
			positive(want.id+" baseline "+b.Name, &b.benchValue)
		}
	}
	if n := len(got["execute"].Baselines); n != 2 {
		t.Errorf("execute: %d baselines, want podman exec and podman run --rm", n)
	}
	left, err := eng.List(context.Background(), mine)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range left {
		t.Errorf("left behind: %s %v", c.Name, c.Labels)
	}
}

// checkpointFigures are the figures of engines that can checkpoint.
var checkpointFigures = map[string]bool{"checkpoint": true, "checkpoint_image": true, "restore_first": true}

// TestBenchCheckpoint: the checkpoint rows under the current gVisor, one
// sample of each way of writing an image, beside cold creation; nothing is
// left behind.
func TestBenchCheckpoint(t *testing.T) {
	rt := podmantest.Runsc
	eng := podmantest.Engine(t, rt)
	b := &bench{o: benchOptions{firstSamples: 1, image: image.Tag(), labels: map[string]string{podmantest.LabelRun: podmantest.RunID()}},
		progress: io.Discard, runID: randomHex(6), stateDir: t.TempDir(),
		engines: map[string]*podman.Engine{rt.Name: eng}, figures: map[string]*benchFigure{}}
	for id := range checkpointFigures {
		b.figures[rt.Name+"/"+id] = &benchFigure{Runtime: rt.Name, Figure: id}
	}
	mine := map[string]string{labelBench: b.runID}
	podmantest.RemoveLabelled(t, eng, mine)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if err := b.figCheckpoint(ctx, rt.Name); err != nil {
		t.Fatal(err)
	}
	for id := range checkpointFigures {
		f := b.fig(rt.Name, id)
		if f.Sandpool == nil || len(f.Baselines) < len(checkpointVariants)-1 {
			t.Errorf("%s: %+v", id, f)
			continue
		}
		for _, bl := range append([]benchBaseline{{Name: "sandpool", benchValue: *f.Sandpool}}, f.Baselines...) {
			if v := bl.benchValue; v.N < 1 || (v.Value == nil || *v.Value <= 0) && (v.P50 == nil || *v.P50 <= 0) {
				t.Errorf("%s %s: %+v", id, bl.Name, v)
			}
		}
	}
	if len(b.fig(rt.Name, "restore_first").Baselines) != len(checkpointVariants) {
		t.Error("restore_first has no cold creation beside it")
	}
	if left, err := eng.List(context.Background(), mine); err != nil || len(left) != 0 {
		t.Errorf("left behind: %v %v", left, err)
	}
}

// TestBenchFlagErrors: bad flags are refused, naming the flag, before
// anything starts.
func TestBenchFlagErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--samples", "0"}, "--samples"},
		{[]string{"--burst", "0"}, "--burst"},
		{[]string{"--runtime", "crun"}, `--runtime: "crun"`},
		{[]string{"--runtime", "runc:ptrace"}, "applies to the runsc runtimes"},
		{[]string{"--runtime", "runsc:kvm"}, "applies to the runsc runtimes"},
		{[]string{"--runtime", "runsc,runsc"}, "named twice"},
		{[]string{"--label", "team=a"}, "--label: key"},
		{[]string{"--label", "sandpool.bench=x"}, "sandpool's own"},
		{[]string{"--label", "sandpool.team=a b"}, "--label: value"},
	}
	for _, tc := range tests {
		var errb bytes.Buffer
		code := run(context.Background(), append([]string{"bench"}, tc.args...), strings.NewReader(""), io.Discard, &errb)
		if code == 0 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want an error naming %s", tc.args, code, errb.String(), tc.want)
		}
	}
}
