package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sandpool/sandpool/internal/logging"
	"github.com/sandpool/sandpool/sandbox"
	"github.com/sandpool/sandpool/sandbox/image"
	"github.com/sandpool/sandpool/sandbox/podman"
)

// engineFlags are the flags of every command that talks to podman.
type engineFlags struct {
	runtime   string
	isolation string
	socket    string
	stateDir  string
	agent     string
	logLevel  string
}

func (f *engineFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.runtime, "runtime", "runsc", "OCI runtime: runsc (the pinned current gVisor), runsc-debian (Debian's 2022 gVisor), runc, or a Kata runtime")
	cmd.Flags().StringVar(&f.isolation, "isolation", "", "isolation the sandbox must show: container, gvisor or vm (default: from the runtime)")
	cmd.Flags().StringVar(&f.socket, "socket", "", "existing podman service socket (default: start and supervise one)")
	cmd.Flags().StringVar(&f.stateDir, "state-dir", "/var/lib/sandpool", "directory for sandpool's state")
	cmd.Flags().StringVar(&f.agent, "agent", "", "the static sandpool-agent binary (default: next to sandpool, then on PATH)")
	cmd.Flags().StringVar(&f.logLevel, "log-level", "warn", "log level")
}

func (f *engineFlags) engine(ctx context.Context, stderr io.Writer) (*podman.Engine, error) {
	log, err := logging.New(stderr, logging.Options{Level: f.logLevel})
	if err != nil {
		return nil, err
	}
	return podman.New(ctx, podman.Config{
		Runtime:   f.runtime,
		Socket:    f.socket,
		StateDir:  f.stateDir,
		AgentPath: f.agent,
		Log:       logging.Component(log, "engine"),
	})
}

func execCmd() *cobra.Command {
	var (
		ef       engineFlags
		code     string
		img      string
		timeout  time.Duration
		keep     bool
		existing string
		remove   bool
		saveDir  string
	)
	cmd := &cobra.Command{
		Use:   "exec [-c CODE | FILE | -]",
		Short: "Run Python in a fresh hardened sandbox (or in a kept one) and print what it produced",
		Long: `exec creates a sandbox, runs the code, prints its output, result and
figures, and removes the sandbox. With --keep the sandbox stays and its name
is printed; --sandbox NAME runs in such a kept sandbox, whose variables are
still there.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			src, err := readCode(code, args, cmd.InOrStdin())
			if err != nil {
				return err
			}
			eng, err := ef.engine(ctx, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer eng.Close()

			var sb *sandbox.Sandbox
			if existing != "" {
				if sb, err = eng.Open(ctx, existing); err != nil {
					return err
				}
			} else {
				iso := sandbox.IsolationOf(ef.runtime)
				if ef.isolation != "" {
					iso = sandbox.Isolation(ef.isolation)
				}
				spec := sandbox.Spec{Image: img, Isolation: iso, Labels: map[string]string{"sandpool.pool": "cli"}}
				if sb, err = eng.Create(ctx, spec); err != nil {
					return err
				}
			}
			defer sb.Close()
			if (existing == "" && !keep) || (existing != "" && remove) {
				defer func() {
					rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
					defer cancel()
					_ = eng.Remove(rctx, sb.ID)
				}()
			} else {
				fmt.Fprintf(cmd.ErrOrStderr(), "sandbox: %s\n", sb.Name)
			}
			return runAndPrint(ctx, sb, src, timeout, saveDir, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	ef.register(cmd)
	cmd.Flags().StringVarP(&code, "code", "c", "", "Python code to run")
	cmd.Flags().StringVar(&img, "image", image.Latest, "sandbox image")
	cmd.Flags().DurationVar(&timeout, "timeout", 60*time.Second, "execution timeout")
	cmd.Flags().BoolVar(&keep, "keep", false, "keep the sandbox and print its name")
	cmd.Flags().StringVar(&existing, "sandbox", "", "run in this kept sandbox instead of a new one")
	cmd.Flags().BoolVar(&remove, "remove", false, "with --sandbox: remove the sandbox afterwards")
	cmd.Flags().StringVar(&saveDir, "save-images", "", "write images the code displays into this directory")
	return cmd
}

func readCode(code string, args []string, stdin io.Reader) (string, error) {
	switch {
	case code != "" && len(args) > 0:
		return "", errors.New("give code with -c or as a file, not both")
	case code != "":
		return code, nil
	case len(args) == 0 || args[0] == "-":
		b, err := io.ReadAll(io.LimitReader(stdin, 1<<20+1))
		return string(b), err
	}
	b, err := os.ReadFile(args[0])
	return string(b), err
}

func runAndPrint(ctx context.Context, sb *sandbox.Sandbox, code string, timeout time.Duration, saveDir string, stdout, stderr io.Writer) error {
	images := 0
	show := func(data map[string]string) {
		if png, ok := data["image/png"]; ok {
			images++
			if saveDir != "" {
				b, err := base64.StdEncoding.DecodeString(png)
				if err == nil {
					p := filepath.Join(saveDir, fmt.Sprintf("image-%d.png", images))
					if err := os.WriteFile(p, b, 0o644); err == nil {
						fmt.Fprintf(stdout, "[image/png written to %s]\n", p)
						return
					}
				}
			}
			fmt.Fprintf(stdout, "[image/png, %d bytes base64]\n", len(png))
			return
		}
		fmt.Fprintln(stdout, data["text/plain"])
	}
	res, err := sb.Execute(ctx, sandbox.ExecRequest{Code: code, Timeout: timeout}, func(ev sandbox.Event) {
		switch ev.Kind {
		case sandbox.EventStdout:
			_, _ = stdout.Write(ev.Text)
		case sandbox.EventStderr:
			_, _ = stderr.Write(ev.Text)
		case sandbox.EventDisplay, sandbox.EventResult:
			show(ev.Data)
		case sandbox.EventError:
			fmt.Fprintln(stderr, strings.Join(ev.Error.Traceback, "\n"))
		}
	})
	if err != nil {
		return err
	}
	for _, t := range []struct {
		trunc bool
		name  string
	}{{res.StdoutTruncated, "stdout"}, {res.StderrTruncated, "stderr"}} {
		if t.trunc {
			fmt.Fprintf(stderr, "[%s truncated]\n", t.name)
		}
	}
	switch res.Status {
	case sandbox.StatusOK:
		return nil
	case sandbox.StatusError:
		return exitError{1}
	}
	msg := string(res.Status)
	if res.Reason != "" {
		msg += ": " + res.Reason
	}
	fmt.Fprintf(stderr, "sandpool: %s\n", msg)
	return exitError{2}
}
