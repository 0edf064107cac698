package statedir

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestF11StateDirLock: a second holder of a state directory's lock fails
// at once with an error naming the first one's pid; after Close it
// succeeds.
func TestF11StateDirLock(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	l, err := Acquire(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Acquire(dir)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("second lock: %v, want ErrLocked naming pid %d", err, os.Getpid())
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l2, err := Acquire(dir)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	l2.Close()
	l2.Close()
}

// TestF9KeyFileMode: secret files readable or writable by group or others
// are refused with a clear error; 0600 and 0400 files are read.
func TestF9KeyFileMode(t *testing.T) {
	for _, tc := range []struct {
		mode os.FileMode
		ok   bool
	}{
		{0o600, true}, {0o400, true}, {0o640, false}, {0o644, false}, {0o604, false}, {0o620, false},
	} {
		path := filepath.Join(t.TempDir(), "session.key")
		if err := os.WriteFile(path, []byte("secret"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, tc.mode); err != nil {
			t.Fatal(err)
		}
		b, err := ReadSecret(path)
		switch {
		case tc.ok && (err != nil || string(b) != "secret"):
			t.Errorf("mode %#o: %q %v", tc.mode, b, err)
		case !tc.ok && (err == nil || !strings.Contains(err.Error(), "group or others")):
			t.Errorf("mode %#o: read (%v), want refused", tc.mode, err)
		}
	}
}
