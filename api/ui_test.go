package api_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sandpool/sandpool/api"
	"github.com/sandpool/sandpool/internal/podmantest"
	"github.com/sandpool/sandpool/pool"
)

// chromium starts a headless Chromium for the test (installed by the test
// command; without it the test skips, or fails when integration tests are
// required).
func chromium(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("SANDPOOL_REQUIRE_PODMAN") == "1" {
			t.Fatal("chromium is not installed (make test installs it)")
		}
		t.Skip("chromium is not installed")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true), chromedp.UserDataDir(t.TempDir()))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	ctx, cancel3 := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(cancel3)
	return ctx
}

// waitJS polls a JavaScript condition until it is true.
func waitJS(ctx context.Context, t *testing.T, what, expr string) {
	t.Helper()
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: timed out", what)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// TestBrowserPage drives the page at / in headless Chromium: connect with
// an API key, run the default cell (text and a figure), and see a later
// cell's first line while it still runs.
func TestBrowserPage(t *testing.T) {
	ctx := chromium(t)
	e := newEnv(t, podmantest.Runc, pool.Config{Scale: pool.ScaleConfig{MaxConcurrentSessions: 2, ReadySessionInstances: ptr(1)}})
	c := e.server(api.Options{}, nil)

	if r := c.root().get("/"); r.status != 200 || !strings.Contains(r.header.Get("Content-Security-Policy"), "script-src 'self'") {
		t.Fatalf("page: %d %v", r.status, r.header)
	}
	if err := chromedp.Do(ctx,
		chromedp.Navigate(c.url+"/?pool="+e.cfg.Name),
		chromedp.WaitVisible(chromedp.ID("#token")),
		chromedp.SendKeys(chromedp.ID("#token"), aliceKey),
		chromedp.Click(chromedp.ID("#connect-btn")),
	); err != nil {
		t.Fatal(err)
	}
	waitJS(ctx, t, "connect", `document.getElementById('state').textContent === 'connected'`)
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("#run-btn"))); err != nil {
		t.Fatal(err)
	}
	waitJS(ctx, t, "first cell", `document.querySelector('.cell[data-status]') !== null`)
	text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(".cell")))
	if err != nil {
		t.Fatal(err)
	}
	img, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(document.querySelector('.cell img') || {src: ''}).src.startsWith('data:image/png;base64,iVBOR')`))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, "max of sin: 0.99") || !strings.Contains(text, "done: ok") || !img {
		t.Fatalf("first cell: %q, figure %v", text, img)
	}

	// Streaming: the first line shows while the cell sleeps.
	code := "import time\nprint('early', flush=True)\ntime.sleep(3)\nprint('late')"
	if err := chromedp.Do(ctx,
		chromedp.SetValue(chromedp.ID("#code"), code),
		chromedp.Click(chromedp.ID("#run-btn")),
	); err != nil {
		t.Fatal(err)
	}
	waitJS(ctx, t, "early line", `(() => { const c = document.querySelector('.cell'); return c.textContent.includes('early') && !c.dataset.status; })()`)
	waitJS(ctx, t, "second cell", `document.querySelector('.cell').dataset.status === 'ok'`)
	if text, err = chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(".cell"))); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, "early\nlate") {
		t.Fatalf("second cell: %q", text)
	}

	// A wrong key: the page shows the refusal.
	if err := chromedp.Do(ctx,
		chromedp.SetValue(chromedp.ID("#token"), "wrong-key-0123456789"),
		chromedp.Click(chromedp.ID("#connect-btn")),
	); err != nil {
		t.Fatal(err)
	}
	waitJS(ctx, t, "refused", `document.getElementById('state').textContent.startsWith('disconnected')`)
}
