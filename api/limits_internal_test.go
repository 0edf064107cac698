package api

import (
	"errors"
	"testing"

	"github.com/sandpool/sandpool/internal/errcode"
	"github.com/sandpool/sandpool/pool"
)

// TestF6LimiterHolds: an asynchronous execution counts against its
// principal's concurrency as a stream does: one of its requests in flight
// and one of its streams while it runs; other principals are unaffected;
// a release gives the slots back once, however often it is called.
func TestF6LimiterHolds(t *testing.T) {
	lim := Limits{ConcurrentRequests: 4, MaxStreamsPerPrincipal: 2}
	if err := lim.Normalize(); err != nil {
		t.Fatal(err)
	}
	l := newLimiter(lim)
	// Each hold is asked for by a request, which then ends.
	holdVia := func(p pool.Principal) (func(), error) {
		done, err := l.admit(p)
		if err != nil {
			return nil, err
		}
		defer done()
		return l.hold(p)
	}
	r1, err := holdVia("mallory")
	if err != nil {
		t.Fatal(err)
	}
	r2, err := holdVia("mallory")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := holdVia("mallory"); errcode.Of(err) != errcode.RateLimited {
		t.Fatalf("a third hold with maxStreamsPerPrincipal 2: %v", err)
	}
	// A stream counts against the same cap.
	if _, err := l.openStream("mallory"); errcode.Of(err) != errcode.RateLimited {
		t.Fatalf("a stream beside two holds: %v", err)
	}
	// Holds count against requests in flight: 2 held + 2 requests fill 4.
	var reqs []func()
	for range 2 {
		done, err := l.admit("mallory")
		if err != nil {
			t.Fatalf("a request beside the holds: %v", err)
		}
		reqs = append(reqs, done)
	}
	var le *limitError
	if _, err := l.admit("mallory"); !errors.As(err, &le) || errcode.Of(err) != errcode.RateLimited || le.retryAfter < 1 {
		t.Fatalf("a request past concurrentRequests counting holds: %v", err)
	}
	// Another principal is unaffected.
	if r, err := holdVia("alice"); err != nil {
		t.Fatalf("alice: %v", err)
	} else {
		r()
	}
	for _, done := range reqs {
		done()
	}
	// Releasing twice frees one slot.
	r1()
	r1()
	r3, err := holdVia("mallory")
	if err != nil {
		t.Fatalf("after a release: %v", err)
	}
	if _, err := holdVia("mallory"); errcode.Of(err) != errcode.RateLimited {
		t.Fatalf("a double release freed two slots: %v", err)
	}
	r2()
	r3()
	if pl := l.by["mallory"]; pl.streams != 0 || pl.inflight != 0 {
		t.Fatalf("after every release: %d streams, %d in flight", pl.streams, pl.inflight)
	}
}

func TestF6LimitsDefaults(t *testing.T) {
	var l Limits
	if err := l.Normalize(); err != nil || l.MaxSessionsPerPrincipal != 0 {
		t.Fatalf("defaults: %+v %v", l, err)
	}
	if bad := (Limits{MaxSessionsPerPrincipal: -1}); bad.Normalize() == nil {
		t.Error("a negative maxSessionsPerPrincipal is accepted")
	}
}
