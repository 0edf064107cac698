package sandbox

import (
	"context"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/sandpool/sandpool/internal/errcode"
	"github.com/sandpool/sandpool/sandbox/agentproto"
)

// fakeAgent answers every request with a failure. A flooding one first
// opens streams of its own toward the server and fills each one's window,
// as a compromised agent could.
type fakeAgent struct {
	wg      sync.WaitGroup
	mu      sync.Mutex
	sess    []*yamux.Session
	flooded chan int // streams the flood got through, once per flooding dial
}

const (
	floodStreams = 256
	floodBytes   = 256 << 10 // one stream's receive window
)

func (f *fakeAgent) dial(flood bool) (io.ReadWriteCloser, error) {
	c1, c2 := net.Pipe()
	sess, err := agentproto.Server(c2)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.sess = append(f.sess, sess)
	f.mu.Unlock()
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		first := true
		for {
			st, err := sess.AcceptStream()
			if err != nil {
				return
			}
			if first && flood {
				f.flooded <- f.flood(sess)
			}
			first = false
			_, _ = agentproto.ReadRequest(agentproto.NewReader(st, agentproto.MaxFrame))
			_ = agentproto.WriteMsg(st, agentproto.Failed(agentproto.FailBadRequest, "fake agent"))
			st.Close()
		}
	}()
	return c1, nil
}

func (f *fakeAgent) flood(sess *yamux.Session) int {
	buf := make([]byte, floodBytes)
	n := 0
	for i := 0; i < floodStreams; i++ {
		st, err := sess.OpenStream()
		if err != nil {
			break
		}
		_ = st.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err := st.Write(buf); err != nil {
			continue // refused (reset) or the connection is gone
		}
		n++
	}
	return n
}

func (f *fakeAgent) close() {
	f.mu.Lock()
	for _, s := range f.sess {
		s.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestF10AgentStreamFloodIsBounded: an agent that opens streams toward the
// server (it never should) and fills their windows cannot make the server
// hold them: the server drops that connection, and until it does its small
// accept backlog bounds what it holds. The next operation dials again.
func TestF10AgentStreamFloodIsBounded(t *testing.T) {
	f := &fakeAgent{flooded: make(chan int, 1)}
	dials := 0
	c := NewConn(DialFunc(func(ctx context.Context) (io.ReadWriteCloser, error) {
		dials++
		return f.dial(dials == 1)
	}))
	t.Cleanup(func() {
		c.Close()
		f.close()
	})
	base := heapInUse()
	// The first operation's answer may be lost with the connection.
	_ = c.Interrupt(context.Background(), "x")
	got := <-f.flooded
	held := int64(heapInUse()) - int64(base)
	t.Logf("the flood got %d streams of %d KiB through; the server's heap grew by %d KiB", got, floodBytes>>10, held>>10)
	if held > 16<<20 {
		t.Errorf("the server holds %d MiB after a flood of %d streams", held>>20, floodStreams)
	}
	// The Conn still serves, over a new connection.
	if err := c.Interrupt(context.Background(), "x"); errcode.Of(err) != errcode.InvalidArgument {
		t.Errorf("after the flood: %v, want the fake agent's answer", err)
	}
	if dials != 2 {
		t.Errorf("%d dials, want 2 (the flooding connection dropped, one new)", dials)
	}
}
