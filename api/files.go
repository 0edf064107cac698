package api

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/sandpool/sandpool/internal/errcode"
	"github.com/sandpool/sandpool/pool"
	"github.com/sandpool/sandpool/sandbox"
)

// dataDir is where session files live; clients may name it in paths.
const dataDir = "/mnt/data"

// maxListed bounds the entries of one (recursive) listing.
const maxListed = 10000

// relPath turns a client's directory and file name into a path relative
// to /mnt/data. Clients send "/mnt/data/x", "x" or "sub/x"; the leading
// data directory is dropped. Traversal, absolute paths elsewhere, control
// characters and over-long names are refused (sandbox.CheckPath, checked
// again by the agent).
func relPath(dir, name string) (string, error) {
	dir, name = stripDataDir(dir), stripDataDir(name)
	if name == "" {
		return "", errcode.New(errcode.InvalidArgument, "a file name is required")
	}
	p := name
	if dir != "" {
		p = dir + "/" + name
	}
	if err := sandbox.CheckPath(p); err != nil {
		return "", err
	}
	return p, nil
}

func stripDataDir(p string) string {
	switch {
	case p == dataDir || p == dataDir+"/":
		return ""
	case strings.HasPrefix(p, dataDir+"/"):
		return p[len(dataDir)+1:]
	}
	return p
}

// checkUploadName applies Azure's file-name rules to a name a client
// creates: letters (any script), digits, and - _ space . @ $ & = ; , # %
// ^ ( ), in segments separated by "/". Files that code in the session
// made may have other names; reading and deleting those is allowed.
func checkUploadName(p string) error {
	for seg := range strings.SplitSeq(p, "/") {
		for _, r := range seg {
			if unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r) || strings.ContainsRune("-_ .@$&=;,#%^()", r) {
				continue
			}
			return errcode.Newf(errcode.InvalidArgument, "file names may hold letters, digits, spaces and -_.@$&=;,#%%^() only")
		}
	}
	return nil
}

// fileView is a file in every generation's shape.
type fileView struct {
	fi  sandbox.FileInfo
	dir string // relative to /mnt/data
}

// viewOf is the view of the file at p (relative to /mnt/data).
func viewOf(p string, fi sandbox.FileInfo) fileView {
	dir, name := path.Split(p)
	fi.Name = name
	return fileView{fi: fi, dir: strings.TrimSuffix(dir, "/")}
}

// writeFile answers with one file: a resource in the executions
// generation, a one-entry listing in the older ones.
func writeFile(w http.ResponseWriter, g generation, f fileView) {
	if g == genExecutions {
		writeJSON(w, http.StatusOK, f.resource())
		return
	}
	writeJSON(w, http.StatusOK, encodeFiles(g, []fileView{f}))
}

func (f fileView) rel() string {
	if f.dir == "" {
		return f.fi.Name
	}
	return f.dir + "/" + f.fi.Name
}

func (f fileView) modTime() string { return f.fi.ModTime.UTC().Format(time.RFC3339Nano) }

func (f fileView) contentType() string {
	if f.fi.Type == sandbox.FileDir {
		return ""
	}
	if t := mime.TypeByExtension(path.Ext(f.fi.Name)); t != "" {
		return t
	}
	return "application/octet-stream"
}

// legacy is the python/* shape; properties the 2024-02-02 one; resource
// the 2024-10-02+ SessionResourceFile.
func (f fileView) legacy(id string) map[string]any {
	return map[string]any{"$id": id, "filename": f.rel(), "size": f.fi.Size, "last_modified_time": f.modTime()}
}

func (f fileView) properties(id int) map[string]any {
	return map[string]any{"$id": strconv.Itoa(id), "properties": map[string]any{
		"$id": strconv.Itoa(id + 1), "filename": f.rel(), "size": f.fi.Size, "lastModifiedTime": f.modTime()}}
}

func (f fileView) resource() map[string]any {
	typ := "File"
	if f.fi.Type == sandbox.FileDir {
		typ = "Directory"
	}
	m := map[string]any{"name": f.fi.Name, "directory": f.dir, "type": typ, "sizeInBytes": f.fi.Size, "lastModifiedAt": f.modTime()}
	if ct := f.contentType(); ct != "" {
		m["contentType"] = ct
	}
	return m
}

// encodeFiles renders files in generation g as a listing.
func encodeFiles(g generation, files []fileView) any {
	switch g {
	case genLegacy:
		vals := make([]any, len(files))
		for i, f := range files {
			vals[i] = f.legacy(strconv.Itoa(i + 2))
		}
		return map[string]any{"$id": "1", "$values": vals}
	case genProperties:
		vals := make([]any, len(files))
		for i, f := range files {
			vals[i] = f.properties(2 + 2*i)
		}
		return map[string]any{"$id": "1", "value": vals}
	}
	vals := make([]any, len(files))
	for i, f := range files {
		vals[i] = f.resource()
	}
	return map[string]any{"value": vals, "nextLink": nil}
}

