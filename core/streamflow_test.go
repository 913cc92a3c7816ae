package core

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Per-stream flow control (docs/PROTOCOL.md §17.6). The simulator proves
// the stalled reader's isolation (sim_streamflow_test.go) and checks the
// credit on every step of the streams profiles (CheckStreamCredit); these
// are the rules one at a time.

// flowPair is a pair whose b gives each stream window bytes of credit (a
// the default, or window too if both), messages of up to 4 KiB, with a
// stream a opened and b accepted.
func flowPair(t *testing.T, window int, both bool) (p *wirePair, id uint64) {
	t.Helper()
	cfgA := &Config{MaxMessageSize: 4096}
	if both {
		cfgA.StreamReceiveWindow = window
	}
	p = newStreamPair(t, cfgA, &Config{MaxMessageSize: 4096, StreamReceiveWindow: window})
	id, err := p.a.OpenStream(Delivery)
	require.NoError(t, err)
	for range 5 {
		p.step()
	}
	_, _, ok := p.b.AcceptStream()
	require.True(t, ok)
	return p, id
}

// fillStream queues messages of size bytes on stream id of c until its send
// buffer refuses one, and returns how many it took.
func fillStream(t *testing.T, c *Conn, id uint64, size int) int {
	t.Helper()
	n := 0
	for ; ; n++ {
		err := c.SendStream(id, Delivery, bytes.Repeat([]byte{byte(n)}, size))
		if err == ErrSendBufferFull {
			return n
		}
		require.NoError(t, err)
	}
}

// TestStreamWindowAnnounced: a side whose StreamReceiveWindow is not the
// default says so with its HELLO (a STREAM_CREDIT of stream 0), and the
// peer's streams start with that credit; a connection that keeps the
// default sends nothing and allocates no stream table.
func TestStreamWindowAnnounced(t *testing.T) {
	p := newStreamPair(t, nil, nil)
	require.Nil(t, p.a.streams)
	require.Nil(t, p.b.streams)

	p, id := flowPair(t, 20000, false)
	require.Equal(t, uint64(20000), p.a.streams.find(id).flow.peerMaxData)
	require.Equal(t, uint64(defaultStreamReceiveWindow), p.b.streams.find(id).flow.peerMaxData)
	require.Equal(t, uint64(20000), p.b.streams.find(id).flow.creditSent)

	// Each side's own, both ways, on streams either side opens.
	p = newStreamPair(t, &Config{MaxMessageSize: 4096, StreamReceiveWindow: 30000}, &Config{MaxMessageSize: 4096, StreamReceiveWindow: 20000})
	for _, opener := range []*Conn{p.a, p.b} {
		id, err := opener.OpenStream(Delivery)
		require.NoError(t, err)
		for range 5 {
			p.step()
		}
		require.Equal(t, uint64(20000), p.a.streams.find(id).flow.peerMaxData)
		require.Equal(t, uint64(30000), p.b.streams.find(id).flow.peerMaxData)
		require.Equal(t, uint64(30000), p.a.streams.find(id).flow.creditSent)
	}
}

