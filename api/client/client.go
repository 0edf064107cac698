// Package client is the Go client of a remote sandpool server: executions
// streamed over the WebSocket endpoint, files and sessions over the HTTP
// API. A Client is bound to one pool and implements the same interface as
// an in-process pool (tools.Backend), so the MCP server and the langchaingo
// tools work against either.
//
// Errors carry the server's stable code (errcode.Of) and public message;
// *Error has the HTTP status too.
package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sandpool/sandpool/api/wire"
	"github.com/sandpool/sandpool/internal/errcode"
	"github.com/sandpool/sandpool/pool"
)

// apiVersion is the data-plane version the client speaks.
const apiVersion = "2025-10-02-preview"

// maxMessage bounds one WebSocket message from the server (a figure).
const maxMessage = 64 << 20

// Error is an error answer of the server.
type Error struct {
	// Status is the HTTP status; 0 when the execution was refused on the
	// WebSocket after it opened (capacity, a lost session).
	Status  int
	Code    errcode.Code
	Message string
}

func (e *Error) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("sandpool: %s (%s, HTTP %d)", e.Message, e.Code, e.Status)
	}
	return fmt.Sprintf("sandpool: %s (%s)", e.Message, e.Code)
}

// As lets errcode.Of and errcode.Public read the server's code and
// message.
func (e *Error) As(target any) bool {
	if t, ok := target.(**errcode.Error); ok {
		*t = &errcode.Error{Code: e.Code, Msg: e.Message}
		return true
	}
	return false
}

// Client talks to one pool of a sandpool server.
type Client struct {
	base   string // server root, no trailing slash
	pool   string
	token  string
	http   *http.Client
	dialer websocket.Dialer
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient sets the HTTP client (timeouts, TLS, proxies).
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.http = hc } }

// New returns a client of pool at serverURL (e.g. http://127.0.0.1:8080),
// authenticating with token (an API key or a JWT; "" for none).
func New(serverURL, poolName, token string, opts ...Option) (*Client, error) {
	u, err := url.Parse(serverURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("sandpool client: the server URL must be http(s)://host[:port], not %q", serverURL)
	}
	if poolName == "" {
		poolName = pool.DefaultPoolName
	}
	c := &Client{base: strings.TrimSuffix(u.String(), "/"), pool: poolName, token: token,
		http: http.DefaultClient, dialer: websocket.Dialer{HandshakeTimeout: 30 * time.Second, Subprotocols: []string{wire.WSSubprotocol}}}
	for _, o := range opts {
		o(c)
	}
	c.dialer.Proxy = http.ProxyFromEnvironment
	return c, nil
}

// url is the pool route with the session's identifier and query extra.
// The principal of k is the server's business (the token decides it).
func (c *Client) url(route string, k pool.SessionKey, extra url.Values) string {
	q := url.Values{"identifier": {k.Identifier.String()}, "api-version": {apiVersion}}
	for key, v := range extra {
		q[key] = v
	}
	return c.base + "/pools/" + url.PathEscape(c.pool) + "/" + route + "?" + q.Encode()
}

func (c *Client) header() http.Header {
	h := http.Header{}
	if c.token != "" {
		h.Set("Authorization", "Bearer "+c.token)
	}
	return h
}

// do sends a request and returns the response when its status is 2xx;
// otherwise the server's error.
func (c *Client) do(ctx context.Context, method, u string, body io.Reader, contentType string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	req.Header = c.header()
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	res, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, errcode.Wrap(errcode.Canceled, "the request was canceled", err)
		}
		return nil, errcode.Wrap(errcode.Unavailable, "the sandpool server cannot be reached", err)
	}
	if res.StatusCode/100 == 2 {
		return res, nil
	}
	defer res.Body.Close()
	return nil, statusError(res)
}

func statusError(res *http.Response) error {
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	b, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	e := &Error{Status: res.StatusCode}
	if json.Unmarshal(b, &body) == nil && body.Error.Code != "" {
		e.Code, e.Message = errcode.Code(body.Error.Code), body.Error.Message
	} else {
		e.Code, e.Message = errcode.Internal, fmt.Sprintf("the server answered %s", res.Status)
	}
	return e
}

