package agent

import (
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// procEntry is one process as /proc shows it.
type procEntry struct{ pid, ppid, uid int }

// listProcs reads the process table. Entries that vanish meanwhile are skipped.
func listProcs() []procEntry {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []procEntry
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// The command name may contain spaces and parentheses: parse after
		// the last ')'. Fields: state ppid ...
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		var st unix.Stat_t
		if unix.Stat("/proc/"+e.Name(), &st) != nil {
			continue
		}
		out = append(out, procEntry{pid: pid, ppid: ppid, uid: int(st.Uid)})
	}
	return out
}

// descendants returns the pids below root in ps (not root itself).
func descendants(ps []procEntry, root int) map[int]bool {
	children := map[int][]int{}
	for _, p := range ps {
		children[p.ppid] = append(children[p.ppid], p.pid)
	}
	out := map[int]bool{}
	stack := []int{root}
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, c := range children[n] {
			if !out[c] {
				out[c] = true
				stack = append(stack, c)
			}
		}
	}
	return out
}

// killStrays kills the processes below the agent that are not the kernel or
// below it: daemons that user code started and detached, which the kernel
// reparents to the agent as PID 1 of the sandbox. It repeats a few times
// because a stray may fork while it is being killed, and returns how many it
// killed. Outside a sandbox (init false: tests, development) it does nothing,
// because there the agent's other descendants are not its to kill.
func killStrays(init bool, kernelPid int) int {
	if !init {
		return 0
	}
	self := os.Getpid()
	uid := os.Getuid()
	killed := map[int]bool{}
	for round := 0; round < 5; round++ {
		ps := listProcs()
		mine := descendants(ps, self)
		keep := descendants(ps, kernelPid)
		keep[kernelPid] = true
		n := 0
		for _, p := range ps {
			if !mine[p.pid] || keep[p.pid] || p.uid != uid || killed[p.pid] {
				continue
			}
			if unix.Kill(p.pid, unix.SIGKILL) == nil {
				killed[p.pid] = true
				n++
			}
		}
		if n == 0 {
			break
		}
	}
	return len(killed)
}

// strays decides cheaply whether a sweep for stray processes is needed.
// Reading /proc costs about a millisecond per file under gVisor, so the
// full scan runs only when a task may have been created since the last
// one: the pid namespace's last pid moved (Linux), or the sandbox's task
// count changed (gVisor's sysinfo counts the sandbox's tasks; it has no
// ns_last_pid). Without either, every execution sweeps.
type strays struct {
	init  bool
	meter func() (int64, bool)
	last  int64
	known bool
}

func newStrays(init, gvisor bool) *strays {
	s := &strays{init: init}
	if f, err := os.Open("/proc/sys/kernel/ns_last_pid"); err == nil {
		s.meter = nsLastPid(f)
	} else if gvisor {
		// sysinfo's process count is host-wide on Linux, per sandbox on gVisor.
		s.meter = sysinfoTasks
	}
	return s
}

// nsLastPid reads the namespace's last pid with one pread per call.
func nsLastPid(f *os.File) func() (int64, bool) {
	var buf [32]byte
	return func() (int64, bool) {
		n, err := f.ReadAt(buf[:], 0)
		if n == 0 && err != nil {
			return 0, false
		}
		v, err := strconv.ParseInt(strings.TrimSpace(string(buf[:n])), 10, 64)
		return v, err == nil
	}
}

func sysinfoTasks() (int64, bool) {
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) != nil {
		return 0, false
	}
	return int64(si.Procs), true
}

// sweep kills strays if any task may have appeared since the last sweep,
// and returns how many it killed.
func (s *strays) sweep(kernelPid int) int {
	if !s.init {
		return 0
	}
	if s.meter != nil {
		// Read before the scan: a task created during it shows next time.
		v, ok := s.meter()
		if ok && s.known && v == s.last {
			return 0
		}
		s.last, s.known = v, ok
	}
	return killStrays(s.init, kernelPid)
}

// killAll kills the kernel and every process it left: its process group and,
// as PID 1, every process of the sandbox user in one kill(-1) call (which
// spares the agent itself and the bridge, which runs as another uid).
// Outside a sandbox it kills the kernel's group and descendants only.
func killAll(init bool, kernelPid int) {
	if kernelPid > 0 {
		_ = unix.Kill(-kernelPid, unix.SIGKILL)
	}
	if init {
		_ = unix.Kill(-1, unix.SIGKILL)
		return
	}
	for round := 0; round < 5 && kernelPid > 0; round++ {
		d := descendants(listProcs(), kernelPid)
		if len(d) == 0 {
			return
		}
		for pid := range d {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
	}
}
