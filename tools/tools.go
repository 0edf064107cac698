// Package tools is what a code-interpreter tool means, whatever carries it:
// the tool names, descriptions and JSON schemas a model sees, the checks of
// the arguments it sends, and the rendering of executions and files as
// content a model can use (text capped with explicit truncation notes,
// figures as size-bounded images). The MCP server (tools/mcp) and the
// langchaingo tools (agents) are thin wiring over a Service.
//
// A Service never takes a session identifier from a tool's arguments: the
// surface passes the session key it bound to the conversation.
package tools

import (
	"context"
	"io"
	"time"

	"github.com/sandpool/sandpool/pool"
)

// Backend runs code and file operations in the session of a key: a
// *pool.Pool in process, or a client of a remote sandpool server.
type Backend interface {
	Execute(ctx context.Context, k pool.SessionKey, req pool.ExecRequest, sink pool.Sink) (*pool.Result, error)
	Put(ctx context.Context, k pool.SessionKey, path string, r io.Reader, maxSize int64) (pool.FileInfo, error)
	Get(ctx context.Context, k pool.SessionKey, path string, w io.Writer, maxSize int64) (pool.FileInfo, error)
	List(ctx context.Context, k pool.SessionKey, dir string) ([]pool.FileInfo, bool, error)
	Remove(ctx context.Context, k pool.SessionKey, path string) error
	// Delete ends the session; its sandbox is removed.
	Delete(ctx context.Context, k pool.SessionKey) error
}

var _ Backend = (*pool.Pool)(nil)

// Limits bound what a tool call takes and returns. Zero fields get the
// defaults of DefaultLimits.
type Limits struct {
	// MaxTimeout caps the timeout argument (the pool's maximum).
	MaxTimeout time.Duration
	// DefaultTimeout applies when the call gives none.
	DefaultTimeout time.Duration
	// MaxCodeBytes bounds the code argument.
	MaxCodeBytes int
	// MaxTextBytes caps each text part returned (stdout, stderr, result,
	// traceback, a text file), with a truncation note past it.
	MaxTextBytes int
	// MaxImageBytes bounds one image (PNG bytes): larger figures are
	// downscaled, or dropped with a note when that does not get them
	// under the bound.
	MaxImageBytes int
	// MaxImages bounds the images of one execution.
	MaxImages int
	// MaxFileBytes bounds an uploaded or downloaded file.
	MaxFileBytes int64
}

// DefaultLimits are the limits of a zero Limits field.
var DefaultLimits = Limits{
	MaxTimeout:     220 * time.Second,
	DefaultTimeout: 60 * time.Second,
	MaxCodeBytes:   1 << 20,
	MaxTextBytes:   16 << 10,
	MaxImageBytes:  768 << 10,
	MaxImages:      4,
	MaxFileBytes:   8 << 20,
}

func (l *Limits) setDefaults() {
	d := DefaultLimits
	set := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	if l.MaxTimeout <= 0 {
		l.MaxTimeout = d.MaxTimeout
	}
	if l.DefaultTimeout <= 0 {
		l.DefaultTimeout = d.DefaultTimeout
	}
	l.DefaultTimeout = min(l.DefaultTimeout, l.MaxTimeout)
	set(&l.MaxCodeBytes, d.MaxCodeBytes)
	set(&l.MaxTextBytes, d.MaxTextBytes)
	set(&l.MaxImageBytes, d.MaxImageBytes)
	set(&l.MaxImages, d.MaxImages)
	if l.MaxFileBytes <= 0 {
		l.MaxFileBytes = d.MaxFileBytes
	}
}

// Kind is the kind of a piece of content.
type Kind int

// Content kinds.
const (
	// Text is text for the model.
	Text Kind = iota + 1
	// Image is an image (Data holds its bytes, MIMEType its type).
	Image
	// Resource is a file's content (Text when it is UTF-8 text, Data
	// otherwise), named by URI.
	Resource
)

// Content is one piece of a tool result.
type Content struct {
	Kind     Kind
	Text     string
	Data     []byte
	MIMEType string
	URI      string
}

// Result is what a tool call returns. IsError tells the model the call
// failed (a Python exception, a timeout, a refused argument): the content
// says why.
type Result struct {
	Content []Content
	IsError bool
}

// Service runs the tools against a Backend.
type Service struct {
	backend Backend
	limits  Limits
	defs    []Def
	args    map[string]map[string]bool // argument names per tool
}

// NewService returns a Service over b with limits l.
func NewService(b Backend, l Limits) *Service {
	l.setDefaults()
	defs := buildDefs(l)
	return &Service{backend: b, limits: l, defs: defs, args: argNames(defs)}
}

// Limits returns the service's limits, defaults filled in.
func (s *Service) Limits() Limits { return s.limits }

func textResult(isError bool, parts ...string) Result {
	r := Result{IsError: isError}
	for _, p := range parts {
		r.Content = append(r.Content, Content{Kind: Text, Text: p})
	}
	return r
}

// JoinText is the text of r's content, for surfaces that carry a single
// string (langchaingo): text parts in order, and a line for each image or
// binary resource.
func (r Result) JoinText() string {
	var out []byte
	for _, c := range r.Content {
		if len(out) > 0 {
			out = append(out, '\n')
		}
		switch {
		case c.Kind == Text || c.Kind == Resource && c.Data == nil:
			out = append(out, c.Text...)
		case c.Kind == Image:
			out = append(out, "[image: "+c.MIMEType+", "+byteCount(int64(len(c.Data)))+"]"...)
		default:
			out = append(out, "["+c.URI+": "+c.MIMEType+", "+byteCount(int64(len(c.Data)))+"]"...)
		}
	}
	return string(out)
}

// PoolLimits are the default limits with the timeouts of pool c.
func PoolLimits(c pool.Config) Limits {
	return Limits{
		MaxTimeout:     time.Duration(c.Execution.MaxTimeoutInSeconds) * time.Second,
		DefaultTimeout: time.Duration(c.Execution.DefaultTimeoutInSeconds) * time.Second,
	}
}
