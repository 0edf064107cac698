// Package mcp serves the code-interpreter tools over the Model Context
// Protocol with mark3labs/mcp-go: stdio (one conversation per process, for
// Claude Desktop) and Streamable HTTP (an http.Handler, one conversation
// per MCP session, behind the server's auth).
//
// The session a tool call runs in is chosen here, never by an argument: its
// identifier is a keyed hash of the MCP session id (HTTP), of a
// conversation id that the trusted host application sends in the
// Sandpool-Conversation-Id header, or of a random per-process nonce
// (stdio); its principal is the authenticated caller. Ending an MCP
// session releases its sandbox.
//
// HTTP serves the session-oriented protocol revisions only (up to
// 2025-11-25): the 2026-07-28 revision has no sessions to bind a sandbox
// to, and clients that speak it negotiate down.
package mcp

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
	"github.com/rs/zerolog"

	"github.com/sandpool/sandpool/internal/errcode"
	"github.com/sandpool/sandpool/pool"
	"github.com/sandpool/sandpool/tools"
)

// ConversationHeader carries a conversation id chosen by the host
// application (never by the model). With it, every MCP session of that
// conversation, and of that principal, reaches the same sandbox.
const ConversationHeader = "Sandpool-Conversation-Id"

// Options configure a Server.
type Options struct {
	Service *tools.Service
	// Secret keys the identifiers derived from MCP sessions and
	// conversation ids, and the session ids minted (at least 32 bytes).
	// Keep it across restarts for conversations to find their sandboxes.
	Secret []byte
	// Principal returns the authenticated caller of an HTTP request, from
	// its context (the server's auth middleware puts it there). Nil means
	// every caller is anonymous.
	Principal func(context.Context) (pool.Principal, bool)
	// IdleTTL ends Streamable HTTP sessions idle this long (no request in
	// flight, none for IdleTTL), releasing their sandboxes; default 10
	// minutes. A tool call in flight keeps its session alive.
	IdleTTL time.Duration
	// MaxSessionAge is how long a Streamable HTTP session id is accepted
	// after it was minted; default 24 hours. Ids carry their time of issue,
	// so this holds across restarts.
	MaxSessionAge time.Duration
	// MaxRequestBytes bounds an HTTP request body; default 32 MiB.
	MaxRequestBytes int64
	// Version is reported to clients.
	Version string
	Log     zerolog.Logger
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Server is the MCP server of one pool's tools.
type Server struct {
	opt      Options
	svc      *tools.Service
	ids      *pool.Hasher
	mcp      *server.MCPServer
	sessions *sessionIDs
	http     *server.StreamableHTTPServer

	releases sync.WaitGroup
	stdio    sync.Once

	stopSweep chan struct{}
	swept     chan struct{}
	closeOnce sync.Once
}

// New builds a Server.
func New(opt Options) (*Server, error) {
	if opt.Service == nil {
		return nil, errors.New("mcp: no tool service")
	}
	ids, err := pool.NewHasher(opt.Secret)
	if err != nil {
		return nil, fmt.Errorf("mcp: %w", err)
	}
	if opt.IdleTTL <= 0 {
		opt.IdleTTL = 10 * time.Minute
	}
	if opt.MaxSessionAge <= 0 {
		opt.MaxSessionAge = 24 * time.Hour
	}
	if opt.MaxRequestBytes <= 0 {
		opt.MaxRequestBytes = 32 << 20
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Version == "" {
		opt.Version = "dev"
	}
	s := &Server{opt: opt, svc: opt.Service, ids: ids, stopSweep: make(chan struct{}), swept: make(chan struct{})}
	s.sessions = newSessionIDs(opt.Secret, opt.Now, opt.MaxSessionAge, opt.IdleTTL, s.release)
	slogger := slog.New(zerolog.NewSlogHandler(opt.Log.Level(zerolog.WarnLevel)))
	s.mcp = server.NewMCPServer("sandpool", opt.Version,
		server.WithToolCapabilities(false),
		server.WithLogging(),
		server.WithToolHandlerMiddleware(s.recoverTool),
		server.WithLogger(slogger),
		server.WithInstructions("A sandboxed, stateful Python code interpreter. State (variables, imports, files in /mnt/data) "+
			"is kept for this conversation only. Use execute_python to compute, analyse data and draw figures; "+
			"upload_file / download_file / list_files / delete_file to move files; reset_session for a clean start."),
	)
	for _, d := range s.svc.Defs() {
		t := mcp.NewToolWithRawSchema(d.Name, d.Description, d.Schema)
		t.Title = d.Title
		t.Annotations = mcp.ToolAnnotation{Title: d.Title, ReadOnlyHint: &d.ReadOnly, DestructiveHint: &d.Destructive,
			OpenWorldHint: ptr(false)}
		s.mcp.AddTool(t, s.handler(d.Name))
	}
	// mcp-go's own idle sweeper (WithSessionIdleTTL) counts only the start
	// of a request as activity, so it ended sessions in the middle of long
	// tool calls: sandpool sweeps instead (sweep), counting requests in
	// flight.
	s.http = server.NewStreamableHTTPServer(s.mcp,
		server.WithSessionIdManagerResolver(idResolver{s: s.sessions, principal: func(r *http.Request) pool.Principal {
			p, _ := s.principal(r)
			return p
		}}),
		server.WithHTTPContextFunc(s.httpContext),
		server.WithStreamableHTTPProtocolVersions(mcp.LegacyProtocolVersions()...),
		server.WithStreamableHTTPLogger(slogger),
	)
	go s.sweep()
	return s, nil
}

// principal is the caller of r within MCP, and whether it is known
// (false: a token-less request the server's auth let through, a DELETE).
// Sessions of MCP conversations are MCP's: the caller's REST requests,
// keyed by the caller itself, never reach or list them.
func (s *Server) principal(r *http.Request) (pool.Principal, bool) {
	if s.opt.Principal == nil {
		return "", true
	}
	p, ok := s.opt.Principal(r.Context())
	if !ok {
		return "", false
	}
	return p.Within("mcp"), true
}

// sweep ends idle Streamable HTTP sessions until Close.
func (s *Server) sweep() {
	defer close(s.swept)
	every := min(max(s.opt.IdleTTL/4, 10*time.Millisecond), 30*time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stopSweep:
			return
		case <-t.C:
			for _, id := range s.sessions.idleIDs() {
				s.sessions.end(id)
				s.forget(id)
			}
		}
	}
}

// forget drops mcp-go's transport state of an ended session, through its
// DELETE handler (it has no other way in); the session's id manager has
// already ended it.
func (s *Server) forget(id string) {
	r, err := http.NewRequestWithContext(context.Background(), http.MethodDelete, "/mcp", http.NoBody)
	if err != nil {
		return
	}
	r.Header.Set(server.HeaderKeySessionID, id)
	s.http.ServeHTTP(discard{h: http.Header{}}, r)
}

// discard is a ResponseWriter that drops what is written.
type discard struct{ h http.Header }

func (d discard) Header() http.Header       { return d.h }
func (discard) Write(b []byte) (int, error) { return len(b), nil }
func (discard) WriteHeader(int)             {}

func ptr[T any](v T) *T { return &v }

// binding is what a request's context says about its conversation.
type binding struct {
	principal    pool.Principal
	conversation string // from ConversationHeader
	stdio        string // the process's nonce
}

type bindingKey struct{}

func (s *Server) httpContext(ctx context.Context, r *http.Request) context.Context {
	b := binding{conversation: r.Header.Get(ConversationHeader)}
	if p, ok := s.principal(r); ok {
		b.principal = p
	}
	return context.WithValue(ctx, bindingKey{}, b)
}

// recoverTool turns a panic in a tool handler into an internal error
// result: the panic's value and stack stay in the server's log (mcp-go's
// own recovery sends the value to the client).
func (s *Server) recoverTool(next server.ToolHandlerFunc) server.ToolHandlerFunc {
	return func(ctx context.Context, req mcp.CallToolRequest) (res *mcp.CallToolResult, err error) {
		defer func() {
			if v := recover(); v != nil {
				s.opt.Log.Error().Str("tool", req.Params.Name).Str("panic", fmt.Sprint(v)).
					Str("stack", string(debug.Stack())).Msg("tool handler panicked")
				res, err = mcp.NewToolResultError("internal error (code "+string(errcode.Internal)+")"), nil
			}
		}()
		return next(ctx, req)
	}
}

// derive is the identifier of a conversation (kind: session, conversation
// or stdio).
func (s *Server) derive(kind, value string) pool.Identifier {
	return s.ids.IdentifierFor("mcp-"+kind, value)
}

// maxConversationLen bounds a conversation id from the header.
const maxConversationLen = 256

var (
	errNoBinding = errcode.New(errcode.InvalidArgument,
		"this request has no conversation to bind a sandbox to: use an MCP protocol revision with sessions (2025-11-25 or earlier, "+
			"which this server negotiates) or send the "+ConversationHeader+" header from the host application")
	errBadConversation = errcode.Newf(errcode.InvalidArgument, "the %s header must be 1 to %d printable ASCII characters", ConversationHeader, maxConversationLen)
)

// key is the session key of a tool call.
func (s *Server) key(ctx context.Context) (pool.SessionKey, error) {
	b, _ := ctx.Value(bindingKey{}).(binding)
	switch {
	case b.stdio != "":
		return pool.Key(b.principal, s.derive("stdio", b.stdio)), nil
	case b.conversation != "":
		if len(b.conversation) > maxConversationLen || strings.IndexFunc(b.conversation, func(r rune) bool { return r < 0x21 || r > 0x7e }) >= 0 {
			return pool.SessionKey{}, errBadConversation
		}
		return pool.Key(b.principal, s.derive("conversation", b.conversation)), nil
	}
	cs := server.ClientSessionFromContext(ctx)
	if cs == nil || cs.SessionID() == "" {
		return pool.SessionKey{}, errNoBinding
	}
	k, err := s.sessions.bind(cs.SessionID(), b.principal, s.derive)
	if err != nil {
		_, err = sessionError(err)
	}
	return k, err
}

// release ends the sandbox session of an ended MCP session.
func (s *Server) release(k pool.SessionKey) {
	s.releases.Add(1)
	go func() {
		defer s.releases.Done()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := s.svc.Reset(ctx, k); err.IsError {
			s.opt.Log.Warn().Str("error", err.JoinText()).Msg("releasing the sandbox of an ended MCP session")
		}
	}()
}

func (s *Server) handler(name string) server.ToolHandlerFunc {
	return func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		t0 := s.opt.Now()
		k, err := s.key(ctx)
		if err != nil {
			return toMCP(tools.ErrorResult(err)), nil
		}
		var st *streamer
		var observe pool.Sink
		if name == tools.ExecutePython {
			st = newStreamer(ctx, s.mcp, req)
			observe = st.sink
		}
		res := s.svc.Call(ctx, k, name, req.GetArguments(), observe)
		if st != nil {
			st.finish()
		}
		ev := s.opt.Log.Info()
		if res.IsError {
			ev = s.opt.Log.Warn()
		}
		ev.Str("tool", name).Str("principal", string(k.Principal)).Bool("isError", res.IsError).
			Dur("duration", s.opt.Now().Sub(t0)).Msg("tool call")
		return toMCP(res), nil
	}
}

