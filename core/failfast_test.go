package core

import (
	"errors"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// sendLost makes c send one message (none if msg is empty: whatever it
// has to send) and returns the header of the packet that carried it, which
// never reaches the peer.
func (p *wirePair) sendLost(t *testing.T, c *Conn, msg string) Header {
	t.Helper()
	if msg != "" {
		require.NoError(t, c.Send(Delivery, []byte(msg)))
	}
	n := c.PollTransmit(p.now, p.buf)
	require.NotZero(t, n)
	h, _, err := ParseHeader(p.buf[:n])
	require.NoError(t, err)
	for c.PollTransmit(p.now, p.buf) > 0 {
	}
	return h
}

// TestStatelessResetEndsConnection: a reset echoing the peer's connection
// ID and the number of a packet we sent that the peer never acknowledged
// ends the connection with ErrReset; a reset differing from it in any one
// respect is dropped and counted, and the connection carries on.
func TestStatelessResetEndsConnection(t *testing.T) {
	p := newWirePair(t, nil)
	a := p.a
	// An earlier packet, acknowledged.
	require.NoError(t, a.Send(Delivery, []byte("acked")))
	n := a.PollTransmit(p.now, p.buf)
	acked, _, err := ParseHeader(p.buf[:n])
	require.NoError(t, err)
	p.b.HandleDatagram(p.now, p.buf[:n])
	for range 20 {
		p.step()
	}
	require.True(t, a.anyAcked && unwrap32(a.nextPN, acked.PacketNumber) <= a.largestAcked)

	h := p.sendLost(t, a, "lost with the peer's state")
	require.Equal(t, a.RemoteCID(), h.DstCID)
	forged := map[string][]byte{
		"another connection ID":  AppendReset(nil, Header{DstCID: h.DstCID ^ 1, PacketNumber: h.PacketNumber}),
		"a packet never sent":    AppendReset(nil, Header{DstCID: h.DstCID, PacketNumber: h.PacketNumber + 1}),
		"far ahead":              AppendReset(nil, Header{DstCID: h.DstCID, PacketNumber: h.PacketNumber + 1<<30}),
		"an acknowledged packet": AppendReset(nil, Header{DstCID: h.DstCID, PacketNumber: acked.PacketNumber}),
		"a body":                 sealed(Header{Type: PacketReset, DstCID: h.DstCID, PacketNumber: h.PacketNumber}, []byte{framePadding}),
		"our own connection ID":  AppendReset(nil, Header{DstCID: a.LocalCID(), PacketNumber: h.PacketNumber}),
	}
	for name, d := range forged {
		before := a.Stats().DatagramsDropped
		a.HandleDatagram(p.now, d)
		require.False(t, a.Closed(), name)
		require.Equal(t, before+1, a.Stats().DatagramsDropped, name)
	}
	reset := AppendReset(nil, h)
	require.Len(t, reset, ResetLen)
	a.HandleDatagram(p.now, reset)
	require.True(t, a.Closed())
	require.ErrorIs(t, a.Err(), ErrReset)
	_, err = a.Recv()
	require.ErrorIs(t, err, ErrReset)
	require.Zero(t, a.NextTimeout())
}

// TestStatelessResetAfterClose: a reset meeting a close ends nothing
// badly. Our CLOSE answered by a reset (the peer forgot the connection):
// everything we sent was acknowledged, a graceful end. The peer closed
// and forgot us before we closed: what it sent is still read to io.EOF.
func TestStatelessResetAfterClose(t *testing.T) {
	t.Run("our CLOSE reset", func(t *testing.T) {
		p := newWirePair(t, nil)
		a := p.a
		a.Close(p.now)
		n := a.PollTransmit(p.now, p.buf)
		require.NotZero(t, n)
		h, _, err := ParseHeader(p.buf[:n])
		require.NoError(t, err)
		require.True(t, a.life.closing.sent)
		a.HandleDatagram(p.now, AppendReset(nil, h))
		require.True(t, a.Closed())
		require.NoError(t, a.Err())
	})
	t.Run("peer closed and forgot", func(t *testing.T) {
		p := newWirePair(t, nil)
		a, b := p.a, p.b
		require.NoError(t, b.Send(Delivery, []byte("last words")))
		b.Close(p.now)
		for i := 0; i < 100 && !a.PeerClosed(); i++ {
			p.step()
		}
		require.True(t, a.PeerClosed())
		a.pingNeeded = true
		h := p.sendLost(t, a, "")
		a.HandleDatagram(p.now, AppendReset(nil, h))
		require.False(t, a.Closed())
		m, err := a.Recv()
		require.NoError(t, err)
		require.Equal(t, "last words", string(m.Data))
		_, err = a.Recv()
		require.ErrorIs(t, err, io.EOF)
	})
}

// TestUnreachableDuringHandshake: a port unreachable before the peer's
// HELLO arrived ends the connection at once (Dial fails).
func TestUnreachableDuringHandshake(t *testing.T) {
	now := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	c, err := NewConn(nil, 7, now)
	require.NoError(t, err)
	buf := make([]byte, 2048)
	require.NotZero(t, c.PollTransmit(now, buf))
	c.HandleUnreachable(now.Add(time.Millisecond))
	require.True(t, c.Closed())
	require.ErrorIs(t, c.Err(), ErrUnreachable)
	require.EqualValues(t, 1, c.Stats().UnreachableReports)
}

// runAlone fires a's timers with nothing reaching the peer, until a ends
// or limit passes, and returns when it ended.
func (p *wirePair) runAlone(c *Conn, limit time.Duration) time.Time {
	end := p.now.Add(limit)
	for !c.Closed() && p.now.Before(end) {
		for c.PollTransmit(p.now, p.buf) > 0 {
		}
		next := c.NextTimeout()
		if next.IsZero() {
			break
		}
		if next.After(p.now) {
			p.now = next
		}
		c.HandleTimeout(p.now)
	}
	return p.now
}

// TestUnreachableHint: on an established connection a port unreachable is
// only a hint. While the peer acknowledges, the connection carries on; if
// nothing is acknowledged for unreachablePTOs probe timeouts, it ends with
// ErrUnreachable, well before its idle timeout. With nothing in flight,
// the hint makes it send something the peer must acknowledge.
func TestUnreachableHint(t *testing.T) {
	t.Run("peer answers", func(t *testing.T) {
		p := newWirePair(t, nil)
		a := p.a
		require.NoError(t, a.Send(Delivery, []byte("x")))
		a.HandleUnreachable(p.now)
		start := p.now
		for p.now.Sub(start) < 40*time.Second {
			p.step()
		}
		require.False(t, a.Closed(), "err %v", a.Err())
		require.Zero(t, a.unreachableProbes)
		require.EqualValues(t, 1, a.Stats().UnreachableReports)
	})
	for _, inFlight := range []bool{true, false} {
		name := "peer silent, nothing in flight"
		if inFlight {
			name = "peer silent, data in flight"
		}
		t.Run(name, func(t *testing.T) {
			p := newWirePair(t, nil)
			a := p.a
			if inFlight {
				p.sendLost(t, a, "into the void")
			}
			start := p.now
			a.HandleUnreachable(p.now)
			if !inFlight {
				require.NotZero(t, a.PollTransmit(p.now, p.buf), "a probe the peer must acknowledge")
				require.Positive(t, a.elicitingInFlight)
			}
			a.HandleUnreachable(p.now) // a repeated report changes nothing
			probes := a.Stats().ProbesSent
			end := p.runAlone(a, time.Minute)
			require.True(t, a.Closed())
			require.ErrorIs(t, a.Err(), ErrUnreachable)
			require.Equal(t, probes+unreachablePTOs-1, a.Stats().ProbesSent)
			t.Logf("ended %v after the report (PTO %v, idle timeout %v)", end.Sub(start), a.rtt.pto(a.peerMaxAckDelay), a.cfg.IdleTimeout)
			require.Less(t, end.Sub(start), a.cfg.IdleTimeout/10)
		})
	}
}

// TestTokenBucket: a burst, then the rate; a clock going back adds nothing.
func TestTokenBucket(t *testing.T) {
	now := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	b := TokenBucket{Rate: 10, Burst: 3}
	allowed := func(at time.Time, n int) int {
		k := 0
		for range n {
			if b.Allow(at) {
				k++
			}
		}
		return k
	}
	require.Equal(t, 3, allowed(now, 10))
	require.Equal(t, 1, allowed(now.Add(100*time.Millisecond), 10))
	require.Equal(t, 0, allowed(now, 10))
	require.Equal(t, 0, allowed(now.Add(150*time.Millisecond), 10))
	require.Equal(t, 3, allowed(now.Add(time.Hour), 10))
	var zero TokenBucket
	require.False(t, zero.Allow(now))
}

// TestParseQuoted: a quoted data packet names its connection by its
// destination ID, a HELLO before the peer's ID was known by its source ID;
// anything else, and every quote too short to name one, fails.
func TestParseQuoted(t *testing.T) {
	data := sealed(Header{Type: PacketData, DstCID: 0xabc, PacketNumber: 5}, []byte{framePing})
	hello := sealed(Header{Type: PacketData}, appendHello(nil, &HelloFrame{SrcCID: 0xdef, Cookie: []byte("cookie")}))
	q, ok := ParseQuoted(data)
	require.True(t, ok)
	require.Equal(t, Quoted{DstCID: 0xabc}, q)
	q, ok = ParseQuoted(hello)
	require.True(t, ok)
	require.Equal(t, Quoted{SrcCID: 0xdef}, q)
	for i := range headerLen {
		_, ok := ParseQuoted(data[:i])
		require.False(t, ok, "data cut to %d bytes", i)
	}
	for i := range headerLen + 9 {
		_, ok := ParseQuoted(hello[:i])
		require.False(t, ok, "HELLO cut to %d bytes", i)
	}
	_, ok = ParseQuoted(data[:headerLen])
	require.True(t, ok, "a header names the connection")
	for name, b := range map[string][]byte{
		"reset":   AppendReset(nil, Header{DstCID: 1}),
		"retry":   AppendRetry(nil, 1, []byte("c")),
		"version": append([]byte{Version + 1}, data[1:]...),
	} {
		_, ok := ParseQuoted(b)
		require.False(t, ok, name)
	}
	require.False(t, errors.Is(nil, ErrReset))
}

// TestResetEncoding pins the reset's wire format: the trigger's header
// with the type changed, no body, the checksum.
func TestResetEncoding(t *testing.T) {
	b := AppendReset([]byte{0xee}, Header{Type: PacketData, DstCID: 0x0102030405060708, PacketNumber: 0x0a0b0c0d})
	require.Equal(t, byte(0xee), b[0], "appends")
	b = b[1:]
	require.Len(t, b, ResetLen)
	require.Equal(t, []byte{Version, 3, 1, 2, 3, 4, 5, 6, 7, 8, 0x0a, 0x0b, 0x0c, 0x0d}, b[:headerLen])
	h, body, err := ParseHeader(b)
	require.NoError(t, err)
	require.Empty(t, body)
	require.Equal(t, Header{Type: PacketReset, DstCID: 0x0102030405060708, PacketNumber: 0x0a0b0c0d}, h)
	for i := range len(b) {
		_, _, err := ParseHeader(b[:i])
		require.Error(t, err, "cut to %d bytes", i)
	}
}

// TestUnreachableAfterPeerClosed: once the peer's graceful CLOSE took
// effect, a port-unreachable report (the peer's process may have exited)
// must not turn the io.EOF the application is owed into an error, nor
// discard what it has not read yet, whether the report comes after the
// CLOSE or before it, with its probe timeouts running out after
// (TestSim/clean seed 2710 at 908efea: ErrUnreachable, io.EOF never read),
// nor the idle timer while the application has not read yet.
func TestUnreachableAfterPeerClosed(t *testing.T) {
	for _, before := range []bool{false, true} {
		name := "report after the CLOSE"
		if before {
			name = "report before the CLOSE"
		}
		t.Run(name, func(t *testing.T) {
			p := newWirePair(t, nil)
			a, b := p.a, p.b
			if before {
				b.HandleUnreachable(p.now)
			}
			require.NoError(t, a.Send(Delivery, []byte("last words")))
			a.Close(p.now)
			for i := 0; i < 10000 && !(a.Closed() && b.PeerClosed()); i++ {
				p.step()
			}
			require.True(t, b.PeerClosed())
			if !before {
				b.HandleUnreachable(p.now)
			}
			p.runAlone(b, time.Minute) // the peer is gone: nothing answers
			m, err := b.Recv()
			require.NoError(t, err)
			require.Equal(t, "last words", string(m.Data))
			_, err = b.Recv()
			require.ErrorIs(t, err, io.EOF)
		})
	}
}
