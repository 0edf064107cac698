package api

import (
	"context"
	"sync"
	"time"

	"github.com/sandpool/sandpool/internal/errcode"
	"github.com/sandpool/sandpool/pool"
)

// codeOperationInUse refuses an execution whose operation-id the caller
// already used for an execution still kept.
const codeOperationInUse errcode.Code = "operation_id_in_use"

// Bounds of the execution store. Results of the executions generation are
// kept for GET executions/{id} (and asynchronous runs) for execTTL after
// they end. Each principal has its own id space and its own caps, so no
// caller can overwrite or evict another's results: at most
// maxStoredPerPrincipal results (its oldest finished go first) and
// maxAsyncPerPrincipal asynchronous executions running. maxStoredExecs
// bounds the memory of all principals together; past it, the principal
// holding the most results loses its oldest finished one.
const (
	execTTL               = 15 * time.Minute
	maxStoredPerPrincipal = 1024
	maxAsyncPerPrincipal  = 32
	maxStoredExecs        = 64 << 10
)

// storedExec is one execution, running or ended.
type storedExec struct {
	principal pool.Principal
	owner     string // pool and session hash: another session never sees it
	o         *outcome
	ended     time.Time // zero while running
}

// principalExecs are one principal's executions.
type principalExecs struct {
	byID    map[string]*storedExec
	order   []string // insertion order, for eviction
	running int      // asynchronous executions running
}

// execStore holds execution outcomes, keyed by (principal, id), and runs
// asynchronous executions. Its goroutines stop when close's context ends;
// close waits for them.
type execStore struct {
	hasher *pool.Hasher
	now    func() time.Time
	// The caps (the constants above; tests lower them).
	maxPer, maxAsync, maxTotal int
	ctx                        context.Context
	cancel                     context.CancelFunc
	wg                         sync.WaitGroup

	mu    sync.Mutex
	by    map[pool.Principal]*principalExecs
	total int // entries of every principal
}

func newExecStore(h *pool.Hasher) *execStore {
	ctx, cancel := context.WithCancel(context.Background())
	return &execStore{hasher: h, now: time.Now, maxPer: maxStoredPerPrincipal, maxAsync: maxAsyncPerPrincipal, maxTotal: maxStoredExecs,
		ctx: ctx, cancel: cancel, by: map[pool.Principal]*principalExecs{}}
}

func (e *execStore) owner(poolName string, k pool.SessionKey) string {
	return poolName + "/" + e.hasher.Hash(k)
}

// reserve records a running execution of k in pool poolName under id before it starts, so
// that two executions never share an id. The caller ends it with finish
// or drop.
func (e *execStore) reserve(poolName string, k pool.SessionKey, id string) (*storedExec, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	x := &storedExec{principal: k.Principal, owner: e.owner(poolName, k), o: &outcome{id: id, identifier: k.Identifier.String(), running: true}}
	if err := e.insertLocked(k.Principal, id, x); err != nil {
		return nil, err
	}
	return x, nil
}

// finish records the outcome of a reserved execution.
func (e *execStore) finish(x *storedExec, o *outcome) {
	e.mu.Lock()
	defer e.mu.Unlock()
	x.o, x.ended = o, e.now()
}

// drop forgets a reserved execution that never ran (it failed before
// reaching the sandbox, as at capacity): its id may be used again.
func (e *execStore) drop(x *storedExec) {
	e.mu.Lock()
	defer e.mu.Unlock()
	pe := e.by[x.principal]
	if pe == nil || pe.byID[x.o.id] != x {
		return
	}
	delete(pe.byID, x.o.id)
	e.total--
	e.forgetIfEmptyLocked(x.principal, pe)
}

