package pool

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestF9StateAAD: a sealed key in the state file is bound to its
// container and hash. An entry whose container or hash was changed (two
// sessions' entries crossed, say), or one of an older format, adopts
// nothing: its sandbox is removed, never handed to a session or returned
// to the warm pool, and its session is reported lost.
func TestF9StateAAD(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tamper func(f *stateFile)
	}{
		{"containers crossed", func(f *stateFile) {
			f.Sessions[0].Container, f.Sessions[1].Container = f.Sessions[1].Container, f.Sessions[0].Container
		}},
		{"hashes crossed", func(f *stateFile) {
			f.Sessions[0].Hash, f.Sessions[1].Hash = f.Sessions[1].Hash, f.Sessions[0].Hash
		}},
		{"keys crossed", func(f *stateFile) {
			f.Sessions[0].Key, f.Sessions[1].Key = f.Sessions[1].Key, f.Sessions[0].Key
		}},
		{"older format", func(f *stateFile) { f.Version = 1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			dir := t.TempDir()
			clk := &clock{t: time.Now()}
			cfg := Config{Scale: ScaleConfig{ReadySessionInstances: intp(0)}}
			p := newTestPool(t, f, dir, cfg, clk)
			keys := []SessionKey{key(t, "alice", "session-one"), key(t, "bob", "session-two")}
			owner := map[string]SessionKey{} // container -> session
			for _, k := range keys {
				s, rel, err := p.acquire(context.Background(), k)
				if err != nil {
					t.Fatal(err)
				}
				rel()
				owner[s.sb.ID] = k
			}
			p.Close(context.Background())

			files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
			if len(files) != 1 {
				t.Fatalf("state files: %v", files)
			}
			b, err := os.ReadFile(files[0])
			if err != nil {
				t.Fatal(err)
			}
			var sf stateFile
			if err := json.Unmarshal(b, &sf); err != nil || len(sf.Sessions) != 2 {
				t.Fatalf("state file: %v %s", err, b)
			}
			tc.tamper(&sf)
			b, _ = json.Marshal(sf)
			if err := os.WriteFile(files[0], b, 0o600); err != nil {
				t.Fatal(err)
			}

			p2 := newTestPool(t, f, dir, cfg, clk)
			if st := p2.Status(); st.Allocated != 0 || st.Ready != 0 {
				t.Fatalf("after restart with a tampered state: %+v", st)
			}
			for id := range owner {
				if f.isRunning(id) {
					t.Errorf("sandbox %s of an unverifiable entry was not removed", id)
				}
			}
			for _, k := range keys {
				s, rel, err := p2.acquire(context.Background(), k)
				if err == nil {
					rel()
					if prev, ok := owner[s.sb.ID]; ok {
						t.Fatalf("%s got the sandbox of %s", k.Principal, prev.Principal)
					}
					t.Fatalf("%s: a fresh session without the lost report", k.Principal)
				}
				if !errors.Is(err, ErrSessionLost) {
					t.Fatalf("%s: %v, want session lost", k.Principal, err)
				}
			}
		})
	}
}

// TestF9KeyFileModeSessionKey: a session.key that group or others can read
// stops the manager with a clear error.
func TestF9KeyFileModeSessionKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "session.key")
	if _, err := LoadSecret(path); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("created secret: %v %v", fi.Mode(), err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := NewManager(context.Background(), nil, ManagerOptions{Engines: map[string]Engine{"runsc": newFake()}, StateDir: dir})
	if err == nil || !strings.Contains(err.Error(), "group or others") {
		t.Fatalf("manager with a world-readable session.key: %v", err)
	}
}
