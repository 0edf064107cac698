package agent

import (
	"context"
	_ "embed"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/sandpool/sandpool/sandbox/agentproto"
)

//go:embed kernel.py
var kernelSource string

// kernelBootstrap reads the kernel's source from fd 5 and runs it.
const kernelBootstrap = "import os;f=os.fdopen(5,'rb');s=f.read();f.close();exec(compile(s,'<sandpool-kernel>','exec'))"

// maxKernelMsg bounds one event frame from the kernel; a larger one means
// the kernel (or user code writing to its event pipe) broke the protocol.
const maxKernelMsg = agentproto.MaxFrame

// kernelConfig configures the Python kernel process.
type kernelConfig struct {
	python         string
	dir            string
	env            []string
	asLimit        int64
	nprocLimit     uint64 // the kernel's RLIMIT_NPROC; 0: inherited
	forkBudget     int    // processes os.fork may bring the sandbox to; 0: no budget
	preload        []string
	noIPython      bool
	startTimeout   time.Duration
	interruptGrace time.Duration
	init           bool
	gvisor         bool
}

// kernel supervises one long-lived Python process and runs executions in
// it, one at a time.
type kernel struct {
	cfg    kernelConfig
	log    zerolog.Logger
	reaper *reaper

	sem chan struct{} // held for the whole of one execution

	mu      sync.Mutex
	proc    *proc      // current process; nil before the first start
	current *execution // running execution, for interrupt
	// early holds interrupts that arrived before their execution started
	// (a client may interrupt right after submitting); bounded.
	early      []string
	gen        int64
	executions int64
	restarts   int64
	closed     bool
}

// proc is one kernel process.
type proc struct {
	pid int
	gen int64
	// cmd is the write end of the kernel's fd 3. An *os.File, because a
	// large command is written from another goroutine while the reaper may
	// close it: os.File defers the close past the write.
	cmd       *os.File
	pump      *pump
	ready     chan struct{} // closed on the ready event, or when it died first
	readyInfo kernelReady
	exited    chan struct{} // closed once reaped and the pump has stopped
	status    unix.WaitStatus
	broken    string // why the agent killed it, if it did
	// oomAtStart is the cgroup's OOM kill count when it started, or -1.
	oomAtStart int64
}

type kernelReady struct {
	Python    string `json:"python"`
	IPython   bool   `json:"ipython"`
	PreloadMS int64  `json:"preload_ms"`
}

func newKernel(cfg kernelConfig, r *reaper, log zerolog.Logger) *kernel {
	return &kernel{cfg: cfg, reaper: r, log: log, sem: make(chan struct{}, 1)}
}

