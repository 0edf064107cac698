package pool

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/sandpool/sandpool/internal/errcode"
	"github.com/sandpool/sandpool/sandbox"
)

// Engine is what a pool needs from a sandbox backend (sandbox/podman).
type Engine interface {
	// Create creates, starts and boots a sandbox: kernel warm, imports done.
	Create(ctx context.Context, spec sandbox.Spec) (*sandbox.Sandbox, error)
	// Open connects to a running sandbox a previous server created.
	Open(ctx context.Context, id string) (*sandbox.Sandbox, error)
	// List lists sandboxes carrying every label given.
	List(ctx context.Context, labels map[string]string) ([]sandbox.Summary, error)
	// Remove kills and removes a sandbox; a missing one is not an error.
	Remove(ctx context.Context, id string) error
}

// Checkpointer is an optional Engine capability, found by type assertion:
// saving a running sandbox to a directory (the sandbox stops once the
// image is verified) and restoring it into a new sandbox of the same spec
// (sandbox/podman under the current gVisor). Hibernation builds on it.
type Checkpointer interface {
	// CanCheckpoint says why this engine's runtime cannot, or nil.
	CanCheckpoint() error
	Checkpoint(ctx context.Context, sb *sandbox.Sandbox, dir string, opt sandbox.CheckpointOptions) (sandbox.CheckpointImage, error)
	Restore(ctx context.Context, spec sandbox.Spec, dir string) (*sandbox.Sandbox, error)
}

// runtimeVersioner is an optional Engine capability: the version of the
// runtime it runs, shown in the pool's status.
type runtimeVersioner interface {
	RuntimeVersion() string
}

// Labels on every sandbox of a pool. Values are never raw identifiers.
const (
	// LabelServer names the server (Options.ServerID) owning the sandbox.
	LabelServer = "sandpool.server"
	// LabelPool names the pool.
	LabelPool = "sandpool.pool"
	// LabelSpec is a hash of the sandbox spec, so a restarted server with a
	// changed configuration does not hand out stale warm sandboxes.
	LabelSpec = "sandpool.spec"
)

// State is where a sandbox is in its life.
type State string

// States, as in Azure's pool counts.
const (
	// Pending: being created (container starting, kernel warming).
	StatePending State = "Pending"
	// Ready: warm, in the pool, not yet bound to a session.
	StateReady State = "Ready"
	// Allocated: bound to a session; never reused by another.
	StateAllocated State = "Allocated"
	// Deleting: being removed.
	StateDeleting State = "Deleting"
)

// Errors callers branch on (each carries its errcode).
var (
	// ErrCapacity: the pool has maxConcurrentSessions sessions.
	ErrCapacity = errcode.New(errcode.CapacityExceeded, "the session pool is at its maximum number of concurrent sessions; retry later or end a session")
	// ErrPrincipalQuota: the caller holds maxSessionsPerPrincipal sessions
	// of the pool.
	ErrPrincipalQuota = errcode.New(errcode.PrincipalSessionQuota, "this caller holds the maximum number of sessions of this pool allowed to one caller; end one of them or retry later")
	// ErrSessionLost: the session's sandbox died; its state is gone. The
	// next request with the identifier starts a new session.
	ErrSessionLost = errcode.New(errcode.SessionLost, "the session's sandbox stopped and its state is lost; the next request starts a new session")
	// ErrSessionDeleted: the session was deleted while the request ran.
	ErrSessionDeleted = errcode.New(errcode.SessionLost, "the session was deleted")
	// ErrNoSession: no session has this identifier.
	ErrNoSession = errcode.New(errcode.NotFound, "no session has this identifier")
	// ErrShuttingDown: the pool is closing.
	ErrShuttingDown = errcode.New(errcode.ShuttingDown, "the server is shutting down")
)

