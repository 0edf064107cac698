package pool

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"sync"
	"time"

	"github.com/sandpool/sandpool/internal/errcode"
)

// ErrNotCustom: a Python pool has no container application to forward to.
var ErrNotCustom = errcode.New(errcode.InvalidArgument, "this pool runs Python sessions, not custom containers")

// Upstream is a custom-container session held for one forwarded request:
// its container's application, reached through the sandbox's agent.
type Upstream struct {
	p       *Pool
	s       *Session
	release func()
}

// Upstream returns the session of k, allocating one on first use, for a
// request to forward to its container. The session counts as in use, its
// cooldown reset, until Release: a long response or an upgraded
// connection keeps it alive.
func (p *Pool) Upstream(ctx context.Context, k SessionKey) (*Upstream, error) {
	if p.cfg.ContainerType != CustomContainer {
		return nil, ErrNotCustom
	}
	s, release, err := p.acquire(ctx, k)
	if err != nil {
		return nil, err
	}
	return &Upstream{p: p, s: s, release: sync.OnceFunc(release)}, nil
}

// Dial opens a connection to the application's target port. A sandbox
// found dead ends the session (ErrSessionLost, or in an OnContainerExit
// pool its normal end).
func (u *Upstream) Dial(ctx context.Context) (net.Conn, error) {
	c, err := u.s.sb.DialApp(ctx)
	if err != nil {
		return nil, u.p.failed(ctx, u.s, err)
	}
	return c, nil
}

// Key names the session's sandbox for connection reuse: it differs for
// every sandbox ever made, so a connection is never reused by another
// session, nor by a later session with the same identifier. It is not
// for clients or containers.
func (u *Upstream) Key() string { return u.s.sb.Name }

// SessionID identifies the session to its container: a keyed hash, so it
// reveals nothing of the caller's identifier or principal, and is stable
// for the session's life.
func (u *Upstream) SessionID() string {
	m := hmac.New(sha256.New, u.p.upstreamKey)
	m.Write([]byte(u.s.hash))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// Ends is when the session's life ends (maxAlivePeriodInSeconds after it
// began): a forwarded stream or upgraded connection must not outlive it.
func (u *Upstream) Ends() time.Time { return u.s.created.Add(u.p.cfg.maxAlive()) }

// Release ends the request; it may be called more than once.
func (u *Upstream) Release() { u.release() }
