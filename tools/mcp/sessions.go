package mcp

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mark3labs/mcp-go/server"

	"github.com/sandpool/sandpool/internal/errcode"
	"github.com/sandpool/sandpool/pool"
)

// sessionIDs mints and checks Streamable HTTP session ids (Mcp-Session-Id)
// and ends idle sessions.
//
// An id is "sp2.<nonce>.<issued>.<owner>.<mac>": a random nonce, the time
// of issue (unix seconds, hex), a keyed hash of the principal it was
// minted for, and a MAC over the three with the server's secret. So an id
// cannot be invented, it names its owner without any state (and still does
// after a restart, when the conversation finds its sandbox intact), and it
// expires maxAge after issue. Ended ids are refused for the rest of their
// life in this process; a restarted server forgets them, but only their
// owner could use one, and not past its age.
//
// A session is idle when no request of it is in flight and none ended for
// idle; the sweeper ends it then (its sandbox is released). A tool call in
// flight keeps its session alive however long it runs.
type sessionIDs struct {
	secret []byte
	now    func() time.Time
	maxAge time.Duration
	idle   time.Duration
	// onEnd is called, without the lock, when a used session ends.
	onEnd func(pool.SessionKey)

	mu      sync.Mutex
	live    map[string]*liveSession
	ended   map[string]time.Time // id -> when it would have expired
	closing bool
}

// liveSession is what this process knows of a session it has seen.
type liveSession struct {
	key      pool.SessionKey
	keyed    bool // key is set (a tool call bound it)
	inflight int
	last     time.Time // end of the last request, or start of one in flight
}

const (
	idPrefix = "sp2."
	// maxEnded bounds the ended ids remembered.
	maxEnded = 100_000
)

var (
	errBadSessionID   = errors.New("invalid session id")
	errSessionOwner   = errors.New("the MCP session belongs to another principal")
	errSessionExpired = errors.New("the MCP session id has expired")
	errSessionEnded   = errors.New("the MCP session has ended")
)

func newSessionIDs(secret []byte, now func() time.Time, maxAge, idle time.Duration, onEnd func(pool.SessionKey)) *sessionIDs {
	return &sessionIDs{secret: secret, now: now, maxAge: maxAge, idle: idle, onEnd: onEnd,
		live: map[string]*liveSession{}, ended: map[string]time.Time{}}
}

func (s *sessionIDs) sum(parts ...string) string {
	m := hmac.New(sha256.New, s.secret)
	for _, p := range parts {
		m.Write([]byte(p))
		m.Write([]byte{0})
	}
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// owner is the keyed hash of principal that its ids carry.
func (s *sessionIDs) owner(p pool.Principal) string { return s.sum("mcp-owner", string(p)) }

// mint returns a new id for principal p, and counts the session as active
// from now (an initialize that is never followed up ends when idle).
func (s *sessionIDs) mint(p pool.Principal) string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	nonce := hex.EncodeToString(b[:])
	now := s.now()
	issued := strconv.FormatInt(now.Unix(), 16)
	owner := s.owner(p)
	id := idPrefix + nonce + "." + issued + "." + owner + "." + s.sum("mcp-session", nonce, issued, owner)
	s.mu.Lock()
	s.live[id] = &liveSession{last: now}
	s.mu.Unlock()
	return id
}

// parsed is a session id whose MAC checked.
type parsed struct {
	issued time.Time
	owner  string
}

func (s *sessionIDs) parse(id string) (parsed, bool) {
	rest, ok := strings.CutPrefix(id, idPrefix)
	f := strings.Split(rest, ".")
	if !ok || len(f) != 4 || len(f[0]) != 32 || len(f[1]) == 0 || len(f[1]) > 12 || len(f[2]) != 32 {
		return parsed{}, false
	}
	if !hmac.Equal([]byte(f[3]), []byte(s.sum("mcp-session", f[0], f[1], f[2]))) {
		return parsed{}, false
	}
	sec, err := strconv.ParseInt(f[1], 16, 64)
	if err != nil {
		return parsed{}, false
	}
	return parsed{issued: time.Unix(sec, 0), owner: f[2]}, true
}

// check says whether a request with session id may proceed: the id is
// genuine, not expired, not ended, and (when owned) minted for p.
// owned is false only for a token-less DELETE, where holding the id is the
// capability.
func (s *sessionIDs) check(id string, p pool.Principal, owned bool) error {
	v, ok := s.parse(id)
	if !ok {
		return errBadSessionID
	}
	if owned && !hmac.Equal([]byte(v.owner), []byte(s.owner(p))) {
		return errSessionOwner
	}
	if !s.now().Before(v.issued.Add(s.maxAge)) {
		return errSessionExpired
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, gone := s.ended[id]; gone {
		return errSessionEnded
	}
	return nil
}

// begin counts a request of session id in flight until the returned
// function is called.
func (s *sessionIDs) begin(id string) (end func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ls := s.live[id]
	if ls == nil {
		ls = &liveSession{}
		s.live[id] = ls
	}
	ls.inflight++
	ls.last = s.now()
	return sync.OnceFunc(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		ls.inflight--
		ls.last = s.now()
	})
}