// toMCP converts a tool result to MCP content.
func toMCP(r tools.Result) *mcp.CallToolResult {
	out := &mcp.CallToolResult{IsError: r.IsError}
	for _, c := range r.Content {
		switch {
		case c.Kind == tools.Text:
			out.Content = append(out.Content, mcp.NewTextContent(c.Text))
		case c.Kind == tools.Image:
			out.Content = append(out.Content, mcp.NewImageContent(base64.StdEncoding.EncodeToString(c.Data), c.MIMEType))
		case c.Kind == tools.Resource && c.Data == nil:
			out.Content = append(out.Content, mcp.NewEmbeddedResource(mcp.TextResourceContents{URI: c.URI, MIMEType: c.MIMEType, Text: c.Text}))
		case c.Kind == tools.Resource:
			out.Content = append(out.Content, mcp.NewEmbeddedResource(mcp.BlobResourceContents{URI: c.URI, MIMEType: c.MIMEType, Blob: base64.StdEncoding.EncodeToString(c.Data)}))
		}
	}
	if out.Content == nil {
		out.Content = []mcp.Content{}
	}
	return out
}

// Handler serves Streamable HTTP. Put it behind the server's auth: the
// Principal option reads the caller from the request's context.
//
// Every request that names a session (POST, the GET notification stream,
// DELETE) must carry a genuine, unexpired id minted for its caller; only a
// DELETE without a caller (the server's auth lets a token-less DELETE
// through, as mcp-go's clients send no token with it) is taken on the id
// alone. POST bodies are read here, bounded, before mcp-go sees them.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, known := s.principal(r)
		id := r.Header.Get(server.HeaderKeySessionID)
		switch {
		case id == "" && r.Method == http.MethodGet:
			writeHTTPError(w, http.StatusBadRequest, errcode.New(errcode.InvalidArgument,
				"the notification stream (GET) needs the Mcp-Session-Id header of an initialized session"))
			return
		case id == "" && r.Method == http.MethodDelete:
			writeHTTPError(w, http.StatusNotFound, errcode.New(errcode.NotFound, "no such MCP session"))
			return
		case id != "":
			if err := s.sessions.check(id, p, known || r.Method != http.MethodDelete); err != nil {
				status, perr := sessionError(err)
				writeHTTPError(w, status, perr)
				return
			}
		}
		if r.Method == http.MethodPost {
			body, err := s.readBody(w, r)
			if err != nil {
				writeHTTPError(w, http.StatusRequestEntityTooLarge, err)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			if id != "" {
				defer s.sessions.begin(id)()
			}
		}
		s.http.ServeHTTP(w, r)
	})
}

