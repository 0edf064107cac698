package agent_test

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sandpool/sandpool/sandbox/agent"
)

// signalChild is the environment variable that makes the test binary one of
// TestF10AgentDropsForeignSignals's children.
const signalChild = "SANDPOOL_TEST_SIGNAL_CHILD"

// sentSignals are what code in a sandbox may send the agent (its PID 1).
var sentSignals = []syscall.Signal{
	syscall.SIGABRT, syscall.SIGBUS, syscall.SIGFPE, syscall.SIGSEGV, syscall.SIGILL,
	syscall.SIGTRAP, syscall.SIGSYS, syscall.SIGQUIT, syscall.SIGSTKFLT, syscall.SIGTERM,
	syscall.SIGINT, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGALRM,
	syscall.SIGPIPE, syscall.SIGXCPU, syscall.SIGXFSZ, syscall.SIGPWR, syscall.SIGTSTP,
}

// runSignalChild is a child's whole life; it exits instead of returning.
func runSignalChild(mode string) {
	if mode != "undefended" {
		agent.DropForeignSignals()
	}
	switch mode {
	case "undefended", "defended":
		for _, s := range sentSignals {
			_ = syscall.Kill(os.Getpid(), s)
			time.Sleep(10 * time.Millisecond)
		}
		// A child gets default dispositions: SIGTERM ends it.
		out, _ := exec.Command("sh", "-c", "kill -TERM $$; echo survived").CombinedOutput()
		fmt.Printf("alive; child said %q\n", out)
	case "environ":
		hidden := agent.HideEnviron()
		b, _ := os.ReadFile("/proc/self/environ")
		fmt.Printf("hidden %v, environ empty %v, PATH kept %v\n", hidden, strings.Trim(string(b), "\x00") == "", os.Getenv("PATH") != "")
	case "fault":
		var p *int
		fmt.Println(*p) // a real SIGSEGV must still crash the process
	}
	os.Exit(0)
}

// TestF10AgentDropsForeignSignals: the fault signals (and the rest) sent by
// another process of the agent's uid no longer end the agent, a real fault
// still crashes it, and its children do not inherit ignored signals. Also
// (finding 12) HideEnviron empties /proc/self/environ and keeps the
// environment. The sandbox versions are TestF10SignalsToPID1 and
// TestF12AgentEnviron in sandbox/podman.
func TestF10AgentDropsForeignSignals(t *testing.T) {
	if mode := os.Getenv(signalChild); mode != "" {
		runSignalChild(mode)
	}
	tests := []struct {
		mode      string
		wantOK    bool
		wantOut   string
		wantStack string
	}{
		{mode: "undefended", wantOK: false, wantStack: "SIGABRT"},
		{mode: "defended", wantOK: true, wantOut: "alive; child said \"\"\n"},
		{mode: "fault", wantOK: false, wantStack: "invalid memory address"},
		{mode: "environ", wantOK: true, wantOut: "hidden true, environ empty true, PATH kept true\n"},
	}
	for _, tc := range tests {
		t.Run(tc.mode, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestF10AgentDropsForeignSignals$")
			cmd.Env = append(os.Environ(), signalChild+"="+tc.mode)
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			if (err == nil) != tc.wantOK {
				t.Fatalf("exit: %v, want success %v; stderr %.400q", err, tc.wantOK, stderr.String())
			}
			if tc.wantOut != "" && stdout.String() != tc.wantOut {
				t.Errorf("stdout %q, want %q", stdout.String(), tc.wantOut)
			}
			if !strings.Contains(stderr.String(), tc.wantStack) {
				t.Errorf("stderr does not say %q: %.400q", tc.wantStack, stderr.String())
			}
		})
	}
}
