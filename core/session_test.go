package core_test

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rudp-go/rudp/core"
)

// fakeClock is a virtual clock the test moves by hand.
type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time { return c.now }

// memSocket is one end of an in-memory connected datagram socket pair: the
// seed API's UDPLike. drop, if set, loses datagrams it returns true for.
type memSocket struct {
	inbox *[][]byte
	peer  *[][]byte
	drop  func() bool
}

func memSocketPair() (*memSocket, *memSocket) {
	var ab, ba [][]byte
	return &memSocket{inbox: &ba, peer: &ab}, &memSocket{inbox: &ab, peer: &ba}
}

func (s *memSocket) Write(p []byte) (int, error) {
	if s.drop != nil && s.drop() {
		return len(p), nil
	}
	*s.peer = append(*s.peer, append([]byte(nil), p...))
	return len(p), nil
}

// SetReadDeadline does nothing: Read never waits.
func (s *memSocket) SetReadDeadline(time.Time) error { return nil }

// SetWriteDeadline does nothing: Write never waits.
func (s *memSocket) SetWriteDeadline(time.Time) error { return nil }

func (s *memSocket) Read(p []byte) (int, error) {
	if len(*s.inbox) == 0 {
		return 0, core.ErrWouldBlock
	}
	d := (*s.inbox)[0]
	*s.inbox = (*s.inbox)[1:]
	return copy(p, d), nil
}

// sessionPair makes two Sessions over a memSocket pair sharing a clock.
func sessionPair(t *testing.T, loss float64, seed uint64) (a, b *core.Session, clock *fakeClock) {
	t.Helper()
	clock = &fakeClock{now: time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)}
	sa, sb := memSocketPair()
	if loss > 0 {
		r := rand.New(rand.NewPCG(seed, 99))
		drop := func() bool { return r.Float64() < loss }
		sa.drop, sb.drop = drop, drop
	}
	var err error
	a, err = core.NewSession(sa, &core.Config{Clock: clock, Rand: rand.NewPCG(seed, 1)})
	require.NoError(t, err)
	b, err = core.NewSession(sb, &core.Config{Clock: clock, Rand: rand.NewPCG(seed, 2)})
	require.NoError(t, err)
	return a, b, clock
}

// advance moves the clock to the earlier session deadline (at most 10ms
// ahead) and lets both endpoints do their due work.
func advance(clock *fakeClock, eps ...*core.Session) {
	next := clock.now.Add(10 * time.Millisecond)
	for _, e := range eps {
		if t := e.NextTimeout(); !t.IsZero() && t.Before(next) {
			next = t
		}
	}
	if next.After(clock.now) {
		clock.now = next
	}
	for _, e := range eps {
		_ = e.Maintain()
	}
}

// TestSessionSeedAPI runs the seed example: Write/SendWritten,
// SendPayload, Recv returning nil while nothing is ready, AsSet, Maintain.
func TestSessionSeedAPI(t *testing.T) {
	a, b, clock := sessionPair(t, 0, 1)

	msg, err := b.Recv()
	require.NoError(t, err)
	require.Nil(t, msg, "nothing sent yet")

	_, err = a.Write([]byte("Hello"))
	require.NoError(t, err)
	_, err = a.Write([]byte(", there."))
	require.NoError(t, err)
	require.NoError(t, a.SendWritten(core.Order))
	require.NoError(t, a.SendPayload(core.Delivery, []byte("General Kenobi!")))
	require.NoError(t, a.AsSet(func(s *core.Set) error {
		for i := range 3 {
			if err := s.SendPayload(core.Delivery, []byte(fmt.Sprintf("set %d", i))); err != nil {
				return err
			}
		}
		return s.SendPayload(core.None, []byte("set none"))
	}))
	require.NoError(t, a.SendPayload(core.Delivery, []byte("after the set")))

	var got []string
	for i := 0; i < 200 && len(got) < 7; i++ {
		advance(clock, a, b)
		for {
			m, err := b.Recv()
			require.NoError(t, err)
			if m == nil {
				break
			}
			got = append(got, string(m))
		}
	}
	require.Len(t, got, 7)
	// A None message may come at any point; the others keep their order,
	// the set's members in any order among themselves.
	require.Contains(t, got, "set none")
	var ordered []string
	for _, m := range got {
		if m != "set none" {
			ordered = append(ordered, m)
		}
	}
	require.Equal(t, []string{"Hello, there.", "General Kenobi!"}, ordered[:2])
	require.ElementsMatch(t, []string{"set 0", "set 1", "set 2"}, ordered[2:5])
	require.Equal(t, "after the set", ordered[5], "nothing sent after a set comes before the set's Delivery messages")

	// Graceful close: b reads io.EOF, a reports Closed.
	require.NoError(t, a.Close())
	for i := 0; i < 1000 && !a.Closed(); i++ {
		advance(clock, a, b)
	}
	require.True(t, a.Closed())
	require.NoError(t, a.Conn().Err())
	_, err = b.Recv()
	require.ErrorIs(t, err, io.EOF)
}

