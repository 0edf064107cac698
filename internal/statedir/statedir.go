// Package statedir guards sandpool's state directory: one process at a
// time owns it (an exclusive lock naming its holder), and the secret files
// it reads must be readable by their owner only.
package statedir

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// ErrLocked means another process holds a state directory's lock.
var ErrLocked = errors.New("the state directory is in use by another process")

// LockName is the lock file inside a state directory.
const LockName = "lock"

// Lock is an exclusive lock on a state directory, held until Close or the
// end of the process.
type Lock struct{ f *os.File }

// Acquire takes the lock of dir (created, mode 0700, when missing) without
// waiting. When another process holds it, the error wraps ErrLocked and
// names that process's pid: two servers sharing a state directory (and so
// a server id) would adopt and reap each other's sandboxes.
func Acquire(dir string) (*Lock, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	path := filepath.Join(dir, LockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state directory lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			b, _ := io.ReadAll(io.LimitReader(f, 32))
			holder := "pid unknown"
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				holder = "pid " + strconv.Itoa(pid)
			}
			return nil, fmt.Errorf("%w: %s is held by another sandpool (%s); stop it, or give this one its own server.stateDir and server.serverId",
				ErrLocked, dir, holder)
		}
		return nil, fmt.Errorf("state directory lock: %w", err)
	}
	// The pid is for the message above; the lock is the flock itself.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Lock{f: f}, nil
}

// Close releases the lock. It may be called more than once.
func (l *Lock) Close() error {
	if l == nil || l.f == nil {
		return nil
	}
	f := l.f
	l.f = nil
	// Closing the last descriptor releases the flock.
	return f.Close()
}

// ReadSecret reads a secret file, refusing one that its group or others
// may read (or write): a key that others can read is no secret.
func ReadSecret(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if m := fi.Mode().Perm(); m&0o077 != 0 {
		return nil, fmt.Errorf("%s is accessible by group or others (mode %#o): refusing a secret others can read; run chmod 600 on it", path, m)
	}
	return io.ReadAll(f)
}
