package rudp

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestSendAfterPortUnreachable: an ICMP port unreachable about a datagram
// to one peer (a client port closed while the listener's connection to it
// lingered) leaves its error pending on the socket (IP_RECVERR), and the
// next send, to anyone, fails with it. That send's datagram must still go
// out, by writeTo (a Retry, a lone datagram) and by a batch (a HELLO with
// the datagrams after it): losing it stalled a dial for a retransmission
// timeout. Counted, not timed: a marker sent after the datagrams ends the
// read, and loopback keeps one socket's datagrams to another in order.
func TestSendAfterPortUnreachable(t *testing.T) {
	set, err := (&Config{Manual: true}).resolve() // no reader goroutine to take the pending error first
	require.NoError(t, err)
	sock, err := listenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	m := newMux(sock, set, 1, false)
	defer m.release()
	rx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer rx.Close()
	to := rx.LocalAddr().(*net.UDPAddr).AddrPort()
	gone, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	closed := gone.LocalAddr().(*net.UDPAddr).AddrPort()
	require.NoError(t, gone.Close())

	// pend makes the socket's error pending: a datagram to the closed
	// port, then a wait for the report (POLLERR; no read clears it).
	pend := func() {
		t.Helper()
		m.readErrQueue(func(netip.AddrPort, []byte) {}) // the last report's: POLLERR then means this one
		_, err := sock.WriteToUDPAddrPort([]byte("to a closed port"), closed)
		require.NoError(t, err)
		var fd int
		raw, err := sock.SyscallConn()
		require.NoError(t, err)
		require.NoError(t, raw.Control(func(f uintptr) { fd = int(f) }))
		for waited := 0; ; waited++ {
			p := []unix.PollFd{{Fd: int32(fd)}}
			n, err := unix.Poll(p, 100)
			if err == nil && n == 1 && p[0].Revents&unix.POLLERR != 0 {
				return
			}
			if waited == 100 {
				t.Skip("no ICMP port unreachable came back on loopback (filtered?)")
			}
		}
	}
	// received reads what rx got up to the marker.
	received := func() [][]byte {
		t.Helper()
		_, err := sock.WriteToUDPAddrPort([]byte("marker"), to)
		require.NoError(t, err)
		var got [][]byte
		buf := make([]byte, 2048)
		for {
			require.NoError(t, rx.SetReadDeadline(time.Now().Add(10*time.Second))) // a bound on a failure, not a figure
			n, err := rx.Read(buf)
			require.NoError(t, err)
			if string(buf[:n]) == "marker" {
				return got
			}
			got = append(got, bytes.Clone(buf[:n]))
		}
	}

	t.Run("writeTo", func(t *testing.T) {
		pend()
		m.writeTo([]byte("retry"), to)
		require.Equal(t, [][]byte{[]byte("retry")}, received())
	})
	t.Run("batch", func(t *testing.T) {
		pend()
		b := m.txBatches.Get().(*txBatch)
		defer m.txBatches.Put(b)
		b.reset()
		var want [][]byte
		for i, n := range []int{1200, 700, 30} { // with GSO, a run of two and a message
			room := b.next(n)
			for j := range n {
				room[j] = byte(i + 1)
			}
			b.add(n)
			want = append(want, room[:n:n])
		}
		m.send(b, to)
		require.Equal(t, want, received())
	})
	require.True(t, m.errPending.Load(), "the report was left for the error queue's reader")
}
