package sandbox

import (
	"context"
	"io"
	"time"

	"github.com/sandpool/sandpool/internal/errcode"
	"github.com/sandpool/sandpool/sandbox/agentproto"
)

// FileType is the kind of a file in the data directory.
type FileType string

// File types.
const (
	FileRegular FileType = FileType(agentproto.TypeFile)
	FileDir     FileType = FileType(agentproto.TypeDir)
	FileSymlink FileType = FileType(agentproto.TypeSymlink)
	FileOther   FileType = FileType(agentproto.TypeOther)
)

// FileInfo describes a file in a sandbox's data directory (/mnt/data).
type FileInfo struct {
	Name    string
	Type    FileType
	Size    int64
	ModTime time.Time
}

func fileInfo(f *agentproto.FileInfo) FileInfo {
	t := FileType(f.Type)
	switch t {
	case FileRegular, FileDir, FileSymlink:
	default:
		t = FileOther
	}
	return FileInfo{Name: clip(f.Name, agentproto.MaxNameBytes), Type: t, Size: max(f.Size, 0), ModTime: f.ModTime}
}

// CheckPath validates a path relative to the data directory, so bad names
// fail before a round trip. The agent checks again.
func CheckPath(p string) error {
	if _, err := agentproto.SplitPath(p); err != nil {
		return errcode.Wrap(errcode.InvalidArgument, err.Error(), err)
	}
	return nil
}

func (c *Conn) fileOp(ctx context.Context, op agentproto.Op, path string, want agentproto.MsgType) (*agentproto.Message, error) {
	if err := CheckPath(path); err != nil {
		return nil, err
	}
	m, err := c.roundTrip(ctx, &agentproto.Request{Op: op, Path: path}, OpTimeout)
	if err != nil {
		return nil, err
	}
	if m.Type != want {
		return nil, errcode.New(errcode.Internal, "the sandbox sent an invalid response")
	}
	return m, nil
}

// Stat describes one file without following symlinks.
func (c *Conn) Stat(ctx context.Context, path string) (FileInfo, error) {
	m, err := c.fileOp(ctx, agentproto.OpStat, path, agentproto.MsgFile)
	if err != nil {
		return FileInfo{}, err
	}
	if m.File == nil {
		return FileInfo{}, errcode.New(errcode.Internal, "the sandbox sent an invalid response")
	}
	return fileInfo(m.File), nil
}

// List lists a directory ("" for the data directory). partial reports a
// listing cut at agentproto.MaxListEntries.
func (c *Conn) List(ctx context.Context, dir string) (files []FileInfo, partial bool, err error) {
	m, err := c.fileOp(ctx, agentproto.OpList, dir, agentproto.MsgFiles)
	if err != nil {
		return nil, false, err
	}
	n := min(len(m.Files), agentproto.MaxListEntries)
	out := make([]FileInfo, 0, n)
	for i := range m.Files[:n] {
		out = append(out, fileInfo(&m.Files[i]))
	}
	return out, m.Partial || len(m.Files) > n, nil
}

// Delete removes a file, a symlink (not its target) or an empty directory.
func (c *Conn) Delete(ctx context.Context, path string) error {
	_, err := c.fileOp(ctx, agentproto.OpDelete, path, agentproto.MsgOK)
	return err
}

