package api_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/sandpool/sandpool/api"
	"github.com/sandpool/sandpool/pool"
)

// TestF4CustomContainerOrigin: a custom container's answers are served on
// sandpool's origin, so by default its cookies, cross-origin grants and
// active content do not reach the browser as sent, and the caller's
// credentials do not reach the container; a pool opts in to each.
func TestF4CustomContainerOrigin(t *testing.T) {
	request := `GET PATH?identifier=origin-1 HTTP/1.1
Host: HOST
Authorization: Bearer TOKEN
Cookie: sandpool-ui=secret
X-Api-Key: secret-key
Proxy-Authorization: Basic Zm9vOmJhcg==
X-Custom: kept
Connection: close

`
	t.Run("defaults", func(t *testing.T) {
		eachRuntimeApp(t, appConfig(t, pool.Timed), func(t *testing.T, e *env) {
			c := e.server(api.Options{}, nil)
			path := "/pools/" + e.cfg.Name
			resp, body := c.raw(t, strings.ReplaceAll(request, "PATH", path+"/unsafe"))
			if resp.StatusCode != 200 || !strings.Contains(string(body), "<script>") {
				t.Fatalf("unsafe: %d %s", resp.StatusCode, body)
			}
			for _, h := range []string{"Set-Cookie", "Access-Control-Allow-Origin", "Access-Control-Allow-Credentials"} {
				if v := resp.Header.Values(h); len(v) > 0 {
					t.Errorf("%s reached the caller: %q", h, v)
				}
			}
			if csp := resp.Header.Values("Content-Security-Policy"); !slices.Contains(csp, "sandbox") {
				t.Errorf("Content-Security-Policy %q: want sandbox among them", csp)
			}
			if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("X-Content-Type-Options %q", resp.Header.Get("X-Content-Type-Options"))
			}
			// JSON answers are sandboxed too (a browser navigated to one
			// renders it as a document).
			resp, _ = c.raw(t, strings.ReplaceAll(request, "PATH", path+"/count"))
			if resp.StatusCode != 200 || resp.Header.Get("Content-Security-Policy") != "sandbox" {
				t.Errorf("count: %d, Content-Security-Policy %q", resp.StatusCode, resp.Header.Values("Content-Security-Policy"))
			}
			resp, body = c.raw(t, strings.ReplaceAll(request, "PATH", path+"/headers"))
			if resp.StatusCode != 200 {
				t.Fatalf("headers: %d %s", resp.StatusCode, body)
			}
			for _, h := range []string{"Authorization", "Cookie", "X-Api-Key", "Proxy-Authorization"} {
				if strings.Contains(string(body), `"`+h+`"`) {
					t.Errorf("%s reached the container: %s", h, body)
				}
			}
			if !strings.Contains(string(body), `"X-Custom":["kept"]`) {
				t.Errorf("the caller's own header is missing: %s", body)
			}
		})
	})
	t.Run("opt-in", func(t *testing.T) {
		cfg := appConfig(t, pool.Timed)
		in := &cfg.CustomContainer.Ingress
		in.StripRequestHeaders = []string{"X-Api-Key"}
		in.AllowSetCookie, in.AllowCORS, in.AllowActiveContent = true, true, true
		eachRuntimeApp(t, cfg, func(t *testing.T, e *env) {
			c := e.server(api.Options{}, nil)
			path := "/pools/" + e.cfg.Name
			resp, _ := c.raw(t, strings.ReplaceAll(request, "PATH", path+"/unsafe"))
			if resp.StatusCode != 200 || resp.Header.Get("Set-Cookie") != "demo=1; Path=/" ||
				resp.Header.Get("Access-Control-Allow-Origin") != "https://elsewhere.example" ||
				slices.Contains(resp.Header.Values("Content-Security-Policy"), "sandbox") {
				t.Errorf("opted in: %d %v", resp.StatusCode, resp.Header)
			}
			resp, body := c.raw(t, strings.ReplaceAll(request, "PATH", path+"/headers"))
			if resp.StatusCode != 200 || !strings.Contains(string(body), `"Cookie":["sandpool-ui=secret"]`) ||
				strings.Contains(string(body), `"X-Api-Key"`) || strings.Contains(string(body), `"Authorization"`) {
				t.Errorf("opted in, headers: %d %s", resp.StatusCode, body)
			}
			if resp.Header.Get("Content-Type") != "application/json" {
				t.Errorf("content type %q", resp.Header.Get("Content-Type"))
			}
		})
	})
}
