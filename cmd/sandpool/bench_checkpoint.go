package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/sandpool/sandpool/pool"
	"github.com/sandpool/sandpool/sandbox"
)

// checkpointVariants are the ways of writing a checkpoint image bench
// measures: sandpool's default first, then the alternatives beside it.
var checkpointVariants = []struct {
	name string
	opt  sandbox.CheckpointOptions
}{
	{"default", sandbox.CheckpointOptions{}},
	{"--exclude-committed-zero-pages", sandbox.CheckpointOptions{ExcludeZeroPages: true}},
	{"--compression=flate-best-speed", sandbox.CheckpointOptions{Compress: true}},
	{"both", sandbox.CheckpointOptions{ExcludeZeroPages: true, Compress: true}},
}

// figCheckpoint measures, on an engine that can checkpoint, the checkpoint
// of an idle sandbox whose kernel has numpy, pandas and matplotlib
// imported, its image size, and its restore up to the first execution,
// beside the cold creation of the same sandbox up to its first execution.
// Every variant of checkpointVariants takes the same number of samples.
func (b *bench) figCheckpoint(ctx context.Context, rt string) error {
	e := b.engines[rt]
	if e.CanCheckpoint() != nil {
		return nil
	}
	n := b.o.firstSamples
	b.say("%s: checkpoint and restore: %d samples of each of %d ways, beside cold creation", rt, n, len(checkpointVariants))
	dir, err := os.MkdirTemp(b.stateDir, "checkpoints-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	spec := sandbox.Spec{Image: b.o.image, Isolation: sandbox.IsolationOf(e.Runtime()),
		Labels: b.labels(map[string]string{pool.LabelPool: "checkpoint"})}
	var cold []time.Duration
	for vi, v := range checkpointVariants {
		var took, restored []time.Duration
		var bytes []float64
		for i := range n {
			t0 := time.Now()
			sb, err := e.Create(ctx, spec)
			if err != nil {
				return err
			}
			if err := firstExecution(ctx, sb); err != nil {
				return errors.Join(err, e.Remove(context.WithoutCancel(ctx), sb.ID))
			}
			cold = append(cold, time.Since(t0))
			img, err := e.Checkpoint(ctx, sb, filepath.Join(dir, fmt.Sprintf("%d-%d", vi, i)), v.opt)
			if err != nil {
				return errors.Join(err, e.Remove(context.WithoutCancel(ctx), sb.ID))
			}
			took, bytes = append(took, img.Took), append(bytes, float64(img.Bytes)/(1<<20))
			t0 = time.Now()
			rs, err := e.Restore(ctx, spec, img.Dir)
			if err != nil {
				return err
			}
			err = firstExecution(ctx, rs)
			restored = append(restored, time.Since(t0))
			rs.Close()
			if err = errors.Join(err, e.Remove(context.WithoutCancel(ctx), rs.ID), os.RemoveAll(img.Dir)); err != nil {
				return err
			}
		}
		size := singleValue("MiB", n, median(bytes))
		if vi == 0 {
			b.fig(rt, "checkpoint").Sandpool = latencyValue(took)
			b.fig(rt, "checkpoint_image").Sandpool = size
			b.fig(rt, "restore_first").Sandpool = latencyValue(restored)
			continue
		}
		b.baseline(rt, "checkpoint", "checkpoint "+v.name, latencyValue(took))
		b.baseline(rt, "checkpoint_image", "image "+v.name, size)
		b.baseline(rt, "restore_first", "restore of an image "+v.name, latencyValue(restored))
	}
	b.baseline(rt, "restore_first", "cold creation of the same sandbox to its first execution", latencyValue(cold))
	return nil
}

// firstExecution runs x = 1 on sb.
func firstExecution(ctx context.Context, sb *sandbox.Sandbox) error {
	col := sandbox.Collector{Max: 1 << 20}
	res, err := sb.Execute(ctx, sandbox.ExecRequest{Code: benchCode, Timeout: time.Minute}, col.Sink())
	if err != nil {
		return err
	}
	if res.Status != sandbox.StatusOK {
		return fmt.Errorf("x = 1 in a %s sandbox: %s", sb.Isolation, res.Status)
	}
	return nil
}

// median is the middle value of v (v is reordered).
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	return v[len(v)/2]
}
