package api

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	stdlog "log"
	"maps"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/sandpool/sandpool/internal/errcode"
	"github.com/sandpool/sandpool/pool"
)

// Options configure the HTTP surface.
type Options struct {
	Manager *pool.Manager
	// Auth applies to every pool without its own entry in PoolAuth, and to
	// the pool listing.
	Auth     AuthConfig
	PoolAuth map[string]AuthConfig
	Limits   Limits
	// Metrics serves GET /metrics when set.
	Metrics http.Handler
	// Fallback serves paths this surface does not own.
	Fallback http.Handler
	// MCP returns the MCP (Streamable HTTP) handler of a pool, served at
	// /pools/{pool}/mcp behind the pool's auth and limits, with the caller
	// in the request's context (PrincipalFrom). Nil: no MCP routes.
	MCP func(pool string) http.Handler
	// MCPPool is the pool also served at /mcp; default the first pool.
	MCPPool string
	// NoUI turns off the browser page at /.
	NoUI bool
	// AllowedHosts are the host names (exact, or "*.example.com") this
	// server answers to besides loopback names and IP addresses. The Host
	// check applies when any pool is served without authentication, or
	// when names are given.
	AllowedHosts []string
	// AllowedOrigins are the browser origins (scheme://host[:port]) whose
	// pages may change state (execute, upload, delete, WebSocket) besides
	// the server's own.
	AllowedOrigins []string
	Log            zerolog.Logger
}

// Server is the HTTP data plane: Azure dynamic-sessions routes under
// /pools/{pool}, the pool listing, health and metrics.
type Server struct {
	mgr      *pool.Manager
	auth     *authenticator
	poolAuth map[string]*authenticator
	limits   Limits
	limiter  *limiter
	execs    *execStore
	metrics  http.Handler
	fallback http.Handler
	mcp      map[string]http.Handler
	mcpPool  string
	// forwarders serve the CustomContainer pools, by name.
	forwarders map[string]*forwarder
	guard      *browserGuard
	noUI       bool
	log        zerolog.Logger

	mu      sync.Mutex
	warmed  map[string]bool
	closing bool
	// ws are the open WebSockets; wsDone counts their handlers, which
	// Close waits for.
	ws     map[*wsSession]struct{}
	wsDone sync.WaitGroup
}

var errShuttingDown = errcode.New(errcode.ShuttingDown, "the server is shutting down")

// New builds the surface. Close releases it.
func New(ctx context.Context, opt Options) (*Server, error) {
	if err := opt.Limits.Normalize(); err != nil {
		return nil, err
	}
	s := &Server{
		mgr: opt.Manager, limits: opt.Limits, limiter: newLimiter(opt.Limits),
		execs: newExecStore(opt.Manager.Hasher()), metrics: opt.Metrics, fallback: opt.Fallback,
		log: opt.Log, poolAuth: map[string]*authenticator{}, warmed: map[string]bool{}, noUI: opt.NoUI,
		ws: map[*wsSession]struct{}{},
	}
	s.forwarders = map[string]*forwarder{}
	for _, p := range opt.Manager.Pools() {
		if cfg := p.Config(); cfg.ContainerType == pool.CustomContainer {
			s.forwarders[p.Name()] = newForwarder(cfg)
		}
	}
	if opt.MCP != nil {
		// MCP's tools run Python: custom-container pools have none.
		s.mcp = map[string]http.Handler{}
		for _, p := range opt.Manager.Pools() {
			if s.forwarders[p.Name()] == nil {
				s.mcp[p.Name()] = opt.MCP(p.Name())
				if opt.MCPPool == "" && s.mcpPool == "" {
					s.mcpPool = p.Name()
				}
			}
		}
		if opt.MCPPool != "" {
			s.mcpPool = opt.MCPPool
		}
		if s.mcpPool != "" && s.mcp[s.mcpPool] == nil {
			return nil, fmt.Errorf("mcp.pool: no Python pool %q", s.mcpPool)
		}
	}
	var err error
	if s.auth, err = newAuthenticator(ctx, opt.Auth, opt.Log); err != nil {
		return nil, fmt.Errorf("server.auth.%w", err)
	}
	for name, ac := range opt.PoolAuth {
		if opt.Manager.Pool(name) == nil {
			s.Close(ctx)
			return nil, fmt.Errorf("auth for pool %q: no such pool", name)
		}
		a, err := newAuthenticator(ctx, ac, opt.Log)
		if err != nil {
			s.Close(ctx)
			return nil, fmt.Errorf("pools[%s].auth.%w", name, err)
		}
		s.poolAuth[name] = a
	}
	anonymous := s.auth.none
	for _, a := range s.poolAuth {
		anonymous = anonymous || a.none
	}
	if s.guard, err = newBrowserGuard(opt.AllowedHosts, opt.AllowedOrigins, anonymous); err != nil {
		s.Close(ctx)
		return nil, fmt.Errorf("server.%w", err)
	}
	return s, nil
}

