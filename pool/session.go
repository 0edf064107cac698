package pool

import (
	"context"
	"io"
	"sort"
	"time"

	"github.com/sandpool/sandpool/internal/errcode"
	"github.com/sandpool/sandpool/sandbox"
)

// with runs fn on the sandbox of k's session (allocating one on first use),
// keeping the session alive and its cooldown reset meanwhile. It turns a
// dead sandbox into ErrSessionLost and ends the session.
func (p *Pool) with(ctx context.Context, k SessionKey, fn func(*sandbox.Sandbox) error) error {
	s, release, err := p.acquire(ctx, k)
	if err != nil {
		return err
	}
	defer release()
	return p.failed(ctx, s, fn(s.sb))
}

// failed classifies an operation's error on s: the session was deleted
// meanwhile, or its sandbox died (the session ends), or err as it is.
func (p *Pool) failed(ctx context.Context, s *Session, err error) error {
	if err == nil {
		return nil
	}
	p.mu.Lock()
	deleted := s.deleted
	p.mu.Unlock()
	switch {
	case deleted:
		return errcode.Wrap(errcode.SessionLost, errcode.Public(ErrSessionDeleted), err)
	case errcode.Of(err) == errcode.SandboxGone,
		errcode.Of(err) == errcode.SandboxUnreachable && p.died(ctx, s):
		p.lose(s)
		if p.cfg.Lifecycle.LifecycleType == OnContainerExit {
			return errcode.Wrap(errcode.Unavailable, "the session's container exited, which ended the session; the next request starts a new one", err)
		}
		return errcode.Wrap(errcode.SessionLost, errcode.Public(ErrSessionLost), err)
	}
	return err
}

// died tells whether s's sandbox stopped, after a broken connection. The
// connection often breaks a moment before the engine reports the stop
// (gVisor), so it asks for a short while.
func (p *Pool) died(ctx context.Context, s *Session) bool {
	for i := 0; i < 20; i++ {
		p.mu.Lock()
		gone := p.sessions[s.hash] != s // the health check saw it die
		p.mu.Unlock()
		if gone {
			return true
		}
		list, err := p.list(ctx)
		if err != nil {
			return false
		}
		running := false
		for _, c := range list {
			running = running || (c.ID == s.sb.ID && c.Running)
		}
		if !running {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(100 * time.Millisecond):
		}
	}
	return false
}

// Execute runs code in the session of k. The timeout is the pool's
// default when req gives none and is capped at the pool's maximum; output
// is capped likewise. Events go to sink (may be nil) as they happen.
func (p *Pool) Execute(ctx context.Context, k SessionKey, req sandbox.ExecRequest, sink sandbox.Sink) (*sandbox.Result, error) {
	e := p.cfg.Execution
	maxT := time.Duration(e.MaxTimeoutInSeconds) * time.Second
	if req.Timeout <= 0 {
		req.Timeout = time.Duration(e.DefaultTimeoutInSeconds) * time.Second
	}
	req.Timeout = min(req.Timeout, maxT)
	if req.MaxOutput <= 0 || req.MaxOutput > int64(e.MaxOutput) {
		req.MaxOutput = int64(e.MaxOutput)
	}
	t0 := time.Now()
	var res *sandbox.Result
	err := p.with(ctx, k, func(sb *sandbox.Sandbox) error {
		var err error
		res, err = sb.Execute(ctx, req, sink)
		return err
	})
	outcome := "failed"
	if err == nil {
		outcome = string(res.Status)
		p.opt.Metrics.execTime.WithLabelValues(p.cfg.Name).Observe(time.Since(t0).Seconds())
	}
	p.opt.Metrics.executions.WithLabelValues(p.cfg.Name, outcome).Inc()
	return res, err
}

// Interrupt interrupts the execution id in the session of k, if it runs.
// It does not start a session.
func (p *Pool) Interrupt(ctx context.Context, k SessionKey, id string) error {
	s, release, err := p.existing(k)
	if err != nil {
		return err
	}
	defer release()
	return s.sb.Interrupt(ctx, id)
}

// existing is acquire without allocation.
func (p *Pool) existing(k SessionKey) (*Session, func(), error) {
	h := p.hash.Hash(k)
	p.mu.Lock()
	s := p.sessions[h]
	if s == nil || s.state != StateAllocated {
		p.mu.Unlock()
		return nil, nil, ErrNoSession
	}
	s.inflight++
	s.lastAccess = p.opt.Now()
	p.inflight++
	p.mu.Unlock()
	return s, func() { p.release(s) }, nil
}

// Put writes r to path in the session's /mnt/data (at most maxSize bytes).
func (p *Pool) Put(ctx context.Context, k SessionKey, path string, r io.Reader, maxSize int64) (fi sandbox.FileInfo, err error) {
	err = p.with(ctx, k, func(sb *sandbox.Sandbox) error {
		fi, err = sb.Put(ctx, path, r, maxSize)
		return err
	})
	return fi, err
}

