package api

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sandpool/sandpool/internal/errcode"
	"github.com/sandpool/sandpool/pool"
	"github.com/sandpool/sandpool/sandbox/image"
)

// sessionsPage is the page size of session listings.
const sessionsPage = 100

// sessionView is a session in both spellings clients read: the data
// plane's expireAt and the management routes' expiresAt.
func sessionView(si pool.SessionInfo) map[string]any {
	ts := func(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
	return map[string]any{
		"identifier": si.Identifier.String(), "etag": si.Etag, "state": string(si.State),
		"createdAt": ts(si.Created), "lastAccessedAt": ts(si.LastAccess),
		"expireAt": ts(si.ExpiresAt), "expiresAt": ts(si.ExpiresAt),
	}
}

// getSession serves GET session and POST .management/getSession. It never
// creates a session.
func (s *Server) getSession(w http.ResponseWriter, c *call) {
	k, err := c.key("")
	if err != nil {
		writeError(w, err)
		return
	}
	c.session(k)
	si, err := c.pool.Session(k)
	if err != nil {
		writeError(w, sessionErr(err))
		return
	}
	writeJSON(w, http.StatusOK, sessionView(si))
}

// deleteSession serves DELETE session (204) and POST
// .management/stopSession (200, text).
func (s *Server) deleteSession(w http.ResponseWriter, r *http.Request, c *call, stop bool) {
	k, err := c.key("")
	if err != nil {
		writeError(w, err)
		return
	}
	c.session(k)
	if err := c.pool.Delete(r.Context(), k); err != nil {
		writeError(w, sessionErr(err))
		return
	}
	if !stop {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	// The identifier goes back only to the caller who owns it.
	msg := "Session " + k.Identifier.String() + " in session pool " + c.pool.Name() + " stopped."
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(msg))
}

func sessionErr(err error) error {
	if errors.Is(err, pool.ErrNoSession) {
		return errcode.New(errcode.NotFound, "no such session")
	}
	return err
}

// listSessions serves GET listSessions and POST .management/listSessions:
// the caller's own sessions, a page at a time (?skip=N), under both keys
// clients read ("sessions" and "value").
func (s *Server) listSessions(w http.ResponseWriter, c *call, route string) {
	skip := 0
	if v := c.query["skip"]; v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeError(w, errcode.New(errcode.InvalidArgument, "skip must be a non-negative integer"))
			return
		}
		skip = n
	}
	all := c.pool.Sessions(c.principal)
	page := make([]map[string]any, 0, sessionsPage)
	for i := skip; i < len(all) && len(page) < sessionsPage; i++ {
		page = append(page, sessionView(all[i]))
	}
	body := map[string]any{"sessions": page, "value": page, "count": len(all)}
	if next := skip + len(page); next < len(all) {
		q := url.Values{"skip": {strconv.Itoa(next)}}
		if v := c.apiVersion(); v != "" {
			q.Set("api-version", v)
		}
		body["nextLink"] = c.base + "/" + route + "?" + q.Encode()
	}
	writeJSON(w, http.StatusOK, body)
}

// poolView is sandpool's description of a pool and its state counts.
func poolView(p *pool.Pool) map[string]any {
	cfg, st := p.Config(), p.Status()
	v := map[string]any{
		"name":                    cfg.Name,
		"containerType":           cfg.ContainerType,
		"runtime":                 cfg.Runtime,
		"runtimeVersion":          st.RuntimeVersion,
		"isolation":               string(cfg.Isolation),
		"poolManagementEndpoint":  "/pools/" + url.PathEscape(cfg.Name),
		"egress":                  cfg.SessionNetwork.Status,
		"maxConcurrentSessions":   st.MaxConcurrentSessions,
		"readySessionInstances":   st.ReadySessionInstances,
		"maxSessionsPerPrincipal": cfg.Scale.MaxSessionsPerPrincipal,
		"cooldownPeriodInSeconds": cfg.Lifecycle.CooldownPeriodInSeconds,
		"lifecycleType":           cfg.Lifecycle.LifecycleType,
		"maxAlivePeriodInSeconds": cfg.Lifecycle.MaxAlivePeriodInSeconds,
		"state": map[string]any{
			"pending": st.Pending, "ready": st.Ready, "allocated": st.Allocated, "deleting": st.Deleting,
			"inFlight": st.InFlight, "adopted": st.Adopted,
			"creationFailures": st.CreationFailures, "lastError": st.LastError,
		},
	}
	if cc := cfg.CustomContainer; cc != nil {
		v["image"], v["targetPort"] = cfg.Image, cc.Ingress.TargetPort
	}
	return v
}

// getPool serves GET /pools/{pool}.
func (s *Server) getPool(w http.ResponseWriter, c *call) {
	writeJSON(w, http.StatusOK, poolView(c.pool))
}

// listPools serves GET /pools to callers of the server's own auth.
func (s *Server) listPools(w http.ResponseWriter, r *http.Request, ev *accessEvent) {
	if r.Method != "GET" {
		methodNotAllowed(w, "GET")
		return
	}
	// Only the pools the caller may use; a caller no pool accepts is
	// refused as it would be by the first pool.
	out := []map[string]any{}
	var first error
	for _, p := range s.mgr.Pools() {
		principal, err := s.authFor(p.Name()).authenticate(r)
		if err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		ev.principal = principal
		out = append(out, poolView(p))
	}
	if len(out) == 0 && first != nil {
		writeError(w, first)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"value": out})
}

// pipNames are the Python names of Debian packages whose names differ.
var pipNames = map[string]string{"sklearn": "scikit-learn", "pil": "pillow", "bs4": "beautifulsoup4", "yaml": "pyyaml"}

// packages lists the Python packages of sandpool's own image, from its
// package list (Debian bookworm's versions); other images list none.
func packages(img string) []map[string]string {
	out := []map[string]string{}
	if !strings.HasPrefix(img, image.Repository+":") {
		return out
	}
	for _, d := range image.Packages() {
		if n, ok := strings.CutPrefix(d, "python3-"); ok {
			if pip, ok := pipNames[n]; ok {
				n = pip
			}
			out = append(out, map[string]string{"name": n, "source": "debian-bookworm"})
		}
	}
	return out
}

// metadata serves GET metadata: the pool's runtime.
func (s *Server) metadata(w http.ResponseWriter, c *call) {
	cfg, st := c.pool.Config(), c.pool.Status()
	created := c.pool.Started().UTC().Format(time.RFC3339Nano)
	writeJSON(w, http.StatusOK, map[string]any{
		"runtimes":             []map[string]string{{"name": "python", "version": st.Python}},
		"preInstalledPackages": packages(cfg.Image),
		"createdAt":            created, "lastUpdatedAt": created,
		"jupyterKernel": map[string]string{"name": "IPython", "version": "", "projectUrl": "https://ipython.org",
			"description": "A stateful IPython kernel in a " + string(cfg.Isolation) + " sandbox"},
	})
}