// Close stops taking executions (new requests, WebSockets and their
// messages are refused), waits until ctx ends for those running (the
// asynchronous ones and those of WebSockets), closes the WebSockets with
// 1001, and stops background work. It returns once every goroutine the
// Server started has ended.
func (s *Server) Close(ctx context.Context) {
	s.mu.Lock()
	s.closing = true
	for ws := range s.ws {
		signal(ws.wake) // an idle executor sees closing and ends
	}
	s.mu.Unlock()
	wsEnded := make(chan struct{})
	go func() { s.wsDone.Wait(); close(wsEnded) }()
	select {
	case <-wsEnded:
	case <-ctx.Done():
		s.mu.Lock()
		for ws := range s.ws {
			ws.cancel()
		}
		s.mu.Unlock()
		<-wsEnded
	}
	s.execs.close(ctx)
	for _, fw := range s.forwarders {
		fw.close()
	}
	s.auth.close()
	for _, a := range s.poolAuth {
		a.close()
	}
}

// authFor is the authenticator of a pool.
func (s *Server) authFor(name string) *authenticator {
	if a := s.poolAuth[name]; a != nil {
		return a
	}
	return s.auth
}

// anyPrincipal authenticates r against the server's and every pool's
// authentication, so a route beside the pools (metrics) is open to anyone
// only when every pool is. The first error is returned when none accepts.
func (s *Server) anyPrincipal(r *http.Request) (pool.Principal, error) {
	var first error
	for _, a := range append([]*authenticator{s.auth}, slices.Collect(maps.Values(s.poolAuth))...) {
		p, err := a.authenticate(r)
		if err == nil && (p != Anonymous || s.allAnonymous()) {
			return p, nil
		}
		if first == nil && err != nil {
			first = err
		}
	}
	if first == nil {
		first = errNoToken
	}
	return "", first
}

// allAnonymous reports whether no pool asks for a token.
func (s *Server) allAnonymous() bool {
	if !s.auth.none {
		return false
	}
	for _, a := range s.poolAuth {
		if !a.none {
			return false
		}
	}
	return true
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// track registers an open WebSocket, unless the server is closing.
func (s *Server) track(ws *wsSession) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.ws[ws] = struct{}{}
	s.wsDone.Add(1)
	return true
}

func (s *Server) untrack(ws *wsSession) {
	s.mu.Lock()
	delete(s.ws, ws)
	s.mu.Unlock()
	s.wsDone.Done()
}

// Handler serves every route of the surface.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serve) }

// HTTPServer is an http.Server for the surface with its connection
// limits: headers must arrive within 10 s and stay under 64 KiB, idle
// connections close after 2 minutes. Bodies have their own deadlines
// (Limits); responses have none, as an execution may run for minutes.
func (s *Server) HTTPServer(errorLog *stdlog.Logger) *http.Server {
	return &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          errorLog,
	}
}

// call is one request to a pool route, authenticated.
type call struct {
	r         *http.Request
	pool      *pool.Pool
	principal pool.Principal
	query     map[string]string
	base      string // the pool's base path, e.g. /pools/default
	hasher    *pool.Hasher
	hash      string // the session's keyed hash, for the access log
	body      *bodyGuard
}