// upload serves every generation's upload: the first part of a
// multipart body that has a file name (clients call it "file") is
// streamed into the session.
func (s *Server) upload(w http.ResponseWriter, r *http.Request, c *call, g generation) {
	max := s.limits.MaxUploadBytes.Bytes()
	// Multipart framing needs a little room beyond the file itself.
	const overhead = 1 << 20
	if r.ContentLength > max+overhead {
		writeError(w, errcode.Newf(errcode.TooLarge, "the upload is larger than the %d-byte limit", max))
		return
	}
	c.body.extend(time.Now().Add(time.Duration(s.limits.UploadTimeoutSeconds) * time.Second))
	r.Body = http.MaxBytesReader(w, r.Body, max+overhead)
	k, err := c.key("")
	if err != nil {
		writeError(w, err)
		return
	}
	mr, err := r.MultipartReader()
	if err != nil {
		writeError(w, errcode.New(errcode.InvalidArgument, "the upload must be multipart/form-data with a \"file\" part"))
		return
	}
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			writeError(w, errcode.New(errcode.InvalidArgument, "the upload has no \"file\" part with a file name"))
			return
		}
		if err != nil {
			writeError(w, readErr(err))
			return
		}
		// Not part.FileName(): it drops directories, and clients send
		// "/mnt/data/x" or "sub/x" meaning exactly that.
		_, params, _ := mime.ParseMediaType(part.Header.Get("Content-Disposition"))
		name, ok := params["filename"]
		if !ok {
			part.Close() // a form field, not the file
			continue
		}
		p, err := relPath(c.query["path"], name)
		if err == nil {
			err = checkUploadName(p)
		}
		if err != nil {
			writeError(w, err)
			return
		}
		c.session(k)
		fi, err := c.pool.Put(r.Context(), k, p, part, max)
		if err != nil {
			writeError(w, err)
			return
		}
		writeFile(w, g, viewOf(p, fi))
		return
	}
}

// list serves the listings; the executions generation honours
// recursive=true.
func (s *Server) list(w http.ResponseWriter, r *http.Request, c *call, g generation) {
	k, err := c.key("")
	if err != nil {
		writeError(w, err)
		return
	}
	c.session(k)
	dir := stripDataDir(c.query["path"])
	if dir != "" {
		if err := sandbox.CheckPath(dir); err != nil {
			writeError(w, err)
			return
		}
	}
	recursive := g == genExecutions && strings.EqualFold(c.query["recursive"], "true")
	var out []fileView
	queue := []string{dir}
	for len(queue) > 0 && len(out) < maxListed {
		d := queue[0]
		queue = queue[1:]
		files, _, err := c.pool.List(r.Context(), k, d)
		if err != nil {
			writeError(w, err)
			return
		}
		for _, fi := range files {
			switch fi.Type {
			case sandbox.FileRegular:
			case sandbox.FileDir:
				if g != genExecutions {
					continue // the early formats list files only
				}
				if recursive {
					queue = append(queue, path.Join(d, fi.Name))
				}
			default:
				continue
			}
			out = append(out, fileView{fi: fi, dir: d})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].dir != out[j].dir {
			return out[i].dir < out[j].dir
		}
		return out[i].fi.Name < out[j].fi.Name
	})
	writeJSON(w, http.StatusOK, encodeFiles(g, out))
}

// stat serves GET files/{name}.
func (s *Server) stat(w http.ResponseWriter, r *http.Request, c *call, name string) {
	k, p, ok := s.fileTarget(w, c, name)
	if !ok {
		return
	}
	fi, err := c.pool.Stat(r.Context(), k, p)
	if err != nil {
		writeError(w, err)
		return
	}
	g := c.fileGen()
	if g != genExecutions {
		g = genProperties
	}
	writeFile(w, g, viewOf(p, fi))
}

// remove serves DELETE files/{name}.
func (s *Server) remove(w http.ResponseWriter, r *http.Request, c *call, name string) {
	k, p, ok := s.fileTarget(w, c, name)
	if !ok {
		return
	}
	if err := c.pool.Remove(r.Context(), k, p); err != nil {
		writeError(w, err)
		return
	}
	if c.fileGen() == genExecutions {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"message": "file deleted successfully"})
}

// fileTarget resolves the session and path of a file route, answering
// the error itself when it fails.
func (s *Server) fileTarget(w http.ResponseWriter, c *call, name string) (_ pool.SessionKey, p string, ok bool) {
	k, err := c.key("")
	if err == nil {
		p, err = relPath(c.query["path"], name)
	}
	if err != nil {
		writeError(w, err)
		return k, "", false
	}
	c.session(k)
	return k, p, true
}

// safeTypes are the content types a download may be served as; anything
// else goes out as application/octet-stream, so a file written by
// untrusted code is never rendered as a page of this origin.
var safeTypes = map[string]bool{
	"image/png": true, "image/jpeg": true, "image/gif": true, "image/webp": true, "application/pdf": true,
	"text/plain; charset=utf-8": true, "text/csv; charset=utf-8": true, "application/json": true,
}

// download streams a file. Headers go out with the first byte, so an
// error before it is still a clean JSON error; an error after it aborts
// the connection rather than ending a truncated file cleanly.
func (s *Server) download(w http.ResponseWriter, r *http.Request, c *call, name string) {
	k, p, ok := s.fileTarget(w, c, name)
	if !ok {
		return
	}
	ct := mime.TypeByExtension(path.Ext(p))
	if !safeTypes[ct] {
		ct = "application/octet-stream"
	}
	lw := &lazyWriter{w: w, header: func(h http.Header) {
		h.Set("Content-Type", ct)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", "sandbox")
		h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": path.Base(p)}))
	}}
	if _, err := c.pool.Get(r.Context(), k, p, lw, 0); err != nil {
		if lw.started {
			panic(http.ErrAbortHandler)
		}
		writeError(w, err)
		return
	}
	if !lw.started {
		lw.header(w.Header())
		w.Header().Set("Content-Length", "0")
	}
}

// lazyWriter sets headers just before the first byte.
type lazyWriter struct {
	w       http.ResponseWriter
	header  func(http.Header)
	started bool
}

func (l *lazyWriter) Write(p []byte) (int, error) {
	if !l.started {
		l.started = true
		l.header(l.w.Header())
	}
	return l.w.Write(p)
}