// Settings are what every pool of a server shares.
type Settings struct {
	// ServerID is put on every sandbox ([A-Za-z0-9._-]); a server adopts
	// and reaps only sandboxes with its own id. Default "sandpool".
	ServerID string
	// Metrics default to an unregistered set.
	Metrics *Metrics
	// Labels are added to every sandbox (keys "sandpool.*"), e.g. to mark
	// a test run.
	Labels map[string]string
	Log    zerolog.Logger
	// Tick is how often lifecycle rules are applied; default 1s.
	Tick time.Duration
	// HealthInterval is how often sandboxes are checked for death;
	// default 5s.
	HealthInterval time.Duration
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

func (s *Settings) setDefaults() error {
	setDef(&s.ServerID, "sandpool")
	if s.Tick <= 0 {
		s.Tick = time.Second
	}
	if s.HealthInterval <= 0 {
		s.HealthInterval = 5 * time.Second
	}
	if s.Now == nil {
		s.Now = time.Now
	}
	if s.Metrics == nil {
		m, err := NewMetrics(nil)
		if err != nil {
			return err
		}
		s.Metrics = m
	}
	return nil
}

// Options are a pool's dependencies.
type Options struct {
	Engine Engine
	Hasher *Hasher
	// StateDir holds the pool's state file.
	StateDir string
	Settings
}

// Pool is one session pool: a warm pool of Ready sandboxes and the
// sessions bound to sandboxes. Its methods are safe for concurrent use.
type Pool struct {
	cfg    Config
	opt    Options
	eng    Engine
	hash   *Hasher
	store  *store
	log    zerolog.Logger
	spec   sandbox.Spec
	labels map[string]string // identifying this pool's sandboxes
	// upstreamKey keys the session ids custom containers are told.
	upstreamKey []byte

	creating chan struct{} // creation slots
	kick     chan struct{} // wakes the maintainer
	ctx      context.Context
	cancel   context.CancelFunc
	bg       sync.WaitGroup // background work: maintainer, creations, removals

	mu       sync.Mutex
	ready    []*sandbox.Sandbox // warm, oldest first
	warming  int                // warm-pool creations in flight
	sessions map[string]*Session
	ending   []*Session           // out of the map, removed once idle
	lost     map[string]time.Time // hashes whose loss is not yet reported
	active   int                  // sessions counted against capacity
	// held counts the sessions of active by principal, for
	// maxSessionsPerPrincipal; principals holding none are absent.
	held     map[Principal]int
	deleting int
	inflight int           // requests in flight, for a draining Close
	idle     chan struct{} // closed when inflight reaches 0 while closing
	closed   bool
	failures int // consecutive creation failures
	lastErr  string
	retryAt  time.Time
	adopted  int
	python   string // Python version of the last sandbox booted
	// runtimeVersion is the engine's runtime version, when it says.
	runtimeVersion string
	started        time.Time
}

// Session is a session: a sandbox bound to a (principal, identifier) for
// its whole life.
type Session struct {
	p       *Pool
	hash    string
	key     SessionKey
	created time.Time
	ready   chan struct{} // closed once sb or err is set
	err     error

	// Guarded by p.mu.
	sb         *sandbox.Sandbox
	state      State
	lastAccess time.Time
	inflight   int
	deleted    bool
}

// New starts a pool: it adopts the sandboxes a previous server left (see
// Manager), then keeps the warm pool filled until Close.
func New(ctx context.Context, cfg Config, opt Options) (*Pool, error) {
	if err := cfg.Normalize(); err != nil {
		return nil, err
	}
	if opt.Engine == nil || opt.Hasher == nil || opt.StateDir == "" {
		return nil, errors.New("pool: Engine, Hasher and StateDir are required")
	}
	if err := opt.setDefaults(); err != nil {
		return nil, err
	}
	st, err := newStore(opt.StateDir, cfg.Name, opt.Hasher)
	if err != nil {
		return nil, err
	}
	p := &Pool{
		cfg:      cfg,
		opt:      opt,
		eng:      opt.Engine,
		hash:     opt.Hasher,
		store:    st,
		log:      opt.Log.With().Str("pool", cfg.Name).Logger(),
		labels:   map[string]string{LabelServer: opt.ServerID, LabelPool: cfg.Name},
		creating: make(chan struct{}, cfg.Scale.CreationConcurrency),
		kick:     make(chan struct{}, 1),
		sessions: map[string]*Session{},
		lost:     map[string]time.Time{},
		held:     map[Principal]int{},
		started:  opt.Now(),
	}
	p.upstreamKey = opt.Hasher.Derive("custom container session id")
	if v, ok := opt.Engine.(runtimeVersioner); ok {
		p.runtimeVersion = v.RuntimeVersion()
	}
	spec, err := cfg.spec(nil)
	if err != nil {
		return nil, err
	}
	p.labels[LabelSpec] = specHash(spec)
	all := maps.Clone(opt.Labels)
	if all == nil {
		all = map[string]string{}
	}
	maps.Copy(all, p.labels)
	if spec, err = cfg.spec(all); err != nil {
		return nil, err
	}
	p.spec = spec
	if err := p.adopt(ctx); err != nil {
		return nil, err
	}
	p.ctx, p.cancel = context.WithCancel(context.WithoutCancel(ctx))
	p.bg.Add(1)
	go p.maintain()
	p.poke()
	return p, nil
}

// specHash identifies a spec's content (labels excluded).
func specHash(s sandbox.Spec) string {
	s.Labels = nil
	h := sha256.Sum256(fmt.Appendf(nil, "%+v", s))
	return hex.EncodeToString(h[:8])
}

// Started is when the pool started (in this server).
func (p *Pool) Started() time.Time { return p.started }

// Name is the pool's name.
func (p *Pool) Name() string { return p.cfg.Name }

// Config is the pool's configuration with defaults filled in.
func (p *Pool) Config() Config { return p.cfg }

func (p *Pool) poke() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// failFast is the number of consecutive creation failures after which a
// new session is refused at once while the pool backs off.
const failFast = 2

// refillDelay separates an allocation from the refill it causes.
const refillDelay = 250 * time.Millisecond

// acquire returns the session of k, allocating one on first use, and
// counts a request in flight on it until release is called.
func (p *Pool) acquire(ctx context.Context, k SessionKey) (*Session, func(), error) {
	if k.Identifier.IsZero() {
		return nil, nil, errcode.New(errcode.InvalidIdentifier, "a session identifier is required")
	}
	h := p.hash.Hash(k)
	now := p.opt.Now()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, nil, ErrShuttingDown
	}
	if _, ok := p.lost[h]; ok {
		delete(p.lost, h)
		p.mu.Unlock()
		return nil, nil, ErrSessionLost
	}
	s := p.sessions[h]
	fresh := s == nil
	if fresh {
		// The caller's own quota first, when it is one (below the pool's
		// capacity): it says what the caller can do (end one of its own).
		if sc := p.cfg.Scale; sc.MaxSessionsPerPrincipal < sc.MaxConcurrentSessions && p.held[k.Principal] >= sc.MaxSessionsPerPrincipal {
			p.mu.Unlock()
			return nil, nil, ErrPrincipalQuota
		}
		if p.active >= p.cfg.Scale.MaxConcurrentSessions {
			p.mu.Unlock()
			return nil, nil, ErrCapacity
		}
		if len(p.ready) == 0 && p.failures >= failFast && now.Before(p.retryAt) {
			// Creation keeps failing (a container that never gets ready,
			// a missing image): say so now rather than after another
			// failed attempt. The warm pool retries with backoff.
			err := errcode.Newf(errcode.Unavailable, "the pool cannot start sessions right now: %s", p.lastErr)
			p.mu.Unlock()
			return nil, nil, err
		}
		s = &Session{p: p, hash: h, key: k, created: now, ready: make(chan struct{}), state: StatePending}
		p.countLocked(s, 1)
		p.sessions[h] = s
	}
	s.inflight++
	s.lastAccess = now
	p.inflight++
	var warm *sandbox.Sandbox
	if fresh && len(p.ready) > 0 {
		warm, p.ready = p.ready[0], p.ready[1:]
	}
	p.mu.Unlock()

	release := func() { p.release(s) }
	if fresh {
		t0 := time.Now()
		source := "warm"
		if warm == nil {
			source = "cold"
		}
		if err := p.allocate(ctx, s, warm); err != nil {
			release()
			return nil, nil, err
		}
		p.opt.Metrics.allocation.WithLabelValues(p.cfg.Name, source).Observe(time.Since(t0).Seconds())
		// Refill a moment later: creating a sandbox takes the CPU that the
		// session's first execution, typically right behind, needs.
		time.AfterFunc(refillDelay, p.poke)
	}
	select {
	case <-s.ready:
	case <-ctx.Done():
		release()
		return nil, nil, errcode.Wrap(errcode.Canceled, "the request was canceled", ctx.Err())
	}
	if s.err != nil {
		release()
		return nil, nil, s.err
	}
	return s, release, nil
}

