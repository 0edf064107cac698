package pool

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/sandpool/sandpool/internal/errcode"
	"github.com/sandpool/sandpool/sandbox"
)

// adoptConcurrency bounds sandboxes opened at once during adoption.
const adoptConcurrency = 8

// adopt takes over the sandboxes of this pool that a previous server left:
// allocated ones become sessions again (kernel state and files intact),
// Ready ones return to the warm pool, and anything else (stopped,
// unreachable, half-created, or made from another spec) is removed.
// Sessions whose sandbox vanished are reported lost once.
func (p *Pool) adopt(ctx context.Context) error {
	entries, err := p.store.load()
	old := errors.Is(err, errOldState)
	if err != nil {
		// A damaged state file must not stop the server; the sandboxes it
		// described are then treated as strays.
		p.log.Error().Err(err).Msg("ignoring the pool state file")
		if !old {
			entries = nil
		}
	}
	list, err := p.list(ctx)
	if err != nil {
		return errcode.Wrap(errcode.Unavailable, "cannot list the pool's sandboxes", err)
	}
	byID := map[string]stateEntry{}
	for _, e := range entries {
		byID[e.Container] = e
	}
	var (
		mu      sync.Mutex
		wg      sync.WaitGroup
		sem     = make(chan struct{}, adoptConcurrency)
		found   = map[string]bool{}
		removed int
	)
	for _, c := range list {
		e, allocated := byID[c.ID]
		found[c.ID] = allocated
		// An allocated sandbox is adopted only for the session its entry
		// names, verified: the key opens for this container and hash, and
		// hashes to that hash. Otherwise (a tampered or older file) it is
		// removed, never returned to the warm pool.
		var k SessionKey
		verified := false
		if allocated && !old {
			var err error
			k, err = p.store.open(e)
			verified = err == nil && p.hash.Hash(k) == e.Hash
			if !verified {
				p.log.Warn().Err(err).Msg("a session of the pool state does not match its sandbox; removing the sandbox")
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			var sb *sandbox.Sandbox
			if allocated && !verified {
				p.removeStray(ctx, c.ID)
			} else {
				sb = p.adoptOne(ctx, c, allocated)
			}
			mu.Lock()
			defer mu.Unlock()
			if sb == nil {
				removed++
				return
			}
			if v := sb.BootInfo.Kernel.Python; v != "" {
				p.python = v
			}
			if !allocated {
				p.ready = append(p.ready, sb)
				return
			}
			s := &Session{p: p, hash: e.Hash, key: k, created: e.Created, ready: closedChan(), sb: sb, state: StateAllocated, lastAccess: e.LastAccess}
			p.sessions[e.Hash] = s
			p.countLocked(s, 1)
		}()
	}
	wg.Wait()
	now := p.opt.Now()
	for _, e := range entries {
		if _, ok := p.sessions[e.Hash]; !ok {
			p.lost[e.Hash] = now
		}
	}
	p.adopted = len(p.ready) + len(p.sessions)
	p.saveOrLog(p.entriesLocked())
	if len(list) > 0 || len(entries) > 0 {
		p.log.Info().Int("ready", len(p.ready)).Int("sessions", len(p.sessions)).Int("removed", removed).Int("lost", len(p.lost)).Msg("adopted sandboxes")
	}
	return nil
}

// adoptOne opens a sandbox to adopt, or removes it and returns nil.
func (p *Pool) adoptOne(ctx context.Context, c sandbox.Summary, allocated bool) *sandbox.Sandbox {
	keep := c.Running && (allocated || c.Labels[LabelSpec] == p.labels[LabelSpec])
	var sb *sandbox.Sandbox
	if keep {
		octx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		var err error
		sb, err = p.eng.Open(octx, c.ID)
		if err == nil && !allocated && !sb.BootInfo.Kernel.Ready {
			// A warm sandbox must be fully warm; one whose creation was
			// cut short may still be importing.
			var info sandbox.Info
			info, err = sb.Info(octx, true, 30*time.Second)
			if err == nil && !info.Kernel.Ready {
				err = errcode.New(errcode.Internal, "kernel not ready")
			}
		}
		if err != nil {
			p.log.Warn().Err(err).Bool("allocated", allocated).Msg("cannot adopt a sandbox; removing it")
			if sb != nil {
				sb.Close()
			}
			sb = nil
		}
	}
	if sb == nil {
		p.removeStray(ctx, c.ID)
	}
	return sb
}

// removeStray removes a sandbox that is not adopted.
func (p *Pool) removeStray(ctx context.Context, id string) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if err := p.eng.Remove(rctx, id); err != nil {
		p.log.Warn().Err(err).Msg("removing a stray sandbox")
	}
}

func closedChan() chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}
