package rudp_test

import (
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rudp-go/rudp"
)

// TestIdleConnectionCost measures, at 1,000 idle connections to one
// listener, the goroutines per connection and the heap per connection
// (runtime.MemStats.HeapAlloc after GC, before and after). Each dialed
// Conn has its own socket (one reader goroutine and a 64 KiB read buffer);
// the accepted side shares the listener's.
func TestIdleConnectionCost(t *testing.T) {
	if testing.Short() {
		t.Skip("measurement")
	}
	const n = 1000
	ln, err := rudp.Listen("udp", "127.0.0.1:0", nil)
	require.NoError(t, err)
	defer ln.Close()
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	heap0, g0 := ms.HeapAlloc, runtime.NumGoroutine()
	clients := make([]*rudp.Conn, 0, n)
	servers := make([]*rudp.Conn, 0, n)
	for range n {
		c, err := rudp.Dial("udp", ln.Addr().String(), nil)
		require.NoError(t, err)
		s, err := ln.AcceptRUDP()
		require.NoError(t, err)
		clients = append(clients, c)
		servers = append(servers, s)
	}
	runtime.GC()
	runtime.ReadMemStats(&ms)
	heap1, g1 := ms.HeapAlloc, runtime.NumGoroutine()
	for _, s := range servers {
		s.Close()
	}
	t.Logf("%d connections: %.2f goroutines per dialed+accepted pair; heap %.1f KiB per pair (both ends, incl. the dialed socket's 64 KiB read buffer)",
		n, float64(g1-g0)/n, float64(heap1-heap0)/n/1024)
	for _, c := range clients {
		c.Close()
	}
}