// Execute runs req in the session of k over the WebSocket endpoint,
// delivering events to sink (may be nil) as they arrive. Canceling ctx
// interrupts the execution; the session survives.
func (c *Client) Execute(ctx context.Context, k pool.SessionKey, req pool.ExecRequest, sink pool.Sink) (*pool.Result, error) {
	if req.ID == "" {
		req.ID = newID()
	}
	u := strings.Replace(c.url("ws", k, nil), "http", "ws", 1)
	conn, res, err := c.dialer.DialContext(ctx, u, c.header())
	if err != nil {
		if res != nil {
			defer res.Body.Close()
			return nil, statusError(res)
		}
		if ctx.Err() != nil {
			return nil, errcode.Wrap(errcode.Canceled, "the request was canceled", err)
		}
		return nil, errcode.Wrap(errcode.Unavailable, "the sandpool server cannot be reached", err)
	}
	defer conn.Close()
	conn.SetReadLimit(maxMessage)
	if err := conn.WriteJSON(wire.WSRequest{Type: "execute", ID: req.ID, Code: req.Code, Timeout: req.Timeout.Seconds()}); err != nil {
		return nil, errcode.Wrap(errcode.Unavailable, "sending the execution failed", err)
	}
	// On cancel, ask for an interrupt and keep reading until done.
	stop := context.AfterFunc(ctx, func() {
		_ = conn.WriteJSON(wire.WSRequest{Type: "interrupt", ID: req.ID})
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	})
	defer stop()
	res2 := &pool.Result{ID: req.ID}
	for {
		var m wire.WSMessage
		if err := conn.ReadJSON(&m); err != nil {
			if ctx.Err() != nil {
				return nil, errcode.Wrap(errcode.Canceled, "the execution was canceled", err)
			}
			return nil, errcode.Wrap(errcode.Unavailable, "the connection to the sandpool server broke", err)
		}
		if m.ID != req.ID {
			continue
		}
		ev := pool.Event{}
		switch m.Type {
		case "stdout", "stderr":
			ev.Kind, ev.Text = pool.EventStdout, []byte(m.Text)
			if m.Type == "stderr" {
				ev.Kind = pool.EventStderr
				res2.StderrBytes += int64(len(m.Text))
			} else {
				res2.StdoutBytes += int64(len(m.Text))
			}
		case "display":
			ev.Kind, ev.Data = pool.EventDisplay, m.Data
		case "result":
			ev.Kind, ev.Data = pool.EventResult, m.Data
		case "error":
			ev.Kind, ev.Error = pool.EventError, &pool.ExecError{Name: m.Ename, Value: m.Evalue, Traceback: m.Traceback}
		case "failure":
			return nil, &Error{Code: errcode.Code(m.Code), Message: m.Message}
		case "done":
			if ctx.Err() != nil {
				// As in process: a canceled execution is an error (it was
				// interrupted; the session goes on).
				return nil, errcode.Wrap(errcode.Canceled, "the execution was canceled", ctx.Err())
			}
			res2.Status = pool.ExecStatus(m.Status)
			if m.DurationMs != nil {
				res2.Duration = time.Duration(*m.DurationMs) * time.Millisecond
			}
			res2.StdoutTruncated, res2.StderrTruncated = m.StdoutTruncated, m.StderrTruncated
			res2.KernelRestarted, res2.Reason = m.KernelRestarted, m.Reason
			_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
			return res2, nil
		default:
			continue // queued, started
		}
		if sink != nil {
			sink(ev)
		}
	}
}

// fileResource is a file in the 2025-10 listing.
type fileResource struct {
	Name           string    `json:"name"`
	Directory      string    `json:"directory"`
	Type           string    `json:"type"`
	SizeInBytes    int64     `json:"sizeInBytes"`
	LastModifiedAt time.Time `json:"lastModifiedAt"`
}

func (f fileResource) info() pool.FileInfo {
	t := pool.FileRegular
	if f.Type == "Directory" {
		t = pool.FileDir
	}
	return pool.FileInfo{Name: f.Name, Type: t, Size: f.SizeInBytes, ModTime: f.LastModifiedAt}
}

