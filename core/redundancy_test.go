package core

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestRedundancyCopySettles: the original of a message sent twice is lost
// and its copy arrives: the message is delivered once, settled by the
// copy's acknowledgement (no retransmission), and the copy is counted
// useful; the copy went in a packet of its own, counted as redundancy.
func TestRedundancyCopySettles(t *testing.T) {
	for _, g := range []Guarantee{None, Order, Delivery} {
		t.Run(g.String(), func(t *testing.T) {
			p := newWirePair(t, nil)
			require.NoError(t, p.a.SetStreamRedundancy(0, true))
			msg := bytes.Repeat([]byte{7}, 64)
			require.NoError(t, p.a.Send(g, msg))
			require.NotZero(t, p.a.PollTransmit(p.now, p.buf), "the original") // lost
			got := 0
			for range 200 {
				p.step()
				recvEach(t, p.b, func(m Message) {
					require.Equal(t, msg, m.Data)
					require.Equal(t, g, m.Guarantee)
					got++
				})
			}
			require.Equal(t, 1, got, "messages delivered")
			s := p.a.Stats()
			require.Zero(t, s.FragmentsRetransmitted, "the copy settled the message")
			require.EqualValues(t, 1, s.RedundantUseful)
			require.EqualValues(t, 1, s.RedundantPacketsSent)
			require.NotZero(t, s.RedundantBytesSent)
			require.NoError(t, CheckSendAccounting(p.a))
			require.Zero(t, p.a.liveFrags, "the fragment was freed")
		})
	}
}

// TestRedundancyDeliveredOnce: on stream 0 and on another stream, every
// message sent twice, of each guarantee, is delivered exactly once, the
// original and the copy both arriving (None's copies are told apart by
// their id: msgFlagTwice); a message larger than MaxRedundantMessage is
// sent once.
func TestRedundancyDeliveredOnce(t *testing.T) {
	for _, g := range []Guarantee{None, Order, Delivery} {
		for _, stream := range []bool{false, true} {
			t.Run(fmt.Sprintf("%v/stream%v", g, stream), func(t *testing.T) {
				p := newWirePair(t, nil)
				var id uint64
				if stream {
					var err error
					id, err = p.a.OpenStream(Delivery)
					require.NoError(t, err)
				}
				require.NoError(t, p.a.SetStreamRedundancy(id, true))
				const count = 20
				seen := map[string]int{}
				large := bytes.Repeat([]byte{'L'}, MaxRedundantMessage+1)
				for i := range count {
					require.NoError(t, p.a.SendStream(id, g, fmt.Appendf(nil, "message %d", i)))
				}
				require.NoError(t, p.a.SendStream(id, g, large))
				sentLarge := 0
				for range 300 {
					p.stepTap(func(from *Conn, d []byte) {
						if from == p.a {
							sentLarge += bytes.Count(d, large)
						}
					})
					if stream {
						if sid, _, ok := p.b.AcceptStream(); ok {
							require.Equal(t, id, sid)
						}
						for {
							m, err := p.b.RecvStream(id)
							if err != nil || m.Data == nil {
								break
							}
							seen[string(m.Data)]++
						}
						continue
					}
					recvEach(t, p.b, func(m Message) { seen[string(m.Data)]++ })
				}
				require.Len(t, seen, count+1)
				for m, n := range seen {
					require.Equal(t, 1, n, "message %.12q delivered %d times", m, n)
				}
				s := p.a.Stats()
				require.Zero(t, s.FragmentsRetransmitted)
				// The small messages' copies went (the wire pair loses
				// nothing, so none was useful); the large one went once.
				require.NotZero(t, s.RedundantBytesSent)
				require.Zero(t, s.RedundantUseful)
				require.Equal(t, 1, sentLarge, "datagrams carrying the large message")
			})
		}
	}
}

