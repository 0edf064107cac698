// Command sandpool runs pools of warm, isolated Python sandboxes for AI
// agents: `sandpool serve` serves the HTTP API (Azure dynamic sessions and
// MCP), `sandpool mcp` speaks MCP on stdio (Claude Desktop), `sandpool
// exec` runs code in a fresh hardened sandbox, `sandpool bench` measures
// it on this machine beside baselines, `sandpool image build` builds the
// image.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/sandpool/sandpool/internal/errcode"
	"github.com/sandpool/sandpool/sandbox"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// exitError carries a process exit code through cobra.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := &cobra.Command{
		Use:           "sandpool",
		Short:         "Pools of warm, isolated Python sandboxes for AI agents",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(serveCmd(), mcpCmd(), execCmd(), benchCmd(), imageCmd(), versionCmd())
	err := root.ExecuteContext(ctx)
	var ee exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	}
	// Show the public message; the cause only when it helps an operator.
	fmt.Fprintf(stderr, "sandpool: %s\n", describe(err))
	return 1
}

func describe(err error) string {
	var ce *errcode.Error
	if errors.As(err, &ce) {
		if ce.Cause != nil {
			return fmt.Sprintf("%s (%s): %v", ce.Msg, ce.Code, ce.Cause)
		}
		return fmt.Sprintf("%s (%s)", ce.Msg, ce.Code)
	}
	return err.Error()
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, and the version of gVisor it runs (runtime runsc)",
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), version)
			fmt.Fprintln(cmd.OutOrStdout(), "gvisor", sandbox.GVisorVersion)
		},
	}
}
