package api

import (
	"errors"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/sandpool/sandpool/internal/errcode"
	"github.com/sandpool/sandpool/pool"
)

// Limits bound what one request, and one principal, may ask of the
// server. Every field has a default.
type Limits struct {
	// RequestsPerSecond and Burst: each principal's request rate (default
	// 100/s, burst 200).
	RequestsPerSecond float64 `yaml:"requestsPerSecond"`
	Burst             int     `yaml:"burst"`
	// ConcurrentRequests: each principal's requests in flight (default 64).
	ConcurrentRequests int `yaml:"concurrentRequests"`
	// MaxRequestBytes bounds JSON bodies (default 4Mi); MaxCodeBytes the
	// code of one execution (default 1Mi); MaxUploadBytes one uploaded
	// file (default 128Mi, as Azure).
	MaxRequestBytes pool.Quantity `yaml:"maxRequestBytes"`
	MaxCodeBytes    pool.Quantity `yaml:"maxCodeBytes"`
	MaxUploadBytes  pool.Quantity `yaml:"maxUploadBytes"`
	// MaxForwardBytes bounds a request body forwarded to a custom
	// container (default 1Gi).
	MaxForwardBytes pool.Quantity `yaml:"maxForwardBytes"`
	// MaxResponseBytes bounds the images one execution returns (default 32Mi).
	MaxResponseBytes pool.Quantity `yaml:"maxResponseBytes"`
	// BodyTimeoutSeconds bounds reading a JSON body (default 30) and
	// UploadTimeoutSeconds reading an upload (default 600): slow clients
	// cannot hold a connection open forever.
	BodyTimeoutSeconds   int `yaml:"bodyTimeoutSeconds"`
	UploadTimeoutSeconds int `yaml:"uploadTimeoutSeconds"`
	// MaxConnections caps the server's open connections (default 1024)
	// and MaxConnectionsPerAddress those from one remote address (default
	// 256); a connection over either is closed at once.
	MaxConnections           int `yaml:"maxConnections"`
	MaxConnectionsPerAddress int `yaml:"maxConnectionsPerAddress"`
	// MaxStreamsPerPrincipal caps each principal's open WebSockets, MCP
	// notification streams and running asynchronous executions together
	// (default 16).
	MaxStreamsPerPrincipal int `yaml:"maxStreamsPerPrincipal"`
	// MaxSessionsPerPrincipal is the default of every pool's
	// scaleConfiguration.maxSessionsPerPrincipal: the sessions one
	// principal may hold in a pool at once (default: the pool's
	// maxConcurrentSessions, that is no limit of its own).
	MaxSessionsPerPrincipal int `yaml:"maxSessionsPerPrincipal"`
}

// Normalize fills in defaults and checks the values, naming bad fields.
func (l *Limits) Normalize() error {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defQ := func(v *pool.Quantity, d pool.Quantity) {
		if *v == 0 {
			*v = d
		}
	}
	if l.RequestsPerSecond == 0 {
		l.RequestsPerSecond = 100
	}
	def(&l.Burst, 200)
	def(&l.ConcurrentRequests, 64)
	defQ(&l.MaxRequestBytes, 4<<20)
	defQ(&l.MaxCodeBytes, 1<<20)
	defQ(&l.MaxUploadBytes, 128<<20)
	defQ(&l.MaxResponseBytes, 32<<20)
	defQ(&l.MaxForwardBytes, 1<<30)
	def(&l.BodyTimeoutSeconds, 30)
	def(&l.UploadTimeoutSeconds, 600)
	def(&l.MaxConnections, 1024)
	def(&l.MaxConnectionsPerAddress, 256)
	def(&l.MaxStreamsPerPrincipal, 16)
	var errs []error
	if l.RequestsPerSecond < 0 || math.IsNaN(l.RequestsPerSecond) || math.IsInf(l.RequestsPerSecond, 0) {
		errs = append(errs, errors.New("limits.requestsPerSecond: must be positive"))
	}
	for name, v := range map[string]int{"burst": l.Burst, "concurrentRequests": l.ConcurrentRequests,
		"bodyTimeoutSeconds": l.BodyTimeoutSeconds, "uploadTimeoutSeconds": l.UploadTimeoutSeconds,
		"maxConnections": l.MaxConnections, "maxConnectionsPerAddress": l.MaxConnectionsPerAddress,
		"maxStreamsPerPrincipal": l.MaxStreamsPerPrincipal, "maxSessionsPerPrincipal": l.MaxSessionsPerPrincipal} {
		if v < 0 {
			errs = append(errs, errors.New("limits."+name+": must be positive"))
		}
	}
	for name, v := range map[string]pool.Quantity{"maxRequestBytes": l.MaxRequestBytes, "maxCodeBytes": l.MaxCodeBytes,
		"maxUploadBytes": l.MaxUploadBytes, "maxResponseBytes": l.MaxResponseBytes, "maxForwardBytes": l.MaxForwardBytes} {
		if v < 0 {
			errs = append(errs, errors.New("limits."+name+": must be positive"))
		}
	}
	if l.MaxCodeBytes > l.MaxRequestBytes {
		errs = append(errs, errors.New("limits.maxCodeBytes: must not exceed maxRequestBytes"))
	}
	return errors.Join(errs...)
}

