//go:build unix

package core_test

import (
	"net"
	"os"
	"syscall"
	"testing"

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