func (c *call) apiVersion() string { return c.query["api-version"] }

// key is the session key of the call: its principal and the identifier
// from the query (or, for early clients, from the body).
func (c *call) key(fromBody string) (pool.SessionKey, error) {
	raw, ok := c.query["identifier"]
	if !ok {
		raw = fromBody
	}
	if raw == "" {
		return pool.SessionKey{}, errcode.New(errcode.InvalidIdentifier, "the identifier query parameter is required")
	}
	id, err := pool.ParseIdentifier(raw)
	if err != nil {
		return pool.SessionKey{}, err
	}
	return pool.Key(c.principal, id), nil
}

// session notes the session a call addresses (as a keyed hash) for the log.
func (c *call) session(k pool.SessionKey) { c.hash = c.hasher.Hash(k) }

// apiVersions are the data-plane versions clients send. The route, not
// the version, picks the wire format, except for the file routes both
// formats share.
var apiVersions = map[string]generation{
	"2023-08-01-preview": genProperties,
	"2024-02-02-preview": genProperties,
	"2024-08-02-preview": genProperties,
	"2024-09-01":         genExecutions,
	"2024-10-02-preview": genExecutions,
	"2025-02-02-preview": genExecutions,
	"2025-10-02-preview": genExecutions,
}

// fileGen is the wire format of the file routes both formats share.
func (c *call) fileGen() generation {
	if g, ok := apiVersions[c.apiVersion()]; ok {
		return g
	}
	return genExecutions
}

var slashes = regexp.MustCompile(`/{2,}`)

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	r, guard := guardBody(w, r, time.Duration(s.limits.BodyTimeoutSeconds)*time.Second)
	rec := &recorder{ResponseWriter: w, status: http.StatusOK, body: guard}
	start := time.Now()
	reqID := newRequestID()
	rec.Header().Set("x-ms-request-id", reqID)
	rec.Header().Set("X-Request-Id", reqID)
	if cid := r.Header.Get("x-ms-client-request-id"); validOperationID(cid) {
		rec.Header().Set("x-ms-client-request-id", cid)
	}
	// Clients join base URLs and paths carelessly: "//code/execute" and a
	// trailing slash mean what they would without the extra slashes.
	path := slashes.ReplaceAllString(r.URL.EscapedPath(), "/")
	if len(path) > 1 {
		path = strings.TrimSuffix(path, "/")
	}
	ev := accessEvent{route: "other"}
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				ev.aborted = true
			} else {
				s.log.Error().Str("request_id", reqID).Str("panic", fmt.Sprint(v)).Msg("handler panicked")
				if !rec.wrote {
					writeError(rec, errcode.New(errcode.Internal, "internal error"))
				}
			}
		}
		s.logAccess(r, rec, reqID, start, ev)
		if ev.aborted {
			panic(http.ErrAbortHandler)
		}
	}()
	if err := s.guard.check(r); err != nil {
		ev.route = "guard"
		writeError(rec, err)
		return
	}
	switch {
	case path == "/healthz":
		ev.route = "healthz"
		s.health(rec, r)
	case path == "/readyz":
		ev.route = "readyz"
		s.ready(rec, r)
	case path == "/metrics" && s.metrics != nil:
		ev.route = "metrics"
		// Any caller some pool accepts; anyone only when no pool asks
		// for a token.
		if principal, err := s.anyPrincipal(r); err != nil {
			writeError(rec, err)
		} else {
			ev.principal = principal
			s.metrics.ServeHTTP(rec, r)
		}
	case path == "/pools":
		ev.route = "pools"
		s.listPools(rec, r, &ev)
	case strings.HasPrefix(path, "/pools/"):
		s.poolRoute(rec, r, path, guard, &ev)
	case isUIPath(path) && !s.noUI:
		ev.route = "ui"
		s.ui(rec, r, path)
	case path == "/mcp" && s.mcpPool != "":
		s.poolRoute(rec, r, "/pools/"+url.PathEscape(s.mcpPool)+"/mcp", guard, &ev)
	case s.fallback != nil:
		ev.route = "fallback"
		s.fallback.ServeHTTP(rec, r)
	default:
		writeError(rec, errcode.New(codeRouteNotFound, "no such route"))
	}
}

