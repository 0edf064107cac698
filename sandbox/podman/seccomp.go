package podman

import (
	"encoding/json"
	"slices"

	"go.podman.io/common/pkg/seccomp"
	"golang.org/x/sys/unix"
)

// deniedSyscalls fail with EPERM in every sandbox, on top of what podman's
// default profile denies: namespaces (user namespaces reach kernel code an
// unprivileged process should not), kernel keyrings, BPF, perf, userfaultfd
// and io_uring (large attack surfaces), tracing of other processes, and
// mount-related calls.
var deniedSyscalls = []string{
	"unshare", "setns",
	"keyctl", "add_key", "request_key",
	"bpf", "perf_event_open", "userfaultfd",
	"io_uring_setup", "io_uring_enter", "io_uring_register",
	"ptrace", "process_vm_readv", "process_vm_writev", "kcmp",
	"mount", "umount", "umount2", "pivot_root", "chroot", "mount_setattr",
	"move_mount", "open_tree", "fsopen", "fsconfig", "fsmount", "fspick",
	"open_by_handle_at", "name_to_handle_at",
	"acct", "quotactl", "quotactl_fd", "syslog",
}

// nsFlags are clone's namespace flags (CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|
// NEWUSER|NEWPID|NEWNET|NEWTIME).
const nsFlags = unix.CLONE_NEWNS | unix.CLONE_NEWCGROUP | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC |
	unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWTIME

// SeccompProfile returns sandpool's seccomp profile for a runtime (gVisor or
// not), as podman
// reads it: podman's default profile with deniedSyscalls removed from every
// rule and denied, and clone allowed only without namespace flags. clone3
// keeps its flags in memory a filter cannot read, so under runc it answers
// ENOSYS and libc falls back to clone. Under gVisor (runsc) it is left to
// gVisor, which does not implement it either; an ENOSYS from the filter
// there breaks thread creation (runsc 20221219).
func SeccompProfile(gvisor bool) ([]byte, error) {
	p := seccomp.DefaultProfile()
	strip := append(slices.Clone(deniedSyscalls), "clone", "mknod", "mknodat")
	strip = append(strip, signalSyscalls...)
	if !gvisor {
		strip = append(strip, "clone3")
	}
	var rules []*seccomp.Syscall
	for _, r := range p.Syscalls {
		r.Names = slices.DeleteFunc(r.Names, func(n string) bool { return slices.Contains(strip, n) })
		if len(r.Names) > 0 || r.Name != "" {
			rules = append(rules, r)
		}
	}
	eperm, enosys := uint(unix.EPERM), uint(unix.ENOSYS)
	rules = append(rules,
		&seccomp.Syscall{
			Names:  []string{"clone"},
			Action: seccomp.ActAllow,
			Args:   []*seccomp.Arg{{Index: 0, Value: nsFlags, ValueTwo: 0, Op: seccomp.OpMaskedEqual}},
		},
		&seccomp.Syscall{Names: deniedSyscalls, Action: seccomp.ActErrno, Errno: "EPERM", ErrnoRet: &eperm},
	)
	if !gvisor {
		rules = append(rules, &seccomp.Syscall{Names: []string{"clone3"}, Action: seccomp.ActErrno, Errno: "ENOSYS", ErrnoRet: &enosys})
	}
	// clone with any namespace flag: EPERM (an errno rule outranks the
	// allow rule above when both match).
	for f := uint64(1); f != 0; f <<= 1 {
		if nsFlags&f != 0 {
			rules = append(rules, &seccomp.Syscall{
				Names:  []string{"clone"},
				Action: seccomp.ActErrno, Errno: "EPERM", ErrnoRet: &eperm,
				Args: []*seccomp.Arg{{Index: 0, Value: f, ValueTwo: f, Op: seccomp.OpMaskedEqual}},
			})
		}
	}
	// mknod only of files, FIFOs and sockets; device nodes fall to the
	// default action. runc refuses devices for want of CAP_MKNOD, but
	// gVisor created them (the battery's F7 found it), and it takes an
	// allow rule over a more specific errno rule, so devices are left out
	// of the allow rules rather than denied after them.
	for _, kind := range []uint64{0, unix.S_IFREG, unix.S_IFIFO, unix.S_IFSOCK} {
		for _, c := range []struct {
			name string
			mode uint // the mode's argument index
		}{{"mknod", 1}, {"mknodat", 2}} {
			rules = append(rules, &seccomp.Syscall{
				Names:  []string{c.name},
				Action: seccomp.ActAllow,
				Args:   []*seccomp.Arg{{Index: c.mode, Value: unix.S_IFMT, ValueTwo: kind, Op: seccomp.OpMaskedEqual}},
			})
		}
	}
	rules = append(rules, signalRules()...)
	p.Syscalls = rules
	return json.MarshalIndent(p, "", " ")
}

