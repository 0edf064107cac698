package agent

import (
	"os"
	"os/signal"
	"syscall"
	"unsafe"
)

// foreignSignals are the signals code in the sandbox could send the agent
// to end it: the ones Go exits on (SIGHUP, SIGINT, SIGTERM), the ones it
// throws on when they do not come from a fault of its own (SIGQUIT,
// SIGILL, SIGTRAP, SIGABRT, SIGBUS, SIGFPE, SIGSEGV, SIGSTKFLT, SIGSYS),
// and the rest that have a default action. SIGCHLD is the reaper's, SIGURG
// the runtime's preemption, SIGPROF the profiler's; SIGKILL and SIGSTOP
// cannot be caught (and the kernel does not deliver them to a PID 1 from
// inside its namespace).
var foreignSignals = []os.Signal{
	syscall.SIGHUP, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGILL, syscall.SIGTRAP,
	syscall.SIGABRT, syscall.SIGBUS, syscall.SIGFPE, syscall.SIGUSR1, syscall.SIGSEGV,
	syscall.SIGUSR2, syscall.SIGPIPE, syscall.SIGALRM, syscall.SIGTERM, syscall.SIGSTKFLT,
	syscall.SIGCONT, syscall.SIGTSTP, syscall.SIGTTIN, syscall.SIGTTOU, syscall.SIGXCPU,
	syscall.SIGXFSZ, syscall.SIGVTALRM, syscall.SIGWINCH, syscall.SIGIO, syscall.SIGPWR,
	syscall.SIGSYS,
}

// DropForeignSignals makes the process survive every catchable signal that
// another process sends it: the agent as PID 1 of a sandbox, where the
// sandbox's code runs as the agent's uid and may signal it. It stops the
// signals in a channel that nobody reads (os/signal never blocks on a full
// channel, so they are dropped), rather than ignoring them, for two
// reasons. The Go runtime still turns a fault of its own (a SIGSEGV,
// SIGBUS, SIGILL... raised by the kernel, not sent) into a panic or a
// crash, because it tells a sent signal from a raised one only when it
// handles the signal; and children start with default dispositions, while
// ignored ones would be inherited by the kernel and everything it runs (a
// subprocess's terminate() would do nothing).
func DropForeignSignals() {
	signal.Notify(make(chan os.Signal, 1), foreignSignals...)
}

// HideEnviron zeroes the environment block the process started with, where
// /proc/PID/environ reads it from. The agent is not dumpable, which makes
// that file unreadable to the sandbox's code (its uid) under Linux, but
// gVisor does not honour dumpability for /proc ownership: there the code
// would read the agent's environment. The Go runtime keeps copies of the
// environment, so the block is unused; it follows the argument strings,
// which the runtime does not copy, and is zeroed only if it holds exactly
// the environment. It reports whether it zeroed it.
func HideEnviron() bool {
	env := os.Environ()
	if len(os.Args) == 0 || len(env) == 0 {
		return false
	}
	last := os.Args[len(os.Args)-1]
	if len(last) == 0 {
		return false
	}
	size := 0
	for _, kv := range env {
		size += len(kv) + 1
	}
	block := unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(unsafe.StringData(last)), len(last)+1)), size)
	off := 0
	for _, kv := range env {
		if string(block[off:off+len(kv)]) != kv || block[off+len(kv)] != 0 {
			return false
		}
		off += len(kv) + 1
	}
	clear(block)
	return true
}
