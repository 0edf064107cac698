package agent

import (
	"os"
	"os/signal"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// reaper starts child processes and collects their exit status. As PID 1 of
// a sandbox it also reaps orphans reparented to it (wait4(-1)), dispatching
// statuses by pid; otherwise it waits for each child it started by pid, so it
// never steals the children of other code in the same process (tests).
type reaper struct {
	init bool

	mu      sync.Mutex
	waiters map[int]chan unix.WaitStatus

	sigs chan os.Signal
	stop chan struct{}
	wg   sync.WaitGroup
}

func newReaper(init bool) *reaper {
	r := &reaper{init: init, waiters: map[int]chan unix.WaitStatus{}, stop: make(chan struct{})}
	if init {
		r.sigs = make(chan os.Signal, 1)
		signal.Notify(r.sigs, unix.SIGCHLD)
		r.wg.Add(1)
		go r.loop()
	}
	return r
}

// start forks and execs argv[0] with attr. The returned channel receives the
// child's wait status once.
func (r *reaper) start(argv []string, attr *syscall.ProcAttr) (int, <-chan unix.WaitStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock() // the init loop cannot dispatch before we registered
	pid, err := syscall.ForkExec(argv[0], argv, attr)
	if err != nil {
		return 0, nil, err
	}
	ch := make(chan unix.WaitStatus, 1)
	r.waiters[pid] = ch
	if !r.init {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			var ws unix.WaitStatus
			for {
				_, err := unix.Wait4(pid, &ws, 0, nil)
				if err != unix.EINTR {
					break
				}
			}
			r.mu.Lock()
			delete(r.waiters, pid)
			r.mu.Unlock()
			ch <- ws
		}()
	}
	return pid, ch, nil
}

func (r *reaper) loop() {
	defer r.wg.Done()
	for {
		select {
		case <-r.stop:
			return
		case <-r.sigs:
		}
		for {
			var ws unix.WaitStatus
			pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if err == unix.EINTR {
				continue
			}
			if err != nil || pid <= 0 {
				break
			}
			r.mu.Lock()
			ch, ok := r.waiters[pid]
			delete(r.waiters, pid)
			r.mu.Unlock()
			if ok {
				ch <- ws
			}
		}
	}
}

func (r *reaper) close() {
	if r.init {
		signal.Stop(r.sigs)
		close(r.stop)
	}
	r.wg.Wait()
}
