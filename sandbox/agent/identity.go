package agent

import (
	"bufio"
	"bytes"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/sandpool/sandpool/sandbox/agentproto"
)

// readIdentity reports what the agent sees of the kernel it runs on. The
// server compares it with the host to tell runc, gVisor and VMs apart.
func readIdentity() agentproto.Identity {
	var id agentproto.Identity
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		id.Release = unix.ByteSliceToString(u.Release[:])
		id.Version = unix.ByteSliceToString(u.Version[:])
	}
	if b, err := os.ReadFile("/proc/sys/kernel/random/boot_id"); err == nil {
		id.BootID = strings.TrimSpace(string(b))
	}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "flags") {
				for _, fl := range strings.Fields(line) {
					if fl == "hypervisor" {
						id.Hypervisor = true
					}
				}
				break
			}
		}
		f.Close()
	}
	buf := make([]byte, 4096)
	if n, err := unix.Klogctl(unix.SYSLOG_ACTION_READ_ALL, buf); err == nil && n > 0 {
		s := buf[:n]
		if i := bytes.IndexByte(s, '\n'); i >= 0 {
			// Two lines are enough to recognise a synthetic log.
			if j := bytes.IndexByte(s[i+1:], '\n'); j >= 0 {
				s = s[:i+1+j]
			}
		}
		id.Syslog = string(s)
	}
	return id
}
