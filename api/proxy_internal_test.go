package api

import (
	"net/http"
	"slices"
	"testing"

	"github.com/sandpool/sandpool/pool"
)

func TestForwardPathAndQuery(t *testing.T) {
	paths := []struct{ in, want string }{
		{"/pools/app", "/"},
		{"/pools/app/", "/"},
		{"/pools/app/count", "/count"},
		{"/pools/app/dir/", "/dir/"},
		{"/pools//app//a///b", "/a/b"},
		{"/pools/app%2Dx/a%20b", "/a%20b"},
		{"/pools/app/caf%C3%A9", "/caf%C3%A9"},
	}
	for _, tc := range paths {
		if got, err := forwardPath(tc.in); err != nil || got != tc.want {
			t.Errorf("forwardPath(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"/pools/app/..", "/pools/app/a/../b", "/pools/app/%2e%2E/x", "/pools/app/a%2Fb", "/pools/app/a%5Cb", "/pools/app/%00", "/pools/app/%c2%9b", "/pools/app/%zz"} {
		if got, err := forwardPath(bad); err == nil {
			t.Errorf("forwardPath(%q) = %q, want a refusal", bad, got)
		}
	}
	queries := []struct{ in, want string }{
		{"identifier=a&api-version=1&x=1", "x=1"},
		{"x=1&identifier=a&y=%20z&x=2", "x=1&y=%20z&x=2"},
		{"identifie%72=a&b", "b"},
		{"&&identifier&", ""},
		{"ident=1", "ident=1"},
	}
	for _, tc := range queries {
		if got := forwardQuery(tc.in); got != tc.want {
			t.Errorf("forwardQuery(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestF4IngressHeaderRules: credentials stay out of a container, and
// cookies, cross-origin grants and active content stay out of sandpool's
// origin, each unless the pool opts in.
func TestF4IngressHeaderRules(t *testing.T) {
	caller := func() http.Header {
		return http.Header{
			"Authorization": {"Bearer token"}, "Cookie": {"session=sandpool-ui"}, "X-Api-Key": {"k"},
			"Proxy-Authorization": {"Basic eA=="}, "Sandpool-Session-Id": {"forged"}, "X-Forwarded-For": {"6.6.6.6"},
			"Forwarded": {"for=6.6.6.6"}, "X-Custom": {"kept"}, "Accept": {"text/html"},
		}
	}
	container := func() http.Header {
		return http.Header{
			"Set-Cookie":                       {"sid=x; Path=/", "other=y; Path=/; HttpOnly"},
			"Set-Cookie2":                      {"old=1"},
			"Clear-Site-Data":                  {`"cookies", "storage"`},
			"Access-Control-Allow-Origin":      {"https://evil.example"},
			"Access-Control-Allow-Credentials": {"true"},
			"Access-Control-Expose-Headers":    {"*"},
			"Content-Security-Policy":          {"default-src *; script-src 'unsafe-inline'"},
			"Content-Type":                     {"text/html"},
			"X-Ms-Request-Id":                  {"forged"},
			"X-Request-Id":                     {"forged"},
			"Cache-Control":                    {"no-cache"},
		}
	}
	for _, tc := range []struct {
		name     string
		in       pool.IngressConfig
		reqGone  []string
		reqKept  []string
		respGone []string
		respKept []string
		csp      []string
	}{
		{
			name:     "defaults",
			reqGone:  []string{"Authorization", "Cookie", "X-Api-Key", "Proxy-Authorization", "Sandpool-Session-Id", "X-Forwarded-For", "Forwarded"},
			reqKept:  []string{"X-Custom", "Accept"},
			respGone: []string{"Set-Cookie", "Set-Cookie2", "Clear-Site-Data", "Access-Control-Allow-Origin", "Access-Control-Allow-Credentials", "Access-Control-Expose-Headers", "X-Ms-Request-Id", "X-Request-Id"},
			respKept: []string{"Content-Type", "Cache-Control"},
			csp:      []string{"default-src *; script-src 'unsafe-inline'", "sandbox"},
		},
		{
			name:     "a list of its own replaces the default",
			in:       pool.IngressConfig{StripRequestHeaders: []string{"x-custom"}},
			reqGone:  []string{"Authorization", "X-Custom", "Sandpool-Session-Id", "Forwarded"},
			reqKept:  []string{"Cookie", "X-Api-Key", "Accept"},
			respGone: []string{"Set-Cookie", "Access-Control-Allow-Origin"},
			csp:      []string{"default-src *; script-src 'unsafe-inline'", "sandbox"},
		},
		{
			name:     "every opt-in",
			in:       pool.IngressConfig{StripRequestHeaders: []string{}, AllowSetCookie: true, AllowCORS: true, AllowActiveContent: true},
			reqGone:  []string{"Authorization", "Sandpool-Session-Id"},
			reqKept:  []string{"Cookie", "X-Api-Key", "Proxy-Authorization"},
			respGone: []string{"X-Ms-Request-Id", "X-Request-Id"},
			respKept: []string{"Set-Cookie", "Clear-Site-Data", "Access-Control-Allow-Origin", "Access-Control-Allow-Credentials"},
			csp:      []string{"default-src *; script-src 'unsafe-inline'"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rulesOf(tc.in)
			req := caller()
			r.requestHeaders(req)
			for _, h := range tc.reqGone {
				if v := req.Values(h); len(v) > 0 {
					t.Errorf("request: %s passed: %q", h, v)
				}
			}
			for _, h := range tc.reqKept {
				if req.Get(h) == "" {
					t.Errorf("request: %s removed", h)
				}
			}
			resp := container()
			r.responseHeaders(resp)
			for _, h := range tc.respGone {
				if v := resp.Values(h); len(v) > 0 {
					t.Errorf("response: %s passed: %q", h, v)
				}
			}
			for _, h := range tc.respKept {
				if resp.Get(h) == "" {
					t.Errorf("response: %s removed", h)
				}
			}
			if got := resp.Values("Content-Security-Policy"); !slices.Equal(got, tc.csp) {
				t.Errorf("Content-Security-Policy %q, want %q", got, tc.csp)
			}
		})
	}
	// A response without a type of its own, or typed as data, is
	// sandboxed too: what a browser renders as a document is not decided
	// by the container's Content-Type alone.
	for _, ct := range []string{"", "application/json", "image/svg+xml", "text/plain"} {
		h := http.Header{}
		if ct != "" {
			h.Set("Content-Type", ct)
		}
		rulesOf(pool.IngressConfig{}).responseHeaders(h)
		if h.Get("Content-Security-Policy") != "sandbox" || h.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("Content-Type %q: headers %v", ct, h)
		}
	}
}