// insertLocked adds x under (principal, id), refusing an id in use and
// making room within the caps.
func (e *execStore) insertLocked(principal pool.Principal, id string, x *storedExec) error {
	now := e.now()
	if pe := e.by[principal]; pe != nil {
		e.pruneLocked(pe, now, e.maxPer-1)
		if pe.byID[id] != nil {
			return errcode.New(codeOperationInUse, "an execution with this operation-id exists; GET it at executions/{id}, or send a new operation-id")
		}
		if len(pe.byID) >= e.maxPer {
			return errcode.New(errcode.RateLimited, "too many executions of this caller are running")
		}
	}
	if e.total >= e.maxTotal {
		e.evictLocked(now)
		if e.total >= e.maxTotal {
			return errcode.New(errcode.RateLimited, "the server holds too many executions; retry later")
		}
	}
	// Looked up again: eviction forgets principals left with nothing.
	pe := e.by[principal]
	if pe == nil {
		pe = &principalExecs{byID: map[string]*storedExec{}}
		e.by[principal] = pe
	}
	pe.byID[id] = x
	pe.order = append(pe.order, id)
	e.total++
	return nil
}

// pruneLocked drops pe's expired results and, beyond keep entries, its
// oldest finished ones. Running executions are never dropped.
func (e *execStore) pruneLocked(pe *principalExecs, now time.Time, keep int) {
	kept := pe.order[:0]
	for _, id := range pe.order {
		x := pe.byID[id]
		if x == nil {
			continue // dropped
		}
		if !x.ended.IsZero() && (now.Sub(x.ended) > execTTL || len(pe.byID) > keep) {
			delete(pe.byID, id)
			e.total--
			continue
		}
		kept = append(kept, id)
	}
	clear(pe.order[len(kept):])
	pe.order = kept
}

// evictLocked makes room for one entry among all principals: expired
// results first, then the oldest finished result of the principal that
// holds the most (among those with a finished result to give).
func (e *execStore) evictLocked(now time.Time) {
	var top *principalExecs
	for p, pe := range e.by {
		e.pruneLocked(pe, now, e.maxPer)
		if e.forgetIfEmptyLocked(p, pe) {
			continue
		}
		finished := false
		for _, x := range pe.byID {
			if finished = !x.ended.IsZero(); finished {
				break
			}
		}
		if finished && (top == nil || len(pe.byID) > len(top.byID)) {
			top = pe
		}
	}
	if e.total >= e.maxTotal && top != nil {
		e.pruneLocked(top, now, len(top.byID)-1)
	}
}

// forgetIfEmptyLocked removes a principal with nothing stored or running,
// so memory stays bounded by recent callers.
func (e *execStore) forgetIfEmptyLocked(p pool.Principal, pe *principalExecs) bool {
	if len(pe.byID) > 0 || pe.running > 0 {
		return false
	}
	delete(e.by, p)
	return true
}

func (e *execStore) get(poolName string, k pool.SessionKey, id string) *outcome {
	e.mu.Lock()
	defer e.mu.Unlock()
	pe := e.by[k.Principal]
	if pe == nil {
		return nil
	}
	x := pe.byID[id]
	if x == nil || x.owner != e.owner(poolName, k) || !x.ended.IsZero() && e.now().Sub(x.ended) > execTTL {
		return nil
	}
	o := *x.o
	return &o
}

// start runs an asynchronous execution of k in the background; its
// outcome appears under id. held is the principal's concurrency slot the
// execution holds until it ends (start releases it whatever happens).
func (e *execStore) start(poolName string, k pool.SessionKey, id string, held func(), run func(context.Context) (*outcome, error)) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ctx.Err() != nil {
		held()
		return errcode.New(errcode.ShuttingDown, "the server is shutting down")
	}
	if pe := e.by[k.Principal]; pe != nil && pe.running >= e.maxAsync {
		held()
		return errcode.New(errcode.RateLimited, "too many asynchronous executions of this caller are running")
	}
	x := &storedExec{principal: k.Principal, owner: e.owner(poolName, k), o: &outcome{id: id, identifier: k.Identifier.String(), async: true, running: true}}
	if err := e.insertLocked(k.Principal, id, x); err != nil {
		held()
		return err
	}
	pe := e.by[k.Principal]
	pe.running++
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		defer held()
		o, err := run(e.ctx)
		if err != nil {
			o = &outcome{id: id, identifier: k.Identifier.String(), async: true, fault: err}
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		pe.running--
		x.o, x.ended = o, e.now()
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
