package podmantest

import (
	"bytes"
	"context"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/sandpool/sandpool/api"
)

// Buffer is a bytes.Buffer that a logger and a test may use at once. With
// Max set it keeps only about the last Max bytes (a long run's log must not
// count as the server's memory).
type Buffer struct {
	Max int

	mu sync.Mutex
	b  bytes.Buffer
}

// Write implements io.Writer.
func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, err := l.b.Write(p)
	if l.Max > 0 && l.b.Len() > 2*l.Max {
		tail := bytes.Clone(l.b.Bytes()[l.b.Len()-l.Max:])
		l.b.Reset()
		l.b.Write(tail)
	}
	return n, err
}

// String returns what was written (or its end, with Max).
func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Serve starts the HTTP surface with opt on a loopback test server and
// returns its URL and a stop function (also run when the test ends; it
// may be called early, e.g. to restart a server).
func Serve(t testing.TB, opt api.Options) (url string, stop func()) {
	t.Helper()
	s, err := api.New(context.Background(), opt)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(nil)
	ts.Config = s.HTTPServer(nil)
	ts.Listener = s.Listener(ts.Listener)
	ts.Start()
	stop = sync.OnceFunc(func() { ts.Close(); s.Close(context.Background()) })
	t.Cleanup(stop)
	return ts.URL, stop
}
