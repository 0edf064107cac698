package podman

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containers/podman/v5/pkg/bindings/containers"

	"github.com/sandpool/sandpool/internal/errcode"
	"github.com/sandpool/sandpool/sandbox"
	"github.com/sandpool/sandpool/sandbox/podman/runscwrap"
)

// manifestName is the file of a checkpoint image that describes it. It is
// written last: a directory without it is not an image.
const manifestName = "sandpool-checkpoint.json"

// checkpointFormat is the version of the manifest's layout.
const checkpointFormat = 1

// manifest describes a checkpoint image: what it was taken of and with
// what, and the checksum of every file runsc wrote.
type manifest struct {
	Format         int       `json:"format"`
	Runtime        string    `json:"runtime"`
	RuntimeVersion string    `json:"runtimeVersion"`
	Platform       string    `json:"platform"`
	Created        time.Time `json:"created"`
	// SpecDigest is specDigest of the sandbox's spec: a restore must
	// recreate the same container (runsc checks too, less legibly).
	SpecDigest string `json:"specDigest"`
	// The container's name (its agent token derives from it), uid and
	// hostname, and the agent directory it ran from: the restored
	// processes go on with them.
	Name     string         `json:"name"`
	UID      int            `json:"uid"`
	Hostname string         `json:"hostname"`
	AgentDir string         `json:"agentDir"`
	Files    []manifestFile `json:"files"`
}