// Put uploads r as the file p (relative to /mnt/data) in the session of
// k, streaming it; at most maxSize bytes.
func (c *Client) Put(ctx context.Context, k pool.SessionKey, p string, r io.Reader, maxSize int64) (pool.FileInfo, error) {
	if err := pool.CheckPath(p); err != nil {
		return pool.FileInfo{}, err
	}
	dir, name := path.Split(p)
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	werr := make(chan error, 1)
	go func() {
		part, err := mw.CreateFormFile("file", name)
		if err == nil {
			var n int64
			n, err = io.Copy(part, io.LimitReader(r, maxSize+1))
			if err == nil && n > maxSize {
				err = errcode.Newf(errcode.TooLarge, "the file is larger than %d bytes", maxSize)
			}
		}
		if err == nil {
			err = mw.Close()
		}
		pw.CloseWithError(err)
		werr <- err
	}()
	extra := url.Values{}
	if dir != "" {
		extra.Set("path", "/mnt/data/"+strings.TrimSuffix(dir, "/"))
	}
	res, err := c.do(ctx, "POST", c.url("files", k, extra), pr, mw.FormDataContentType())
	pr.Close()
	if e := <-werr; errcode.Of(e) == errcode.TooLarge {
		if res != nil {
			res.Body.Close()
		}
		return pool.FileInfo{}, e
	}
	if err != nil {
		return pool.FileInfo{}, err
	}
	defer res.Body.Close()
	var f fileResource
	if err := json.NewDecoder(io.LimitReader(res.Body, 1<<20)).Decode(&f); err != nil {
		return pool.FileInfo{}, errcode.Wrap(errcode.Internal, "the server's answer was not understood", err)
	}
	return f.info(), nil
}

// fileURL is the content or metadata route of the file p.
func (c *Client) fileURL(k pool.SessionKey, p, suffix string) string {
	return c.url("files/"+url.PathEscape(p)+suffix, k, nil)
}

// Get streams the file p of the session of k to w (at most maxSize bytes).
func (c *Client) Get(ctx context.Context, k pool.SessionKey, p string, w io.Writer, maxSize int64) (pool.FileInfo, error) {
	if err := pool.CheckPath(p); err != nil {
		return pool.FileInfo{}, err
	}
	res, err := c.do(ctx, "GET", c.fileURL(k, p, "/content"), nil, "")
	if err != nil {
		return pool.FileInfo{}, err
	}
	defer res.Body.Close()
	if res.ContentLength > maxSize {
		return pool.FileInfo{}, errcode.Newf(errcode.TooLarge, "the file is larger than %d bytes", maxSize)
	}
	n, err := io.Copy(w, io.LimitReader(res.Body, maxSize+1))
	switch {
	case err != nil:
		return pool.FileInfo{}, errcode.Wrap(errcode.Unavailable, "the download broke off", err)
	case n > maxSize:
		return pool.FileInfo{}, errcode.Newf(errcode.TooLarge, "the file is larger than %d bytes", maxSize)
	}
	mod, _ := http.ParseTime(res.Header.Get("Last-Modified"))
	return pool.FileInfo{Name: path.Base(p), Type: pool.FileRegular, Size: n, ModTime: mod}, nil
}

// List lists the directory dir ("" for /mnt/data) of the session of k.
func (c *Client) List(ctx context.Context, k pool.SessionKey, dir string) ([]pool.FileInfo, bool, error) {
	extra := url.Values{}
	if dir != "" {
		if err := pool.CheckPath(dir); err != nil {
			return nil, false, err
		}
		extra.Set("path", "/mnt/data/"+dir)
	}
	res, err := c.do(ctx, "GET", c.url("files", k, extra), nil, "")
	if err != nil {
		return nil, false, err
	}
	defer res.Body.Close()
	var body struct {
		Value []fileResource `json:"value"`
	}
	if err := json.NewDecoder(io.LimitReader(res.Body, 32<<20)).Decode(&body); err != nil {
		return nil, false, errcode.Wrap(errcode.Internal, "the server's answer was not understood", err)
	}
	out := make([]pool.FileInfo, len(body.Value))
	for i, f := range body.Value {
		out[i] = f.info()
	}
	return out, false, nil
}

// Remove deletes the file p of the session of k.
func (c *Client) Remove(ctx context.Context, k pool.SessionKey, p string) error {
	if err := pool.CheckPath(p); err != nil {
		return err
	}
	res, err := c.do(ctx, "DELETE", c.fileURL(k, p, ""), nil, "")
	if err != nil {
		return err
	}
	return res.Body.Close()
}

// Delete ends the session of k: its sandbox is removed.
func (c *Client) Delete(ctx context.Context, k pool.SessionKey) error {
	res, err := c.do(ctx, "DELETE", c.url("session", k, nil), nil, "")
	if err != nil {
		return err
	}
	return res.Body.Close()
}

// Ping checks that the server answers (GET /healthz).
func (c *Client) Ping(ctx context.Context) error {
	res, err := c.do(ctx, "GET", c.base+"/healthz", nil, "")
	if err != nil {
		return err
	}
	return res.Body.Close()
}

func newID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
