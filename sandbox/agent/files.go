package agent

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sandpool/sandpool/sandbox/agentproto"
)

// files serves the data directory. Every path is resolved one segment at a
// time with openat(O_NOFOLLOW) from a descriptor of the data directory, so a
// symlink planted by user code is never followed, whatever races it runs.
type files struct {
	root string
}

// opError is a failure with a protocol code.
type opError struct {
	code agentproto.FailCode
	msg  string
}

func (e *opError) Error() string { return e.msg }

func failf(code agentproto.FailCode, msg string) error { return &opError{code: code, msg: msg} }

// classify maps a system error to a protocol failure.
func classify(err error, what string) error {
	var oe *opError
	switch {
	case errors.As(err, &oe):
		return err
	case errors.Is(err, unix.ENOENT):
		return failf(agentproto.FailNotFound, what+": no such file or directory")
	case errors.Is(err, unix.ELOOP), errors.Is(err, unix.ENOTDIR):
		return failf(agentproto.FailNotRegular, what+": a path component is a symlink or not a directory")
	case errors.Is(err, unix.EISDIR):
		return failf(agentproto.FailIsDir, what+": is a directory")
	case errors.Is(err, unix.ENOTEMPTY), errors.Is(err, unix.EEXIST):
		return failf(agentproto.FailNotEmpty, what+": directory not empty")
	case errors.Is(err, unix.ENOSPC), errors.Is(err, unix.EDQUOT):
		return failf(agentproto.FailNoSpace, what+": no space left in the sandbox")
	case errors.Is(err, unix.EFBIG):
		return failf(agentproto.FailTooLarge, what+": file too large")
	}
	var errno unix.Errno
	if errors.As(err, &errno) {
		return failf(agentproto.FailIO, what+": "+errno.Error())
	}
	return failf(agentproto.FailIO, what+": i/o error")
}

const dirFlags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC

// walk opens the directory that holds the last segment and returns its fd
// and the last segment. With create, missing directories are made.
func (f *files) walk(segs []string, create bool) (int, string, error) {
	fd, err := unix.Open(f.root, dirFlags, 0)
	if err != nil {
		return -1, "", err
	}
	if len(segs) == 0 {
		return fd, "", nil
	}
	for _, s := range segs[:len(segs)-1] {
		next, err := openDir(fd, s)
		if errors.Is(err, unix.ENOENT) && create {
			if err = unix.Mkdirat(fd, s, 0o755); err == nil || errors.Is(err, unix.EEXIST) {
				next, err = openDir(fd, s)
			}
		}
		unix.Close(fd)
		if err != nil {
			return -1, "", err
		}
		fd = next
	}
	return fd, segs[len(segs)-1], nil
}

// openDir opens the directory name in dir without following a symlink.
// O_NOFOLLOW alone does not do it everywhere: the gVisor release here
// follows a symlink opened with O_DIRECTORY|O_NOFOLLOW (the battery's F6
// found it). So the entry is looked at first, and what was opened must be
// that entry: a swap in between is refused too.
func openDir(dir int, name string) (int, error) {
	var before, after unix.Stat_t
	if err := unix.Fstatat(dir, name, &before, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return -1, err
	}
	switch before.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
	case unix.S_IFLNK:
		return -1, unix.ELOOP
	default:
		return -1, unix.ENOTDIR
	}
	fd, err := unix.Openat(dir, name, dirFlags, 0)
	if err != nil {
		return -1, err
	}
	if err := unix.Fstat(fd, &after); err != nil || after.Dev != before.Dev || after.Ino != before.Ino {
		unix.Close(fd)
		return -1, unix.ELOOP
	}
	return fd, nil
}

func split(p string) ([]string, error) {
	segs, err := agentproto.SplitPath(p)
	if err != nil {
		return nil, failf(agentproto.FailBadPath, err.Error())
	}
	return segs, nil
}

func infoOf(name string, st *unix.Stat_t) agentproto.FileInfo {
	fi := agentproto.FileInfo{
		Name:    name,
		Size:    st.Size,
		ModTime: time.Unix(st.Mtim.Sec, st.Mtim.Nsec).UTC(),
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		fi.Type = agentproto.TypeFile
	case unix.S_IFDIR:
		fi.Type = agentproto.TypeDir
	case unix.S_IFLNK:
		fi.Type = agentproto.TypeSymlink
	default:
		fi.Type = agentproto.TypeOther
	}
	if fi.Type != agentproto.TypeFile {
		fi.Size = 0
	}
	return fi
}

func (f *files) stat(p string) (agentproto.FileInfo, error) {
	segs, err := split(p)
	if err != nil {
		return agentproto.FileInfo{}, err
	}
	dir, base, err := f.walk(segs, false)
	if err != nil {
		return agentproto.FileInfo{}, classify(err, "stat")
	}
	defer unix.Close(dir)
	var st unix.Stat_t
	if base == "" {
		err = unix.Fstat(dir, &st)
		base = "."
	} else {
		err = unix.Fstatat(dir, base, &st, unix.AT_SYMLINK_NOFOLLOW)
	}
	if err != nil {
		return agentproto.FileInfo{}, classify(err, "stat")
	}
	return infoOf(base, &st), nil
}

