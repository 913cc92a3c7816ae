package core_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/rudp-go/rudp/core"
)

// connectedUDPPair returns two *net.UDPConn on loopback, each connected to
// the other: what two peers that know each other's address dial.
func connectedUDPPair(t *testing.T) (a, b *net.UDPConn) {
	t.Helper()
	for try := 1; ; try++ {
		// The free addresses are free when found, not when bound: another
		// test may take one meanwhile (EADDRINUSE), so try again.
		addrA, addrB := freeLoopbackAddr(t), freeLoopbackAddr(t)
		a, err := net.DialUDP("udp", addrA, addrB)
		if err == nil {
			if b, err = net.DialUDP("udp", addrB, addrA); err == nil {
				t.Cleanup(func() { a.Close(); b.Close() })
				return a, b
			}
			a.Close()
		}
		if try == 10 {
			t.Fatal(err)
		}
	}
}

// freeLoopbackAddr returns a loopback UDP address nothing is bound to.
func freeLoopbackAddr(t *testing.T) *net.UDPAddr {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	addr := c.LocalAddr().(*net.UDPAddr)
	require.NoError(t, c.Close())
	return addr
}

// connectedUDP binds a to addrA connected to addrB, and b the other way.
func connectedUDP(t *testing.T, addrA, addrB *net.UDPAddr) (a, b *net.UDPConn) {
	t.Helper()
	a, err := net.DialUDP("udp", addrA, addrB)
	require.NoError(t, err)
	t.Cleanup(func() { a.Close() })
	b, err = net.DialUDP("udp", addrB, addrA)
	require.NoError(t, err)
	t.Cleanup(func() { b.Close() })
	return a, b
}

// exchange sends count Delivery messages from each side to the other over
// the two sessions and closes a gracefully, driving both the way the seed
// API's doc describes: "poll" (one loop calling Maintain and Recv, as a game
// loop does) or "wait" (a goroutine per side looping on Wait and Recv).
// It returns what each side received.
type drive func(t *testing.T, a, b *core.Session, count int) (gotA, gotB []string)

// message is the i-th message from a side: 500 bytes, so that a few
// thousand fill many datagrams and the send buffer.
func message(from string, i int) string { return fmt.Sprintf("%s %d %0490d", from, i, i) }

// wantMessages is what a side sent, in order.
func wantMessages(from string, count int) []string {
	var w []string
	for i := range count {
		w = append(w, message(from, i))
	}
	return w
}

// sendSome sends side's messages from *sent on until the send buffer is full.
func sendSome(s *core.Session, from string, sent *int, count int) error {
	for *sent < count {
		err := s.SendPayload(core.Delivery, []byte(message(from, *sent)))
		if errors.Is(err, core.ErrWouldBlock) {
			return nil
		}
		if err != nil {
			return err
		}
		*sent++
	}
	return nil
}

func drivePoll(t *testing.T, a, b *core.Session, count int) (gotA, gotB []string) {
	sentA, sentB := 0, 0
	deadline := time.Now().Add(20 * time.Second)
	eofB := false
	for !a.Closed() || !eofB {
		require.True(t, time.Now().Before(deadline), "no progress: a %+v\nb %+v", a.Stats(), b.Stats())
		require.NoError(t, sendSome(a, "a", &sentA, count))
		require.NoError(t, sendSome(b, "b", &sentB, count))
		if len(gotB) == count && len(gotA) == count && sentA == count {
			require.NoError(t, a.Close())
		}
		require.NoError(t, ignoreClosed(a.Maintain()))
		require.NoError(t, b.Maintain())
		for {
			m, err := a.Recv()
			if errors.Is(err, core.ErrClosed) || m == nil {
				break
			}
			require.NoError(t, err)
			gotA = append(gotA, string(m))
		}
		for !eofB {
			m, err := b.Recv()
			if errors.Is(err, io.EOF) {
				eofB = true
				break
			}
			require.NoError(t, err)
			if m == nil {
				break
			}
			gotB = append(gotB, string(m))
		}
	}
	return gotA, gotB
}

func ignoreClosed(err error) error {
	if errors.Is(err, core.ErrClosed) {
		return nil
	}
	return err
}