// poolRoute authenticates, limits and dispatches a request under
// /pools/{pool}.
func (s *Server) poolRoute(w http.ResponseWriter, r *http.Request, path string, body *bodyGuard, ev *accessEvent) {
	rest := strings.TrimPrefix(path, "/pools/")
	name, rest, _ := strings.Cut(rest, "/")
	name, _ = url.PathUnescape(name)
	p := s.mgr.Pool(name)
	a := s.auth
	if p != nil {
		a = s.authFor(name)
	}
	custom := s.forwarders[name] != nil
	if rest == "ws" && !custom {
		r = wsAuth(r)
	}
	principal, err := a.authenticate(r)
	if err != nil && rest == "mcp" && r.Method == "DELETE" && r.Header.Get("Mcp-Session-Id") != "" && s.mcp[name] != nil {
		// Ending an MCP session needs no token: its id is an unguessable
		// capability minted for an authenticated caller, which the MCP
		// handler checks, and some clients (mcp-go's) send no
		// Authorization header with the DELETE.
		ev.route, ev.pool = "mcp", name
		s.serveMCP(w, r, name, "")
		return
	}
	if err != nil {
		ev.route = "auth"
		writeError(w, err)
		return
	}
	ev.principal = principal
	if p == nil {
		writeError(w, errcode.New(codePoolNotFound, "no such pool"))
		return
	}
	ev.pool = name
	if rest == "mcp" && s.mcp[name] != nil && r.Method == "GET" {
		// The notification stream: it counts against the caller's
		// concurrency and open streams while it lasts.
		ev.route = "mcp"
		release, err := s.limiter.admit(principal)
		if err != nil {
			writeLimited(w, err)
			return
		}
		defer release()
		closeStream, err := s.limiter.openStream(principal)
		if err != nil {
			writeLimited(w, err)
			return
		}
		defer closeStream()
		s.serveMCP(w, r, name, principal)
		return
	}
	if rest == "mcp" && s.mcp[name] != nil && r.Method != "POST" {
		// DELETE runs no code: not counted against the caller's limits.
		ev.route = "mcp"
		s.serveMCP(w, r, name, principal)
		return
	}
	release, err := s.limiter.admit(principal)
	if err != nil {
		ev.route = "limited"
		writeLimited(w, err)
		return
	}
	defer release()
	c := &call{r: r, pool: p, principal: principal, query: parseQuery(r.URL.RawQuery),
		base: "/pools/" + url.PathEscape(name), hasher: s.mgr.Hasher(), body: body}
	defer func() { ev.session = c.hash }()
	if custom && !isManagement(rest) {
		ev.route = s.forward(w, r, c)
		return
	}
	if v, ok := c.query["api-version"]; ok {
		if _, known := apiVersions[v]; !known {
			writeError(w, errcode.New(codeBadAPIVersion, "unsupported api-version; use one of 2024-02-02-preview, 2024-10-02-preview, 2025-02-02-preview, 2025-10-02-preview"))
			return
		}
	}
	ev.route = s.dispatch(w, r, c, strings.Split(rest, "/"))
}

