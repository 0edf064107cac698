package api

import (
	"context"
	"sync"
	"time"

	"github.com/sandpool/sandpool/internal/errcode"
	"github.com/sandpool/sandpool/pool"
)

// Bounds of the execution store: results of the executions generation are
// kept for GET executions/{id} (and asynchronous runs) for execTTL after
// they end, at most maxStoredExecs of them, oldest finished first out.
const (
	execTTL        = 15 * time.Minute
	maxStoredExecs = 1024
	maxAsyncExecs  = 256
)

type storedExec struct {
	owner string // pool and session hash: another session never sees it
	o     *outcome
	ended time.Time // zero while running
}

// execStore holds execution outcomes and runs asynchronous executions. Its
// goroutines stop when ctx ends; wait waits for them.
type execStore struct {
	hasher *pool.Hasher
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	byID    map[string]*storedExec
	order   []string // insertion order, for eviction
	running int
}

func newExecStore(h *pool.Hasher) *execStore {
	ctx, cancel := context.WithCancel(context.Background())
	return &execStore{hasher: h, ctx: ctx, cancel: cancel, byID: map[string]*storedExec{}}
}

func (e *execStore) owner(p *pool.Pool, k pool.SessionKey) string {
	return p.Name() + "/" + e.hasher.Hash(k)
}

func (e *execStore) put(p *pool.Pool, k pool.SessionKey, o *outcome) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.insertLocked(&storedExec{owner: e.owner(p, k), o: o, ended: time.Now()})
}

func (e *execStore) insertLocked(x *storedExec) {
	now := time.Now()
	// Drop expired and, past the cap, the oldest finished entries.
	kept := e.order[:0]
	for _, id := range e.order {
		old := e.byID[id]
		if old == nil {
			continue
		}
		if !old.ended.IsZero() && (now.Sub(old.ended) > execTTL || len(e.byID) >= maxStoredExecs) {
			delete(e.byID, id)
			continue
		}
		kept = append(kept, id)
	}
	e.order = kept
	if _, dup := e.byID[x.o.id]; !dup {
		e.order = append(e.order, x.o.id)
	}
	e.byID[x.o.id] = x
}

func (e *execStore) get(p *pool.Pool, k pool.SessionKey, id string) *outcome {
	e.mu.Lock()
	defer e.mu.Unlock()
	x := e.byID[id]
	if x == nil || x.owner != e.owner(p, k) {
		return nil
	}
	o := *x.o
	return &o
}

// start runs req in the background; its outcome appears under id.
func (e *execStore) start(s *Server, p *pool.Pool, k pool.SessionKey, id string, req execRequest) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ctx.Err() != nil {
		return errcode.New(errcode.ShuttingDown, "the server is shutting down")
	}
	if e.running >= maxAsyncExecs {
		return errcode.New(errcode.RateLimited, "too many asynchronous executions are running")
	}
	x := &storedExec{owner: e.owner(p, k), o: &outcome{id: id, identifier: k.Identifier.String(), async: true, running: true}}
	e.insertLocked(x)
	e.running++
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		o, err := s.execute(e.ctx, p, k, id, req)
		if err != nil {
			o = &outcome{id: id, identifier: k.Identifier.String(), async: true, fault: err}
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		e.running--
		x.o, x.ended = o, time.Now()
	}()
	return nil
}

// close waits for asynchronous executions until ctx ends, then stops them.
func (e *execStore) close(ctx context.Context) {
	done := make(chan struct{})
	go func() { e.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	e.mu.Lock()
	e.cancel()
	e.mu.Unlock()
	<-done
}