// signalSyscalls send signals; signalRules filters them.
var signalSyscalls = []string{"kill", "rt_sigqueueinfo", "tgkill", "rt_tgsigqueueinfo", "tkill", "pidfd_send_signal"}

// signalRules allow every signal except SIGKILL and SIGSTOP to the agent
// (PID 1). Linux never delivers those to a PID 1 from inside its namespace,
// but gVisor does: kill(1, SIGSTOP) froze a gVisor sandbox. The agent's
// other threads can be reached only by tkill and pidfd_send_signal, which
// may therefore send neither at all. Arguments are ints the kernel
// truncates to 32 bits, so the rules match whole 64-bit values: a pid is
// allowed if it is 0, a sign-extended negative, or 2 to 2^31-1; a signal
// if it is neither 9 nor 19 (nor above 64). Each rule compares an
// argument once (runc ORs several comparisons of one argument), so ranges
// are unions of masked blocks. What no allow rule matches and is aimed at
// PID 1 gets EPERM.
func signalRules() []*seccomp.Syscall {
	eperm := uint(unix.EPERM)
	var rules []*seccomp.Syscall
	allow := func(names []string, idx uint, mask, value uint64) {
		rules = append(rules, &seccomp.Syscall{Names: names, Action: seccomp.ActAllow,
			Args: []*seccomp.Arg{{Index: idx, Value: mask, ValueTwo: value, Op: seccomp.OpMaskedEqual}}})
	}
	// block adds the values [lo, lo+size) (size a power of two, lo aligned).
	block := func(names []string, idx uint, lo, size uint64) { allow(names, idx, ^(size - 1), lo) }
	byPid := []string{"kill", "rt_sigqueueinfo", "tgkill", "rt_tgsigqueueinfo"}
	block(byPid, 0, 0, 1)                      // 0: the caller's process group
	block(byPid, 0, 0xffffffff80000000, 1<<31) // negative: a group, or -1 (never PID 1)
	for lo := uint64(2); lo < 1<<31; lo <<= 1 {
		block(byPid, 0, lo, lo) // [lo, 2lo): 2-3, 4-7, ... 2^30-(2^31-1)
	}
	// Signals 0-8, 10-18, 20-64, by the argument that holds them.
	sigBlocks := [][2]uint64{{0, 8}, {8, 1}, {10, 2}, {12, 4}, {16, 2}, {18, 1}, {20, 4}, {24, 8}, {32, 32}, {64, 1}}
	for _, b := range sigBlocks {
		block([]string{"kill", "rt_sigqueueinfo", "tkill", "pidfd_send_signal"}, 1, b[0], b[1])
		block([]string{"tgkill", "rt_tgsigqueueinfo"}, 2, b[0], b[1])
	}
	for _, sig := range []uint64{uint64(unix.SIGKILL), uint64(unix.SIGSTOP)} {
		for _, c := range []struct {
			names  []string
			sigArg uint
		}{{[]string{"kill", "rt_sigqueueinfo"}, 1}, {[]string{"tgkill", "rt_tgsigqueueinfo"}, 2}} {
			rules = append(rules, &seccomp.Syscall{Names: c.names, Action: seccomp.ActErrno, Errno: "EPERM", ErrnoRet: &eperm,
				Args: []*seccomp.Arg{
					{Index: 0, Value: 0xffffffff, ValueTwo: 1, Op: seccomp.OpMaskedEqual},
					{Index: c.sigArg, Value: sig, Op: seccomp.OpEqualTo},
				}})
		}
	}
	return rules
}