// allocate binds a new session to warm, or to a sandbox created for it.
// Concurrent requests for the session wait on s.ready meanwhile.
func (p *Pool) allocate(ctx context.Context, s *Session, warm *sandbox.Sandbox) error {
	sb := warm
	if sb == nil {
		// The creation outlives a caller that goes away: others may be
		// waiting for this session, and a half-made sandbox must not leak.
		var err error
		sb, err = p.create(context.WithoutCancel(ctx))
		if err != nil {
			p.mu.Lock()
			delete(p.sessions, s.hash)
			p.countLocked(s, -1)
			p.mu.Unlock()
			s.err = err
			close(s.ready)
			return err
		}
	}
	p.mu.Lock()
	s.sb, s.state = sb, StateAllocated
	entries := p.entriesLocked()
	p.mu.Unlock()
	// Record the allocation before anyone uses the sandbox: after a crash,
	// a sandbox missing from the state file was never handed out.
	if err := p.store.save(entries); err != nil {
		p.log.Error().Err(err).Msg("saving pool state")
	}
	close(s.ready)
	p.log.Debug().Str("session", s.hash).Msg("session allocated")
	return nil
}

// release ends a request on s.
func (p *Pool) release(s *Session) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s.inflight--
	s.lastAccess = p.opt.Now()
	p.inflight--
	if p.inflight == 0 && p.idle != nil {
		close(p.idle)
		p.idle = nil
	}
}