type manifestFile struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// specDigest identifies what a restore must reproduce of a normalized
// spec: everything but its labels and start timeout.
func specDigest(s sandbox.Spec) string {
	s.Labels, s.StartTimeout = nil, 0
	b, _ := json.Marshal(s)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func (e *Engine) platform() string {
	for _, f := range e.cfg.RuntimeFlags {
		if p, ok := strings.CutPrefix(f, "platform="); ok {
			return p
		}
	}
	return ""
}

// CanCheckpoint says why the engine cannot checkpoint and restore, or nil.
func (e *Engine) CanCheckpoint() error {
	if !e.rt.current {
		return errcode.Newf(errcode.Unsupported, "checkpoint and restore need the current gVisor (runtime %s), not %s", sandbox.RuntimeGVisor, e.cfg.Runtime)
	}
	return nil
}

// Checkpoint saves the running sandbox sb into dir, which must not exist
// (its parent must), and stops the sandbox once the image is written,
// checksummed and verified. A checkpoint is refused while an operation is
// in flight on sb's connection (an execution would be cut at an arbitrary
// point): the caller checkpoints between executions. On any failure the
// sandbox keeps running and nothing is left at dir.
func (e *Engine) Checkpoint(ctx context.Context, sb *sandbox.Sandbox, dir string, opt sandbox.CheckpointOptions) (sandbox.CheckpointImage, error) {
	t0 := time.Now()
	if err := e.CanCheckpoint(); err != nil {
		return sandbox.CheckpointImage{}, err
	}
	if !filepath.IsAbs(dir) || filepath.Clean(dir) != dir {
		return sandbox.CheckpointImage{}, errcode.New(errcode.InvalidArgument, "the checkpoint directory must be a clean absolute path")
	}
	if _, err := os.Lstat(dir); err == nil {
		return sandbox.CheckpointImage{}, errcode.New(errcode.InvalidArgument, "the checkpoint directory already exists")
	}
	if n := sb.InFlight(); n > 0 {
		return sandbox.CheckpointImage{}, errcode.Newf(errcode.Busy, "the sandbox has %d operations in flight; checkpoint it between executions", n)
	}
	data, err := containers.Inspect(e.call(ctx), sb.ID, nil)
	if err != nil {
		return sandbox.CheckpointImage{}, engineErr(err, "finding the sandbox")
	}
	if data.State == nil || !data.State.Running || data.Config == nil {
		return sandbox.CheckpointImage{}, sandbox.ErrGone
	}
	m := manifest{Format: checkpointFormat, Runtime: e.cfg.Runtime, RuntimeVersion: e.version, Platform: e.platform(),
		Name: strings.TrimPrefix(data.Name, "/"), Hostname: data.Config.Hostname,
		SpecDigest: data.Config.Labels[LabelSpecDigest], AgentDir: e.agentDir}
	if m.UID, err = strconv.Atoi(data.Config.Labels[LabelUID]); err != nil {
		return sandbox.CheckpointImage{}, errcode.Wrap(errcode.Internal, "the sandbox has no valid uid label", err)
	}
	for _, mt := range data.Mounts {
		if mt.Destination == AgentDir {
			m.AgentDir = mt.Source
		}
	}
	// The bridge is a podman exec, a process in the sandbox whose stdio
	// are host pipes: it is dropped first (the next operation on sb, if
	// the checkpoint fails, dials again), and the restored sandbox is
	// reached through a new one.
	sb.Reset()

	tmp := fmt.Sprintf("%s.tmp-%s", dir, randHex(4))
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return sandbox.CheckpointImage{}, errcode.Wrap(errcode.InvalidArgument, "cannot create the checkpoint directory", err)
	}
	done := false
	defer func() {
		if !done {
			_ = os.RemoveAll(tmp)
		}
	}()
	args := append(e.globalFlags(), "checkpoint", "--leave-running", "--image-path="+tmp)
	if opt.Compress {
		args = append(args, "--compression=flate-best-speed")
	}
	if opt.ExcludeZeroPages {
		args = append(args, "--exclude-committed-zero-pages")
	}
	if err := e.runsc(ctx, append(args, sb.ID)...); err != nil {
		return sandbox.CheckpointImage{}, checkpointErr("the checkpoint failed", err)
	}
	if err := sealImage(tmp, &m); err != nil {
		return sandbox.CheckpointImage{}, checkpointErr("writing the checkpoint image failed", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return sandbox.CheckpointImage{}, errcode.Wrap(errcode.Internal, "writing the checkpoint image failed; the sandbox keeps running", err)
	}
	done = true
	err = syncDir(filepath.Dir(dir))
	if err == nil {
		_, err = readImage(dir)
	}
	if err != nil {
		_ = os.RemoveAll(dir)
		return sandbox.CheckpointImage{}, errcode.Wrap(errcode.Internal, "the checkpoint image did not verify; the sandbox keeps running", err)
	}
	img := sandbox.CheckpointImage{Dir: dir, Took: time.Since(t0)}
	for _, f := range m.Files {
		img.Bytes += f.Size
	}
	// The image is the session now; the sandbox stops.
	if err := e.Remove(context.WithoutCancel(ctx), sb.ID); err != nil {
		e.log.Warn().Err(err).Msg("removing a checkpointed sandbox")
	}
	return img, nil
}

// checkpointErr is a failed checkpoint's error: no_space when the disk
// filled up, internal otherwise; either way the sandbox runs on.
func checkpointErr(what string, err error) error {
	if errors.Is(err, syscall.ENOSPC) {
		return errcode.Wrap(errcode.NoSpace, "no space left for the checkpoint image; the sandbox keeps running", err)
	}
	return errcode.Wrap(errcode.Internal, what+"; the sandbox keeps running", err)
}

// globalFlags are the runsc flags podman passes: the service's runtime
// flags (podman passes no --root: runsc's default root is podman's).
func (e *Engine) globalFlags() []string {
	out := make([]string, 0, len(e.cfg.RuntimeFlags))
	for _, f := range e.cfg.RuntimeFlags {
		out = append(out, "--"+f)
	}
	return out
}

// runsc runs the real runsc with args. Its failure wraps ENOSPC when
// runsc says it ran out of space.
func (e *Engine) runsc(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, e.rt.binary, args...)
	var stderr bytes.Buffer
	cmd.Stderr, cmd.Stdout = &stderr, &stderr
	if err := cmd.Run(); err != nil {
		msg := bytes.TrimSpace(stderr.Bytes())
		if bytes.Contains(msg, []byte(syscall.ENOSPC.Error())) {
			err = errors.Join(err, syscall.ENOSPC)
		}
		return fmt.Errorf("runsc %s: %w: %.400s", args[len(e.cfg.RuntimeFlags)], err, msg)
	}
	return nil
}

// sealImage checksums and syncs every file runsc wrote in dir, then writes
// the manifest, last.
func sealImage(dir string, m *manifest) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, ent := range ents {
		if !ent.Type().IsRegular() {
			return fmt.Errorf("unexpected entry %q in the image", ent.Name())
		}
		f, err := hashFile(filepath.Join(dir, ent.Name()), true)
		if err != nil {
			return err
		}
		m.Files = append(m.Files, f)
	}
	m.Created = time.Now().UTC()
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	p := filepath.Join(dir, manifestName)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		return err
	}
	if err := syncFile(p); err != nil {
		return err
	}
	return syncDir(dir)
}