func driveWait(t *testing.T, a, b *core.Session, count int) (gotA, gotB []string) {
	errs := make(chan error, 2)
	deadline := time.Now().Add(20 * time.Second)
	// side runs one end: it sends count messages and reads count; the
	// closer then closes and waits for the close to complete, the other
	// reads on until io.EOF.
	side := func(s *core.Session, from, peer string, got *[]string, closer bool) error {
		sent := 0
		for len(*got) < count || sent < count {
			if time.Now().After(deadline) {
				return fmt.Errorf("%s: no progress: sent %d got %d, %+v", from, sent, len(*got), s.Stats())
			}
			if err := sendSome(s, from, &sent, count); err != nil {
				return err
			}
			if err := s.Wait(time.Second); err != nil {
				return err
			}
			m, err := s.Recv()
			if errors.Is(err, io.EOF) && !closer && sent == count && len(*got) == count {
				// The closer had all it wanted once this side's last
				// messages went out, during this Wait: it closed.
				return nil
			}
			if err != nil {
				return fmt.Errorf("%s: sent %d got %d: %w", from, sent, len(*got), err)
			}
			if m != nil {
				if want := message(peer, len(*got)); string(m) != want {
					return fmt.Errorf("%s: message %d is %.12q, want %.12q", from, len(*got), m, want)
				}
				*got = append(*got, string(m))
			}
		}
		if closer {
			if err := s.Close(); err != nil {
				return err
			}
			for !s.Closed() {
				if time.Now().After(deadline) {
					return fmt.Errorf("%s: close did not complete: %+v", from, s.Stats())
				}
				if err := s.Wait(time.Second); err != nil {
					return err
				}
			}
			return nil
		}
		for {
			if time.Now().After(deadline) {
				return fmt.Errorf("%s: no io.EOF: %+v", from, s.Stats())
			}
			if err := s.Wait(time.Second); err != nil {
				return err
			}
			m, err := s.Recv()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return err
			}
			if m != nil {
				return fmt.Errorf("%s: extra message %q", from, m)
			}
		}
	}
	go func() { errs <- side(a, "a", "b", &gotA, true) }()
	go func() { errs <- side(b, "b", "a", &gotB, false) }()
	require.NoError(t, <-errs)
	require.NoError(t, <-errs)
	return gotA, gotB
}

// TestSessionOverUDPConn: a connected *net.UDPConn is a Session's socket as
// it is, and messages go both ways, each once and in order, then the
// connection closes gracefully, whether the program polls (Maintain, Recv)
// or blocks (Wait, Recv). Before, *net.UDPConn did not fit (UDPLike wanted
// Send/Recv), and the adapter the doc suggested (a read deadline in the
// past) received 0 datagrams: Go's net times out before reading.
func TestSessionOverUDPConn(t *testing.T) {
	defer goleak.VerifyNone(t)
	const count = 2000
	for _, tc := range []struct {
		name  string
		drive drive
	}{{"poll", drivePoll}, {"wait", driveWait}} {
		t.Run(tc.name, func(t *testing.T) {
			ca, cb := connectedUDPPair(t)
			a, err := core.NewSession(ca, nil)
			require.NoError(t, err)
			b, err := core.NewSession(cb, nil)
			require.NoError(t, err)

			gotA, gotB := tc.drive(t, a, b, count)

			require.Equal(t, wantMessages("b", count), gotA)
			require.Equal(t, wantMessages("a", count), gotB)
			require.True(t, a.Closed())
			require.NoError(t, a.Conn().Err())
			require.Positive(t, a.Stats().PacketsReceived)
			require.Positive(t, b.Stats().PacketsReceived)
		})
	}
}

// TestSessionPeerStartsLate: a session whose peer's socket does not exist
// yet gets the ICMP port unreachable as a refused-connection error, once,
// and carries on: when the peer starts, the connection is made and the
// message arrives, and no call reports the old error again.
func TestSessionPeerStartsLate(t *testing.T) {
	addrA, addrB := freeLoopbackAddr(t), freeLoopbackAddr(t)
	ca, err := net.DialUDP("udp", addrA, addrB)
	require.NoError(t, err)
	defer ca.Close()
	a, err := core.NewSession(ca, nil)
	require.NoError(t, err)
	require.NoError(t, a.SendPayload(core.Delivery, []byte("early")))

	refused := 0
	for range 3 {
		if err := a.Wait(20 * time.Millisecond); err != nil {
			require.ErrorIs(t, err, syscall.ECONNREFUSED)
			refused++
		}
	}
	if runtime.GOOS == "linux" {
		require.Equal(t, 1, refused, "the HELLO's ICMP error is reported once")
	}

	cb, err := net.DialUDP("udp", addrB, addrA)
	require.NoError(t, err)
	defer cb.Close()
	b, err := core.NewSession(cb, nil)
	require.NoError(t, err)
	deadline := time.Now().Add(10 * time.Second)
	var got []byte
	for got == nil {
		require.True(t, time.Now().Before(deadline), "a %+v\nb %+v", a.Stats(), b.Stats())
		require.NoError(t, a.Maintain())
		require.NoError(t, b.Wait(10*time.Millisecond))
		m, err := b.Recv()
		require.NoError(t, err)
		got = m
	}
	require.Equal(t, "early", string(got))
	require.NoError(t, a.SendPayload(core.Delivery, []byte("later")))
}
