package battery_test

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/sandpool/sandpool/api"
	"github.com/sandpool/sandpool/internal/podmantest"
	"github.com/sandpool/sandpool/pool"
	"github.com/sandpool/sandpool/sandbox"
)

func TestMain(m *testing.M) { podmantest.Main(m) }

var (
	//go:embed testdata/prelude.py
	prelude string
	//go:embed testdata/net.py
	netProbe string
	//go:embed testdata/fs.py
	fsProbe string
	//go:embed testdata/priv.py
	privProbe string
	//go:embed testdata/info.py
	infoProbe string
)

const (
	aliceKey = "alice-battery-key-0123"
	bobKey   = "bob-battery-key-012345"
	v3       = "api-version=2025-10-02-preview"
)

// verdict is one check's outcome as the probe judged it.
type verdict struct {
	OK   bool   `json:"ok"`
	Got  string `json:"got"`
	Note string `json:"note"`
}

// canaries are host-side listeners that must never see a connection or a
// packet from a sandbox: the egress oracle.
type canaries struct {
	tcp, udp [][2]any // [ip, port] for the probes
	hits     atomic.Int64
	seen     sync.Map // what hit, for the failure message
	closers  []io.Closer
}

func hostIPs(t *testing.T) []string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	ips := []string{"127.0.0.1", "::1"}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			ips = append(ips, n.IP.String())
		}
	}
	return ips
}

func newCanaries(t *testing.T, ips []string) *canaries {
	c := &canaries{}
	for _, ip := range ips {
		ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			continue // an address we cannot bind (e.g. no IPv6)
		}
		c.closers = append(c.closers, ln)
		c.tcp = append(c.tcp, [2]any{ip, ln.Addr().(*net.TCPAddr).Port})
		go func() {
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				c.hits.Add(1)
				c.seen.Store("tcp "+conn.RemoteAddr().String(), true)
				conn.Close()
			}
		}()
		pc, err := net.ListenPacket("udp", net.JoinHostPort(ip, "0"))
		if err != nil {
			continue
		}
		c.closers = append(c.closers, pc)
		c.udp = append(c.udp, [2]any{ip, pc.LocalAddr().(*net.UDPAddr).Port})
		go func() {
			buf := make([]byte, 512)
			for {
				_, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				c.hits.Add(1)
				c.seen.Store("udp "+from.String(), true)
			}
		}()
	}
	t.Cleanup(func() {
		for _, cl := range c.closers {
			cl.Close()
		}
	})
	return c
}

func (c *canaries) check(t *testing.T, after string) {
	t.Helper()
	if n := c.hits.Load(); n > 0 {
		var what []string
		c.seen.Range(func(k, _ any) bool { what = append(what, k.(string)); return true })
		t.Errorf("EGRESS: host canaries saw %d connections or packets after %s: %v", n, after, what)
	}
}

// attacker is a principal's HTTP client of the public API. Every answer
// that is not a success is kept, so the battery can check that none leaks
// internals (I6).
type attacker struct {
	t     *testing.T
	base  string
	token string
	mu    *sync.Mutex
	bad   *[]string
}

type answer struct {
	status int
	body   []byte
}

