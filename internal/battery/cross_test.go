package battery_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// plant is session A's code: a token in files of every writable
// directory, in a variable, behind a loopback listener, an abstract unix
// socket and a SysV shared memory segment.
const plant = `import os, socket, threading, ctypes
TOK = %q
secret = TOK
for d in ('/tmp', '/mnt/data', os.path.expanduser('~'), '/dev/shm'):
    open(os.path.join(d, 'plant-' + TOK), 'w').write(TOK)
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(('127.0.0.1', 47000))
srv.listen(8)
def serve():
    while True:
        c, _ = srv.accept()
        c.sendall(TOK.encode())
        c.close()
threading.Thread(target=serve, daemon=True).start()
ab = socket.socket(socket.AF_UNIX)
ab.bind('\0plant-' + TOK)
ab.listen(1)
shm = ctypes.CDLL(None, use_errno=True).shmget(0x5eed, 4096, 0o1666)
print('planted', shm >= 0)
`

// hunt is another session's search for everything plant left.
const hunt = `import os, json, socket
TOK = %q
found = []
for root, dirs, files in os.walk('/'):
    if root in ('/proc', '/sys'):
        dirs[:] = []
        continue
    found += [os.path.join(root, n) for n in files + dirs if TOK in n]
def conn():
    s = socket.socket()
    s.settimeout(2)
    try:
        s.connect(('127.0.0.1', 47000))
        return s.recv(64).decode()
    except OSError as e:
        return 'failed'
procs = [p for p in os.listdir('/proc') if p.isdigit()]
def text(p):
    try:
        return open(p).read()
    except OSError:
        return ''
try:
    seen = secret
except NameError:
    seen = None
print(json.dumps({'found': found, 'conn': conn(), 'procs': len(procs), 'unix': TOK in text('/proc/net/unix'),
                  'shm': str(0x5eed) in text('/proc/sysvipc/shm'), 'secret': seen,
                  'env': TOK in open('/proc/self/environ', 'rb').read().decode(errors='replace')}))
`

type hunted struct {
	Found  []string
	Conn   string
	Procs  int
	Unix   bool
	Shm    bool
	Secret *string
	Env    bool
}

// TestCrossSession (X1-X6): a session plants, others hunt, under the same
// principal and under another with the same identifier; one kills all it
// can; identifiers are guessed; a deleted session leaves no residue.
func TestCrossSession(t *testing.T) {
	eachRuntime(t, func(t *testing.T, l *lab) {
		tok := l.cfg["token"].(string)
		a, b := l.alice, l.bob
		planted := "xs-plant-" + tok
		if out := a.run(planted, fmt.Sprintf(plant, tok), 60); !strings.Contains(out, "planted") {
			t.Fatalf("plant: %q", out)
		}
		if out := a.run(planted, fmt.Sprintf(hunt, tok), 120); !strings.Contains(out, `"conn": "`+tok) {
			t.Fatalf("the planting session does not see its own listener, so the hunt proves nothing: %s", out)
		}
		x := map[string]verdict{}
		for _, h := range []struct {
			name string
			who  *attacker
			id   string
		}{{"same principal, another identifier", a, "xs-hunt-" + tok}, {"another principal, the same identifier", b, planted}} {
			var got hunted
			out := h.who.run(h.id, fmt.Sprintf(hunt, tok), 120)
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatalf("hunt: %v: %s", err, out)
			}
			files := len(got.Found) == 0 && !got.Env
			procs := got.Procs < 16 && !got.Unix && !got.Shm
			net := got.Conn == "failed"
			mem := got.Secret == nil
			for id, ok := range map[string]bool{"X1": files, "X2": procs, "X3": net, "X6": files && mem} {
				v := x[id]
				if _, seen := x[id]; !seen {
					v.OK = true
				}
				v.OK = v.OK && ok
				v.Got += fmt.Sprintf("%s: %+v; ", h.name, got)
				x[id] = v
				if !ok {
					t.Errorf("%s UNSAFE (%s): %s", id, h.name, out)
				}
			}
		}
		// B kills every process it may signal: A is unaffected.
		b.exec(planted, "import os, signal\nos.kill(-1, signal.SIGKILL)", 30)
		if out := a.run(planted, "print(secret)", 30); strings.TrimSpace(out) != tok {
			t.Errorf("X2 UNSAFE: after the other principal's kill(-1), A prints %q", out)
			x["X2"] = verdict{Got: "A was hurt by B's kill(-1)"}
		}
		// X4: guessing. Another principal's identifiers, used ones and
		// never used ones, all answer the same 404.
		never := b.do("GET", "/session?api-version=2025-02-02-preview&identifier=never-used-"+tok, nil, "")
		guess := b.do("GET", "/session?api-version=2025-02-02-preview&identifier=xs-hunt-"+tok, nil, "")
		x4 := never.status == 404 && guess.status == 404 && string(never.body) == string(guess.body)
		for i := 0; i < 5; i++ {
			// Near alice's identifiers; bob used xs-plant-<tok> himself.
			r := b.do("GET", fmt.Sprintf("/session?api-version=2025-02-02-preview&identifier=xs-hunt-%s%d", tok[:len(tok)-1], i), nil, "")
			x4 = x4 && r.status == 404
		}
		x["X4"] = verdict{OK: x4, Got: fmt.Sprintf("another principal's identifier: %d %s; never used: %d %s", guess.status, guess.body, never.status, never.body)}
		if !x4 {
			t.Errorf("X4 UNSAFE: %s", x["X4"].Got)
		}
		// X5: a deleted session's sandbox is never handed out again and
		// leaves nothing behind.
		used := "xs-hygiene-" + tok
		host := a.run(used, "import os, socket\nresidue = 1\nos.makedirs(os.path.expanduser('~/.cache'), exist_ok=True)\nfor p in ('/tmp/residue', os.path.expanduser('~/.cache/residue'), '/mnt/data/residue'):\n    open(p, 'w').write('x')\nprint(socket.gethostname())", 30)
		if r := a.do("DELETE", "/session?api-version=2025-02-02-preview&identifier="+used, nil, ""); r.status != 204 {
			t.Fatalf("delete: %d %s", r.status, r.body)
		}
		hosts := map[string]bool{strings.TrimSpace(host): true}
		x5 := true
		for i := 0; i < 3; i++ {
			out := a.run(fmt.Sprintf("xs-fresh-%d-%s", i, tok), "import os, socket\nprint(socket.gethostname(), 'residue' in globals(), any(os.path.exists(p) for p in ('/tmp/residue', os.path.expanduser('~/.cache/residue'), '/mnt/data/residue')))", 30)
			f := strings.Fields(out)
			if len(f) != 3 || hosts[f[0]] || f[1] != "False" || f[2] != "False" {
				x5 = false
				t.Errorf("X5 UNSAFE: a new session saw %q (used: %v)", out, hosts)
			}
			if len(f) > 0 {
				hosts[f[0]] = true
			}
		}
		x["X5"] = verdict{OK: x5, Got: fmt.Sprintf("%d distinct sandboxes, no residue", len(hosts))}
		for id, v := range x {
			record(l.rt.Name, id, v)
		}
		l.canaries.check(t, "the cross-session checks")
	})
}
