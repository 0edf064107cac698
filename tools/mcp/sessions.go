package mcp

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/sandpool/sandpool/pool"
)

// sessionIDs mints and checks Streamable HTTP session ids (Mcp-Session-Id).
// An id is a random nonce and a MAC over it with the server's secret, so
// it cannot be invented, and it still validates after a restart (the
// conversation then finds its sandbox intact). Terminated ids are refused
// for terminatedTTL. Each id is bound to the first principal that uses it;
// another principal presenting it is refused.
type sessionIDs struct {
	secret []byte
	now    func() time.Time
	// onEnd is called, without the lock, when a used session ends.
	onEnd func(pool.SessionKey)

	mu         sync.Mutex
	bound      map[string]pool.Principal
	keys       map[string]pool.SessionKey
	terminated map[string]time.Time
	closing    bool
}

const (
	idPrefix = "sp1."
	// terminatedTTL is how long a terminated id stays refused (in this
	// process; a restart forgets, and the id then starts a fresh sandbox).
	terminatedTTL = 24 * time.Hour
	// maxTerminated bounds the terminated ids remembered.
	maxTerminated = 100_000
)

var (
	errBadSessionID = errors.New("invalid session id")
	errSessionOwner = errors.New("the MCP session belongs to another principal")
)

func newSessionIDs(secret []byte, now func() time.Time, onEnd func(pool.SessionKey)) *sessionIDs {
	return &sessionIDs{secret: secret, now: now, onEnd: onEnd,
		bound: map[string]pool.Principal{}, keys: map[string]pool.SessionKey{}, terminated: map[string]time.Time{}}
}

func (s *sessionIDs) mac(nonce string) string {
	m := hmac.New(sha256.New, s.secret)
	m.Write([]byte("mcp-session\x00" + nonce))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// Generate implements server.SessionIdManager.
func (s *sessionIDs) Generate() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	nonce := hex.EncodeToString(b[:])
	return idPrefix + nonce + "." + s.mac(nonce)
}

func (s *sessionIDs) wellFormed(id string) bool {
	nonce, mac, ok := strings.Cut(strings.TrimPrefix(id, idPrefix), ".")
	return ok && strings.HasPrefix(id, idPrefix) && len(nonce) == 32 && hmac.Equal([]byte(mac), []byte(s.mac(nonce)))
}

// Validate implements server.SessionIdManager.
func (s *sessionIDs) Validate(id string) (isTerminated bool, err error) {
	if !s.wellFormed(id) {
		return false, errBadSessionID
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, gone := s.terminated[id]
	return gone, nil
}

// Terminate implements server.SessionIdManager: the session's sandbox is
// released, unless the server is shutting down (sessions then stay for
// the next start).
func (s *sessionIDs) Terminate(id string) (isNotAllowed bool, err error) {
	if !s.wellFormed(id) {
		return false, nil
	}
	s.mu.Lock()
	k, used := s.keys[id]
	delete(s.keys, id)
	delete(s.bound, id)
	closing := s.closing
	if !closing {
		s.rememberLocked(id)
	}
	s.mu.Unlock()
	if used && !closing {
		s.onEnd(k)
	}
	return false, nil
}

func (s *sessionIDs) rememberLocked(id string) {
	now := s.now()
	if len(s.terminated) >= maxTerminated {
		for t, at := range s.terminated {
			if now.Sub(at) > terminatedTTL || len(s.terminated) >= maxTerminated {
				delete(s.terminated, t)
			}
		}
	}
	s.terminated[id] = now
}

// bind returns the session key of id for principal: the identifier is
// derived from the id, and the id is bound to the first principal.
func (s *sessionIDs) bind(id string, p pool.Principal, derive func(kind, value string) pool.Identifier) (pool.SessionKey, error) {
	if !s.wellFormed(id) {
		return pool.SessionKey{}, errBadSessionID
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, gone := s.terminated[id]; gone {
		return pool.SessionKey{}, errBadSessionID
	}
	if owner, ok := s.bound[id]; ok && owner != p {
		return pool.SessionKey{}, errSessionOwner
	}
	k, ok := s.keys[id]
	if !ok {
		k = pool.Key(p, derive("session", id))
		s.bound[id], s.keys[id] = p, k
	}
	return k, nil
}

// close marks the server as shutting down: terminations from now on keep
// their sandboxes.
func (s *sessionIDs) close() {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
}