func (a *attacker) do(method, path string, body io.Reader, ctype string) answer {
	a.t.Helper()
	req, err := http.NewRequest(method, a.base+path, body)
	if err != nil {
		a.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode >= 300 {
		a.mu.Lock()
		*a.bad = append(*a.bad, fmt.Sprintf("%s %s -> %d %s", method, path, res.StatusCode, b))
		a.mu.Unlock()
	}
	return answer{res.StatusCode, b}
}

// execResult is the part of an executions answer the battery reads.
type execResult struct {
	Status string `json:"status"`
	Result struct {
		Stdout          string `json:"stdout"`
		Stderr          string `json:"stderr"`
		ExecutionResult any    `json:"executionResult"`
	} `json:"result"`
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// exec runs code in the session of identifier and decodes the answer.
func (a *attacker) exec(identifier, code string, timeout int) (answer, execResult) {
	a.t.Helper()
	body, _ := json.Marshal(map[string]any{"code": code, "timeoutInSeconds": timeout})
	r := a.do("POST", "/executions?"+v3+"&identifier="+url.QueryEscape(identifier), bytes.NewReader(body), "application/json")
	var er execResult
	if r.status == 200 {
		if err := json.Unmarshal(r.body, &er); err != nil {
			a.t.Fatalf("execution answer: %v: %.300s", err, r.body)
		}
	}
	return r, er
}

// run executes code and requires a success; it returns stdout.
func (a *attacker) run(identifier, code string, timeout int) string {
	a.t.Helper()
	r, er := a.exec(identifier, code, timeout)
	if r.status != 200 || er.Status != "Succeeded" {
		a.t.Fatalf("execution failed: %d %s %.2000s", r.status, er.Status, r.body)
	}
	return er.Result.Stdout
}

func (a *attacker) upload(identifier, name string, content []byte) answer {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	part, _ := mw.CreateFormFile("file", name)
	part.Write(content)
	mw.Close()
	return a.do("POST", "/files?"+v3+"&identifier="+url.QueryEscape(identifier), &buf, mw.FormDataContentType())
}

// probe runs one group's probe and returns its verdicts.
func (a *attacker) probe(identifier, group string, cfg map[string]any) map[string]verdict {
	a.t.Helper()
	cj, _ := json.Marshal(cfg)
	code := "CFG = " + pyLiteral(string(cj)) + "\n" + prelude + "\n" + group
	out := a.run(identifier, code, 240)
	i := strings.LastIndex(out, "BATTERY:")
	if i < 0 {
		a.t.Fatalf("probe printed no verdicts: %.2000s", out)
	}
	var v map[string]verdict
	if err := json.Unmarshal([]byte(strings.TrimSpace(out[i+len("BATTERY:"):])), &v); err != nil {
		a.t.Fatalf("verdicts: %v", err)
	}
	return v
}

// pyLiteral makes a Python expression of a JSON document.
func pyLiteral(js string) string {
	b, _ := json.Marshal(js)
	return "__import__(\"json\").loads(" + string(b) + ")"
}

// lab is one runtime's real pool behind the public API, and its oracles.
type lab struct {
	rt        podmantest.Runtime
	alice     *attacker
	bob       *attacker
	canaries  *canaries
	cfg       map[string]any
	serverLog *podmantest.Buffer
	mgr       *pool.Manager
	pool      string
}

const serverSecret = "battery-server-secret-never-in-a-sandbox"

func newLab(t *testing.T, rt podmantest.Runtime, token string) *lab {
	cfg := pool.Config{Name: "battery-" + rt.Name, Scale: pool.ScaleConfig{MaxConcurrentSessions: 8, ReadySessionInstances: ptr(2)}}
	m := podmantest.Manager(t, rt, cfg)
	log := &podmantest.Buffer{}
	url, _ := podmantest.Serve(t, api.Options{
		Manager: m,
		Auth:    api.AuthConfig{APIKeys: []api.APIKey{{Name: "alice", Key: aliceKey}, {Name: "bob", Key: bobKey}}},
		Limits:  api.Limits{RequestsPerSecond: 1000, Burst: 1000},
		Log:     zerolog.New(log).Level(zerolog.DebugLevel),
	})
	base := url + "/pools/" + cfg.Name
	var mu sync.Mutex
	var bad []string
	l := &lab{rt: rt, serverLog: log, mgr: m, pool: cfg.Name,
		alice: &attacker{t: t, base: base, token: aliceKey, mu: &mu, bad: &bad},
		bob:   &attacker{t: t, base: base, token: bobKey, mu: &mu, bad: &bad}}
	ips := hostIPs(t)
	l.canaries = newCanaries(t, ips)
	hostname, _ := os.Hostname()
	mid, _ := os.ReadFile("/etc/machine-id")
	var uts struct{ release string }
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		uts.release = strings.TrimSpace(string(b))
	}
	spec := sandbox.Spec{Image: "x"}
	_ = spec.Normalize()
	var allowed []string
	for k := range sandbox.BaseEnv(&spec) {
		allowed = append(allowed, k)
	}
	allowed = append(allowed, "container", "HOSTNAME", "TERM", "PWD", "SHLVL", "_")
	r := spec.Resources
	l.cfg = map[string]any{
		"runtime": rt.Name, "token": token, "tcp": l.canaries.tcp, "udp": l.canaries.udp,
		"host_ips": ips, "host_hostname": hostname, "host_machine_id": strings.TrimSpace(string(mid)),
		"host_release": uts.release, "env_allowed": allowed, "server_secret": serverSecret,
		"host_canary": "sandpool-battery-canary-" + token,
		"quotas":      map[string]int64{"/tmp": r.TmpSize, "/mnt/data": r.DataSize, "/dev/shm": r.ShmSize},
	}
	return l
}

func ptr(n int) *int { return &n }

// eachRuntime runs f under runc, the current gVisor and Debian's, in parallel.
func eachRuntime(t *testing.T, f func(t *testing.T, l *lab)) {
	for _, rt := range podmantest.AllRuntimes() {
		t.Run(rt.Name, func(t *testing.T) {
			t.Parallel()
			token := fmt.Sprintf("%x", time.Now().UnixNano())
			canary, err := os.CreateTemp("", "sandpool-battery-canary-"+token+"-*")
			if err != nil {
				t.Fatal(err)
			}
			canary.Close()
			t.Cleanup(func() { os.Remove(canary.Name()) })
			f(t, newLab(t, rt, token))
		})
	}
}

// outcomes is the table of every check's outcome per runtime, printed at
// the end of the run (the note lists it).
var (
	outcomesMu sync.Mutex
	outcomes   = map[string]map[string]string{} // check -> runtime -> outcome
)

func record(rt, id string, v verdict) {
	outcomesMu.Lock()
	defer outcomesMu.Unlock()
	if outcomes[id] == nil {
		outcomes[id] = map[string]string{}
	}
	o := "pass"
	if !v.OK {
		o = "FAIL"
	}
	if v.Note != "" {
		o += " (" + v.Note + ")"
	}
	outcomes[id][rt] = o
}

// judge fails the test for every unsafe verdict and records them all.
func judge(t *testing.T, l *lab, group string, want []string, v map[string]verdict) {
	t.Helper()
	for _, id := range want {
		got, ok := v[id]
		if !ok {
			t.Errorf("%s: %s reported nothing", group, id)
			continue
		}
		record(l.rt.Name, id, got)
		if !got.OK {
			t.Errorf("%s %s UNSAFE: %s", group, id, got.Got)
		} else {
			t.Logf("%s %s ok: %.300s", group, id, got.Got)
		}
	}
}

// TestBattery runs every probe group in a fresh session, then again in one
// reused session (pool hygiene bugs show up only on reuse), as alice.
func TestBattery(t *testing.T) {
	groups := []struct {
		name, code string
		ids        []string
	}{
		{"network", netProbe, []string{"N1", "N2", "N3", "N4", "N5", "N6", "N7", "N8", "N9", "N10"}},
		{"filesystem", fsProbe, []string{"F1", "F2", "F3", "F4", "F5", "F7", "F8", "F9", "F10"}},
		{"privileges", privProbe, []string{"P1", "P2", "P3", "P4", "P5", "P6", "P7"}},
		{"information", infoProbe, []string{"I1", "I2", "I3", "I4", "I5"}},
	}
	eachRuntime(t, func(t *testing.T, l *lab) {
		for round, reuse := range []bool{false, true} {
			for i, g := range groups {
				id := fmt.Sprintf("battery-%s-%d", g.name, i)
				if reuse {
					id = "battery-reused"
				}
				cfg := l.cfg
				cfg["identifier"] = id
				v := l.alice.probe(id, g.code, cfg)
				judge(t, l, fmt.Sprintf("%s (round %d)", g.name, round+1), g.ids, v)
				l.canaries.check(t, g.name)
			}
		}
		fileAPIBait(t, l)
		leaks(t, l)
	})
}

// fileAPIBait (F6): symlinks and a FIFO planted in /mnt/data, then the
// file API asked for them: never a host file, never a hang.
func fileAPIBait(t *testing.T, l *lab) {
	const id = "battery-file-bait"
	a := l.alice
	a.run(id, `import os
os.chdir('/mnt/data')
for name, target in [('l-shadow', '/etc/shadow'), ('l-passwd', '/etc/passwd'), ('l-environ', '/proc/1/environ'),
                     ('l-root', '/'), ('l-up', '../../..'), ('l-tmp', '/tmp')]:
    os.symlink(target, name)
os.mkfifo('fifo')
os.mkdir('d')
os.symlink('/etc', 'd/l-etc')`, 30)
	// The listing shows files and directories only.
	r := a.do("GET", "/files?"+v3+"&identifier="+id, nil, "")
	if r.status != 200 || !strings.Contains(string(r.body), `"d"`) || strings.Contains(string(r.body), "l-") || strings.Contains(string(r.body), "fifo") {
		t.Errorf("F6 listing: %d %.300s", r.status, r.body)
	}
	outcome := verdict{OK: true}
	for _, name := range []string{"l-shadow", "l-passwd", "l-environ", "l-root", "l-up", "l-tmp", "fifo", "d/l-etc/passwd", "l-tmp/../etc/passwd"} {
		t0 := time.Now()
		r := a.do("GET", "/files/"+url.PathEscape(name)+"/content?"+v3+"&identifier="+id, nil, "")
		d := time.Since(t0)
		if r.status == 200 || strings.Contains(string(r.body), "root:") || d > 10*time.Second {
			outcome = verdict{OK: false, Got: fmt.Sprintf("download %s: %d after %v: %.100s", name, r.status, d, r.body)}
			t.Errorf("F6 UNSAFE: %s", outcome.Got)
		}
	}
	for _, name := range []string{"l-tmp/planted.txt", "d/l-etc/planted", "../planted", "/tmp/planted"} {
		if r := a.upload(id, name, []byte("x")); r.status < 400 {
			outcome = verdict{OK: false, Got: fmt.Sprintf("upload %s: %d", name, r.status)}
			t.Errorf("F6 UNSAFE: %s", outcome.Got)
		}
	}
	if out := a.run(id, "import os\nprint(os.path.exists('/tmp/planted.txt'), os.path.exists('/etc/planted'))", 30); out != "False False\n" {
		outcome = verdict{OK: false, Got: "an upload landed outside /mnt/data: " + out}
		t.Errorf("F6 UNSAFE: %s", outcome.Got)
	}
	if outcome.OK {
		outcome.Got = "links and the FIFO refused (not a regular file), uploads under links refused"
	}
	record(l.rt.Name, "F6", outcome)
}

var (
	containerID   = regexp.MustCompile(`\b[0-9a-f]{64}\b`)
	containerName = regexp.MustCompile(`sandpool-[0-9a-f]{16}`)
)

// leaks (I6): no error answer the battery provoked shows a host path, a
// container id or name, a podman message or a Go stack trace; and the
// server's log holds no code, output or raw identifier.
func leaks(t *testing.T, l *lab) {
	a := l.alice
	const id = "battery-errors"
	// Provoke more errors on purpose.
	a.upload(id, "../../etc/passwd", []byte("x"))
	a.upload(id, "a\x00b", []byte("x"))
	a.do("POST", "/executions?"+v3+"&identifier="+id, strings.NewReader(`{"code": `+strings.Repeat(" ", 5<<20)+`"x"}`), "application/json")
	a.do("POST", "/executions?"+v3+"&identifier=x", strings.NewReader(`{"code":"1"}`), "application/json")
	a.do("GET", "/files/nothing-here/content?"+v3+"&identifier="+id, nil, "")
	_, er := a.exec(id, "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", 30)
	a.mu.Lock()
	answers := append(append([]string(nil), *a.bad...), er.Result.Stderr)
	a.mu.Unlock()
	ok := true
	for _, s := range answers {
		for _, bad := range []string{"/var/lib", "/tmp/sandpool", "/run/", "podman", "goroutine ", ".go:", "conmon", "runsc", "libpod", serverSecret} {
			if strings.Contains(s, bad) {
				ok = false
				t.Errorf("I6 UNSAFE: %q in an answer: %.300s", bad, s)
			}
		}
		if containerID.MatchString(s) || containerName.MatchString(s) {
			ok = false
			t.Errorf("I6 UNSAFE: a container id or name in an answer: %.300s", s)
		}
	}
	record(l.rt.Name, "I6", verdict{OK: ok, Got: fmt.Sprintf("%d error answers scanned", len(answers))})
	log := l.serverLog.String()
	for _, s := range []string{"battery-reused", "battery-file-bait", "l-shadow", "BATTERY:", "os.symlink", aliceKey, bobKey} {
		if strings.Contains(log, s) {
			t.Errorf("the server log holds %q (identifiers, code, output and tokens must never be logged)", s)
		}
	}
}