// start launches a kernel process. Callers hold k.mu.
func (k *kernel) startLocked() (*proc, error) {
	if k.closed {
		return nil, errors.New("agent is shutting down")
	}
	python, err := exec.LookPath(k.cfg.python)
	if err != nil {
		return nil, fmt.Errorf("find python: %w", err)
	}
	var cmdP, evtP, outP, errP, srcP [2]int
	pipes := []*[2]int{&cmdP, &evtP, &outP, &errP, &srcP}
	for i, p := range pipes {
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			for _, q := range pipes[:i] {
				unix.Close(q[0])
				unix.Close(q[1])
			}
			return nil, fmt.Errorf("pipe: %w", err)
		}
	}
	closeAll := func(fds ...int) {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}
	// The kernel's source goes through a pipe (fd 5), not the command line,
	// where every process listing would show it. It fits the pipe buffer.
	_, werr := unix.Write(srcP[1], []byte(kernelSource))
	unix.Close(srcP[1])
	devnull, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil || werr != nil {
		closeAll(cmdP[0], cmdP[1], evtP[0], evtP[1], outP[0], outP[1], errP[0], errP[1], srcP[0])
		return nil, fmt.Errorf("prepare kernel: %w", errors.Join(err, werr))
	}
	argv := []string{python, "-I", "-u", "-c", kernelBootstrap,
		"--as-limit", strconv.FormatInt(k.cfg.asLimit, 10),
		"--nproc-limit", strconv.FormatUint(k.cfg.nprocLimit, 10),
		"--fork-budget", strconv.Itoa(k.cfg.forkBudget),
		"--preload", strings.Join(k.cfg.preload, ",")}
	if k.cfg.noIPython {
		argv = append(argv, "--no-ipython", "1")
	}
	attr := &syscall.ProcAttr{
		Dir:   k.cfg.dir,
		Env:   k.cfg.env,
		Files: []uintptr{uintptr(devnull), uintptr(outP[1]), uintptr(errP[1]), uintptr(cmdP[0]), uintptr(evtP[1]), uintptr(srcP[0])},
		// Its own session (and so process group): the kernel and its
		// children can be signalled together, and cannot join the agent's
		// process group to signal it with kill(0, ...).
		Sys: &syscall.SysProcAttr{Setsid: true},
	}
	pid, wait, err := k.reaper.start(argv, attr)
	closeAll(devnull, outP[1], errP[1], cmdP[0], evtP[1], srcP[0])
	if err != nil {
		closeAll(cmdP[1], evtP[0], outP[0], errP[0])
		return nil, fmt.Errorf("start kernel: %w", err)
	}
	k.gen++
	p := &proc{pid: pid, gen: k.gen, cmd: os.NewFile(uintptr(cmdP[1]), "kernel-cmd"), ready: make(chan struct{}), exited: make(chan struct{}), oomAtStart: oomKills()}
	p.pump, err = newPump(p, evtP[0], outP[0], errP[0])
	if err != nil {
		_ = unix.Kill(-pid, unix.SIGKILL)
		p.cmd.Close()
		closeAll(evtP[0], outP[0], errP[0])
		<-wait
		return nil, err
	}
	go p.pump.run()
	go func() {
		p.status = <-wait
		p.pump.stop()
		p.cmd.Close()
		p.pump.markReady() // a kernel that died before it was ready is not
		close(p.exited)
	}()
	k.proc = p
	k.log.Debug().Int64("generation", p.gen).Msg("kernel started")
	return p, nil
}