// TestRedundancyOff: a message queued after redundancy was turned off is
// sent once; one queued before keeps its copy.
func TestRedundancyOff(t *testing.T) {
	p := newWirePair(t, nil)
	require.NoError(t, p.a.SetStreamRedundancy(0, true))
	require.NoError(t, p.a.Send(Delivery, []byte("twice")))
	require.NoError(t, p.a.SetStreamRedundancy(0, false))
	require.NoError(t, p.a.Send(Delivery, []byte("once")))
	var copies int
	for range 100 {
		p.stepTap(func(from *Conn, d []byte) {
			if from == p.a {
				copies += bytes.Count(d, []byte("twice"))
				require.LessOrEqual(t, bytes.Count(d, []byte("once")), 1)
			}
		})
	}
	require.Equal(t, 2, copies, "datagrams carrying the message sent twice")
	require.ErrorContains(t, p.a.SetStreamRedundancy(5, true), "stream")
}

// TestNoneWindow: the receiver's record of None ids sent twice takes each
// once, and drops one older than its span.
func TestNoneWindow(t *testing.T) {
	var w noneWindow
	take := func(id uint64) bool {
		if w.taken(id) {
			return false
		}
		w.take(id)
		return true
	}
	base := uint64(1<<32 - 3)
	for _, step := range []struct {
		id   uint64
		take bool
	}{
		{base, true}, {base, false}, {base + 2, true}, {base + 1, true}, {base + 1, false}, {base + 2, false},
		{base + noneWindowSpan - 1, true}, {base, false}, {base + 3, true}, // base is the oldest the span holds
		{base + noneWindowSpan, true}, {base + 4, true}, {base + 4, false}, {base, false}, // base now too old: dropped
		{base + 1000, true}, {base + 1000 - noneWindowSpan + 1, true}, {base + 1000 - noneWindowSpan, false},
	} {
		require.Equal(t, step.take, take(step.id), "id base+%d", step.id-base)
	}
}

// TestRedundancyLostOriginalCopyInFlight: the original of a Delivery
// message sent twice is declared lost while its copy is still in flight
// (a later packet was acknowledged first): the message is not queued again
// (the copy may yet arrive), and when the copy arrives and is acknowledged
// it settles the message, with no retransmission; the copy was useful.
func TestRedundancyLostOriginalCopyInFlight(t *testing.T) {
	p := newWirePair(t, nil)
	require.NoError(t, p.a.SetStreamRedundancy(0, true))
	msg := bytes.Repeat([]byte{7}, 64)
	require.NoError(t, p.a.Send(Delivery, msg))
	require.NotZero(t, p.a.PollTransmit(p.now, p.buf), "the original") // lost
	// The copy, when its timer fires: held back.
	p.now = p.a.NextTimeout()
	p.a.HandleTimeout(p.now)
	n := p.a.PollTransmit(p.now, p.buf)
	require.NotZero(t, n, "the copy")
	held := bytes.Clone(p.buf[:n])
	require.Zero(t, p.a.PollTransmit(p.now, p.buf))
	// A later message, sent once, delivered and acknowledged: the
	// original is declared lost by then (it is older than the loss delay).
	require.NoError(t, p.a.SetStreamRedundancy(0, false))
	require.NoError(t, p.a.Send(Delivery, []byte("later")))
	for range 100 {
		p.exchange(nil)
		if p.a.Stats().PacketsLost > 0 {
			break
		}
		p.now = p.now.Add(100 * time.Microsecond)
		p.a.HandleTimeout(p.now)
		p.b.HandleTimeout(p.now)
	}
	require.EqualValues(t, 1, p.a.Stats().PacketsLost, "the original declared lost")
	require.Zero(t, p.a.Stats().FragmentsRetransmitted, "queued again while its copy was in flight")
	// The copy arrives; its acknowledgement settles the message.
	p.b.HandleDatagram(p.now, held)
	got := 0
	for range 50 {
		p.step()
		recvEach(t, p.b, func(m Message) {
			if bytes.Equal(m.Data, msg) {
				got++
			}
		})
	}
	require.Equal(t, 1, got, "delivered")
	s := p.a.Stats()
	require.Zero(t, s.FragmentsRetransmitted)
	require.EqualValues(t, 1, s.RedundantUseful)
	require.Zero(t, p.a.unackedDelivery, "settled")
	require.NoError(t, CheckSendAccounting(p.a))
}
