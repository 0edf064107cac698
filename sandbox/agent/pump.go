package agent

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sandpool/sandpool/sandbox/agentproto"
)

// pump owns the kernel's event, stdout and stderr pipes and is the only
// reader of them. One goroutine polls all three, so when a "done" event
// arrives it can drain what the kernel wrote to stdout and stderr before it,
// and output is never attributed to the wrong execution or lost.
type pump struct {
	p            *proc
	evt, out, er int
	wakeR, wakeW int

	mu  sync.Mutex // held while dispatching, so setCurrent waits for it
	cur *execution

	evbuf     []byte
	readyOnce sync.Once
	done      chan struct{}
	stopOnce  sync.Once
}

func newPump(p *proc, evt, out, er int) (*pump, error) {
	var w [2]int
	if err := unix.Pipe2(w[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil, err
	}
	for _, fd := range []int{evt, out, er} {
		if err := unix.SetNonblock(fd, true); err != nil {
			unix.Close(w[0])
			unix.Close(w[1])
			return nil, err
		}
	}
	return &pump{p: p, evt: evt, out: out, er: er, wakeR: w[0], wakeW: w[1], done: make(chan struct{})}, nil
}

// setCurrent routes output to ex (nil: discard). It waits for a dispatch
// in progress, so after setCurrent(nil) nothing more reaches the old one.
func (u *pump) setCurrent(ex *execution) {
	u.mu.Lock()
	u.cur = ex
	u.mu.Unlock()
}

// stop ends the pump after a final drain and waits for it.
func (u *pump) stop() {
	u.stopOnce.Do(func() { _, _ = unix.Write(u.wakeW, []byte{1}) })
	<-u.done
}

func (u *pump) markReady() { u.readyOnce.Do(func() { close(u.p.ready) }) }

func (u *pump) run() {
	defer func() {
		for _, fd := range []int{u.evt, u.out, u.er, u.wakeR, u.wakeW} {
			unix.Close(fd)
		}
		close(u.done)
	}()
	fds := []unix.PollFd{
		{Fd: int32(u.out), Events: unix.POLLIN},
		{Fd: int32(u.er), Events: unix.POLLIN},
		{Fd: int32(u.evt), Events: unix.POLLIN},
		{Fd: int32(u.wakeR), Events: unix.POLLIN},
	}
	for {
		_, err := unix.Poll(fds, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return
		}
		const ready = unix.POLLIN | unix.POLLHUP | unix.POLLERR
		if fds[0].Revents&ready != 0 && !u.readStream(u.out, agentproto.FrameStdout) {
			fds[0].Fd = -1
		}
		if fds[1].Revents&ready != 0 && !u.readStream(u.er, agentproto.FrameStderr) {
			fds[1].Fd = -1
		}
		if fds[2].Revents&ready != 0 && !u.readEvents() {
			fds[2].Fd = -1
		}
		if fds[3].Revents&ready != 0 {
			// The kernel was reaped: take what is left and stop.
			u.readEvents()
			u.drain()
			return
		}
	}
}

// readStream reads one chunk of output. It returns false at end of file.
func (u *pump) readStream(fd int, t agentproto.FrameType) bool {
	n, err := u.readChunk(fd, t)
	return n > 0 || err == unix.EAGAIN || err == unix.EINTR
}

// readChunk reads once from an output pipe and hands what it read to the
// current execution, if any.
func (u *pump) readChunk(fd int, t agentproto.FrameType) (int, error) {
	var buf [agentproto.ChunkSize]byte
	n, err := unix.Read(fd, buf[:])
	if n > 0 {
		u.mu.Lock()
		if u.cur != nil {
			u.cur.output(t, buf[:n])
		}
		u.mu.Unlock()
	}
	return n, err
}

// drain reads stdout and stderr until they are empty.
func (u *pump) drain() {
	for _, s := range []struct {
		fd int
		t  agentproto.FrameType
	}{{u.out, agentproto.FrameStdout}, {u.er, agentproto.FrameStderr}} {
		for i := 0; i < 1<<14; i++ { // bounded: a writer may keep writing
			if n, _ := u.readChunk(s.fd, s.t); n <= 0 {
				break
			}
		}
	}
}

// readEvents reads from the event pipe and handles every complete frame.
// It returns false at end of file.
func (u *pump) readEvents() bool {
	var buf [agentproto.ChunkSize]byte
	n, err := unix.Read(u.evt, buf[:])
	if n <= 0 {
		return err == unix.EAGAIN || err == unix.EINTR
	}
	u.evbuf = append(u.evbuf, buf[:n]...)
	for len(u.evbuf) >= 4 {
		size := int(binary.BigEndian.Uint32(u.evbuf))
		if size > maxKernelMsg {
			u.violation("oversized event from the kernel")
			return false
		}
		if len(u.evbuf) < 4+size {
			break
		}
		msg := u.evbuf[4 : 4+size]
		u.handle(msg)
		u.evbuf = u.evbuf[4+size:]
	}
	if len(u.evbuf) == 0 {
		u.evbuf = nil // do not pin a large buffer
	}
	return true
}

// violation kills a kernel whose event stream cannot be trusted any more.
func (u *pump) violation(why string) {
	u.p.broken = why
	u.evbuf = nil
	_ = unix.Kill(-u.p.pid, unix.SIGKILL)
}

// kernelEvent is a frame from kernel.py.
type kernelEvent struct {
	Type      string          `json:"type"`
	Data      map[string]any  `json:"data"`
	Value     json.RawMessage `json:"value"`
	Ename     string          `json:"ename"`
	Evalue    string          `json:"evalue"`
	Traceback []string        `json:"traceback"`
	Status    string          `json:"status"`
	kernelReady
}

func (u *pump) handle(raw []byte) {
	var ev kernelEvent
	if err := json.Unmarshal(raw, &ev); err != nil {
		u.violation("malformed event from the kernel")
		return
	}
	if ev.Type == "ready" {
		u.p.readyInfo = ev.kernelReady
		u.markReady()
		return
	}
	if ev.Type == "done" {
		// Everything the kernel wrote before "done" is in the pipes now,
		// even output this round's poll did not see yet (it arrived after
		// poll returned): read each pipe until it is empty.
		u.drain()
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.cur == nil {
		return
	}
	switch ev.Type {
	case "display", "result":
		u.cur.bundle(ev.Type, ev.Data, ev.Value)
	case "error":
		tb := ev.Traceback
		if len(tb) > agentproto.MaxTraceback {
			tb = tb[:agentproto.MaxTraceback]
		}
		u.cur.send(&agentproto.Message{Type: agentproto.MsgError, Error: &agentproto.ExecError{Name: ev.Ename, Value: ev.Evalue, Traceback: tb}})
	case "done":
		u.cur.finish(ev.Status)
	}
}

// execution is the state of one running cell, fed by the pump.
type execution struct {
	id        string
	em        *emitter
	maxOut    int64
	outN      int64
	errN      int64
	outTrunc  bool
	errTrunc  bool
	displays  int
	dropped   int
	status    string
	finished  chan struct{}
	interrupt chan struct{}
}

func (ex *execution) output(t agentproto.FrameType, b []byte) {
	n, trunc := &ex.outN, &ex.outTrunc
	if t == agentproto.FrameStderr {
		n, trunc = &ex.errN, &ex.errTrunc
	}
	keep := int64(len(b))
	if ex.maxOut > 0 && *n+keep > ex.maxOut {
		keep = max(ex.maxOut-*n, 0)
		*trunc = true
	}
	*n += int64(len(b))
	if keep > 0 {
		ex.em.frame(t, b[:keep])
	}
}

func (ex *execution) bundle(kind string, data map[string]any, value json.RawMessage) {
	if kind == "display" {
		if ex.displays >= agentproto.MaxDisplays {
			ex.dropped++
			return
		}
		ex.displays++
	}
	m := &agentproto.Message{Type: agentproto.MsgDisplay, Data: map[string]string{}}
	if kind == "result" {
		m.Type = agentproto.MsgResult
		if len(value) > 0 && json.Valid(value) {
			m.Value = value
		}
	}
	for k, v := range data {
		if s, ok := v.(string); ok {
			m.Data[k] = s
		}
	}
	ex.send(m)
}

func (ex *execution) send(m *agentproto.Message) {
	b, err := json.Marshal(m)
	if err != nil {
		return
	}
	if len(b)+1 > agentproto.MaxFrame {
		b, _ = json.Marshal(&agentproto.Message{Type: m.Type, Data: map[string]string{"text/plain": "<output omitted: larger than the message limit>"}})
	}
	ex.em.frame(agentproto.FrameMsg, b)
}

func (ex *execution) finish(status string) {
	if isClosed(ex.finished) {
		return
	}
	ex.status = status
	close(ex.finished)
}

// emitter writes frames to a client stream. After the first failed write
// (the client stopped reading or left) it discards everything, so a slow or
// gone client never stalls the kernel for long.
type emitter struct {
	mu  sync.Mutex
	w   io.Writer
	dl  interface{ SetWriteDeadline(time.Time) error }
	err error
	// gone: nobody reads the stream any more (abandon).
	gone atomic.Bool
}

// writeTimeout bounds one frame write to the server.
const writeTimeout = 30 * time.Second

func newEmitter(w io.Writer) *emitter {
	em := &emitter{w: w}
	if d, ok := w.(interface{ SetWriteDeadline(time.Time) error }); ok {
		em.dl = d
	}
	return em
}

func (em *emitter) frame(t agentproto.FrameType, b []byte) {
	em.mu.Lock()
	defer em.mu.Unlock()
	if em.err != nil || em.gone.Load() {
		return
	}
	if em.dl != nil {
		_ = em.dl.SetWriteDeadline(time.Now().Add(writeTimeout))
		if em.gone.Load() { // abandoned meanwhile: do not undo its deadline
			_ = em.dl.SetWriteDeadline(time.Now())
		}
	}
	em.err = agentproto.WriteFrame(em.w, t, b)
}

// abandon drops what is still to be written: the server closed its side
// of the stream and reads no more, so a write waiting for room would hold
// the output pump, and with it the kernel, which could then not finish
// the cell it was asked to interrupt.
func (em *emitter) abandon() {
	em.gone.Store(true)
	if em.dl != nil {
		_ = em.dl.SetWriteDeadline(time.Now())
	}
}

func (em *emitter) msg(m *agentproto.Message) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	em.frame(agentproto.FrameMsg, b)
	em.mu.Lock()
	defer em.mu.Unlock()
	if em.err != nil {
		return errors.Join(errors.New("write to server"), em.err)
	}
	return nil
}
