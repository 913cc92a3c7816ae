package rudp_test

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rudp-go/rudp"
)

// TestIdleMemoryPerConnection measures what an idle connection costs each
// side: the accepted side (sharing the listener's socket) in this process,
// the dialed side in a child process running this test binary, so neither
// side's heap counts the other's. The dialed side is measured twice: with
// rudp.Dial (a socket, its mux and its reader goroutine each) and through
// one Listener's socket (Listener.Dial). It reports Go heap and goroutine stacks per connection
// after GC, at the counts RUDP_IDLE_CONNS lists (for example "1000,10000");
// without it the test is skipped, as it takes a while.
//
//	RUDP_IDLE_CONNS=1000,10000 go test -run TestIdleMemoryPerConnection -v .
func TestIdleMemoryPerConnection(t *testing.T) {
	if addr := os.Getenv("RUDP_IDLE_DIAL"); addr != "" {
		idleDialer(t, addr)
		return
	}
	counts := os.Getenv("RUDP_IDLE_CONNS")
	if counts == "" {
		t.Skip("set RUDP_IDLE_CONNS, e.g. 1000,10000")
	}
	for _, f := range splitComma(counts) {
		n, err := strconv.Atoi(f)
		require.NoError(t, err)
		t.Run(f, func(t *testing.T) { idleCost(t, n, false) })
		t.Run(f+"/shared", func(t *testing.T) { idleCost(t, n, true) })
	}
}

func splitComma(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ',' {
			if i > start {
				out = append(out, s[start:i])
			}
			start = i + 1
		}
	}
	return out
}

// memNow returns heap and stack in use after a full collection (twice, so
// that pooled buffers in sync.Pool victim caches are gone too).
func memNow() (heap, stack int64) {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc), int64(ms.StackInuse)
}

func idleCost(t *testing.T, n int, shared bool) {
	ln, err := rudp.Listen("udp", "127.0.0.1:0", nil)
	require.NoError(t, err)
	defer ln.Close()
	heap0, stack0 := memNow()

	env := []string{"RUDP_IDLE_DIAL=" + ln.Addr().String(), "RUDP_IDLE_N=" + strconv.Itoa(n)}
	if shared {
		env = append(env, "RUDP_IDLE_SHARED=1")
	}
	_, sc, stop := startTestChild(t, "^TestIdleMemoryPerConnection$", env...)
	defer stop()

	servers := make([]*rudp.Conn, 0, n)
	for range n {
		s, err := ln.AcceptRUDP()
		require.NoError(t, err)
		servers = append(servers, s)
	}
	var dialed string
	for sc.Scan() {
		if line := sc.Text(); len(line) > 7 && line[:7] == "dialed:" {
			dialed = line[7:]
			break
		}
	}
	heap1, stack1 := memNow()
	t.Logf("%d idle connections, accepted side: heap %.2f KiB/conn, stacks %.2f KiB/conn",
		n, float64(heap1-heap0)/float64(n)/1024, float64(stack1-stack0)/float64(n)/1024)
	how := "rudp.Dial"
	if shared {
		how = "Listener.Dial"
	}
	t.Logf("%d idle connections, dialed side (%s):%s", n, how, dialed)
	for _, s := range servers {
		s.Close()
	}
}

// idleDialer is the child process of idleCost: it dials RUDP_IDLE_N
// connections, prints its cost per connection and waits for stdin to close.
func idleDialer(t *testing.T, addr string) {
	n, err := strconv.Atoi(os.Getenv("RUDP_IDLE_N"))
	require.NoError(t, err)
	dial := func() (*rudp.Conn, error) { return rudp.Dial("udp", addr, nil) }
	if os.Getenv("RUDP_IDLE_SHARED") != "" {
		ln, err := rudp.Listen("udp", "127.0.0.1:0", nil)
		require.NoError(t, err)
		defer ln.Close()
		dial = func() (*rudp.Conn, error) { return ln.Dial("udp", addr) }
	}
	heap0, stack0 := memNow()
	clients := make([]*rudp.Conn, 0, n)
	for range n {
		c, err := dial()
		require.NoError(t, err)
		clients = append(clients, c)
	}
	time.Sleep(100 * time.Millisecond) // let every reader goroutine park
	heap1, stack1 := memNow()
	fmt.Printf("dialed: heap %.2f KiB/conn, stacks %.2f KiB/conn, %.2f goroutines/conn\n",
		float64(heap1-heap0)/float64(n)/1024, float64(stack1-stack0)/float64(n)/1024,
		float64(runtime.NumGoroutine())/float64(n))
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	for _, c := range clients {
		c.Close()
	}
}
