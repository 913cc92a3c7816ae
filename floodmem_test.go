package rudp_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rudp-go/rudp"
)

const (
	floodDialEnv = "RUDP_FLOOD_DIAL"
	floodConns   = 64
	floodBytes   = 1 << 20
)

// floodPayload is what flooding client i sends: recognisable per client.
func floodPayload(i int) []byte {
	b := make([]byte, floodBytes)
	for k := range b {
		b[k] = byte(i*7 + k/1000)
	}
	b[0] = byte(i)
	return b
}

// TestListenerFloodMemory: clients that connect and send at once, to a
// listener that does not accept them, make it hold no more than
// UnacceptedReceiveWindow-bounded memory per connection; once accepted,
// each connection opens its full window and every byte arrives. The
// clients run in a child process (this test binary), so that the heap
// measured here is the listener's alone. Half send one 1 MiB Delivery
// message (fragments), half write 1 MiB to the byte stream (a message a
// datagram). (With the full window for connections waiting in Accept, each
// held the 1 MiB it was sent.)
func TestListenerFloodMemory(t *testing.T) {
	if addr := os.Getenv(floodDialEnv); addr != "" {
		floodClients(t, addr)
		return
	}
	if testing.Short() {
		t.Skip("a child process and a second of traffic; not in -short")
	}
	if raceEnabled {
		// Under the race detector sync.Pool drops what is put back at
		// random, and the socket's receive batches (rxPool) then hold
		// megabytes that have nothing to do with the connections.
		t.Skip("the heap measured is the race detector's receive batches, not the connections'")
	}
	ln, err := rudp.Listen("udp", "127.0.0.1:0", nil)
	require.NoError(t, err)
	defer ln.Close()
	heap0, _ := memNow()

	// (At the end the child waits for its data to be acknowledged, which
	// takes long if the test failed before accepting it: stop kills it.)
	_, sc, stop := startTestChild(t, "^TestListenerFloodMemory$", floodDialEnv+"="+ln.Addr().String())
	defer stop()
	for sc.Scan() && sc.Text() != "sent" {
	}
	// Let the clients send what the listener's windows let them.
	time.Sleep(time.Second)
	heap1, _ := memNow()
	per := (heap1 - heap0) / floodConns
	t.Logf("%d connections waiting in Accept, each sent %d bytes: listener heap %.1f KiB per connection",
		floodConns, floodBytes, float64(per)/1024)
	// Twice the window, the arena, and the connection's fixed state (about
	// 6 KiB measured at rest: its core.Conn, records, the mux's entries).
	bound := int64(2*rudp.UnacceptedReceiveWindow + 4<<10 + 16<<10)
	require.LessOrEqual(t, per, bound, "listener heap per connection waiting in Accept")

	// Accepted, each opens its full window and gets everything.
	for range floodConns {
		c, err := ln.AcceptRUDP()
		require.NoError(t, err)
		buf := make([]byte, floodBytes)
		require.NoError(t, c.SetReadDeadline(time.Now().Add(20*time.Second)))
		n, g, err := c.ReadMessage(buf)
		require.NoError(t, err)
		require.Equal(t, rudp.Delivery, g)
		if n < floodBytes { // the byte stream: a message a datagram
			_, err = io.ReadFull(c, buf[n:])
			require.NoError(t, err)
		}
		i := int(buf[0]) // floodPayload's first byte names the client
		require.True(t, bytes.Equal(buf, floodPayload(i)), "client %d's bytes", i)
		c.Close()
	}
}

// floodClients is the child process of TestListenerFloodMemory: it dials,
// sends (blocking while the listener's windows are full), and closes its
// connections when stdin closes.
func floodClients(t *testing.T, addr string) {
	var conns []*rudp.Conn
	var wg sync.WaitGroup
	for i := range floodConns {
		c, err := rudp.Dial("udp", addr, nil)
		require.NoError(t, err)
		conns = append(conns, c)
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := floodPayload(i)
			if i%2 == 0 {
				_ = c.SendMessage(rudp.Delivery, p)
			} else {
				_, _ = c.Write(p)
			}
		}()
	}
	fmt.Println("sent")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	for _, c := range conns {
		c.Close()
	}
	wg.Wait()
}