// Put streams r into path, replacing it atomically; missing parent
// directories are created. More than maxSize bytes fail with TooLarge and
// leave nothing behind.
func (c *Conn) Put(ctx context.Context, path string, r io.Reader, maxSize int64) (FileInfo, error) {
	if err := CheckPath(path); err != nil {
		return FileInfo{}, err
	}
	st, release, err := c.open(ctx, &agentproto.Request{Op: agentproto.OpPut, Path: path, MaxSize: maxSize})
	if err != nil {
		return FileInfo{}, err
	}
	defer release()
	// The agent answers once, at the end or as soon as it refuses (bad path,
	// no space); a slow upload must not time out that read, so the deadline
	// is set only when we are done sending.
	type reply struct {
		m   *agentproto.Message
		err error
	}
	ans := make(chan reply, 1)
	go func() {
		m, err := agentproto.ReadMsg(agentproto.NewReader(st, 0))
		ans <- reply{m, err}
	}()
	wait := func() reply {
		_ = st.SetReadDeadline(time.Now().Add(OpTimeout))
		return <-ans
	}
	answer := func(rep reply) (FileInfo, error) {
		switch {
		case rep.err != nil:
			return FileInfo{}, c.readErr(ctx, rep.err)
		case rep.m.Type == agentproto.MsgFailed:
			return FileInfo{}, failure(rep.m)
		case rep.m.Type != agentproto.MsgFile || rep.m.File == nil:
			return FileInfo{}, errcode.New(errcode.Internal, "the sandbox sent an invalid response")
		}
		return fileInfo(rep.m.File), nil
	}
	var sent int64
	buf := make([]byte, agentproto.ChunkSize)
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			select {
			case rep := <-ans: // refused early
				return answer(rep)
			default:
			}
			if maxSize > 0 && sent+int64(n) > maxSize {
				st.Close()
				wait()
				return FileInfo{}, errcode.Newf(errcode.TooLarge, "file larger than the %d-byte limit", maxSize)
			}
			_ = st.SetWriteDeadline(time.Now().Add(OpTimeout))
			if err := agentproto.WriteFrame(st, agentproto.FrameData, buf[:n]); err != nil {
				return answer(wait())
			}
			sent += int64(n)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			st.Close()
			wait()
			return FileInfo{}, errcode.Wrap(errcode.InvalidArgument, "reading the upload failed", rerr)
		}
	}
	_ = st.SetWriteDeadline(time.Now().Add(OpTimeout))
	_ = agentproto.WriteMsg(st, &agentproto.Message{Type: agentproto.MsgEnd, Size: sent})
	return answer(wait())
}

// Get streams path to w. Only regular files are served; more than maxSize
// bytes fail with TooLarge. On error w may have received part of the file.
func (c *Conn) Get(ctx context.Context, path string, w io.Writer, maxSize int64) (FileInfo, error) {
	if err := CheckPath(path); err != nil {
		return FileInfo{}, err
	}
	st, release, err := c.open(ctx, &agentproto.Request{Op: agentproto.OpGet, Path: path, MaxSize: maxSize})
	if err != nil {
		return FileInfo{}, err
	}
	defer release()
	r := agentproto.NewReader(st, 0)
	_ = st.SetReadDeadline(time.Now().Add(OpTimeout))
	m, err := agentproto.ReadMsg(r)
	if err != nil {
		return FileInfo{}, c.readErr(ctx, err)
	}
	if m.Type == agentproto.MsgFailed {
		return FileInfo{}, failure(m)
	}
	if m.Type != agentproto.MsgFile || m.File == nil {
		return FileInfo{}, errcode.New(errcode.Internal, "the sandbox sent an invalid response")
	}
	fi := fileInfo(m.File)
	var got int64
	for {
		_ = st.SetReadDeadline(time.Now().Add(OpTimeout))
		t, p, err := r.Next()
		if err != nil {
			return fi, c.readErr(ctx, err)
		}
		switch t {
		case agentproto.FrameData:
			got += int64(len(p))
			if maxSize > 0 && got > maxSize {
				return fi, errcode.Newf(errcode.TooLarge, "file larger than the %d-byte limit", maxSize)
			}
			if _, err := w.Write(p); err != nil {
				return fi, errcode.Wrap(errcode.Canceled, "writing the download failed", err)
			}
		case agentproto.FrameMsg:
			m, err := agentproto.DecodeMsg(p)
			if err != nil {
				return fi, c.readErr(ctx, err)
			}
			if m.Type == agentproto.MsgFailed {
				return fi, failure(m)
			}
			if m.Type != agentproto.MsgEnd || m.Size != got {
				return fi, errcode.New(errcode.Internal, "the sandbox sent an invalid response")
			}
			fi.Size = got
			return fi, nil
		default:
			return fi, c.readErr(ctx, agentproto.ErrBadFrame)
		}
	}
}