// dispatch matches the route (path segments after the pool) and serves
// it; it returns the route's name for the access log.
func (s *Server) dispatch(w http.ResponseWriter, r *http.Request, c *call, seg []string) string {
	m := r.Method
	route := strings.Join(seg, "/")
	switch {
	case route == "":
		return s.only(w, m, "GET", "pool", func() { s.getPool(w, c) })
	case route == "ws":
		return s.only(w, m, "GET", "ws", func() { s.serveWS(w, r, c) })
	case route == "mcp" && s.mcp[c.pool.Name()] != nil:
		s.serveMCP(w, r, c.pool.Name(), c.principal)
		return "mcp"
	case route == "python/execute":
		return s.only(w, m, "POST", "python/execute", func() { s.handleExecute(w, r, c, genLegacy) })
	case route == "code/execute":
		return s.only(w, m, "POST", "code/execute", func() { s.handleExecute(w, r, c, genProperties) })
	case route == "executions" || route == "execute":
		return s.only(w, m, "POST", "executions", func() { s.handleExecute(w, r, c, genExecutions) })
	case len(seg) == 2 && seg[0] == "executions":
		id, _ := url.PathUnescape(seg[1])
		return s.only(w, m, "GET", "executions/{id}", func() { s.handleGetExecution(w, r, c, id) })
	case route == "python/uploadFile":
		return s.only(w, m, "POST", "python/uploadFile", func() { s.upload(w, r, c, genLegacy) })
	case route == "files/upload":
		return s.only(w, m, "POST", "files/upload", func() { s.upload(w, r, c, genProperties) })
	case route == "files:uploadFile":
		return s.only(w, m, "POST", "files", func() { s.upload(w, r, c, genExecutions) })
	case route == "files" && m == "POST":
		s.upload(w, r, c, genExecutions)
		return "files"
	case route == "files":
		return s.only(w, m, "GET", "files", func() { s.list(w, r, c, c.fileGen()) })
	case route == "python/files":
		return s.only(w, m, "GET", "python/files", func() { s.list(w, r, c, genLegacy) })
	case route == "python/downloadFile":
		return s.only(w, m, "GET", "python/downloadFile", func() { s.download(w, r, c, c.query["filename"]) })
	case len(seg) > 2 && seg[0] == "files" && seg[1] == "content":
		return s.only(w, m, "GET", "files/content", func() { s.download(w, r, c, unescapeJoin(seg[2:])) })
	case len(seg) > 2 && seg[0] == "files" && seg[len(seg)-1] == "content":
		return s.only(w, m, "GET", "files/{name}/content", func() { s.download(w, r, c, unescapeJoin(seg[1:len(seg)-1])) })
	case len(seg) > 1 && seg[0] == "files":
		name := unescapeJoin(seg[1:])
		return getOrDelete(w, m, "files/{name}", func() { s.stat(w, r, c, name) }, func() { s.remove(w, r, c, name) })
	case route == "session":
		return getOrDelete(w, m, "session", func() { s.getSession(w, c) }, func() { s.deleteSession(w, r, c, false) })
	case route == "listSessions":
		return s.only(w, m, "GET", "listSessions", func() { s.listSessions(w, c, route) })
	case route == "metadata":
		return s.only(w, m, "GET", "metadata", func() { s.metadata(w, c) })
	case route == ".management/getSession":
		return s.only(w, m, "POST", route, func() { s.getSession(w, c) })
	case route == ".management/listSessions":
		return s.only(w, m, "POST", route, func() { s.listSessions(w, c, route) })
	case route == ".management/stopSession":
		return s.only(w, m, "POST", route, func() { s.deleteSession(w, r, c, true) })
	}
	writeError(w, errcode.New(codeRouteNotFound, "no such route under this pool"))
	return "unknown"
}

// only serves fn when the method matches.
func (s *Server) only(w http.ResponseWriter, got, want, route string, fn func()) string {
	if got != want {
		methodNotAllowed(w, want)
		return route
	}
	fn()
	return route
}

// getOrDelete serves a route that answers GET and DELETE.
func getOrDelete(w http.ResponseWriter, got, route string, get, del func()) string {
	switch got {
	case "GET":
		get()
	case "DELETE":
		del()
	default:
		methodNotAllowed(w, "GET, DELETE")
	}
	return route
}

func methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	writeError(w, errcode.New(codeMethodNotAllowed, "method not allowed; use "+allow))
}

// unescapeJoin joins escaped path segments into one unescaped name, so
// "a%2Fb" (one segment) and "a/b" (two) name the same file.
func unescapeJoin(seg []string) string {
	parts := make([]string, len(seg))
	for i, p := range seg {
		if u, err := url.PathUnescape(p); err == nil {
			parts[i] = u
		} else {
			parts[i] = p
		}
	}
	return strings.Join(parts, "/")
}

