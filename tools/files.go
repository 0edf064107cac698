package tools

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"mime"
	"path"
	"strings"
	"unicode/utf8"

	"github.com/sandpool/sandpool/internal/errcode"
	"github.com/sandpool/sandpool/pool"
)

// DataDir is where a session's files live, as code in the sandbox sees it.
const DataDir = "/mnt/data"

// fileName turns a name the model gave into a path relative to DataDir:
// "/mnt/data/x.csv" and "x.csv" are the same file; any other absolute
// path, "..", NUL or an empty name is refused.
func fileName(name string) (string, error) {
	n := strings.TrimPrefix(name, DataDir+"/")
	if n == "" || n == DataDir {
		return "", errors.New("the file name is empty: give a name such as data.csv (relative to /mnt/data)")
	}
	if err := pool.CheckPath(n); err != nil {
		return "", fmt.Errorf("the file name is not allowed: %s. Use a name relative to /mnt/data without \"..\"", errcode.Public(err))
	}
	return n, nil
}

// UploadArgs are the arguments of upload_file.
type UploadArgs struct {
	Name    string
	Content string
	// Base64 says Content is base64 (binary files); otherwise it is the
	// file's text.
	Base64 bool
}

// Upload writes a file into the session's /mnt/data.
func (s *Service) Upload(ctx context.Context, k pool.SessionKey, a UploadArgs) Result {
	name, err := fileName(a.Name)
	if err != nil {
		return textResult(true, err.Error())
	}
	data := []byte(a.Content)
	if a.Base64 {
		if data, err = base64.StdEncoding.DecodeString(strings.TrimSpace(a.Content)); err != nil {
			return textResult(true, "content is not valid base64 (standard alphabet, with padding); send text files with encoding \"text\"")
		}
	}
	if int64(len(data)) > s.limits.MaxFileBytes {
		return textResult(true, fmt.Sprintf("the file is %s, above the limit of %s", byteCount(int64(len(data))), byteCount(s.limits.MaxFileBytes)))
	}
	fi, err := s.backend.Put(ctx, k, name, bytes.NewReader(data), s.limits.MaxFileBytes)
	if err != nil {
		return ErrorResult(err)
	}
	return textResult(false, fmt.Sprintf("saved %s/%s (%s); open it from code by that path", DataDir, name, byteCount(fi.Size)))
}

// List lists the session's files (dir "" is /mnt/data itself).
func (s *Service) List(ctx context.Context, k pool.SessionKey, dir string) Result {
	if dir != "" && dir != DataDir && dir != DataDir+"/" {
		var err error
		if dir, err = fileName(strings.TrimSuffix(dir, "/")); err != nil {
			return textResult(true, err.Error())
		}
	} else {
		dir = ""
	}
	files, partial, err := s.backend.List(ctx, k, dir)
	if err != nil {
		return ErrorResult(err)
	}
	shown := path.Join(DataDir, dir)
	if len(files) == 0 {
		return textResult(false, shown+" is empty")
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d entries in %s (name, size in bytes, modified UTC):\n", len(files), shown)
	for _, f := range files {
		name := f.Name
		if f.Type == pool.FileDir {
			name += "/"
		}
		fmt.Fprintf(&b, "%s\t%d\t%s\n", name, f.Size, f.ModTime.UTC().Format("2006-01-02 15:04:05"))
	}
	if partial {
		b.WriteString("(the listing was cut short: the directory has more entries)\n")
	}
	return textResult(false, s.capText([]byte(b.String()), int64(b.Len())))
}

// Download returns a file: its text when it is UTF-8 text within the text
// limit, else an embedded resource with its bytes.
func (s *Service) Download(ctx context.Context, k pool.SessionKey, name string) Result {
	n, err := fileName(name)
	if err != nil {
		return textResult(true, err.Error())
	}
	var buf bytes.Buffer
	fi, err := s.backend.Get(ctx, k, n, &buf, s.limits.MaxFileBytes)
	if errcode.Of(err) == errcode.TooLarge {
		return textResult(true, fmt.Sprintf("%s/%s is above the download limit of %s: read or summarise it from code instead", DataDir, n, byteCount(s.limits.MaxFileBytes)))
	}
	if err != nil {
		return ErrorResult(err)
	}
	uri := "file://" + path.Join(DataDir, n)
	typ, _, _ := mime.ParseMediaType(mime.TypeByExtension(path.Ext(n)))
	if b := buf.Bytes(); utf8.Valid(b) && !bytes.ContainsRune(b, 0) && len(b) <= s.limits.MaxTextBytes {
		if typ == "" || !strings.HasPrefix(typ, "text/") && !strings.Contains(typ, "json") && !strings.Contains(typ, "xml") {
			typ = "text/plain"
		}
		return Result{Content: []Content{{Kind: Resource, URI: uri, MIMEType: typ, Text: buf.String()}}}
	}
	if typ == "" {
		typ = "application/octet-stream"
	}
	return Result{Content: []Content{
		{Kind: Text, Text: fmt.Sprintf("%s/%s: %s, %s", DataDir, n, typ, byteCount(fi.Size))},
		{Kind: Resource, URI: uri, MIMEType: typ, Data: buf.Bytes()},
	}}
}

// Delete removes a file (or an empty directory).
func (s *Service) Delete(ctx context.Context, k pool.SessionKey, name string) Result {
	n, err := fileName(name)
	if err != nil {
		return textResult(true, err.Error())
	}
	if err := s.backend.Remove(ctx, k, n); err != nil {
		return ErrorResult(err)
	}
	return textResult(false, "deleted "+path.Join(DataDir, n))
}

// Reset ends the session: its sandbox, variables and files are discarded,
// and the next call starts a fresh one.
func (s *Service) Reset(ctx context.Context, k pool.SessionKey) Result {
	err := s.backend.Delete(ctx, k)
	if err != nil && errcode.Of(err) != errcode.NotFound {
		return ErrorResult(err)
	}
	return textResult(false, "the session was reset: the next call runs in a fresh sandbox with no variables and an empty /mnt/data")
}
