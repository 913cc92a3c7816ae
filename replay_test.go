package rudp_test

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rudp-go/rudp"
	"github.com/rudp-go/rudp/core"
)

// TestListenerReplayedHelloCreatesNothing: a client's HELLO that opened a
// connection, replayed from the same address after that connection ended
// (while its cookie is still valid), opens no connection again: the
// listener refuses it. Before the socket's traffic went through
// core.Endpoint, which remembers the attempts it accepted for their
// cookie's life, the replay opened a ghost connection that Accept
// returned.
func TestListenerReplayedHelloCreatesNothing(t *testing.T) {
	ln, err := rudp.Listen("udp", "127.0.0.1:0", nil)
	require.NoError(t, err)
	defer ln.Close()
	sock, err := net.DialUDP("udp", nil, ln.Addr().(*net.UDPAddr))
	require.NoError(t, err)
	defer sock.Close()

	// A client driven by hand, so that its datagrams can be replayed.
	cc, err := core.NewConn(nil, 0x5eed, time.Now())
	require.NoError(t, err)
	buf := make([]byte, 2048)
	var hello []byte // the datagram carrying the HELLO that echoes the cookie
	exchange := func() {
		t.Helper()
		now := time.Now()
		for n := cc.PollTransmit(now, buf); n > 0; n = cc.PollTransmit(now, buf) {
			if h, body, err := core.ParseHeader(buf[:n]); err == nil && h.DstCID == 0 {
				if f, ok := core.PeekHello(body); ok && len(f.Cookie) > 0 && hello == nil {
					hello = append([]byte(nil), buf[:n]...)
				}
			}
			_, err := sock.Write(buf[:n])
			require.NoError(t, err)
		}
		sock.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if n, err := sock.Read(buf); err == nil {
			cc.HandleDatagram(time.Now(), buf[:n])
		}
	}
	for i := 0; i < 20 && !cc.Established(); i++ {
		exchange()
	}
	require.True(t, cc.Established(), "handshake")
	require.NotNil(t, hello)

	accepted := make(chan net.Conn, 2)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	first := <-accepted
	// The client aborts: the listener's connection ends at once.
	cc.Abort(time.Now(), errors.New("bye"))
	exchange()
	first.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = first.Read(buf)
	require.Error(t, err)
	first.Close()

	// The HELLO, replayed.
	for range 3 {
		_, err := sock.Write(hello)
		require.NoError(t, err)
	}
	// (What the ended connection still had in flight may come first.)
	refusal := core.AppendRefuse(nil, cc.LocalCID())
	sock.SetReadDeadline(time.Now().Add(time.Second))
	for {
		n, err := sock.Read(buf)
		require.NoError(t, err, "the replayed HELLO was not refused")
		if string(buf[:n]) == string(refusal) {
			break
		}
	}
	require.Positive(t, ln.Stats().RefusedReplayed, "the refusal is counted by its cause")
	select {
	case c, ok := <-accepted:
		if ok {
			c.Close()
			t.Fatal("the replayed HELLO opened a connection")
		}
	case <-time.After(300 * time.Millisecond):
	}
}
