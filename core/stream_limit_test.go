package core

import (
	"testing"

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
