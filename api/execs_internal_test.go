package api

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sandpool/sandpool/internal/errcode"
	"github.com/sandpool/sandpool/pool"
	"github.com/sandpool/sandpool/sandbox"
)

func testStore(t *testing.T) *execStore {
	t.Helper()
	h, err := pool.NewHasher([]byte(strings.Repeat("k", 32)))
	if err != nil {
		t.Fatal(err)
	}
	e := newExecStore(h)
	t.Cleanup(func() { e.close(context.Background()) })
	return e
}

func skey(t *testing.T, principal, id string) pool.SessionKey {
	t.Helper()
	i, err := pool.ParseIdentifier(id)
	if err != nil {
		t.Fatal(err)
	}
	return pool.Key(pool.Principal(principal), i)
}

// store runs one quick execution through reserve and finish, as the
// synchronous executions route does.
func store(e *execStore, poolName string, k pool.SessionKey, id, stdout string) error {
	x, err := e.reserve(poolName, k, id)
	if err != nil {
		return err
	}
	e.finish(x, &outcome{id: id, identifier: k.Identifier.String(), stdout: stdout, status: sandbox.StatusOK})
	return nil
}

// TestF5ExecStorePerPrincipal: execution ids are scoped by principal, a
// used id is refused with its own code, and one principal's executions
// neither overwrite nor evict another's.
func TestF5ExecStorePerPrincipal(t *testing.T) {
	e := testStore(t)
	alice, bob := skey(t, "alice", "conversation"), skey(t, "bob", "conversation")
	const op = "chosen-operation-1"
	if err := store(e, "py", alice, op, "alice's"); err != nil {
		t.Fatal(err)
	}
	// Another principal may use the same id: its own, not alice's.
	if err := store(e, "py", bob, op, "bob's"); err != nil {
		t.Fatalf("bob reusing alice's id: %v", err)
	}
	if o := e.get("py", alice, op); o == nil || o.stdout != "alice's" {
		t.Fatalf("alice's result after bob used the id: %+v", o)
	}
	if o := e.get("py", bob, op); o == nil || o.stdout != "bob's" {
		t.Fatalf("bob's result: %+v", o)
	}
	// The same principal may not use an id twice, whichever session.
	for _, k := range []pool.SessionKey{alice, skey(t, "alice", "other-conversation")} {
		err := store(e, "py", k, op, "again")
		if errcode.Of(err) != codeOperationInUse || statusOf(errcode.Of(err)) != 409 {
			t.Fatalf("reusing an id: %v", err)
		}
	}
	if o := e.get("py", alice, op); o == nil || o.stdout != "alice's" {
		t.Fatalf("alice's result after a refused reuse: %+v", o)
	}
	// Another session or pool of alice's does not see it.
	if e.get("py", skey(t, "alice", "other-conversation"), op) != nil || e.get("other", alice, op) != nil {
		t.Fatal("a result is visible outside its session")
	}

	// Many quick executions by bob evict only bob's oldest.
	for i := range maxStoredPerPrincipal + 100 {
		if err := store(e, "py", bob, fmt.Sprintf("bob-op-%05d", i), "x"); err != nil {
			t.Fatalf("bob's execution %d: %v", i, err)
		}
	}
	if o := e.get("py", alice, op); o == nil || o.stdout != "alice's" {
		t.Fatal("bob's executions evicted alice's result")
	}
	if e.get("py", bob, "bob-op-00000") != nil || e.get("py", bob, fmt.Sprintf("bob-op-%05d", maxStoredPerPrincipal+99)) == nil {
		t.Fatal("bob's cap: want his oldest gone and his newest kept")
	}
	if n := len(e.by["bob"].byID); n != maxStoredPerPrincipal {
		t.Fatalf("bob holds %d results, want %d", n, maxStoredPerPrincipal)
	}

	// A dropped reservation (the execution never ran) frees its id.
	x, err := e.reserve("py", alice, "never-ran-1")
	if err != nil {
		t.Fatal(err)
	}
	if o := e.get("py", alice, "never-ran-1"); o == nil || !o.running {
		t.Fatalf("a reserved execution: %+v", o)
	}
	e.drop(x)
	if err := store(e, "py", alice, "never-ran-1", "ran"); err != nil {
		t.Fatalf("after drop: %v", err)
	}

	// Results expire; the id is then free again.
	now := time.Now()
	e.now = func() time.Time { return now.Add(execTTL + time.Minute) }
	if e.get("py", alice, op) != nil {
		t.Fatal("an expired result is still served")
	}
	if err := store(e, "py", alice, op, "later"); err != nil {
		t.Fatalf("reusing an expired id: %v", err)
	}
}

