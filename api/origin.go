package api

import (
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/gorilla/websocket"

	"github.com/sandpool/sandpool/internal/errcode"
)

// Codes of the browser guards.
const (
	codeHostNotAllowed errcode.Code = "host_not_allowed"
	codeCrossOrigin    errcode.Code = "cross_origin_refused"
	codeMediaType      errcode.Code = "unsupported_media_type"
)

// browserGuard refuses what a browser does on behalf of another site: a
// state-changing request (or a WebSocket) from a page of another origin,
// and, where anyone may call without a token, any request whose Host is a
// name nobody configured (a DNS-rebinding page has its own name in Host).
type browserGuard struct {
	checkHost bool
	hosts     map[string]bool // exact names
	suffixes  []string        // from "*.example.com": ".example.com"
	cop       *http.CrossOriginProtection
}

// newBrowserGuard builds the guard. Host is checked when anonymous callers
// are served or names are configured; loopback names and IP literals (which
// rebinding cannot use) are always allowed.
func newBrowserGuard(allowedHosts, allowedOrigins []string, anonymous bool) (*browserGuard, error) {
	g := &browserGuard{checkHost: anonymous || len(allowedHosts) > 0, hosts: map[string]bool{}, cop: http.NewCrossOriginProtection()}
	for i, h := range allowedHosts {
		h = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(h)), ".")
		switch {
		case h == "" || strings.ContainsAny(h, "/:@ "):
			return nil, fmt.Errorf("allowedHosts[%d]: %q is not a host name (no scheme or port)", i, allowedHosts[i])
		case strings.HasPrefix(h, "*."):
			g.suffixes = append(g.suffixes, h[1:])
		default:
			g.hosts[h] = true
		}
	}
	for i, o := range allowedOrigins {
		if err := g.cop.AddTrustedOrigin(o); err != nil {
			return nil, fmt.Errorf("allowedOrigins[%d]: %q: use scheme://host[:port]", i, o)
		}
	}
	return g, nil
}

// check refuses r if a browser made it for another site.
func (g *browserGuard) check(r *http.Request) error {
	if g.checkHost && !g.hostAllowed(r.Host) {
		return errcode.New(codeHostNotAllowed, "this server does not answer to that host name; add it to server.allowedHosts")
	}
	cr := r
	if websocket.IsWebSocketUpgrade(r) {
		// An upgrade is a GET, but what follows changes state.
		c := *r
		c.Method = http.MethodPost
		cr = &c
	}
	if err := g.cop.Check(cr); err != nil {
		return errcode.New(codeCrossOrigin, "cross-origin requests from browsers are refused; add the page's origin to server.allowedOrigins")
	}
	return nil
}

func (g *browserGuard) hostAllowed(hostport string) bool {
	if hostport == "" {
		return true // HTTP/1.0 without Host: not a browser
	}
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	if host == "localhost" || strings.HasSuffix(host, ".localhost") || g.hosts[host] {
		return true
	}
	for _, s := range g.suffixes {
		if strings.HasSuffix(host, s) {
			return true
		}
	}
	return false
}

// requireJSON refuses a body that does not say it is JSON: a browser sends
// text/plain or a form across sites without asking first, never JSON. A
// request without Content-Type is no browser's.
func requireJSON(r *http.Request) error {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json")) {
		return nil
	}
	return errcode.New(codeMediaType, "the body must be JSON, sent with Content-Type: application/json")
}