// Get streams the file at path to w (at most maxSize bytes).
func (p *Pool) Get(ctx context.Context, k SessionKey, path string, w io.Writer, maxSize int64) (fi sandbox.FileInfo, err error) {
	err = p.with(ctx, k, func(sb *sandbox.Sandbox) error {
		fi, err = sb.Get(ctx, path, w, maxSize)
		return err
	})
	return fi, err
}

// Stat describes the file at path.
func (p *Pool) Stat(ctx context.Context, k SessionKey, path string) (fi sandbox.FileInfo, err error) {
	err = p.with(ctx, k, func(sb *sandbox.Sandbox) error {
		fi, err = sb.Stat(ctx, path)
		return err
	})
	return fi, err
}

// List lists the directory dir of the session's files.
func (p *Pool) List(ctx context.Context, k SessionKey, dir string) (files []sandbox.FileInfo, partial bool, err error) {
	err = p.with(ctx, k, func(sb *sandbox.Sandbox) error {
		files, partial, err = sb.List(ctx, dir)
		return err
	})
	return files, partial, err
}

// Remove deletes the file at path.
func (p *Pool) Remove(ctx context.Context, k SessionKey, path string) error {
	return p.with(ctx, k, func(sb *sandbox.Sandbox) error { return sb.Delete(ctx, path) })
}

// SessionInfo describes a session.
type SessionInfo struct {
	Identifier Identifier
	State      State
	Created    time.Time
	LastAccess time.Time
	// ExpiresAt is when the session ends if no request comes: the end of
	// its cooldown, or of its maximum life if that is sooner (the only
	// bound of an OnContainerExit session).
	ExpiresAt time.Time
	// Etag changes when the session gets a new sandbox.
	Etag string
}

func (p *Pool) infoLocked(s *Session) SessionInfo {
	exp := s.created.Add(p.cfg.maxAlive())
	if end := s.lastAccess.Add(p.cfg.cooldown()); p.cfg.Lifecycle.LifecycleType == Timed && end.Before(exp) {
		exp = end
	}
	return SessionInfo{Identifier: s.key.Identifier, State: s.state, Created: s.created, LastAccess: s.lastAccess, ExpiresAt: exp, Etag: s.hash[:16] + s.created.Format("150405.000")}
}

// Session describes the session of k without touching it.
func (p *Pool) Session(k SessionKey) (SessionInfo, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.sessions[p.hash.Hash(k)]
	if s == nil {
		return SessionInfo{}, ErrNoSession
	}
	return p.infoLocked(s), nil
}

// Sessions lists the sessions of principal, oldest first.
func (p *Pool) Sessions(principal Principal) []SessionInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []SessionInfo
	for _, s := range p.sessions {
		if s.key.Principal == principal {
			out = append(out, p.infoLocked(s))
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].Identifier.s < out[j].Identifier.s
	})
	return out
}

// Status is a pool's state: sandboxes per state and the health of
// creation.
type Status struct {
	Name                  string
	Pending               int
	Ready                 int
	Allocated             int
	Deleting              int
	MaxConcurrentSessions int
	ReadySessionInstances int
	// InFlight counts requests being served (executions, file calls).
	InFlight int
	// Adopted counts sandboxes adopted at start.
	Adopted int
	// CreationFailures counts consecutive failed creations; LastError is
	// the last one's public message. Both reset on a success.
	CreationFailures int
	LastError        string
	// Python is the Python version of the last sandbox started ("" before
	// the first).
	Python string
	// RuntimeVersion is the version of the pool's OCI runtime ("" when
	// the engine does not say): for runsc the pinned gVisor version.
	RuntimeVersion string
}

// Status returns the pool's counts.
func (p *Pool) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := Status{
		Name:                  p.cfg.Name,
		Pending:               p.warming,
		Ready:                 len(p.ready),
		Deleting:              p.deleting,
		MaxConcurrentSessions: p.cfg.Scale.MaxConcurrentSessions,
		ReadySessionInstances: p.cfg.ready(),
		InFlight:              p.inflight,
		Adopted:               p.adopted,
		CreationFailures:      p.failures,
		LastError:             p.lastErr,
		Python:                p.python,
		RuntimeVersion:        p.runtimeVersion,
	}
	for _, s := range p.sessions {
		switch s.state {
		case StatePending:
			st.Pending++
		case StateAllocated:
			st.Allocated++
		}
	}
	for _, s := range p.ending {
		if s.state == StateAllocated {
			st.Allocated++
		}
	}
	m := p.opt.Metrics.sessions
	m.WithLabelValues(p.cfg.Name, string(StatePending)).Set(float64(st.Pending))
	m.WithLabelValues(p.cfg.Name, string(StateReady)).Set(float64(st.Ready))
	m.WithLabelValues(p.cfg.Name, string(StateAllocated)).Set(float64(st.Allocated))
	m.WithLabelValues(p.cfg.Name, string(StateDeleting)).Set(float64(st.Deleting))
	return st
}