// TestF5ExecStoreRunningNeverEvicted: a principal whose stored results are
// all running is refused rather than evicting anything, and the bound of
// all principals together evicts from the largest holder only.
func TestF5ExecStoreRunningNeverEvicted(t *testing.T) {
	e := testStore(t)
	e.maxPer, e.maxTotal = 4, 10
	bob := skey(t, "bob", "conversation")
	for i := range 4 {
		if _, err := e.reserve("py", bob, fmt.Sprintf("running-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.reserve("py", bob, "running-4"); errcode.Of(err) != errcode.RateLimited {
		t.Fatalf("a fifth running execution: %v", err)
	}
	for i := range 4 {
		if o := e.get("py", bob, fmt.Sprintf("running-%d", i)); o == nil || !o.running {
			t.Fatalf("running execution %d: %+v", i, o)
		}
	}
	// Fill the server: carol 4 finished, dave 2 finished (10 in all).
	carol, dave := skey(t, "carol", "conversation"), skey(t, "dave", "conversation")
	for i := range 4 {
		if err := store(e, "py", carol, fmt.Sprintf("carol-op-%d", i), "c"); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 2 {
		if err := store(e, "py", dave, fmt.Sprintf("dave-op-%d", i), "d"); err != nil {
			t.Fatal(err)
		}
	}
	// A new principal's result takes the oldest of the largest holder
	// with a finished result to spare (carol), never a running one, never
	// dave's.
	erin := skey(t, "erin", "conversation")
	if err := store(e, "py", erin, "erin-op-0", "e"); err != nil {
		t.Fatal(err)
	}
	if e.total != 10 || e.get("py", erin, "erin-op-0") == nil || e.get("py", dave, "dave-op-0") == nil {
		t.Fatalf("after erin: %d stored", e.total)
	}
	lost := 0
	for i := range 4 {
		if e.get("py", carol, fmt.Sprintf("carol-op-%d", i)) == nil {
			lost++
		}
	}
	if lost != 1 || e.get("py", carol, "carol-op-0") != nil {
		t.Fatalf("carol lost %d results, want her oldest only", lost)
	}
}

// TestF5AsyncCapPerPrincipal: one principal's asynchronous executions are
// capped without touching another's, and each holds what it was given
// until it ends.
func TestF5AsyncCapPerPrincipal(t *testing.T) {
	e := testStore(t)
	e.maxAsync = 3
	block := make(chan struct{})
	unblock := sync.OnceFunc(func() { close(block) })
	t.Cleanup(unblock) // before the store's close, even on failure
	var mu sync.Mutex
	released := 0
	held := func() { mu.Lock(); released++; mu.Unlock() }
	run := func(ctx context.Context) (*outcome, error) {
		select {
		case <-block:
		case <-ctx.Done():
		}
		return &outcome{async: true, status: sandbox.StatusOK, stdout: "done"}, nil
	}
	bob, alice := skey(t, "bob", "conversation"), skey(t, "alice", "conversation")
	for i := range 3 {
		if err := e.start("py", bob, fmt.Sprintf("async-op-%d", i), held, run); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.start("py", bob, "async-op-3", held, run); errcode.Of(err) != errcode.RateLimited {
		t.Fatalf("bob's fourth: %v", err)
	}
	if err := e.start("py", alice, "async-op-0", held, run); err != nil {
		t.Fatalf("alice while bob is at his cap: %v", err)
	}
	if err := e.start("py", alice, "async-op-0", held, run); errcode.Of(err) != codeOperationInUse {
		t.Fatalf("a running id again: %v", err)
	}
	mu.Lock()
	if released != 2 {
		t.Errorf("%d holds released by refusals, want 2", released)
	}
	mu.Unlock()
	unblock()
	e.close(context.Background())
	mu.Lock()
	defer mu.Unlock()
	if released != 6 {
		t.Errorf("%d holds released, want all 6", released)
	}
	if o := e.get("py", bob, "async-op-2"); o == nil || o.running || o.stdout != "done" {
		t.Errorf("a finished asynchronous execution: %+v", o)
	}
}