// TestStreamFlowStalled: a stream whose reader does not read is sent no
// more than its credit, the other streams (stream 0 too) keep going,
// nothing is sent while only the stalled stream has data (no probe, no
// empty packet), and once the reader reads, everything arrives.
func TestStreamFlowStalled(t *testing.T) {
	const window = 3 * (4096 + 256 + 64)
	p, id := flowPair(t, window, false)
	queued := fillStream(t, p.a, id, 4000)
	for range 200 {
		p.step()
	}
	sa, sb := p.a.streams.find(id), p.b.streams.find(id)
	require.LessOrEqual(t, sa.charged, uint64(window), "sent beyond the stream's credit")
	require.Equal(t, 3, int(sa.charged)/msgCredit(4000), "the stream's credit was not used")
	require.Positive(t, sa.queue.len(), "all sent: the window did not hold it back")
	require.Equal(t, sa.charged, sb.peerCharged)
	require.False(t, p.a.creditStarved(), "held back by the stream's credit, taken for the connection's")

	// Nothing goes while only the stalled stream waits (no probe asking for
	// credit, no empty packet): in a minute, a sends its heartbeats only.
	sent, start := p.a.stats.PacketsSent, p.now
	for p.now.Sub(start) < time.Minute {
		p.step()
	}
	require.LessOrEqual(t, p.a.stats.PacketsSent-sent, uint64(time.Minute/p.a.cfg.HeartbeatPeriod)+1)
	require.Equal(t, sa.charged, p.a.streams.find(id).charged)

	// Stream 0 and another stream are not held back.
	other, err := p.a.OpenStream(Delivery)
	require.NoError(t, err)
	require.NoError(t, p.a.Send(Delivery, []byte("zero")))
	require.NoError(t, p.a.SendStream(other, Delivery, []byte("other")))
	for range 50 {
		p.step()
	}
	m, err := p.b.Recv()
	require.NoError(t, err)
	require.Equal(t, "zero", string(m.Data))
	_, _, ok := p.b.AcceptStream()
	require.True(t, ok)
	got, err := recvAll(t, p.b, other)
	require.NoError(t, err)
	require.Equal(t, [][]byte{[]byte("other")}, got)

	// The reader reads: the credit comes back, and the rest follows.
	read := 0
	for i := 0; i < 2000 && read < queued; i++ {
		got, err := recvAll(t, p.b, id)
		require.NoError(t, err)
		for _, m := range got {
			require.Equal(t, bytes.Repeat([]byte{byte(read)}, 4000), m)
			read++
		}
		p.step()
	}
	require.Equal(t, queued, read)
}

// TestStreamFlowLostCredit: a STREAM_CREDIT that is lost is sent again,
// with the latest credit, until acknowledged.
func TestStreamFlowLostCredit(t *testing.T) {
	const window = 2 * (4096 + 256 + 64)
	p, id := flowPair(t, window, false)
	queued := fillStream(t, p.a, id, 4000)
	lost := 0
	read := 0
	for i := 0; i < 5000 && read < queued; i++ {
		got, err := recvAll(t, p.b, id)
		require.NoError(t, err)
		read += len(got)
		// b's datagrams are lost while it owes a STREAM_CREDIT, once in two.
		for {
			owed := p.b.streams.find(id).flow.credit == valNeeded
			n := p.b.PollTransmit(p.now, p.buf)
			if n == 0 {
				break
			}
			if owed && lost%2 == 0 {
				lost++
				continue
			}
			if owed {
				lost++
			}
			p.a.HandleDatagram(p.now, p.buf[:n])
		}
		p.step()
	}
	require.Equal(t, queued, read)
	require.Greater(t, lost, 4, "no STREAM_CREDIT was lost: the test did not test")
}

// TestStreamFlowHostile: a peer that charges a stream beyond the credit
// advertised for it ends the connection with a protocol violation, both
// sides seeing it.
func TestStreamFlowHostile(t *testing.T) {
	const window = 2 * (4096 + 256 + 64)
	p, id := flowPair(t, window, false)
	// Three messages' first fragments, each 4000 bytes in all: the third
	// overruns the window (the connection's has room for them).
	for i := range 3 {
		f := msgFrame{stream: id, guarantee: Delivery, seq: uint32(i), d: uint32(i), fragment: true, total: 4000, data: []byte("x")}
		h := sealed(Header{Type: PacketData, DstCID: p.b.LocalCID(), PacketNumber: uint32(p.a.nextPN)}, appendMsg(nil, &f))
		p.a.nextPN++
		p.b.HandleDatagram(p.now, h)
		if i < 2 {
			require.NoError(t, p.b.Err())
			require.Nil(t, p.b.life.closing.abortReason)
		}
	}
	require.ErrorIs(t, p.b.life.closing.abortReason, ErrProtocolViolation)
	require.Contains(t, p.b.life.closing.abortReason.Error(), "stream's flow-control credit")
	for range 50 {
		p.step()
	}
	require.ErrorIs(t, p.a.Err(), ErrPeerProtocolViolation)
	require.ErrorIs(t, p.b.Err(), ErrProtocolViolation)

	// A STREAM_RESET claiming a final credit beyond the stream's credit
	// (it would count credit never charged as consumed).
	p, id = flowPair(t, window, false)
	f := streamCtlFrame{id: id, value: window + 1}
	h := sealed(Header{Type: PacketData, DstCID: p.b.LocalCID(), PacketNumber: uint32(p.a.nextPN)}, appendStreamCtl(nil, frameStreamReset, &f))
	p.a.nextPN++
	consumed := p.b.consumed
	p.b.HandleDatagram(p.now, h)
	require.ErrorIs(t, p.b.life.closing.abortReason, ErrProtocolViolation)
	require.Contains(t, p.b.life.closing.abortReason.Error(), "STREAM_RESET beyond the stream's credit")
	require.Equal(t, consumed, p.b.consumed)
}

