package agent

import (
	"os"
	"os/signal"
	"syscall"
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
