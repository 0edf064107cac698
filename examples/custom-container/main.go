// Command custom-container is the example application of a sandpool
// CustomContainer pool: a small HTTP service that build.sh packs, alone,
// into an image built offline. Each session gets its own copy, so the
// counter below is per session. sandpool reaches it through the sandbox's
// agent on 127.0.0.1:$PORT; the container needs no network.
//
// Routes:
//
//	GET  /          a greeting, with the session id sandpool adds
//	GET  /healthz   readiness (the pool's Startup probe)
//	GET  /count     increments and returns this session's counter
//	GET  /headers   the request as the container received it (JSON)
//	POST /echo      streams the body back
//	GET  /bytes?n=  streams n bytes
//	GET  /events?n= a server-sent event stream, one event per 100 ms
//	GET  /ws        a WebSocket echo
//
// With DEMO_FAULTS=1 (tests) it also has POST /exit?code= (exit after
// answering), GET /crash (exit halfway through a response), GET /hang
// (never answer) and GET /unsafe (an HTML page with script and the
// headers a hostile application would send: a cookie for the whole
// origin, a credentialed cross-origin grant, a permissive policy).
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	log.Printf("listening on :%s", port)
	log.Fatal(http.ListenAndServe(":"+port, routes(os.Getenv("DEMO_FAULTS") == "1")))
}

func routes(faults bool) http.Handler {
	var count atomic.Int64
	started := time.Now()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from a sandpool custom container (session %s, up %s)\n",
			r.Header.Get("Sandpool-Session-Id"), time.Since(started).Round(time.Second))
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if os.Getenv("DEMO_NEVER_READY") == "1" {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		writeJSON(w, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /count", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]int64{"count": count.Add(1)})
	})
	mux.HandleFunc("/headers", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{"method": r.Method, "path": r.URL.EscapedPath(), "query": r.URL.RawQuery,
			"host": r.Host, "headers": r.Header})
	})
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		if ct := r.Header.Get("Content-Type"); ct != "" {
			w.Header().Set("Content-Type", ct)
		}
		// Read and write in turn: HTTP/1.1 servers may not read a body
		// once they began to answer, unless asked to.
		_ = http.NewResponseController(w).EnableFullDuplex()
		if _, err := io.Copy(w, r.Body); err != nil {
			log.Printf("echo: %v", err)
		}
	})
	mux.HandleFunc("GET /bytes", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
		w.Header().Set("Content-Type", "application/octet-stream")
		chunk := make([]byte, 64<<10)
		for i := range chunk {
			chunk[i] = byte('a' + i%26)
		}
		for n > 0 {
			k := min(n, int64(len(chunk)))
			if _, err := w.Write(chunk[:k]); err != nil {
				return
			}
			n -= k
		}
	})
	mux.HandleFunc("GET /events", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		rc := http.NewResponseController(w)
		for i := 1; i <= n; i++ {
			fmt.Fprintf(w, "id: %d\ndata: {\"event\": %d, \"at\": %q}\n\n", i, i, time.Now().Format(time.RFC3339Nano))
			if rc.Flush() != nil {
				return
			}
			select {
			case <-r.Context().Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	})
	upgrader := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	mux.HandleFunc("GET /ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			t, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			if err := c.WriteMessage(t, msg); err != nil {
				return
			}
		}
	})
	if faults {
		mux.HandleFunc("POST /exit", func(w http.ResponseWriter, r *http.Request) {
			code, _ := strconv.Atoi(r.URL.Query().Get("code"))
			fmt.Fprintf(w, "exiting with code %d\n", code)
			go func() {
				time.Sleep(100 * time.Millisecond)
				os.Exit(code)
			}()
		})
		mux.HandleFunc("GET /crash", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "1000000")
			_, _ = w.Write(make([]byte, 1000))
			_ = http.NewResponseController(w).Flush()
			time.Sleep(50 * time.Millisecond)
			os.Exit(3)
		})
		mux.HandleFunc("GET /hang", func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done()
		})
		mux.HandleFunc("GET /unsafe", func(w http.ResponseWriter, r *http.Request) {
			h := w.Header()
			h.Add("Set-Cookie", "demo=1; Path=/")
			h.Set("Access-Control-Allow-Origin", "https://elsewhere.example")
			h.Set("Access-Control-Allow-Credentials", "true")
			h.Set("Content-Security-Policy", "default-src *; script-src * 'unsafe-inline'")
			h.Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprint(w, "<!doctype html><script>fetch('/pools/').then(r => r.text()).then(t => document.title = t)</script>\n")
		})
	}
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
