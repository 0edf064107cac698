package api

import (
	"embed"
	"net/http"
)

// The browser page: a minimal client of the WebSocket endpoint.
//
//go:embed ui/index.html ui/app.js ui/style.css
var uiFiles embed.FS

// uiCSP keeps the page to its own script and style, the same-origin
// WebSocket, and inline figures.
const uiCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// uiAssets are the page's paths: the embedded file and its type.
var uiAssets = map[string][2]string{
	"/":             {"ui/index.html", "text/html; charset=utf-8"},
	"/ui/app.js":    {"ui/app.js", "text/javascript; charset=utf-8"},
	"/ui/style.css": {"ui/style.css", "text/css; charset=utf-8"},
}

func isUIPath(p string) bool { _, ok := uiAssets[p]; return ok }

// ui serves the page at / and its assets under /ui/.
func (s *Server) ui(w http.ResponseWriter, r *http.Request, path string) {
	if r.Method != "GET" && r.Method != "HEAD" {
		methodNotAllowed(w, "GET")
		return
	}
	asset := uiAssets[path]
	b, err := uiFiles.ReadFile(asset[0])
	if err != nil {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", asset[1])
	h.Set("Content-Security-Policy", uiCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
	_, _ = w.Write(b)
}