// TestSessionLossyDelivery sends 2,000 Delivery messages over a socket
// pair losing 20% of datagrams: all arrive, once each, in order.
func TestSessionLossyDelivery(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		a, b, clock := sessionPair(t, 0.2, seed)
		const count = 2000
		sent, next := 0, 0
		for i := 0; i < 100000 && next < count; i++ {
			for sent < count {
				err := a.SendPayload(core.Delivery, []byte(fmt.Sprintf("message %d", sent)))
				if errors.Is(err, core.ErrWouldBlock) {
					break
				}
				require.NoError(t, err)
				sent++
			}
			advance(clock, a, b)
			for {
				m, err := b.Recv()
				require.NoError(t, err, "seed %d", seed)
				if m == nil {
					break
				}
				require.Equal(t, fmt.Sprintf("message %d", next), string(m), "seed %d", seed)
				next++
			}
		}
		require.Equal(t, count, next, "seed %d: stats %+v", seed, a.Stats())
	}
}

// TestSessionBadArguments: bad input from the caller gets a clear error.
func TestSessionBadArguments(t *testing.T) {
	_, err := core.NewSession(nil, nil)
	require.ErrorContains(t, err, "sock", "the error names the argument")
	sa, _ := memSocketPair()
	_, err = core.NewSession(sa, &core.Config{MaxDatagramSize: 100})
	var cfgErr *core.ConfigError
	require.ErrorAs(t, err, &cfgErr)
	require.Equal(t, "MaxDatagramSize", cfgErr.Field)
	// Protection needs a client and a server (an Endpoint); a key of
	// another length, or both key sources, are refused anywhere.
	for _, tc := range []struct {
		cfg   core.Config
		field string
	}{
		{core.Config{TLS: &tls.Config{}}, "TLS"},
		{core.Config{PSK: make([]byte, 32)}, "PSK"},
		{core.Config{PSK: make([]byte, 16)}, "PSK"},
		{core.Config{PSK: make([]byte, 32), TLS: &tls.Config{}}, "PSK"},
		{core.Config{TLS: &tls.Config{MaxVersion: tls.VersionTLS12}}, "TLS.MaxVersion"},
	} {
		_, err = core.NewSession(sa, &tc.cfg)
		require.ErrorAs(t, err, &cfgErr)
		require.Equal(t, tc.field, cfgErr.Field)
	}

	a, _, _ := sessionPair(t, 0, 3)
	require.ErrorIs(t, a.SendPayload(core.Guarantee(0), nil), core.ErrInvalidGuarantee)
	require.ErrorIs(t, a.SendPayload(core.Delivery, make([]byte, 2<<20)), core.ErrMessageTooLarge)
	_, err = a.Write(make([]byte, 2<<20))
	require.ErrorIs(t, err, core.ErrMessageTooLarge)
	require.ErrorIs(t, a.AsSet(func(*core.Set) error { return a.AsSet(func(*core.Set) error { return nil }) }), core.ErrNestedSet)
}

// TestSessionCloseWrite: over a socket pair losing 20% of datagrams, a
// sends a request and half-closes; b reads all of it, then io.EOF, and
// answers; a reads the answer, then io.EOF once b closes. Sends after
// CloseWrite fail with ErrClosed.
func TestSessionCloseWrite(t *testing.T) {
	for seed := uint64(1); seed <= 10; seed++ {
		a, b, clock := sessionPair(t, 0.2, seed)
		const count = 50
		for i := range count {
			require.NoError(t, a.SendPayload(core.Delivery, []byte(fmt.Sprintf("request %d", i))))
		}
		require.NoError(t, a.CloseWrite())
		require.ErrorIs(t, a.SendPayload(core.None, []byte("late")), core.ErrClosed)
		readAll := func(s *core.Session, peer *core.Session) ([]string, error) {
			var got []string
			for i := 0; i < 20000; i++ {
				advance(clock, s, peer)
				for {
					m, err := s.Recv()
					if err != nil {
						return got, err
					}
					if m == nil {
						break
					}
					got = append(got, string(m))
				}
			}
			return got, nil
		}
		got, err := readAll(b, a)
		require.ErrorIs(t, err, io.EOF, "seed %d", seed)
		require.Len(t, got, count, "seed %d", seed)
		for i, m := range got {
			require.Equal(t, fmt.Sprintf("request %d", i), m)
		}
		require.NoError(t, b.SendPayload(core.Delivery, []byte("response")))
		require.NoError(t, b.Close())
		got, err = readAll(a, b)
		require.ErrorIs(t, err, io.EOF, "seed %d", seed)
		require.Equal(t, []string{"response"}, got, "seed %d", seed)
		require.NoError(t, a.Close())
		for i := 0; i < 20000 && !(a.Closed() && b.Closed()); i++ {
			advance(clock, a, b)
		}
		require.True(t, a.Closed() && b.Closed(), "seed %d", seed)
		require.NoError(t, a.Conn().Err())
		require.NoError(t, b.Conn().Err())
	}
}
