package client_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/sandpool/sandpool/api"
	"github.com/sandpool/sandpool/api/client"
	"github.com/sandpool/sandpool/internal/errcode"
	"github.com/sandpool/sandpool/internal/podmantest"
	"github.com/sandpool/sandpool/pool"
	"github.com/sandpool/sandpool/tools"
)

func TestMain(m *testing.M) { podmantest.Main(m) }

const key = "client-key-0123456789"

var _ tools.Backend = (*client.Client)(nil)

func server(t *testing.T, rt podmantest.Runtime) (url, poolName string) {
	cfg := pool.Config{Name: "client-" + rt.Name, Scale: pool.ScaleConfig{MaxConcurrentSessions: 2, ReadySessionInstances: ptr(1)}}
	m := podmantest.Manager(t, rt, cfg)
	url, _ = podmantest.Serve(t, api.Options{Manager: m, Log: zerolog.Nop(),
		Auth: api.AuthConfig{APIKeys: []api.APIKey{{Name: "go", Key: key}}}})
	return url, cfg.Name
}

func ptr(n int) *int { return &n }

func sessionKey(t *testing.T, id string) pool.SessionKey {
	i, err := pool.ParseIdentifier(id)
	if err != nil {
		t.Fatal(err)
	}
	return pool.Key("", i)
}

func TestClient(t *testing.T) {
	for _, rt := range podmantest.Runtimes() {
		t.Run(rt.Name, func(t *testing.T) {
			t.Parallel()
			url, name := server(t, rt)
			c, err := client.New(url, name, key)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if err := c.Ping(ctx); err != nil {
				t.Fatal(err)
			}
			k := sessionKey(t, "go-client-1")

			// Events arrive in order through the sink; state is kept.
			var got []string
			sink := func(ev pool.Event) {
				switch ev.Kind {
				case pool.EventStdout:
					// Chunks come as printed ("hi", then "\n"): join them.
					if n := len(got); n > 0 && strings.HasPrefix(got[n-1], "out:") {
						got[n-1] += string(ev.Text)
						return
					}
					got = append(got, "out:"+string(ev.Text))
				case pool.EventResult:
					got = append(got, "result:"+ev.Data["text/plain"])
				case pool.EventError:
					got = append(got, "error:"+ev.Error.Name)
				}
			}
			res, err := c.Execute(ctx, k, pool.ExecRequest{Code: "n = 6\nprint('hi')\nn * 7", Timeout: 30 * time.Second}, sink)
			if err != nil || res.Status != pool.StatusOK || strings.Join(got, "|") != "out:hi\n|result:42" {
				t.Fatalf("execute: %+v %v %q", res, err, got)
			}
			got = nil
			res, err = c.Execute(ctx, k, pool.ExecRequest{Code: "n / 0", Timeout: 30 * time.Second}, sink)
			if err != nil || res.Status != pool.StatusError || strings.Join(got, "|") != "error:ZeroDivisionError" {
				t.Fatalf("exception: %+v %v %q", res, err, got)
			}

			// Canceling interrupts; the session goes on.
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			if _, err := c.Execute(cctx, k, pool.ExecRequest{Code: "import time\ntime.sleep(30)", Timeout: 60 * time.Second}, nil); errcode.Of(err) != errcode.Canceled {
				t.Fatalf("cancel: %v", err)
			}
			res, err = c.Execute(ctx, k, pool.ExecRequest{Code: "n", Timeout: 30 * time.Second}, nil)
			if err != nil || res.Status != pool.StatusOK {
				t.Fatalf("after cancel: %+v %v", res, err)
			}

			// Files.
			if fi, err := c.Put(ctx, k, "sub/data.txt", strings.NewReader("payload"), 1<<20); err != nil || fi.Size != 7 || fi.Name != "data.txt" {
				t.Fatalf("put: %+v %v", fi, err)
			}
			var buf bytes.Buffer
			if fi, err := c.Get(ctx, k, "sub/data.txt", &buf, 1<<20); err != nil || buf.String() != "payload" || fi.Size != 7 {
				t.Fatalf("get: %+v %v %q", fi, err, buf.String())
			}
			if _, err := c.Get(ctx, k, "sub/data.txt", &bytes.Buffer{}, 3); errcode.Of(err) != errcode.TooLarge {
				t.Fatalf("get past max: %v", err)
			}
			if _, err := c.Put(ctx, k, "big.bin", bytes.NewReader(make([]byte, 100)), 10); errcode.Of(err) != errcode.TooLarge {
				t.Fatalf("put past max: %v", err)
			}
			files, _, err := c.List(ctx, k, "sub")
			if err != nil || len(files) != 1 || files[0].Name != "data.txt" || files[0].Size != 7 {
				t.Fatalf("list: %+v %v", files, err)
			}
			if files, _, _ := c.List(ctx, k, ""); len(files) != 1 || files[0].Type != pool.FileDir {
				t.Fatalf("list root: %+v", files)
			}
			if err := c.Remove(ctx, k, "sub/data.txt"); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Get(ctx, k, "sub/data.txt", &buf, 1<<20); errcode.Of(err) != errcode.NotFound {
				t.Fatalf("get removed: %v", err)
			}
			if _, err := c.Put(ctx, k, "../escape", strings.NewReader("x"), 10); errcode.Of(err) != errcode.InvalidArgument {
				t.Fatalf("traversal: %v", err)
			}

			// The same tools run over the client as over a pool.
			svc := tools.NewService(c, tools.Limits{})
			if r := svc.Call(ctx, k, tools.ExecutePython, map[string]any{"code": "n + 1"}, nil); r.IsError || !strings.Contains(r.JoinText(), "7") {
				t.Fatalf("tools over the client: %q", r.JoinText())
			}

			// Typed errors.
			var ce *client.Error
			bad, _ := client.New(url, name, "wrong-key-0123456789")
			if _, err := bad.Execute(ctx, k, pool.ExecRequest{Code: "1", Timeout: time.Second}, nil); !errors.As(err, &ce) || ce.Status != 401 || ce.Code != errcode.Unauthenticated {
				t.Fatalf("wrong key: %v", err)
			}
			if err := bad.Delete(ctx, k); !errors.As(err, &ce) || ce.Status != 401 {
				t.Fatalf("wrong key on delete: %v", err)
			}
			other, _ := client.New(url, "no-such-pool", key)
			if _, _, err := other.List(ctx, k, ""); errcode.Of(err) != "pool_not_found" {
				t.Fatalf("unknown pool: %v", err)
			}
			// Capacity: a second session fills the pool, a third is refused.
			if _, err := c.Execute(ctx, sessionKey(t, "go-client-2"), pool.ExecRequest{Code: "1", Timeout: 10 * time.Second}, nil); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Execute(ctx, sessionKey(t, "go-client-3"), pool.ExecRequest{Code: "1", Timeout: 10 * time.Second}, nil); errcode.Of(err) != errcode.CapacityExceeded || !errors.As(err, &ce) || strings.Contains(err.Error(), "capacity_exceeded: ") {
				t.Fatalf("capacity: %v", err)
			}
			// Delete ends the session: its variables are gone.
			if err := c.Delete(ctx, k); err != nil {
				t.Fatal(err)
			}
			if res, err := c.Execute(ctx, k, pool.ExecRequest{Code: "n", Timeout: 30 * time.Second}, nil); err != nil || res.Status != pool.StatusError {
				t.Fatalf("after delete: %+v %v", res, err)
			}
			if _, err := client.New("ftp://x", name, key); err == nil {
				t.Fatal("an ftp URL was accepted")
			}
		})
	}
}
