package api

import (
	"context"
	"errors"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"
	"unicode"

	"github.com/sandpool/sandpool/internal/errcode"
	"github.com/sandpool/sandpool/pool"
)

// Codes of forwarded requests.
const (
	codeUpstreamFailed  errcode.Code = "upstream_failed"
	codeUpstreamTimeout errcode.Code = "upstream_timeout"
)

// Headers sandpool adds toward a custom container. A caller's own values
// of these (and of every Sandpool-* header) are dropped, so a container
// can trust them.
const (
	// HeaderSessionID is the session's id for its container: a keyed hash
	// of the caller's identifier, never the identifier itself.
	HeaderSessionID = "Sandpool-Session-Id"
	// HeaderRequestID is the request's id, as in the x-ms-request-id
	// answered to the caller.
	HeaderRequestID = "Sandpool-Request-Id"
)

// ownHeaders are set by this server on every answer; a container's values
// are dropped so they cannot be forged.
var ownHeaders = []string{"X-Ms-Request-Id", "X-Request-Id", "X-Ms-Client-Request-Id", "X-Ms-Error-Code"}

// forwarder forwards requests to the containers of one CustomContainer
// pool. Its transport keeps connections per sandbox (Upstream.Key).
type forwarder struct {
	proxy *httputil.ReverseProxy
	tr    *http.Transport
	rules ingressRules
}

// ingressRules are what a pool lets pass between callers and its
// containers, beyond what is never passed (pool.IngressConfig).
type ingressRules struct {
	strip         []string // request headers removed, canonical
	setCookie     bool     // Set-Cookie and Clear-Site-Data pass
	cors          bool     // Access-Control-* pass
	activeContent bool     // no Content-Security-Policy: sandbox added
}

func rulesOf(in pool.IngressConfig) ingressRules {
	r := ingressRules{setCookie: in.AllowSetCookie, cors: in.AllowCORS, activeContent: in.AllowActiveContent}
	strip := in.StripRequestHeaders
	if strip == nil {
		strip = pool.DefaultStripRequestHeaders
	}
	for _, h := range strip {
		r.strip = append(r.strip, http.CanonicalHeaderKey(h))
	}
	return r
}

// requestHeaders removes from h, a request toward a container, the
// caller's credentials and the headers sandpool sets itself.
func (r ingressRules) requestHeaders(h http.Header) {
	h.Del("Authorization")
	for _, name := range r.strip {
		h.Del(name)
	}
	for name := range h {
		if l := strings.ToLower(name); strings.HasPrefix(l, "sandpool-") || l == "forwarded" || strings.HasPrefix(l, "x-forwarded-") {
			delete(h, name)
		}
	}
}

// responseHeaders makes h, a container's answer, safe to serve on
// sandpool's origin: the headers sandpool sets go, so do cookies and
// cross-origin grants unless the pool allows them, and every response is
// sandboxed unless the pool allows active content. The sandbox goes on
// every response, not only those typed HTML: a missing or wrong
// Content-Type is sniffed (by browsers, and by Go's server when none is
// set), and the policy matters only where a browser renders a document.
// A container's own policy is kept beside it: browsers enforce both.
func (r ingressRules) responseHeaders(h http.Header) {
	for _, name := range ownHeaders {
		h.Del(name)
	}
	if !r.setCookie {
		h.Del("Set-Cookie")
		h.Del("Set-Cookie2")
		h.Del("Clear-Site-Data")
	}
	if !r.cors {
		for name := range h {
			if strings.HasPrefix(strings.ToLower(name), "access-control-") {
				delete(h, name)
			}
		}
	}
	if !r.activeContent {
		h.Add("Content-Security-Policy", "sandbox")
		h.Set("X-Content-Type-Options", "nosniff")
	}
}

// forwarding is what the transport and rewrite need of one request.
type forwarding struct {
	up    *pool.Upstream
	path  string // escaped
	query string
	base  string
	reqID string
}

type forwardingKey struct{}

func forwardingOf(ctx context.Context) *forwarding {
	f, _ := ctx.Value(forwardingKey{}).(*forwarding)
	return f
}

func newForwarder(cfg pool.Config) *forwarder {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			f := forwardingOf(ctx)
			if f == nil || addr != f.up.Key()+":80" {
				return nil, errors.New("forward: dial without its session")
			}
			return f.up.Dial(ctx)
		},
		MaxIdleConnsPerHost:    16,
		IdleConnTimeout:        30 * time.Second,
		ResponseHeaderTimeout:  time.Duration(cfg.CustomContainer.Ingress.TimeoutInSeconds) * time.Second,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 64 << 10,
		// Bodies pass through as the container encodes them.
		DisableCompression: true,
	}
	fw := &forwarder{tr: tr, rules: rulesOf(cfg.CustomContainer.Ingress)}
	fw.proxy = &httputil.ReverseProxy{
		Rewrite:   fw.rewrite,
		Transport: tr,
		// Flush at once: server-sent events and streamed output arrive as
		// they are written.
		FlushInterval: -1,
		ModifyResponse: func(resp *http.Response) error {
			fw.rules.responseHeaders(resp.Header)
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) { writeError(w, upstreamErr(r.Context(), err)) },
		// What the container sends is not logged: it is untrusted output.
		ErrorLog: stdlog.New(io.Discard, "", 0),
	}
	return fw
}

func (fw *forwarder) close() { fw.tr.CloseIdleConnections() }