// readyProc returns a ready kernel process, starting one if needed.
func (k *kernel) readyProc(ctx context.Context) (*proc, error) {
	k.mu.Lock()
	p := k.proc
	if p == nil || isClosed(p.exited) {
		if p != nil {
			k.restarts++
		}
		var err error
		if p, err = k.startLocked(); err != nil {
			k.mu.Unlock()
			return nil, err
		}
	}
	k.mu.Unlock()
	t := time.NewTimer(k.cfg.startTimeout)
	defer t.Stop()
	select {
	case <-p.ready:
	case <-t.C:
		return nil, errors.New("kernel did not become ready in time")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if isClosed(p.exited) {
		return nil, fmt.Errorf("kernel exited during start: %s", describeExit(p.status))
	}
	return p, nil
}

// warm starts the kernel in the background so the next execution finds it ready.
func (k *kernel) warm() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.proc == nil || isClosed(k.proc.exited) {
		if k.proc != nil {
			k.restarts++
		}
		if _, err := k.startLocked(); err != nil {
			k.log.Warn().Err(err).Msg("kernel start failed")
		}
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// state describes the kernel for Info. With wait, it first waits (bounded)
// for the kernel to be ready.
func (k *kernel) state(ctx context.Context, wait bool) agentproto.Kernel {
	var waitErr error
	if wait {
		_, waitErr = k.readyProc(ctx)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	ks := agentproto.Kernel{State: agentproto.KernelStarting, Executions: k.executions, Restarts: k.restarts, Generation: k.gen}
	p := k.proc
	switch {
	case p == nil:
	case isClosed(p.exited):
		ks.State = agentproto.KernelFailed
		ks.Error = "kernel exited: " + describeExit(p.status)
	case isClosed(p.ready):
		ks.State = agentproto.KernelReady
		ks.Python, ks.IPython, ks.PreloadMS = p.readyInfo.Python, p.readyInfo.IPython, p.readyInfo.PreloadMS
	}
	if waitErr != nil && ks.State != agentproto.KernelReady {
		ks.State = agentproto.KernelFailed
		ks.Error = waitErr.Error()
	}
	return ks
}

// maxEarly bounds the interrupts remembered for executions not started yet.
const maxEarly = 32

// interrupt asks the execution with id to stop: at once if it is running,
// or as soon as it starts. It reports whether it was running.
func (k *kernel) interrupt(id string) bool {
	if id == "" {
		return false
	}
	k.mu.Lock()
	ex := k.current
	if ex == nil || ex.id != id {
		if len(k.early) >= maxEarly {
			k.early = k.early[1:]
		}
		k.early = append(k.early, id)
		k.mu.Unlock()
		return false
	}
	k.mu.Unlock()
	select {
	case ex.interrupt <- struct{}{}:
	default:
	}
	return true
}

// errKernelUnavailable wraps failures to get a ready kernel.
var errKernelUnavailable = errors.New("kernel unavailable")

// execute runs one cell. Output and events go to em as they happen; the
// returned Done is the caller's to send. ctx is cancelled when the client
// closes the stream: the execution is then interrupted like a timeout.
func (k *kernel) execute(ctx context.Context, req *agentproto.Request, em *emitter) (*agentproto.Done, error) {
	select {
	case k.sem <- struct{}{}:
	case <-ctx.Done():
		return &agentproto.Done{Status: agentproto.StatusInterrupted, Reason: "canceled before it started"}, nil
	}
	defer func() { <-k.sem }()

	p, err := k.readyProc(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errKernelUnavailable, err)
	}
	timeout := time.Duration(req.TimeoutMS) * time.Millisecond
	ex := &execution{id: req.ExecID, em: em, maxOut: req.MaxOutput, finished: make(chan struct{}), interrupt: make(chan struct{}, 1)}
	k.mu.Lock()
	k.current = ex
	k.executions++
	if i := slices.Index(k.early, ex.id); i >= 0 && ex.id != "" {
		k.early = slices.Delete(k.early, i, i+1)
		ex.interrupt <- struct{}{} // interrupted before it started
	}
	k.mu.Unlock()
	p.pump.setCurrent(ex)
	start := time.Now()

	// The kernel is idle and its command pipe empty: a small command fits
	// the pipe buffer and is written at once; a large one is written from
	// another goroutine, so a kernel that stops reading cannot block us.
	sent := make(chan error, 1)
	writer := make(chan struct{})
	if cmd, err := kernelCmd(req.Code); err != nil {
		sent <- err
		close(writer)
	} else if len(cmd) <= 32<<10 {
		sent <- writeAll(p.cmd, cmd)
		close(writer)
	} else {
		go func() {
			defer close(writer)
			sent <- writeAll(p.cmd, cmd)
		}()
	}
	// The writer ends when the kernel has read the command, or when it is
	// gone and the write fails: wait for it on the way out.
	defer func() { <-writer }()

	timer := time.NewTimer(timeout)
	defer timer.Stop()
	done := &agentproto.Done{Status: agentproto.StatusOK}
	restarted := false
	for waiting := true; waiting; {
		select {
		case err := <-sent:
			if err == nil {
				continue
			}
			// The kernel stopped reading: it is dying or wedged.
			done.Status, done.Reason = agentproto.StatusCrashed, "the kernel stopped accepting work"
			k.kill(p)
			restarted, waiting = true, false
		case <-ex.finished:
			if ex.status == "error" {
				done.Status = agentproto.StatusError
			}
			waiting = false
		case <-p.exited:
			done.Status = agentproto.StatusCrashed
			done.Reason = k.crashReason(p)
			restarted, waiting = true, false
		case <-timer.C:
			done.Status = agentproto.StatusTimeout
			done.Reason = fmt.Sprintf("the execution exceeded its %s timeout", timeout)
			restarted = k.stop(p, ex, done)
			waiting = false
		case <-ex.interrupt:
			done.Status, done.Reason = agentproto.StatusInterrupted, "interrupted on request"
			restarted = k.stop(p, ex, done)
			waiting = false
		case <-ctx.Done():
			done.Status, done.Reason = agentproto.StatusInterrupted, "the caller went away"
			restarted = k.stop(p, ex, done)
			waiting = false
		}
	}
	p.pump.setCurrent(nil)
	k.mu.Lock()
	k.current = nil
	k.mu.Unlock()

	done.DurationMS = time.Since(start).Milliseconds()
	done.StdoutBytes, done.StderrBytes = ex.outN, ex.errN
	done.StdoutTruncated, done.StderrTruncated = ex.outTrunc, ex.errTrunc
	done.DisplaysDropped = ex.dropped
	// Processes the code started in the background, detached or not, live
	// on (a server started by one execution is used by the next): they end
	// with the sandbox, or with a kernel restart, which kills every process
	// of the sandbox's user.
	if restarted {
		done.KernelRestarted = true
		k.warm()
	}
	return done, nil
}

// stop interrupts the kernel and, if it does not finish within the grace
// period, kills it and everything it started. It reports whether the kernel
// was killed (its state is then gone).
func (k *kernel) stop(p *proc, ex *execution, done *agentproto.Done) bool {
	if isClosed(ex.finished) {
		if ex.status == "ok" {
			done.Status, done.Reason = agentproto.StatusOK, ""
		}
		return false
	}
	grace := time.NewTimer(k.cfg.interruptGrace)
	defer grace.Stop()
	// The kernel ignores SIGINT outside user code, and the command may
	// still be in the pipe when the first one lands: repeat it until the
	// cell stops. Once the cell is done, none is sent.
	resend := time.NewTicker(100 * time.Millisecond)
	defer resend.Stop()
	for stopped := false; !stopped; {
		_ = unix.Kill(p.pid, unix.SIGINT)
		select {
		case <-ex.finished:
			if ex.status == "ok" {
				// It finished on its own before the interrupt landed.
				done.Status, done.Reason = agentproto.StatusOK, ""
			} else {
				done.Reason += "; interrupted (KeyboardInterrupt), state kept"
			}
			return false
		case <-p.exited:
			done.Reason += "; the kernel exited"
			return true
		case <-resend.C:
		case <-grace.C:
			stopped = true
		}
	}
	k.kill(p)
	done.Reason += "; the kernel did not stop on interrupt and was restarted"
	return true
}

// kill kills the kernel process and every process left in the sandbox, and
// waits for the kernel to be reaped.
func (k *kernel) kill(p *proc) {
	killAll(k.cfg.init, p.pid)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		k.log.Error().Msg("kernel not reaped 10s after SIGKILL")
	}
}

func (k *kernel) close() {
	k.mu.Lock()
	k.closed = true
	p := k.proc
	k.mu.Unlock()
	if p != nil && !isClosed(p.exited) {
		k.kill(p)
	}
}

// kernelCmd frames an execute command for the kernel.
func kernelCmd(code string) ([]byte, error) {
	body, err := json.Marshal(map[string]string{"op": "execute", "code": code})
	if err != nil {
		return nil, err
	}
	buf := make([]byte, 4+len(body))
	binary.BigEndian.PutUint32(buf, uint32(len(body)))
	copy(buf[4:], body)
	return buf, nil
}

func writeAll(f *os.File, buf []byte) error {
	_, err := f.Write(buf)
	return err
}

func describeExit(ws unix.WaitStatus) string {
	switch {
	case ws.Exited():
		return fmt.Sprintf("exit code %d", ws.ExitStatus())
	case ws.Signaled():
		return "killed by signal " + unix.SignalName(ws.Signal())
	}
	return "unknown status"
}

func (k *kernel) crashReason(p *proc) string {
	if p.broken != "" {
		return "the kernel was stopped: " + p.broken
	}
	r := "the Python kernel died (" + describeExit(p.status) + ")"
	if p.status.Signaled() && p.status.Signal() == unix.SIGKILL {
		// The OOM counter is read only now, not around every execution:
		// it rose since the kernel started, or we cannot tell.
		if after := oomKills(); after >= 0 && p.oomAtStart >= 0 && after > p.oomAtStart {
			r += ": out of memory"
		} else {
			r += ", probably out of memory"
		}
	}
	return r + "; it was restarted and its state is gone"
}

// oomKills reads the sandbox cgroup's OOM kill counter, or -1 when there
// is none (gVisor shows no cgroup files).
func oomKills() int64 {
	for _, path := range []string{"/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control"} {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) == 2 && f[0] == "oom_kill" {
				if n, err := strconv.ParseInt(f[1], 10, 64); err == nil {
					return n
				}
			}
		}
	}
	return -1
}
