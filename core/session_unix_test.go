//go:build unix

package core_test

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/rudp-go/rudp/core"
)

// unixgramPair returns a connected pair of "unixgram" sockets as net.Conn.
func unixgramPair(t *testing.T) (a, b net.Conn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_DGRAM, 0)
	require.NoError(t, err)
	conn := func(fd int, name string) net.Conn {
		f := os.NewFile(uintptr(fd), name)
		defer f.Close() // FileConn dups it
		c, err := net.FileConn(f)
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		return c
	}
	return conn(fds[0], "a"), conn(fds[1], "b")
}

// TestSessionOverUnixgram: any net.Conn over datagrams is a Session's
// socket, here a connected "unixgram" pair; the same exchange as
// TestSessionOverUDPConn.
func TestSessionOverUnixgram(t *testing.T) {
	defer goleak.VerifyNone(t)
	for _, tc := range []struct {
		name  string
		drive drive
	}{{"poll", drivePoll}, {"wait", driveWait}} {
		t.Run(tc.name, func(t *testing.T) {
			ca, cb := unixgramPair(t)
			_, isUnix := ca.(*net.UnixConn)
			require.True(t, isUnix)
			a, err := core.NewSession(ca, nil)
			require.NoError(t, err)
			b, err := core.NewSession(cb, nil)
			require.NoError(t, err)
			gotA, gotB := tc.drive(t, a, b, 500)
			require.Equal(t, wantMessages("b", 500), gotA)
			require.Equal(t, wantMessages("a", 500), gotB)
			require.True(t, a.Closed())
			require.NoError(t, a.Conn().Err())
		})
	}
}

// TestSessionFullSocketDoesNotBlock: a Session's write to a socket whose
// queue is full (a "unixgram" socket's datagrams count against its send
// buffer until the peer reads them; the peer reads nothing) waits no
// longer than a moment: the calls return, the datagram the socket did not
// take is kept, and once the peer reads, every message arrives in order.
// Before, Write blocked until the peer read: two Sessions driven by one
// goroutine waited for each other forever (TestSessionOverUnixgram/poll
// hung, 1 run in ~200).
func TestSessionFullSocketDoesNotBlock(t *testing.T) {
	defer goleak.VerifyNone(t)
	ca, cb := unixgramPair(t)
	// The smallest send buffer the kernel allows holds a few datagrams:
	// less than the first congestion window.
	require.NoError(t, ca.(*net.UnixConn).SetWriteBuffer(1))
	a, err := core.NewSession(ca, nil)
	require.NoError(t, err)
	b, err := core.NewSession(cb, nil)
	require.NoError(t, err)
	const count = 40
	payload := func(i int) []byte { return []byte(fmt.Sprintf("%d %01000d", i, i)) }

	// One goroutine drives both ends, as a game loop does; the test fails
	// (instead of hanging) if a call blocks.
	done := make(chan error, 1)
	go func() { done <- fillThenDrain(a, b, count, payload) }()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("a Session blocked in a write to a full socket")
	}
}

// fillThenDrain makes the handshake, then has a send count messages and
// b read nothing until a is done, then drives both until b got them all.
func fillThenDrain(a, b *core.Session, count int, payload func(int) []byte) error {
	for i := 0; !a.Conn().Established() || !b.Conn().Established(); i++ {
		if i == 1000 {
			return errors.New("no handshake")
		}
		if err := errors.Join(a.Maintain(), b.Maintain()); err != nil {
			return err
		}
	}
	for i := range count { // b reads nothing: a's socket fills up
		if err := a.SendPayload(core.Delivery, payload(i)); err != nil {
			return err
		}
	}
	for range 20 {
		if err := a.Maintain(); err != nil {
			return err
		}
	}
	// The messages need at least 34 datagrams: the socket took fewer.
	if sent := a.Stats().PacketsSent; sent >= 34 {
		return fmt.Errorf("the socket was not full: %d datagrams sent", sent)
	}
	next := 0
	for i := 0; next < count; i++ {
		if i == 10000 {
			return fmt.Errorf("got %d of %d: a %+v", next, count, a.Stats())
		}
		if err := errors.Join(b.Maintain(), a.Maintain()); err != nil {
			return err
		}
		for {
			m, err := b.Recv()
			if err != nil {
				return err
			}
			if m == nil {
				break
			}
			if string(m) != string(payload(next)) {
				return fmt.Errorf("message %d: got %.20q", next, m)
			}
			next++
		}
	}
	return nil
}