// create makes one sandbox, waiting for a creation slot.
func (p *Pool) create(ctx context.Context) (*sandbox.Sandbox, error) {
	select {
	case p.creating <- struct{}{}:
	case <-ctx.Done():
		return nil, errcode.Wrap(errcode.Canceled, "the request was canceled", ctx.Err())
	}
	defer func() { <-p.creating }()
	ctx, cancel := context.WithTimeout(ctx, p.spec.StartTimeout+30*time.Second)
	defer cancel()
	sb, err := p.eng.Create(ctx, p.spec)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil && p.ctx != nil && p.ctx.Err() != nil {
		return nil, err // closing: not a failure of the engine
	}
	if err != nil {
		p.failures++
		p.lastErr = errcode.Public(err)
		p.retryAt = p.opt.Now().Add(backoff(p.failures))
		p.opt.Metrics.failures.WithLabelValues(p.cfg.Name).Inc()
		p.log.Warn().Err(err).Int("failures", p.failures).Msg("sandbox creation failed")
		return nil, err
	}
	p.failures, p.lastErr = 0, ""
	p.python = sb.BootInfo.Kernel.Python
	return sb, nil
}

// backoff is the pause of warm refills after n consecutive failures.
func backoff(n int) time.Duration {
	return min(time.Second<<min(n-1, 6), time.Minute)
}

// maintain refills the warm pool, applies lifecycle rules and checks
// sandbox health until Close.
func (p *Pool) maintain() {
	defer p.bg.Done()
	tick := time.NewTicker(p.opt.Tick)
	defer tick.Stop()
	health := time.NewTicker(p.opt.HealthInterval)
	defer health.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-p.kick:
		case <-tick.C:
			p.expire()
		case <-health.C:
			p.checkHealth()
		}
		p.refill()
		p.Status() // updates the gauges
	}
}

// refill starts warm creations up to readySessionInstances.
func (p *Pool) refill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.opt.Now().Before(p.retryAt) {
		return
	}
	for len(p.ready)+p.warming < p.cfg.ready() {
		p.warming++
		p.bg.Add(1)
		go func() {
			defer p.bg.Done()
			sb, err := p.create(p.ctx)
			p.mu.Lock()
			p.warming--
			if err == nil && p.closed {
				sb.Close() // keep it running: the next server adopts it
			} else if err == nil {
				p.ready = append(p.ready, sb)
			}
			p.mu.Unlock()
			p.poke()
		}()
	}
}

