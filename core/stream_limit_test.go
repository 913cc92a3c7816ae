package core

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestStreamBeyondLimitMemoryFlat: a peer that ignores the stream limit
// announced (it opens 1,100 streams where 100 were allowed, each with a
// message the receiver holds unread) is ended with a protocol violation
// that both sides see, and never makes the receiver hold more than the
// 100 streams it allowed: the table's streams and the bytes held peak at
// the limit, checked on every step, and the data held is freed at the end.
func TestStreamBeyondLimitMemoryFlat(t *testing.T) {
	const limit = 100
	p := newStreamPair(t, nil, &Config{MaxIncomingStreams: limit})
	p.a.table().peerLimit = 1 << 20 // a disregards b's limit
	held := func() int { return p.b.pendingDelivery + p.b.unreliableBytes }
	maxStreams, maxHeld := 0, 0
	steps := func(n int) {
		for range n {
			p.step()
			if p.b.streams != nil {
				maxStreams = max(maxStreams, len(p.b.streams.list))
			}
			maxHeld = max(maxHeld, held())
		}
	}
	open := func(n int) {
		for range n {
			id, err := p.a.OpenStream(Delivery)
			require.NoError(t, err)
			require.NoError(t, p.a.SendStream(id, Delivery, make([]byte, 1000)))
		}
	}
	open(limit)
	steps(500)
	require.Len(t, p.b.streams.list, limit)
	heldAtLimit := held()
	require.GreaterOrEqual(t, heldAtLimit, limit*1000, "b holds every allowed stream's message, unread")
	open(1000)
	steps(200)
	require.ErrorIs(t, p.b.Err(), ErrProtocolViolation)
	require.ErrorIs(t, p.a.Err(), ErrPeerProtocolViolation)
	require.Equal(t, limit, maxStreams, "streams held beyond the limit")
	require.Equal(t, heldAtLimit, maxHeld, "bytes held beyond the limit's streams'")
	require.Zero(t, held(), "the ended connection still holds data")
	// (The streams' records stay, empty, while the Conn does: an ended
	// connection's streams still answer reads with its error.)
	require.Len(t, p.b.streams.list, limit)
	require.Equal(t, uint64(1), p.b.Stats().ProtocolViolations)
}

// TestStreamLatestValueResent: a STREAM_LIMIT or STREAM_CREDIT is raised
// twice, the packet carrying the newer value is lost and the one carrying
// the older is acknowledged. That acknowledgement settles only the older
// value: the newer goes again and reaches the peer (the peer's OpenStream,
// or its sender, would otherwise wait for it forever).
func TestStreamLatestValueResent(t *testing.T) {
	for _, tc := range []struct {
		name string
		// setup prepares the pair; raise makes b owe a larger value and
		// returns it; reached returns what a has.
		setup func(t *testing.T, p *wirePair) (raise func() uint64, reached func() uint64)
	}{
		{"STREAM_LIMIT", func(t *testing.T, p *wirePair) (func() uint64, func() uint64) {
			b := p.b.table()
			raise := func() uint64 {
				// As the end of one of a's streams does (maybeEndStream).
				b.peerEnded++
				b.limit++
				b.limitFrame = valNeeded
				return b.limit
			}
			return raise, func() uint64 { return p.a.streams.peerLimit }
		}},
		{"STREAM_CREDIT", func(t *testing.T, p *wirePair) (func() uint64, func() uint64) {
			id, err := p.a.OpenStream(Delivery)
			require.NoError(t, err)
			for range 20 {
				p.step()
			}
			s := p.b.streams.find(id)
			require.NotNil(t, s)
			raise := func() uint64 {
				// As the application's reading a window's worth does.
				s.flow.consumed += uint64(s.flow.window)
				p.b.queueStreamCredit(s)
				return p.b.streamCredit(s)
			}
			return raise, func() uint64 { return p.a.streams.find(id).flow.peerMaxData }
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newStreamPair(t, nil, &Config{MaxIncomingStreams: 2})
			raise, reached := tc.setup(t, p)
			older := raise()
			n := p.b.PollTransmit(p.now, p.buf)
			require.NotZero(t, n)
			first := bytes.Clone(p.buf[:n])
			p.now = p.now.Add(time.Millisecond)
			newer := raise()
			require.Greater(t, newer, older)
			require.NotZero(t, p.b.PollTransmit(p.now, p.buf), "the newer value's packet (lost)")
			require.Zero(t, p.b.PollTransmit(p.now, p.buf))
			p.a.HandleDatagram(p.now, first)
			require.Equal(t, older, reached())
			// a's acknowledgement of the older value reaches b at once, on a
			// message, before b's probe timer could send anything again.
			require.NoError(t, p.a.Send(Delivery, []byte("ack")))
			for n := p.a.PollTransmit(p.now, p.buf); n > 0; n = p.a.PollTransmit(p.now, p.buf) {
				p.b.HandleDatagram(p.now, p.buf[:n])
			}
			h, _, err := ParseHeader(first)
			require.NoError(t, err)
			require.LessOrEqual(t, unwrap32(p.b.nextPN, h.PacketNumber), p.b.largestAcked, "the older value's packet acknowledged")
			for range 200 {
				p.step()
			}
			// (Or a later one: the stream's window may have grown since.)
			require.GreaterOrEqual(t, reached(), newer, "the newer value never reached the peer")
			require.False(t, p.b.ctlPending())
		})
	}
}
