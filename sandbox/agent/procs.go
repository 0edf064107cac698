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
