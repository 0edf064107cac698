package sandbox

import (
	"context"
	"errors"
	"time"

	"github.com/sandpool/sandpool/internal/errcode"
)

// Sandbox is a running sandbox: the engine's handle and a Conn to its agent.
type Sandbox struct {
	// ID is the engine's id for the sandbox. It must never reach a client.
	ID string
	// Name is the engine's name for it (random, never derived from input).
	Name   string
	Labels map[string]string
	// Isolation is what the sandbox was created for and verified to run on.
	Isolation Isolation
	// BootInfo is what the agent reported when the sandbox was booted or opened.
	BootInfo Info
	*Conn
}

// Boot waits for a freshly started sandbox's agent to answer, checks its
// isolation against want, and waits for the kernel to be ready (imports
// done), or for a custom container (app set) its application. ctx bounds
// the whole wait.
func Boot(ctx context.Context, c *Conn, want Isolation, host HostIdentity, app *App) (Info, error) {
	if app != nil && app.ReadyTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, app.ReadyTimeout)
		defer cancel()
	}
	delay := 20 * time.Millisecond
	for {
		// The agent starts listening a few milliseconds after the container
		// starts; until then a dial fails and is retried.
		wait := 60 * time.Second
		if dl, ok := ctx.Deadline(); ok {
			wait = max(time.Until(dl)-time.Second, time.Second)
		}
		info, err := c.Info(ctx, true, wait)
		if err == nil {
			if err := CheckIsolation(want, host, info.Identity); err != nil {
				return info, err
			}
			if app != nil {
				return info, bootApp(ctx, c, app, info)
			}
			if !info.Kernel.Ready {
				return info, errcode.Wrap(errcode.Internal, "the Python kernel failed to start", errors.New(info.Kernel.Error))
			}
			return info, nil
		}
		switch errcode.Of(err) {
		case errcode.SandboxUnreachable, errcode.Timeout:
		default:
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				// The boot's own deadline, not the caller's going away.
				return Info{}, errcode.Wrap(errcode.Timeout, "the sandbox did not become ready in time", err)
			}
			return Info{}, err // gone, engine down, canceled: no point waiting
		}
		c.Reset()
		select {
		case <-ctx.Done():
			return Info{}, errcode.Wrap(errcode.Timeout, "the sandbox did not become ready in time", errors.Join(ctx.Err(), err))
		case <-time.After(delay):
		}
		delay = min(delay*2, 500*time.Millisecond)
	}
}

// Summary describes a container an engine manages, as listed without
// connecting to it.
type Summary struct {
	// ID is the engine's id. It must never reach a client.
	ID      string
	Name    string
	Labels  map[string]string
	Running bool
	Created time.Time
}