// parseQuery reads a query string leniently: only "&" separates
// parameters (identifiers may hold ";"), and a value that is not valid
// percent-encoding is taken as sent (some clients do not encode
// identifiers, which may hold "%"). The first occurrence wins.
func parseQuery(raw string) map[string]string {
	m := map[string]string{}
	for part := range strings.SplitSeq(raw, "&") {
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		k, v = queryUnescape(k), queryUnescape(v)
		if _, ok := m[k]; !ok {
			m[k] = v
		}
	}
	return m
}

func queryUnescape(s string) string {
	if u, err := url.QueryUnescape(s); err == nil {
		return u
	}
	return s
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	if r.Method != "GET" && r.Method != "HEAD" {
		methodNotAllowed(w, "GET")
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// ready answers 200 once every pool has been warm (readySessionInstances
// Ready) since start, and 503 before that or while shutting down. A pool
// drained by traffic later stays ready: it is refilling, not broken.
func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	if r.Method != "GET" && r.Method != "HEAD" {
		methodNotAllowed(w, "GET")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		writeError(w, errcode.New(errcode.ShuttingDown, "the server is shutting down"))
		return
	}
	var waiting []string
	for _, p := range s.mgr.Pools() {
		st := p.Status()
		if st.Ready >= st.ReadySessionInstances {
			s.warmed[st.Name] = true
		}
		if !s.warmed[st.Name] {
			waiting = append(waiting, st.Name)
		}
	}
	if len(waiting) > 0 {
		writeError(w, errcode.Newf(errcode.Unavailable, "pools still warming: %s", strings.Join(waiting, ", ")))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// accessEvent is what the access log says about a request: never tokens,
// raw identifiers, file names, code or output.
type accessEvent struct {
	route     string
	pool      string
	principal pool.Principal
	session   string
	aborted   bool
}

func (s *Server) logAccess(r *http.Request, rec *recorder, reqID string, start time.Time, ev accessEvent) {
	e := s.log.Info()
	if rec.status >= 500 {
		e = s.log.Warn()
	}
	e = e.Str("request_id", reqID).Str("method", r.Method).Str("route", ev.route).Int("status", rec.status).
		Int64("bytes", rec.bytes).Dur("duration", time.Since(start))
	if ev.pool != "" {
		e = e.Str("pool", ev.pool)
	}
	if ev.principal != "" {
		e = e.Str("principal", string(ev.principal))
	}
	if ev.session != "" {
		e = e.Str("session", ev.session)
	}
	if code := rec.Header().Get("x-ms-error-code"); code != "" {
		e = e.Str("error_code", code)
	}
	e.Bool("aborted", ev.aborted).Msg("request")
}

// recorder notes the status and size of a response. Unwrap lets
// http.ResponseController reach the connection (deadlines, flushing).
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
	wrote  bool
	body   *bodyGuard
}

func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.status, r.wrote = code, true
		if code >= 400 && r.body.unread() {
			// Refused before its body was read: close rather than read
			// (and wait for) the rest of a body nobody wants.
			r.Header().Set("Connection", "close")
		}
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	r.wrote = true
	n, err := r.ResponseWriter.Write(p)
	r.bytes += int64(n)
	return n, err
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// Hijack lets a WebSocket upgrade take the connection.
func (r *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	r.status, r.wrote = http.StatusSwitchingProtocols, true
	return http.NewResponseController(r.ResponseWriter).Hijack()
}

// Flush lets streamed responses (MCP's server-sent events) through.
func (r *recorder) Flush() {
	r.wrote = true
	_ = http.NewResponseController(r.ResponseWriter).Flush()
}

type principalKey struct{}

// serveMCP hands a request to the MCP handler of a pool, with the caller
// (none for a token-less DELETE) in its context.
func (s *Server) serveMCP(w http.ResponseWriter, r *http.Request, poolName string, principal pool.Principal) {
	if principal != "" {
		r = r.WithContext(context.WithValue(r.Context(), principalKey{}, principal))
	}
	s.mcp[poolName].ServeHTTP(w, r)
}

// PrincipalFrom returns the authenticated caller of a request that an MCP
// handler (Options.MCP) serves.
func PrincipalFrom(ctx context.Context) (pool.Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(pool.Principal)
	return p, ok
}