// expire ends sessions past their cooldown or maximum life, removes the
// sandboxes of ended sessions once idle, and forgets old losses.
func (p *Pool) expire() {
	now := p.opt.Now()
	p.mu.Lock()
	var gone []*sandbox.Sandbox
	changed := false
	for h, s := range p.sessions {
		if s.state != StateAllocated {
			continue
		}
		// OnContainerExit sessions have no cooldown: they end with their
		// container (checkHealth) or at their maximum life.
		idle := s.inflight == 0 && now.Sub(s.lastAccess) >= p.cfg.cooldown() && p.cfg.Lifecycle.LifecycleType == Timed
		old := now.Sub(s.created) >= p.cfg.maxAlive()
		if idle || old {
			// Out of the map at once: the next request with this
			// identifier starts a new session, even while an execution
			// in flight keeps this sandbox alive.
			delete(p.sessions, h)
			p.ending = append(p.ending, s)
			changed = true
		}
	}
	p.ending = slices.DeleteFunc(p.ending, func(s *Session) bool {
		if s.inflight > 0 {
			return false
		}
		gone = append(gone, p.retireLocked(s))
		return true
	})
	for h, t := range p.lost {
		if now.Sub(t) > p.cfg.cooldown() {
			delete(p.lost, h)
		}
	}
	p.unlockThen(changed, gone)
}

// unlockThen releases p.mu, then saves the state (when changed) and
// removes sbs: file writes and engine calls never run under the lock.
func (p *Pool) unlockThen(changed bool, sbs []*sandbox.Sandbox) {
	var entries []stateEntry
	if changed {
		entries = p.entriesLocked()
	}
	p.mu.Unlock()
	if changed {
		p.saveOrLog(entries)
	}
	for _, sb := range sbs {
		p.remove(sb)
	}
}

// retireLocked marks s deleting and frees its capacity. The caller
// removes the returned sandbox (outside the lock).
func (p *Pool) retireLocked(s *Session) *sandbox.Sandbox {
	s.state = StateDeleting
	p.countLocked(s, -1)
	p.deleting++
	return s.sb
}

// countLocked counts s in (n = 1) or out of (n = -1) the sessions held
// against capacity and against its principal's quota.
func (p *Pool) countLocked(s *Session, n int) {
	p.active += n
	if c := p.held[s.key.Principal] + n; c > 0 {
		p.held[s.key.Principal] = c
	} else {
		delete(p.held, s.key.Principal)
	}
}

// remove removes a sandbox in the background.
func (p *Pool) remove(sb *sandbox.Sandbox) {
	p.bg.Add(1)
	go func() {
		defer p.bg.Done()
		sb.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := p.eng.Remove(ctx, sb.ID); err != nil {
			p.log.Warn().Err(err).Msg("removing a sandbox")
		}
		p.mu.Lock()
		p.deleting--
		p.mu.Unlock()
	}()
}

func (p *Pool) saveOrLog(entries []stateEntry) {
	if err := p.store.save(entries); err != nil {
		p.log.Error().Err(err).Msg("saving pool state")
	}
}

// entriesLocked is the state file's content: allocated sessions.
func (p *Pool) entriesLocked() []stateEntry {
	var out []stateEntry
	for _, s := range p.sessions {
		if s.state == StateAllocated {
			out = append(out, stateEntry{Container: s.sb.ID, Hash: s.hash, Key: p.store.seal(s.key, s.sb.ID, s.hash), Created: s.created, LastAccess: s.lastAccess})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Hash < out[j].Hash })
	return out
}

// list lists every sandbox of this pool and server. Not by p.labels: the
// spec label would hide adopted sessions running on an older spec.
func (p *Pool) list(ctx context.Context) ([]sandbox.Summary, error) {
	return p.eng.List(ctx, map[string]string{LabelServer: p.labels[LabelServer], LabelPool: p.cfg.Name})
}