// bind returns the session key of id for principal: the identifier is
// derived from the id, which must have been minted for p.
func (s *sessionIDs) bind(id string, p pool.Principal, derive func(kind, value string) pool.Identifier) (pool.SessionKey, error) {
	if err := s.check(id, p, true); err != nil {
		return pool.SessionKey{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ls := s.live[id]
	if ls == nil {
		ls = &liveSession{last: s.now()}
		s.live[id] = ls
	}
	if !ls.keyed {
		ls.key, ls.keyed = pool.Key(p, derive("session", id)), true
	}
	return ls.key, nil
}

// end ends session id (a DELETE, or the sweeper): its sandbox is released,
// unless the server is shutting down (sessions then stay for the next
// start). It reports whether the session was live.
func (s *sessionIDs) end(id string) bool {
	v, ok := s.parse(id)
	if !ok {
		return false
	}
	s.mu.Lock()
	ls, wasLive := s.live[id]
	delete(s.live, id)
	closing := s.closing
	if !closing {
		s.rememberLocked(id, v.issued.Add(s.maxAge))
	}
	s.mu.Unlock()
	if wasLive && ls.keyed && !closing {
		s.onEnd(ls.key)
	}
	return wasLive
}

func (s *sessionIDs) rememberLocked(id string, expires time.Time) {
	if len(s.ended) >= maxEnded {
		s.pruneLocked(s.now())
		for t := range s.ended {
			if len(s.ended) < maxEnded {
				break
			}
			delete(s.ended, t)
		}
	}
	s.ended[id] = expires
}

// pruneLocked forgets ended ids that have expired anyway.
func (s *sessionIDs) pruneLocked(now time.Time) {
	for id, exp := range s.ended {
		if !now.Before(exp) {
			delete(s.ended, id)
		}
	}
}

// idleIDs returns the sessions idle for the idle timeout: none of their
// requests in flight and the last one ended that long ago.
func (s *sessionIDs) idleIDs() []string {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pruneLocked(now)
	var out []string
	for id, ls := range s.live {
		if ls.inflight == 0 && now.Sub(ls.last) >= s.idle {
			out = append(out, id)
		}
	}
	return out
}

// close marks the server as shutting down: sessions ended from now on keep
// their sandboxes.
func (s *sessionIDs) close() {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
}

// sessionError is the HTTP answer to a request whose session id check
// refused.
func sessionError(err error) (int, error) {
	switch {
	case errors.Is(err, errSessionOwner):
		return http.StatusForbidden, errcode.New(errcode.Forbidden, "this MCP session was opened by another caller; open your own session")
	case errors.Is(err, errSessionExpired):
		return http.StatusNotFound, errcode.New(errcode.NotFound, "the MCP session id has expired; open a new session")
	case errors.Is(err, errSessionEnded):
		return http.StatusNotFound, errcode.New(errcode.NotFound, "the MCP session has ended; open a new session")
	}
	return http.StatusNotFound, errcode.New(errcode.NotFound, "no such MCP session; open a new session")
}

// idManager is the server.SessionIdManager mcp-go uses for one request,
// minting ids for the request's principal.
type idManager struct {
	s *sessionIDs
	p pool.Principal
}

var _ server.SessionIdManager = idManager{}

// Generate implements server.SessionIdManager.
func (m idManager) Generate() string { return m.s.mint(m.p) }

// Validate implements server.SessionIdManager. The Handler has already
// checked the id's owner; this keeps mcp-go from serving an id that is
// not genuine, expired or ended.
func (m idManager) Validate(id string) (isTerminated bool, err error) {
	switch err := m.s.check(id, "", false); {
	case errors.Is(err, errSessionEnded), errors.Is(err, errSessionExpired):
		return true, nil
	case err != nil:
		return false, err
	}
	return false, nil
}

// Terminate implements server.SessionIdManager (DELETE, and mcp-go's
// shutdown).
func (m idManager) Terminate(id string) (isNotAllowed bool, err error) {
	m.s.end(id)
	return false, nil
}

// idResolver gives mcp-go an idManager per request.
type idResolver struct {
	s         *sessionIDs
	principal func(*http.Request) pool.Principal
}

// ResolveSessionIdManager implements server.SessionIdManagerResolver; r is
// nil outside requests (mcp-go's shutdown), where no id is minted.
func (r idResolver) ResolveSessionIdManager(req *http.Request) server.SessionIdManager {
	m := idManager{s: r.s}
	if req != nil {
		m.p = r.principal(req)
	}
	return m
}