// TestStreamFlowCreditReturned: a stream held at its credit that is then
// stopped by its reader, or reset by its writer, gives back everything it
// was charged, on the connection's level too: afterwards the connection's
// whole window is available again and the stream is forgotten on both
// sides.
func TestStreamFlowCreditReturned(t *testing.T) {
	for _, how := range []string{"stop", "reset", "close"} {
		t.Run(how, func(t *testing.T) {
			const window = 3 * (4096 + 256 + 64)
			p, id := flowPair(t, window, how == "close")
			fillStream(t, p.a, id, 4000)
			if how == "close" {
				// Both ways: each side's data waits on the other's credit.
				fillStream(t, p.b, id, 4000)
			}
			for range 100 {
				p.step()
			}
			require.Positive(t, p.b.pendingDelivery, "nothing held: the test did not test")
			require.Positive(t, p.a.streams.find(id).queue.len(), "nothing held back: the test did not test")
			switch how {
			case "stop":
				require.NoError(t, p.b.StopStream(id, 7))
			case "reset":
				require.NoError(t, p.a.ResetStream(id, 7))
			case "close":
				// Neither side reads, both close: neither CLOSE may wait on
				// the other's stream credit (§17.6, as §7 for the connection's).
				p.a.Close(p.now)
				p.b.Close(p.now)
			}
			for range 200 {
				p.step()
			}
			if how == "close" {
				require.True(t, p.a.Closed() && p.b.Closed(), "the close waits on a stream's credit")
				require.NoError(t, p.a.Err())
				require.NoError(t, p.b.Err())
				return
			}
			require.Zero(t, p.b.pendingDelivery)
			require.Equal(t, p.a.dataSent, p.b.consumed, "credit charged was not given back")
			require.Equal(t, uint64(p.b.window()), p.a.peerMaxData-p.a.dataSent, "the connection's window is not whole again")
			require.True(t, p.b.streams.find(id) == nil || p.b.streams.find(id).recvDone, "b's receiving direction did not end")
		})
	}
}

// TestStreamWindowTuned: a stream whose reader keeps up gets a larger
// window, as the connection does (doubling when half of it was read within
// two round trips), up to half of MaxReceiveWindow, the connection's
// growing to twice it; one whose reader stopped keeps the window it had.
func TestStreamWindowTuned(t *testing.T) {
	const window = 3 * (4096 + 256 + 64)
	p, id := flowPair(t, window, false)
	other, err := p.a.OpenStream(Delivery)
	require.NoError(t, err)
	msg := bytes.Repeat([]byte("x"), 4000)
	for range 3000 {
		for p.a.SendStream(id, Delivery, msg) == nil {
		}
		for p.a.SendStream(other, Delivery, msg) == nil {
		}
		_, err := recvAll(t, p.b, id)
		require.NoError(t, err)
		p.b.AcceptStream()
		p.step()
	}
	sb := p.b.streams.find(id)
	require.Greater(t, sb.flow.window, window, "the window of a stream read as fast as it comes did not grow")
	require.LessOrEqual(t, sb.flow.window, max(window, p.b.cfg.MaxReceiveWindow/2))
	require.GreaterOrEqual(t, p.b.window(), 2*sb.flow.window, "the connection's window did not follow the stream's")
	require.Equal(t, window, p.b.streams.find(other).flow.window, "the window of a stream nobody reads grew")
}
