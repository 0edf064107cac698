package pool

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// store persists which sandbox serves which session, so a restarted server
// adopts allocated sandboxes with their state. Container labels cannot
// record this: they are fixed when a container is created, before it is
// allocated. Identifiers are kept encrypted (session listings need them
// back after a restart); containers and logs never see them.
type store struct {
	path string
	aead cipher.AEAD
	mu   sync.Mutex // serialises writes
}

// stateVersion is the format of the state file. Version 2 binds each
// sealed key to its container and hash; a version 1 file's sessions
// cannot be verified and are not adopted.
const stateVersion = 2

// errOldState marks a state file of an older format: its sandboxes are
// removed (never returned to the warm pool) and its sessions reported lost.
var errOldState = errors.New("pool state of an older format")

type stateFile struct {
	Version  int          `json:"version"`
	Sessions []stateEntry `json:"sessions"`
}

// stateEntry is one allocated session.
type stateEntry struct {
	Container  string    `json:"container"`
	Hash       string    `json:"hash"`
	Key        []byte    `json:"key"` // sealed principal and identifier, bound to Container and Hash
	Created    time.Time `json:"created"`
	LastAccess time.Time `json:"lastAccess"`
}

func newStore(dir, pool string, h *Hasher) (*store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	block, err := aes.NewCipher(h.sub("state-file")[:32])
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &store{path: filepath.Join(dir, pool+".json"), aead: aead}, nil
}

// load reads the state file; a missing file is an empty state.
func (s *store) load() ([]stateEntry, error) {
	b, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read pool state: %w", err)
	}
	var f stateFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("parse pool state: %w", err)
	}
	if f.Version > 0 && f.Version < stateVersion {
		return f.Sessions, fmt.Errorf("pool state has version %d, want %d: %w", f.Version, stateVersion, errOldState)
	}
	if f.Version != stateVersion {
		return nil, fmt.Errorf("pool state has version %d, want %d", f.Version, stateVersion)
	}
	return f.Sessions, nil
}

// save replaces the state file atomically. A crash of the server leaves
// the old or the new file, never a torn one; no fsync, because a crash of
// the machine stops the containers too.
func (s *store) save(entries []stateEntry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, err := json.Marshal(stateFile{Version: stateVersion, Sessions: entries})
	if err != nil {
		return err
	}
	tmp := s.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write pool state: %w", err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return fmt.Errorf("write pool state: %w", err)
	}
	return nil
}

// boundTo is the associated data of a sealed key: the container and hash
// of its entry, so that an entry whose key was moved to another
// container or hash does not open.
func boundTo(container, hash string) []byte {
	return fmt.Appendf(nil, "sandpool-state\x00%d\x00%s\x00%s", len(container), container, hash)
}

// seal encrypts k for the entry of container and hash.
func (s *store) seal(k SessionKey, container, hash string) []byte {
	nonce := make([]byte, s.aead.NonceSize())
	_, _ = rand.Read(nonce)
	plain, _ := json.Marshal([2]string{string(k.Principal), k.Identifier.s})
	return s.aead.Seal(nonce, nonce, plain, boundTo(container, hash))
}

// open decrypts the key of entry e, which must have been sealed for e's
// container and hash.
func (s *store) open(e stateEntry) (SessionKey, error) {
	b := e.Key
	n := s.aead.NonceSize()
	if len(b) < n {
		return SessionKey{}, errors.New("sealed key too short")
	}
	plain, err := s.aead.Open(nil, b[:n], b[n:], boundTo(e.Container, e.Hash))
	if err != nil {
		return SessionKey{}, fmt.Errorf("unseal session key: %w", err)
	}
	var v [2]string
	if err := json.Unmarshal(plain, &v); err != nil {
		return SessionKey{}, err
	}
	id, err := ParseIdentifier(v[1])
	if err != nil {
		return SessionKey{}, err
	}
	return Key(Principal(v[0]), id), nil
}