func (f *files) list(p string) ([]agentproto.FileInfo, bool, error) {
	segs, err := split(p)
	if err != nil {
		return nil, false, err
	}
	dir, base, err := f.walk(segs, false)
	if err != nil {
		return nil, false, classify(err, "list")
	}
	if base != "" {
		d, err := openDir(dir, base)
		unix.Close(dir)
		if err != nil {
			return nil, false, classify(err, "list")
		}
		dir = d
	}
	fh := os.NewFile(uintptr(dir), "dir")
	defer fh.Close()
	names, err := fh.Readdirnames(agentproto.MaxListEntries + 1)
	if err != nil && err != io.EOF {
		return nil, false, classify(err, "list")
	}
	partial := len(names) > agentproto.MaxListEntries
	if partial {
		names = names[:agentproto.MaxListEntries]
	}
	out := make([]agentproto.FileInfo, 0, len(names))
	for _, n := range names {
		if strings.HasPrefix(n, uploadPrefix) {
			continue // an upload in progress (or being aborted) is not a file yet
		}
		var st unix.Stat_t
		if unix.Fstatat(int(fh.Fd()), n, &st, unix.AT_SYMLINK_NOFOLLOW) != nil {
			continue // removed meanwhile
		}
		out = append(out, infoOf(n, &st))
	}
	return out, partial, nil
}

func (f *files) remove(p string) error {
	segs, err := split(p)
	if err != nil {
		return err
	}
	if len(segs) == 0 {
		return failf(agentproto.FailBadPath, "delete: the data directory itself cannot be deleted")
	}
	dir, base, err := f.walk(segs, false)
	if err != nil {
		return classify(err, "delete")
	}
	defer unix.Close(dir)
	err = unix.Unlinkat(dir, base, 0)
	if errors.Is(err, unix.EISDIR) || errors.Is(err, unix.EPERM) {
		err = unix.Unlinkat(dir, base, unix.AT_REMOVEDIR)
	}
	if err != nil {
		return classify(err, "delete")
	}
	return nil
}

// openRead opens a regular file for reading. O_NONBLOCK keeps a FIFO from
// blocking the open; anything but a regular file is refused.
func (f *files) openRead(p string, max int64) (*os.File, agentproto.FileInfo, error) {
	segs, err := split(p)
	if err != nil {
		return nil, agentproto.FileInfo{}, err
	}
	if len(segs) == 0 {
		return nil, agentproto.FileInfo{}, failf(agentproto.FailIsDir, "get: is a directory")
	}
	dir, base, err := f.walk(segs, false)
	if err != nil {
		return nil, agentproto.FileInfo{}, classify(err, "get")
	}
	defer unix.Close(dir)
	fd, err := unix.Openat(dir, base, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, agentproto.FileInfo{}, classify(err, "get")
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, agentproto.FileInfo{}, classify(err, "get")
	}
	fi := infoOf(base, &st)
	switch {
	case fi.Type == agentproto.TypeDir:
		unix.Close(fd)
		return nil, fi, failf(agentproto.FailIsDir, "get: is a directory")
	case fi.Type != agentproto.TypeFile:
		unix.Close(fd)
		return nil, fi, failf(agentproto.FailNotRegular, "get: not a regular file")
	case max > 0 && fi.Size > max:
		unix.Close(fd)
		return nil, fi, failf(agentproto.FailTooLarge, "get: file larger than the limit")
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, fi, classify(err, "get")
	}
	return os.NewFile(uintptr(fd), base), fi, nil
}

// uploadPrefix names the temporary file of an upload in progress.
const uploadPrefix = ".sandpool-upload-"

// upload is a file being written; commit renames it into place.
type upload struct {
	dir  int
	tmp  string
	base string
	f    *os.File
}

func (f *files) create(p string) (*upload, error) {
	segs, err := split(p)
	if err != nil {
		return nil, err
	}
	if len(segs) == 0 {
		return nil, failf(agentproto.FailIsDir, "put: is a directory")
	}
	dir, base, err := f.walk(segs, true)
	if err != nil {
		return nil, classify(err, "put")
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := uploadPrefix + hex.EncodeToString(rnd[:])
	fd, err := unix.Openat(dir, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		unix.Close(dir)
		return nil, classify(err, "put")
	}
	return &upload{dir: dir, tmp: tmp, base: base, f: os.NewFile(uintptr(fd), tmp)}, nil
}

func (u *upload) commit() (agentproto.FileInfo, error) {
	defer unix.Close(u.dir)
	if err := u.f.Close(); err != nil {
		_ = unix.Unlinkat(u.dir, u.tmp, 0)
		return agentproto.FileInfo{}, classify(err, "put")
	}
	// renameat replaces a symlink at the target itself, never its target.
	if err := unix.Renameat(u.dir, u.tmp, u.dir, u.base); err != nil {
		_ = unix.Unlinkat(u.dir, u.tmp, 0)
		return agentproto.FileInfo{}, classify(err, "put")
	}
	var st unix.Stat_t
	if err := unix.Fstatat(u.dir, u.base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return agentproto.FileInfo{}, classify(err, "put")
	}
	return infoOf(u.base, &st), nil
}

func (u *upload) abort() {
	u.f.Close()
	_ = unix.Unlinkat(u.dir, u.tmp, 0)
	unix.Close(u.dir)
}