// rewrite builds the request a container receives: the method, the path
// under the pool, the query without identifier and api-version, the
// caller's headers without its credentials (hop-by-hop headers, and those
// named in Connection, are already gone), and sandpool's own headers.
func (fw *forwarder) rewrite(pr *httputil.ProxyRequest) {
	f := forwardingOf(pr.In.Context())
	out := pr.Out
	out.URL = &url.URL{Scheme: "http", Host: f.up.Key(), RawQuery: f.query}
	out.URL.Path, _ = url.PathUnescape(f.path)
	out.URL.RawPath = f.path
	out.Host = pr.In.Host
	fw.rules.requestHeaders(out.Header)
	out.Header.Set(HeaderSessionID, f.up.SessionID())
	out.Header.Set(HeaderRequestID, f.reqID)
	proto := "http"
	if pr.In.TLS != nil {
		proto = "https"
	}
	// Not X-Forwarded-For: the container has no need of callers' addresses.
	out.Header.Set("X-Forwarded-Proto", proto)
	out.Header.Set("X-Forwarded-Host", pr.In.Host)
	out.Header.Set("X-Forwarded-Prefix", f.base)
}

// upstreamErr is the answer to a forward that failed before the
// container's response began. Nothing of the container's own error is
// shown.
func upstreamErr(ctx context.Context, err error) error {
	var mbe *http.MaxBytesError
	var ne net.Error
	switch {
	case errors.As(err, &mbe):
		return errcode.Wrap(errcode.TooLarge, "the request body is larger than the limit", err)
	case ctx.Err() != nil:
		return errcode.Wrap(errcode.Canceled, "the request was canceled", err)
	case errcode.Of(err) == errcode.Unavailable:
		return errcode.Wrap(codeUpstreamFailed, errcode.Public(err), err)
	case errcode.Of(err) != errcode.Internal:
		return err // session lost, sandbox unreachable, engine down
	case errors.As(err, &ne) && ne.Timeout():
		return errcode.Wrap(codeUpstreamTimeout, "the session's container did not answer in time", err)
	}
	return errcode.Wrap(codeUpstreamFailed, "the session's container closed the connection without a valid response", err)
}

// forwardPath is the path a custom container receives: what follows the
// pool in the request's path, as escaped by the caller, repeated slashes
// merged. Segments that are dot segments or hide a separator or control
// character in any encoding are refused, so no container is asked for a
// path outside the one the caller addressed.
func forwardPath(escaped string) (string, error) {
	// After the pool segment, however the caller spelled it.
	escaped = slashes.ReplaceAllString(escaped, "/")
	_, rest, _ := strings.Cut(strings.TrimPrefix(escaped, "/pools/"), "/")
	rest = "/" + rest
	for _, seg := range strings.Split(rest[1:], "/") {
		dec, err := url.PathUnescape(seg)
		if err != nil || dec == "." || dec == ".." || strings.ContainsAny(dec, `/\`) ||
			strings.ContainsFunc(dec, unicode.IsControl) {
			return "", errcode.New(errcode.InvalidArgument, "the path must not contain dot segments, encoded slashes or control characters")
		}
	}
	return rest, nil
}

// forwardQuery is the query without identifier and api-version, the rest
// kept as sent (order and encoding).
func forwardQuery(raw string) string {
	var keep []string
	for _, kv := range strings.Split(raw, "&") {
		k, _, _ := strings.Cut(kv, "=")
		if k, err := url.QueryUnescape(k); kv == "" || err == nil && (k == "identifier" || k == "api-version") {
			continue
		}
		keep = append(keep, kv)
	}
	return strings.Join(keep, "&")
}

// isManagement reports a route of a CustomContainer pool that sandpool
// answers itself: Azure's .management endpoints. Everything else goes to
// the container.
func isManagement(rest string) bool {
	return rest == ".management" || strings.HasPrefix(rest, ".management/")
}

// forward sends a request to its session's container and streams the
// answer back, upgrades included.
func (s *Server) forward(w http.ResponseWriter, r *http.Request, c *call) string {
	fw := s.forwarders[c.pool.Name()]
	k, err := c.key("")
	if err != nil {
		writeError(w, err)
		return "forward"
	}
	c.session(k)
	path, err := forwardPath(r.URL.EscapedPath())
	if err != nil {
		writeError(w, err)
		return "forward"
	}
	if r.ContentLength > int64(s.limits.MaxForwardBytes) {
		writeError(w, errcode.New(errcode.TooLarge, "the request body is larger than the limit"))
		return "forward"
	}
	up, err := c.pool.Upstream(r.Context(), k)
	if err != nil {
		writeError(w, err)
		return "forward"
	}
	defer up.Release()
	// A forwarded body streams on purpose, and an answer or an upgraded
	// connection may last: both end with the session's life.
	ends := up.Ends()
	c.body.extend(ends)
	ctx, cancel := context.WithDeadline(r.Context(), ends)
	defer cancel()
	r = r.WithContext(ctx)
	r.Body = http.MaxBytesReader(w, r.Body, int64(s.limits.MaxForwardBytes))
	// A container may answer while the body still streams in (an echo, a
	// transcoder): HTTP/1.1 servers stop reading a body once the answer
	// begins, unless asked not to.
	_ = http.NewResponseController(w).EnableFullDuplex()
	f := &forwarding{up: up, path: path, query: forwardQuery(r.URL.RawQuery), base: c.base, reqID: w.Header().Get("X-Request-Id")}
	fw.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), forwardingKey{}, f)))
	return "forward"
}