// readBody reads a POST body of at most MaxRequestBytes.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	tooLarge := errcode.Newf(errcode.TooLarge, "the request body is larger than the %d-byte limit", s.opt.MaxRequestBytes)
	if r.ContentLength > s.opt.MaxRequestBytes {
		// Not read at all: the connection is not worth keeping.
		w.Header().Set("Connection", "close")
		return nil, tooLarge
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opt.MaxRequestBytes))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return nil, tooLarge
	case err != nil:
		return nil, errcode.Wrap(errcode.InvalidArgument, "the request body could not be read", err)
	}
	return b, nil
}

// writeHTTPError answers with err's code and public message, in the API's
// error shape.
func writeHTTPError(w http.ResponseWriter, status int, err error) {
	b, _ := json.Marshal(map[string]any{"error": map[string]string{"code": string(errcode.Of(err)), "message": errcode.Public(err)}})
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("x-ms-error-code", string(errcode.Of(err)))
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// ServeStdio serves one conversation over in and out (newline-delimited
// JSON-RPC; nothing else is written to out) until in ends or ctx is
// cancelled, then releases the conversation's sandbox. mcp-go keeps one
// stdio session per process, so a process may call it once.
func (s *Server) ServeStdio(ctx context.Context, in io.Reader, out io.Writer) error {
	first := false
	s.stdio.Do(func() { first = true })
	if !first {
		return errors.New("mcp: ServeStdio may run once per process")
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	bind := binding{stdio: hex.EncodeToString(b[:])}
	ss := server.NewStdioServer(s.mcp)
	ss.SetErrorLogger(stdlog.New(zerologWriter{s.opt.Log}, "", 0))
	ss.SetContextFunc(func(ctx context.Context) context.Context { return context.WithValue(ctx, bindingKey{}, bind) })
	err := ss.Listen(ctx, in, out)
	s.release(pool.Key(bind.principal, s.derive("stdio", bind.stdio)))
	if errors.Is(err, context.Canceled) || errors.Is(err, io.EOF) {
		err = nil
	}
	return err
}

// zerologWriter turns mcp-go's standard-library log lines into warnings.
type zerologWriter struct{ log zerolog.Logger }

func (w zerologWriter) Write(p []byte) (int, error) {
	w.log.Warn().Str("component", "mcp").Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}

// Close ends the HTTP sessions' sweeper and waits (until ctx ends) for
// sandbox releases in flight. Sessions still open keep their sandboxes,
// so that a restarted server (with the same secret) serves them again.
func (s *Server) Close(ctx context.Context) error {
	s.sessions.close()
	s.closeOnce.Do(func() { close(s.stopSweep) })
	<-s.swept
	err := s.http.Shutdown(ctx)
	done := make(chan struct{})
	go func() { s.releases.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return errors.Join(err, ctx.Err())
	}
	return err
}