// limiter applies the per-principal rate and concurrency limits.
type limiter struct {
	rps   rate.Limit
	burst int
	conc  int

	streams int

	mu    sync.Mutex
	by    map[pool.Principal]*principalLimit
	sweep time.Time
}

type principalLimit struct {
	rate     *rate.Limiter
	inflight int
	streams  int // open WebSockets and MCP notification streams
	seen     time.Time
}

// limitError is a refusal with the seconds to wait.
type limitError struct {
	error
	retryAfter int
}

func newLimiter(l Limits) *limiter {
	return &limiter{rps: rate.Limit(l.RequestsPerSecond), burst: l.Burst, conc: l.ConcurrentRequests,
		streams: l.MaxStreamsPerPrincipal, by: map[pool.Principal]*principalLimit{}}
}

// admit lets a request of p in, or says when to retry; release must be
// called when the request ends.
func (l *limiter) admit(p pool.Principal) (release func(), err error) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.sweep) > time.Minute {
		// Forget principals idle for 10 minutes: memory stays bounded by
		// recent callers.
		for k, v := range l.by {
			if v.inflight == 0 && v.streams == 0 && now.Sub(v.seen) > 10*time.Minute {
				delete(l.by, k)
			}
		}
		l.sweep = now
	}
	pl := l.principal(p, now)
	if pl.inflight >= l.conc {
		return nil, &limitError{errcode.New(errcode.RateLimited, "too many requests in flight for this caller"), 1}
	}
	res := pl.rate.ReserveN(now, 1)
	if d := res.DelayFrom(now); !res.OK() || d > 0 {
		res.CancelAt(now)
		return nil, &limitError{errcode.New(errcode.RateLimited, "request rate limit exceeded for this caller"), max(1, int(math.Ceil(d.Seconds())))}
	}
	pl.inflight++
	return func() {
		l.mu.Lock()
		pl.inflight--
		l.mu.Unlock()
	}, nil
}

func (e *limitError) Unwrap() error { return e.error }

// principal returns p's entry, made on first use. l.mu is held.
func (l *limiter) principal(p pool.Principal, now time.Time) *principalLimit {
	pl := l.by[p]
	if pl == nil {
		pl = &principalLimit{rate: rate.NewLimiter(l.rps, l.burst)}
		l.by[p] = pl
	}
	pl.seen = now
	return pl
}

// openStream counts a long-lived stream of p (a WebSocket, an MCP
// notification stream) against Limits.MaxStreamsPerPrincipal; release
// must be called when it ends.
func (l *limiter) openStream(p pool.Principal) (release func(), err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	pl := l.principal(p, time.Now())
	if pl.streams >= l.streams {
		return nil, &limitError{errcode.Newf(errcode.RateLimited, "this caller already has %d open streams (WebSockets and MCP notification streams)", l.streams), 5}
	}
	pl.streams++
	return sync.OnceFunc(func() {
		l.mu.Lock()
		pl.streams--
		l.mu.Unlock()
	}), nil
}

// hold counts work of p that outlives the request asking for it (an
// asynchronous execution) as the streams are counted: one of the
// principal's requests in flight and one of its streams, until release is
// called (release is idempotent). Holds are not rate limited: the request
// that asks for one was.
func (l *limiter) hold(p pool.Principal) (release func(), err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	pl := l.principal(p, time.Now())
	if pl.streams >= l.streams {
		return nil, &limitError{errcode.Newf(errcode.RateLimited, "this caller already has %d open streams and asynchronous executions", l.streams), 5}
	}
	if pl.inflight >= l.conc {
		return nil, &limitError{errcode.New(errcode.RateLimited, "too many requests in flight for this caller"), 1}
	}
	pl.streams++
	pl.inflight++
	return sync.OnceFunc(func() {
		l.mu.Lock()
		pl.streams--
		pl.inflight--
		l.mu.Unlock()
	}), nil
}