func hashFile(path string, sync bool) (manifestFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return manifestFile{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return manifestFile{}, err
	}
	if sync {
		if err := f.Sync(); err != nil {
			return manifestFile{}, err
		}
	}
	return manifestFile{Name: filepath.Base(path), Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

func syncDir(dir string) error { return syncFile(dir) }

// errBadImage is what a restore of a damaged image answers; the cause
// (for logs) says what was wrong.
func errBadImage(cause error) error {
	return errcode.Wrap(errcode.CheckpointInvalid, "the checkpoint image is missing, incomplete or corrupt; nothing was restored", cause)
}

// readImage reads dir's manifest and checks that the image holds exactly
// its files, each with its size and checksum.
func readImage(dir string) (manifest, error) {
	var m manifest
	b, err := os.ReadFile(filepath.Join(dir, manifestName))
	if err != nil {
		return m, errBadImage(err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, errBadImage(fmt.Errorf("manifest: %w", err))
	}
	if m.Format != checkpointFormat {
		return m, errcode.Newf(errcode.CheckpointInvalid, "the checkpoint image has format %d; this sandpool reads format %d", m.Format, checkpointFormat)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return m, errBadImage(err)
	}
	var names []string
	for _, ent := range ents {
		if ent.Name() != manifestName {
			names = append(names, ent.Name())
		}
	}
	want := make([]string, 0, len(m.Files))
	for _, f := range m.Files {
		want = append(want, f.Name)
	}
	slices.Sort(want)
	if !slices.Equal(names, want) || len(want) == 0 {
		return m, errBadImage(fmt.Errorf("files %v, manifest lists %v", names, want))
	}
	for _, f := range m.Files {
		got, err := hashFile(filepath.Join(dir, f.Name), false)
		if err != nil {
			return m, errBadImage(err)
		}
		if got != f {
			return m, errBadImage(fmt.Errorf("%s: size %d sha256 %s, manifest says %d %s", f.Name, got.Size, got.SHA256, f.Size, f.SHA256))
		}
	}
	return m, nil
}

// Restore creates a sandbox of spec from the checkpoint image in dir, as
// podman's own create and start (the start becomes `runsc restore` in the
// wrapper), so podman knows it as running. The image is verified first; an
// image of another runtime, runtime version, platform or spec is refused.
// The restored sandbox is the checkpointed one: its kernel's variables,
// its files and its background processes go on; its connection is new.
// On any failure nothing is left running.
func (e *Engine) Restore(ctx context.Context, spec sandbox.Spec, dir string) (_ *sandbox.Sandbox, retErr error) {
	if err := e.CanCheckpoint(); err != nil {
		return nil, err
	}
	if err := spec.Normalize(); err != nil {
		return nil, errcode.Wrap(errcode.InvalidArgument, "invalid sandbox spec: "+err.Error(), err)
	}
	if !filepath.IsAbs(dir) || filepath.Clean(dir) != dir {
		return nil, errcode.New(errcode.InvalidArgument, "the checkpoint directory must be a clean absolute path")
	}
	m, err := readImage(dir)
	if err != nil {
		return nil, err
	}
	switch {
	case m.Runtime != e.cfg.Runtime || m.RuntimeVersion != e.version:
		return nil, errcode.Newf(errcode.CheckpointInvalid, "the checkpoint was taken under %s %s; this engine runs %s %s", m.Runtime, m.RuntimeVersion, e.cfg.Runtime, e.version)
	case m.Platform != e.platform():
		return nil, errcode.Newf(errcode.CheckpointInvalid, "the checkpoint was taken on gVisor's %s platform; this engine runs %s", m.Platform, e.platform())
	case m.SpecDigest != specDigest(spec):
		return nil, errcode.New(errcode.CheckpointInvalid, "the checkpoint was taken of a sandbox with another spec")
	case !validName(m.Name) || m.UID <= 0:
		return nil, errBadImage(errors.New("manifest: bad name or uid"))
	}
	if st, err := os.Stat(filepath.Join(m.AgentDir, "sandpool-agent")); err != nil || !st.Mode().IsRegular() {
		return nil, errcode.Wrap(errcode.CheckpointInvalid, "the agent the checkpoint was taken with is no longer installed", err)
	}
	ctx, cancel := context.WithTimeout(ctx, spec.StartTimeout)
	defer cancel()
	p, err := e.params(ctx, &spec, m.Name, m.UID, m.Hostname)
	if err != nil {
		return nil, err
	}
	p.agentDir = m.AgentDir
	g := buildSpec(&spec, p)
	g.Annotations = map[string]string{runscwrap.AnnotationRestore: dir}
	return e.start(ctx, &spec, g, p)
}

// validName is a container name this engine makes.
func validName(s string) bool {
	hexPart, ok := strings.CutPrefix(s, "sandpool-")
	if !ok || len(hexPart) != 16 {
		return false
	}
	_, err := hex.DecodeString(hexPart)
	return err == nil
}