// checkHealth finds sandboxes that stopped: their sessions are lost (and
// reported once), warm ones are dropped. A failing engine changes nothing.
func (p *Pool) checkHealth() {
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	list, err := p.list(ctx)
	if err != nil {
		return
	}
	running := map[string]bool{}
	for _, c := range list {
		running[c.ID] = c.Running
	}
	p.mu.Lock()
	var dead []*sandbox.Sandbox
	p.ready = slices.DeleteFunc(p.ready, func(sb *sandbox.Sandbox) bool {
		if running[sb.ID] {
			return false
		}
		dead = append(dead, sb)
		return true
	})
	changed := false
	for _, s := range p.sessions {
		if s.state == StateAllocated && !running[s.sb.ID] {
			p.loseLocked(s)
			dead = append(dead, s.sb)
			changed = true
		}
	}
	p.deleting += len(dead)
	p.unlockThen(changed, dead)
}

// loseLocked ends a session whose sandbox died. The loss is reported to
// the next request without one in flight to report it, except in an
// OnContainerExit pool, where a container's exit is how a session ends.
func (p *Pool) loseLocked(s *Session) {
	if p.sessions[s.hash] != s {
		return
	}
	delete(p.sessions, s.hash)
	s.state = StateDeleting
	p.countLocked(s, -1)
	if p.cfg.Lifecycle.LifecycleType == OnContainerExit {
		// The normal end of such a session: nothing to report.
		p.log.Debug().Str("session", s.hash).Msg("session ended: its container exited")
		return
	}
	if s.inflight == 0 {
		p.lost[s.hash] = p.opt.Now()
	}
	p.log.Warn().Str("session", s.hash).Msg("session lost: its sandbox stopped")
}

// lose handles an operation that found the sandbox gone.
func (p *Pool) lose(s *Session) {
	p.mu.Lock()
	was := p.sessions[s.hash] == s
	p.loseLocked(s)
	var entries []stateEntry
	if was {
		entries = p.entriesLocked()
		p.deleting++
	}
	p.mu.Unlock()
	if was {
		p.saveOrLog(entries)
		p.remove(s.sb)
	}
}

// Delete ends the session of k and removes its sandbox. Requests in flight
// on it fail.
func (p *Pool) Delete(ctx context.Context, k SessionKey) error {
	h := p.hash.Hash(k)
	p.mu.Lock()
	s := p.sessions[h]
	if s == nil || s.state != StateAllocated {
		_, lost := p.lost[h]
		delete(p.lost, h)
		p.mu.Unlock()
		if lost {
			return nil // it is gone already
		}
		return ErrNoSession
	}
	delete(p.sessions, h)
	s.deleted = true
	sb := p.retireLocked(s)
	entries := p.entriesLocked()
	p.mu.Unlock()
	p.saveOrLog(entries)
	sb.Close()
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	err := p.eng.Remove(rctx, sb.ID)
	p.mu.Lock()
	p.deleting--
	p.mu.Unlock()
	if err != nil {
		return errcode.Wrap(errcode.Unavailable, "the session's sandbox could not be removed", err)
	}
	p.log.Debug().Str("session", h).Msg("session deleted")
	return nil
}

// Close stops the pool: no new requests, requests in flight drain (until
// ctx ends), background work stops. Sandboxes keep running, warm and
// allocated alike, for the next server to adopt.
func (p *Pool) Close(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	var idle chan struct{}
	if p.inflight > 0 {
		idle = make(chan struct{})
		p.idle = idle
	}
	p.mu.Unlock()
	var err error
	if idle != nil {
		select {
		case <-idle:
		case <-ctx.Done():
			err = errcode.Wrap(errcode.Timeout, "requests were still running at shutdown", ctx.Err())
		}
	}
	p.cancel()
	p.bg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, sb := range p.ready {
		sb.Close()
	}
	for _, s := range p.sessions {
		if s.sb != nil {
			s.sb.Close()
		}
	}
	if serr := p.store.save(p.entriesLocked()); serr != nil {
		err = errors.Join(err, serr)
	}
	return err
}
