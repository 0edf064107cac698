package tools

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sandpool/sandpool/internal/inproc"
	"github.com/sandpool/sandpool/pool"
)

// TestInprocService: the tools over a real pool on the in-process engine
// (real agent and kernel, the host's python3): state across calls, errors,
// images, files, reset, and sessions kept apart.
func TestInprocService(t *testing.T) {
	t.Parallel()
	ready := 0
	m, _ := inproc.Manager(t, pool.Config{Name: "tools-inproc", Scale: pool.ScaleConfig{MaxConcurrentSessions: 2, ReadySessionInstances: &ready}})
	p := m.Pool("tools-inproc")
	s := NewService(p, PoolLimits(p.Config()))
	ctx := context.Background()
	id, err := pool.ParseIdentifier("tools-session")
	if err != nil {
		t.Fatal(err)
	}
	k := pool.Key("alice", id)
	other := pool.Key("bob", id)

	expect := func(what string, r Result, isError bool, want ...string) {
		t.Helper()
		if r.IsError != isError {
			t.Fatalf("%s: isError %v, want %v: %s", what, r.IsError, isError, r.JoinText())
		}
		for _, w := range want {
			if !strings.Contains(r.JoinText(), w) {
				t.Fatalf("%s: no %q in %q", what, w, r.JoinText())
			}
		}
	}
	expect("define", s.Execute(ctx, k, ExecuteArgs{Code: "x = 21"}, nil), false, "(no output")
	expect("use", s.Execute(ctx, k, ExecuteArgs{Code: "print('double')\nx * 2"}, nil), false, "stdout:\ndouble", "result:\n42")
	expect("exception", s.Execute(ctx, k, ExecuteArgs{Code: "1/0"}, nil), true, "ZeroDivisionError: division by zero")
	expect("timeout", s.Execute(ctx, k, ExecuteArgs{Code: "import time\ntime.sleep(10)", Timeout: time.Second}, nil), true, "timeout: the execution ran past its 1s limit")
	expect("other principal", s.Execute(ctx, other, ExecuteArgs{Code: "x"}, nil), true, "NameError")
	if inproc.HasIPython() {
		r := s.Execute(ctx, k, ExecuteArgs{Code: "import base64\nfrom IPython.display import display, Image\n" +
			"display(Image(data=base64.b64decode('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==')))"}, nil)
		if len(r.Content) != 1 || r.Content[0].Kind != Image || !bytes.HasPrefix(r.Content[0].Data, []byte("\x89PNG")) {
			t.Fatalf("image: %+v", r.Content)
		}
	}

	expect("upload", s.Upload(ctx, k, UploadArgs{Name: "data.csv", Content: "a,b\n1,2\n"}), false, "saved /mnt/data/data.csv (8 bytes)")
	expect("read", s.Execute(ctx, k, ExecuteArgs{Code: "open('data.csv').read()"}, nil), false, `'a,b\n1,2\n'`)
	expect("list", s.List(ctx, k, ""), false, "data.csv\t8\t")
	expect("other's list", s.List(ctx, other, ""), false, "/mnt/data is empty")
	if r := s.Download(ctx, k, "data.csv"); r.IsError || len(r.Content) == 0 || !strings.Contains(string(r.Content[len(r.Content)-1].Data)+r.Content[len(r.Content)-1].Text, "a,b") {
		t.Fatalf("download: %+v", r)
	}
	expect("escape", s.Download(ctx, k, "../../etc/passwd"), true, "not allowed")
	expect("delete", s.Delete(ctx, k, "data.csv"), false, "deleted /mnt/data/data.csv")
	expect("deleted", s.Download(ctx, k, "data.csv"), true, "not_found")
	expect("reset", s.Reset(ctx, k), false, "fresh sandbox")
	expect("after reset", s.Execute(ctx, k, ExecuteArgs{Code: "x"}, nil), true, "NameError")
}
