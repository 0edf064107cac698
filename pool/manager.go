package pool

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/sandpool/sandpool/internal/errcode"
	"github.com/sandpool/sandpool/internal/statedir"
)

// ManagerOptions configures a Manager.
type ManagerOptions struct {
	// Engines maps a runtime name to the engine that runs it. Every pool's
	// runtime needs one.
	Engines map[string]Engine
	// StateDir holds the session hashing secret (session.key) and the
	// pools' state files.
	StateDir string
	Settings
}

// Manager runs the pools of one server.
type Manager struct {
	pools  map[string]*Pool
	names  []string
	hasher *Hasher
}

// NewManager validates the pool configurations, adopts what a previous
// server left (removing this server's sandboxes of pools no longer
// configured) and starts every pool. Pool names must be unique.
func NewManager(ctx context.Context, cfgs []Config, opt ManagerOptions) (_ *Manager, retErr error) {
	if len(cfgs) == 0 {
		cfgs = []Config{{}}
	}
	var errs []error
	seen := map[string]bool{}
	for i := range cfgs {
		if err := cfgs[i].Normalize(); err != nil {
			errs = append(errs, err)
			continue
		}
		if seen[cfgs[i].Name] {
			errs = append(errs, fmt.Errorf("pool %q: name: defined twice", cfgs[i].Name))
		}
		seen[cfgs[i].Name] = true
		if opt.Engines[cfgs[i].Runtime] == nil {
			errs = append(errs, fmt.Errorf("pool %q: runtime: no engine for %q", cfgs[i].Name, cfgs[i].Runtime))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	secret, err := LoadSecret(filepath.Join(opt.StateDir, "session.key"))
	if err != nil {
		return nil, err
	}
	h, err := NewHasher(secret)
	if err != nil {
		return nil, err
	}
	if err := opt.setDefaults(); err != nil {
		return nil, err
	}
	m := &Manager{pools: map[string]*Pool{}, hasher: h}
	defer func() {
		if retErr != nil {
			m.Close(context.Background())
		}
	}()
	for _, e := range uniqueEngines(opt.Engines) {
		if err := reapUnknown(ctx, e, opt.ServerID, seen, opt.Log); err != nil {
			return nil, err
		}
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, c := range cfgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := New(ctx, c, Options{
				Engine: opt.Engines[c.Runtime], Hasher: h, StateDir: filepath.Join(opt.StateDir, "pools"),
				Settings: opt.Settings,
			})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("pool %q: %w", c.Name, err))
				return
			}
			m.pools[c.Name] = p
			m.names = append(m.names, c.Name)
		}()
	}
	wg.Wait()
	sort.Strings(m.names)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return m, nil
}

func uniqueEngines(m map[string]Engine) []Engine {
	var out []Engine
	for _, e := range m {
		dup := false
		for _, o := range out {
			dup = dup || o == e
		}
		if !dup {
			out = append(out, e)
		}
	}
	return out
}

// reapUnknown removes this server's sandboxes of pools not configured.
func reapUnknown(ctx context.Context, e Engine, server string, pools map[string]bool, log zerolog.Logger) error {
	list, err := e.List(ctx, map[string]string{LabelServer: server})
	if err != nil {
		return errcode.Wrap(errcode.Unavailable, "cannot list sandboxes", err)
	}
	for _, c := range list {
		if pools[c.Labels[LabelPool]] {
			continue
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		if err := e.Remove(rctx, c.ID); err != nil {
			log.Warn().Err(err).Msg("removing a sandbox of a pool no longer configured")
		}
		cancel()
	}
	return nil
}

// Pool returns the pool called name, or nil.
func (m *Manager) Pool(name string) *Pool { return m.pools[name] }

// Pools returns the pools sorted by name.
func (m *Manager) Pools() []*Pool {
	out := make([]*Pool, 0, len(m.names))
	for _, n := range m.names {
		out = append(out, m.pools[n])
	}
	return out
}

// Hasher is the server's session hasher.
func (m *Manager) Hasher() *Hasher { return m.hasher }

// Close closes every pool, draining requests in flight until ctx ends.
// Sandboxes keep running for the next server.
func (m *Manager) Close(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make([]error, len(m.names))
	for i, n := range m.names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = m.pools[n].Close(ctx)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// LoadSecret reads the secret at path, creating it (32 random bytes, mode
// 0600) when missing. The secret must survive restarts: session hashes,
// and so adoption, depend on it. A file that group or others may read is
// refused.
func LoadSecret(path string) ([]byte, error) {
	b, err := statedir.ReadSecret(path)
	if err == nil {
		if len(b) < MinSecretLen {
			return nil, fmt.Errorf("session secret %s: too short", filepath.Base(path))
		}
		return b, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read session secret: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create state directory: %w", err)
	}
	b = make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return LoadSecret(path) // another process made it first
	}
	if err != nil {
		return nil, fmt.Errorf("create session secret: %w", err)
	}
	_, werr := f.Write(b)
	if err := errors.Join(werr, f.Close()); err != nil {
		return nil, fmt.Errorf("write session secret: %w", err)
	}
	return b, nil
}
