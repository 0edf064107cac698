// Command sandpool-agent is the static binary sandpool bind-mounts into
// every sandbox. "daemon" is the sandbox's PID 1 (kernel supervisor, files,
// control socket); "bridge" is what the server execs to reach the daemon.
package main

import (
	"context"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/sandpool/sandpool/sandbox/agent"
	"github.com/sandpool/sandpool/sandbox/agentproto"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "sandpool-agent:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: sandpool-agent daemon|bridge|version [flags]")
	}
	switch args[0] {
	case "version":
		fmt.Fprintln(stdout, version)
		return nil
	case "bridge":
		// The bridge hands its own stdio (files, not streams) to the daemon.
		return agent.Bridge(context.Background(), os.Stdin, os.Stdout, agentproto.SocketName)
	case "daemon":
		return daemon(args[1:], stderr)
	}
	return fmt.Errorf("unknown command %q", args[0])
}

func daemon(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("daemon", flag.ContinueOnError)
	tokenHash := fs.String("token-hash", "", "hex SHA-256 of the token connections must present")
	mem := fs.Int64("kernel-memory", 0, "address-space limit of the kernel in bytes (0: none)")
	preload := fs.String("preload", "", "comma-separated modules to import before ready")
	noIPython := fs.Bool("no-ipython", false, "use the plain exec runner")
	logLevel := fs.String("log-level", "warn", "log level")
	appPort := fs.Int("app-port", 0, "custom container: the port the application (the arguments after --) listens on")
	appDir := fs.String("app-dir", "/", "custom container: the application's working directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	hash, err := hex.DecodeString(*tokenHash)
	if err != nil || len(hash) != 32 {
		return fmt.Errorf("--token-hash must be 64 hex digits")
	}
	lvl, err := zerolog.ParseLevel(*logLevel)
	if err != nil {
		return err
	}
	log := zerolog.New(stderr).Level(lvl).With().Timestamp().Str("component", "agent").Logger()
	// Not dumpable: code in the sandbox runs as our uid, and must not read
	// our memory or environment through /proc or ptrace.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl: %w", err)
	}
	init := os.Getpid() == 1
	if init {
		agent.HideEnviron()
		// As PID 1 a signal only arrives if we handle it, and the
		// sandbox's code runs as our uid: drop what it could send us.
		agent.DropForeignSignals()
	}
	var mods []string
	if *preload != "" {
		mods = strings.Split(*preload, ",")
	}
	cfg := agent.Config{
		Preload:      mods,
		KernelMemory: *mem,
		NoIPython:    *noIPython,
		Init:         init,
		Version:      version,
		Log:          log,
		AppArgv:      fs.Args(),
		AppPort:      *appPort,
		AppDir:       *appDir,
	}
	if len(cfg.AppArgv) > 0 && cfg.AppPort == 0 {
		return fmt.Errorf("--app-port is required with an application command")
	}
	copy(cfg.TokenHash[:], hash)
	a, err := agent.New(cfg)
	if err != nil {
		return err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: agentproto.SocketName, Net: "unix"})
	if err != nil {
		a.Close()
		return fmt.Errorf("listen: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		// A custom container ends with its application, as any container
		// does. The pause lets the server read why (info waiting for it).
		select {
		case <-a.AppExited():
			time.Sleep(appExitGrace)
			cancel()
		case <-ctx.Done():
		}
	}()
	err = a.Serve(ctx, ln)
	a.Close()
	if a.AppExited() != nil {
		os.Exit(a.ExitCode())
	}
	return err
}

// appExitGrace is how long the agent outlives its application.
const appExitGrace = 300 * time.Millisecond
