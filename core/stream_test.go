package core

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// newStreamPair is newWirePair with a config per side.
func newStreamPair(t testing.TB, cfgA, cfgB *Config) *wirePair {
	t.Helper()
	now := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	mk := func(cfg *Config, cid uint64) *Conn {
		if cfg == nil {
			cfg = &Config{}
		}
		cfg.Rand = rand.NewPCG(1, cid)
		c, err := NewConn(cfg, cid, now)
		require.NoError(t, err)
		return c
	}
	p := &wirePair{now: now, a: mk(cfgA, 0x1111), b: mk(cfgB, 0x2222), buf: make([]byte, 2048)}
	p.establish(t)
	return p
}

// recvAll reads every message stream id of c has ready.
func recvAll(t testing.TB, c *Conn, id uint64) (out [][]byte, err error) {
	t.Helper()
	for {
		m, err := c.RecvStream(id)
		if err != nil || m.Guarantee == 0 {
			return out, err
		}
		out = append(out, bytes.Clone(m.Data))
	}
}

// TestStreamOpenAccept: streams are accepted in the order opened, before
// any data, with the guarantee the opener chose; the IDs follow §17.1 (a's
// connection ID is the smaller: even IDs), the same on both ends.
func TestStreamOpenAccept(t *testing.T) {
	p := newStreamPair(t, nil, nil)
	var ids []uint64
	for _, g := range []Guarantee{Order, Delivery, None} {
		id, err := p.a.OpenStream(g)
		require.NoError(t, err)
		ids = append(ids, id)
	}
	require.Equal(t, []uint64{2, 4, 6}, ids)
	idB, err := p.b.OpenStream(Delivery)
	require.NoError(t, err)
	require.Equal(t, uint64(1), idB)
	_, _, ok := p.b.AcceptStream()
	require.False(t, ok, "nothing arrived yet")
	for range 5 {
		p.step()
	}
	for i, g := range []Guarantee{Order, Delivery, None} {
		id, got, ok := p.b.AcceptStream()
		require.True(t, ok, "stream %d", i)
		require.Equal(t, ids[i], id)
		require.Equal(t, g, got)
	}
	_, _, ok = p.b.AcceptStream()
	require.False(t, ok)
	id, g, ok := p.a.AcceptStream()
	require.True(t, ok)
	require.Equal(t, uint64(1), id)
	require.Equal(t, Delivery, g)
	// Nothing but the opening went: no data, stream 0 untouched.
	m, err := p.b.Recv()
	require.NoError(t, err)
	require.Zero(t, m.Guarantee)
}

// TestStreamDomains: each stream numbers and orders its own messages; the
// messages of one stream are read on it alone, and stream 0 is as before.
func TestStreamDomains(t *testing.T) {
	p := newStreamPair(t, nil, nil)
	s1, err := p.a.OpenStream(Delivery)
	require.NoError(t, err)
	s2, err := p.a.OpenStream(Order)
	require.NoError(t, err)
	big := bytes.Repeat([]byte("b"), 5000) // fragments
	for i := range 3 {
		require.NoError(t, p.a.Send(Delivery, []byte(fmt.Sprint("zero-", i))))
		require.NoError(t, p.a.SendStream(s1, Delivery, []byte(fmt.Sprint("one-", i))))
		require.NoError(t, p.a.SendStream(s2, Order, []byte(fmt.Sprint("two-", i))))
	}
	require.NoError(t, p.a.SendStream(s1, Delivery, big))
	for range 10 {
		p.step()
	}
	got0, err := recvAll(t, p.b, 0)
	require.NoError(t, err)
	got1, err := recvAll(t, p.b, s1)
	require.NoError(t, err)
	got2, err := recvAll(t, p.b, s2)
	require.NoError(t, err)
	require.Equal(t, [][]byte{[]byte("zero-0"), []byte("zero-1"), []byte("zero-2")}, got0)
	require.Equal(t, [][]byte{[]byte("one-0"), []byte("one-1"), []byte("one-2"), big}, got1)
	require.Equal(t, [][]byte{[]byte("two-0"), []byte("two-1"), []byte("two-2")}, got2)
	_, err = p.b.RecvStream(99)
	require.ErrorIs(t, err, ErrStreamClosed)
}

// TestStreamLossIsolation: a lost packet of stream A holds back nothing of
// stream B (B's messages are read at once, A's wait for the retransmission),
// where on one stream the same loss holds back everything sent after it.
func TestStreamLossIsolation(t *testing.T) {
	for _, streams := range []bool{false, true} {
		t.Run(fmt.Sprint("streams=", streams), func(t *testing.T) {
			p := newStreamPair(t, nil, nil)
			a, b := uint64(0), uint64(0)
			if streams {
				var err error
				a, err = p.a.OpenStream(Delivery)
				require.NoError(t, err)
				b, err = p.a.OpenStream(Delivery)
				require.NoError(t, err)
				for range 5 {
					p.step()
				}
			}
			// One datagram per message: A's first is dropped.
			require.NoError(t, p.a.SendStream(a, Delivery, bytes.Repeat([]byte("A"), 1000)))
			n := p.a.PollTransmit(p.now, p.buf)
			require.Positive(t, n)
			require.NoError(t, p.a.SendStream(b, Delivery, []byte("B")))
			n = p.a.PollTransmit(p.now, p.buf)
			require.Positive(t, n)
			p.b.HandleDatagram(p.now, p.buf[:n])
			gotB, err := recvAll(t, p.b, b)
			require.NoError(t, err)
			if streams {
				require.Equal(t, [][]byte{[]byte("B")}, gotB, "B waits for A's loss")
			} else {
				require.Empty(t, gotB, "one stream: B waits behind the lost A")
			}
			for range 400 {
				p.step()
			}
			gotA, err := recvAll(t, p.b, a)
			require.NoError(t, err)
			if !streams {
				require.Len(t, gotA, 2)
				return
			}
			require.Len(t, gotA, 1)
		})
	}
}

// TestStreamLimit: the peer's MaxIncomingStreams (here 2, sent with its
// HELLO) bounds what OpenStream opens; a stream's place comes back once
// both its directions ended (reset one way, stopped the other), and the
// peer's raised STREAM_LIMIT lets the opener go on.
func TestStreamLimit(t *testing.T) {
	p := newStreamPair(t, nil, &Config{MaxIncomingStreams: 2})
	require.Equal(t, 2, p.a.StreamsAvailable())
	require.Equal(t, defaultMaxIncomingStreams, p.b.StreamsAvailable())
	s1, err := p.a.OpenStream(Delivery)
	require.NoError(t, err)
	_, err = p.a.OpenStream(Delivery)
	require.NoError(t, err)
	_, err = p.a.OpenStream(Delivery)
	require.ErrorIs(t, err, ErrStreamLimit)
	require.ErrorIs(t, err, ErrWouldBlock)
	for range 5 {
		p.step()
	}
	id, _, ok := p.b.AcceptStream()
	require.True(t, ok)
	require.Equal(t, s1, id)
	require.NoError(t, p.a.SendStream(s1, Delivery, []byte("x")))
	// Both directions end: a resets its own, b stops reading (and resets
	// its own too, when a's STOP_SENDING... here b resets explicitly).
	require.NoError(t, p.a.ResetStream(s1, 7))
	require.NoError(t, p.b.ResetStream(s1, 8))
	for range 20 {
		p.step()
	}
	_, err = p.b.RecvStream(s1)
	require.ErrorIs(t, err, ErrStreamClosed, "ended and forgotten")
	require.Equal(t, 1, p.a.StreamsAvailable())
	_, err = p.a.OpenStream(Delivery)
	require.NoError(t, err)
	for range 5 {
		p.step()
	}
	require.Len(t, p.b.streams.list, 2)
	require.Len(t, p.a.streams.list, 2)
}

// TestStreamResetCredit: a reset stream gives back the connection credit
// its messages were charged, those that arrived (dropped) and those that
// never did (the final credit the STREAM_RESET carries), and its reads
// fail with the peer's code.
func TestStreamResetCredit(t *testing.T) {
	p := newStreamPair(t, nil, nil)
	s, err := p.a.OpenStream(Delivery)
	require.NoError(t, err)
	for range 5 {
		p.step()
	}
	// Two messages: the first arrives, the second's packet is lost.
	require.NoError(t, p.a.SendStream(s, Delivery, bytes.Repeat([]byte("1"), 900)))
	n := p.a.PollTransmit(p.now, p.buf)
	p.b.HandleDatagram(p.now, p.buf[:n])
	require.NoError(t, p.a.SendStream(s, Delivery, bytes.Repeat([]byte("2"), 900)))
	require.Positive(t, p.a.PollTransmit(p.now, p.buf))
	require.NoError(t, p.a.ResetStream(s, 42))
	for range 50 {
		p.step()
	}
	_, err = p.b.RecvStream(s)
	var re *StreamResetError
	require.ErrorAs(t, err, &re)
	require.Equal(t, uint64(42), re.Code)
	require.ErrorIs(t, err, ErrStreamReset)
	// Every byte of credit a charged was consumed on b: nothing leaks.
	require.Equal(t, p.a.dataSent, p.b.consumed)
	require.Zero(t, p.b.pendingDelivery)
	require.Equal(t, ErrStreamClosed, p.a.SendStream(s, Delivery, nil))
}

// TestStreamStopSending: a stream the reader stops is drained as data
// arrives (its credit returns at once), the writer's sends fail with the
// reader's code, and the stream ends on both sides.
func TestStreamStopSending(t *testing.T) {
	p := newStreamPair(t, nil, nil)
	s, err := p.a.OpenStream(Delivery)
	require.NoError(t, err)
	require.NoError(t, p.a.SendStream(s, Delivery, []byte("before")))
	for range 5 {
		p.step()
	}
	_, _, ok := p.b.AcceptStream()
	require.True(t, ok)
	require.NoError(t, p.b.StopStream(s, 9))
	for range 20 {
		p.step()
	}
	err = p.a.SendStream(s, Delivery, []byte("after"))
	require.ErrorIs(t, err, ErrStreamReset)
	require.Equal(t, p.a.dataSent, p.b.consumed)
	_, err = p.b.RecvStream(s)
	require.ErrorIs(t, err, ErrStreamClosed)
	// a's direction was reset (acknowledged), b's stopped: a still holds
	// its half until its own receive direction ends.
	require.NoError(t, p.a.StopStream(s, 0))
	for range 20 {
		p.step()
	}
	require.Empty(t, p.a.streams.list)
	require.Empty(t, p.b.streams.list)
}

// TestStreamHostile: a peer naming streams it may not ends the connection
// with a protocol violation, whatever it holds: beyond the limit announced,
// one of ours never opened, an opening of one of ours.
func TestStreamHostile(t *testing.T) {
	for _, c := range []struct {
		name  string
		frame []byte
	}{
		{"beyond the limit", appendStreamCtl(nil, frameStreamOpen, &streamCtlFrame{id: streamID(defaultMaxIncomingStreams+1, true), guarantee: Delivery})},
		{"data beyond the limit", appendMsg(nil, &msgFrame{stream: streamID(defaultMaxIncomingStreams+1, true), guarantee: None, data: []byte("x")})},
		{"ours never opened", appendMsg(nil, &msgFrame{stream: 1, guarantee: None, data: []byte("x")})},
		{"reset of ours never opened", appendStreamCtl(nil, frameStreamReset, &streamCtlFrame{id: 3})},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := newStreamPair(t, nil, nil)
			h := sealed(Header{Type: PacketData, DstCID: p.b.LocalCID(), PacketNumber: uint32(p.a.nextPN)}, c.frame)
			p.a.nextPN++
			p.b.HandleDatagram(p.now, h)
			require.ErrorIs(t, p.b.life.closing.abortReason, ErrProtocolViolation)
			for range 50 {
				p.step()
			}
			require.ErrorIs(t, p.a.Err(), ErrPeerProtocolViolation)
			require.ErrorIs(t, p.b.Err(), ErrProtocolViolation)
			require.Nil(t, p.b.streams)
		})
	}
}

// TestStreamEOFAfterClose: after the peer's graceful close, every stream
// reads what arrived, then io.EOF.
func TestStreamEOFAfterClose(t *testing.T) {
	p := newStreamPair(t, nil, nil)
	s, err := p.a.OpenStream(Delivery)
	require.NoError(t, err)
	require.NoError(t, p.a.SendStream(s, Delivery, []byte("last words")))
	p.a.Close(p.now)
	for range 50 {
		p.step()
	}
	got, err := recvAll(t, p.b, s)
	require.True(t, errors.Is(err, io.EOF), "%v", err)
	require.Equal(t, [][]byte{[]byte("last words")}, got)
}

// TestStreamCloseWrite: a stream's half-close (STREAM_FIN, after its last
// message) gives the peer io.EOF after all of it while the peer still
// sends back; once both directions ended the stream is forgotten on both
// sides, and the opener's place is given back.
func TestStreamCloseWrite(t *testing.T) {
	p := newStreamPair(t, nil, &Config{MaxIncomingStreams: 1})
	s, err := p.a.OpenStream(Delivery)
	require.NoError(t, err)
	require.NoError(t, p.a.SendStream(s, Delivery, []byte("request")))
	require.NoError(t, p.a.CloseStreamWrite(s))
	require.ErrorIs(t, p.a.SendStream(s, Delivery, []byte("more")), ErrClosed)
	for range 10 {
		p.step()
	}
	_, _, ok := p.b.AcceptStream()
	require.True(t, ok)
	got, err := recvAll(t, p.b, s)
	require.ErrorIs(t, err, io.EOF)
	require.Equal(t, [][]byte{[]byte("request")}, got)
	require.Zero(t, p.a.StreamsAvailable(), "a's stream is still open: b's direction goes on")
	require.NoError(t, p.b.SendStream(s, Delivery, []byte("response")))
	require.NoError(t, p.b.CloseStreamWrite(s))
	for range 10 {
		p.step()
	}
	got, err = recvAll(t, p.a, s)
	require.ErrorIs(t, err, io.EOF)
	require.Equal(t, [][]byte{[]byte("response")}, got)
	for range 10 {
		p.step()
	}
	require.Empty(t, p.a.streams.list)
	require.Empty(t, p.b.streams.list)
	require.Equal(t, 1, p.a.StreamsAvailable())
}

// TestStreamsFinOverGap: a STREAM_FIN whose stream's data before it is
// missing is refused (not acknowledged) until the data arrived: io.EOF is
// never read over a gap.
func TestStreamsFinOverGap(t *testing.T) {
	p := newStreamPair(t, nil, nil)
	s, err := p.a.OpenStream(Delivery)
	require.NoError(t, err)
	for range 5 {
		p.step()
	}
	require.NoError(t, p.a.SendStream(s, Delivery, []byte("lost")))
	require.Positive(t, p.a.PollTransmit(p.now, p.buf)) // dropped
	require.NoError(t, p.a.CloseStreamWrite(s))
	n := p.a.PollTransmit(p.now, p.buf)
	require.Positive(t, n)
	p.b.HandleDatagram(p.now, p.buf[:n])
	require.Equal(t, uint64(1), p.b.Stats().PacketsRefused)
	m, err := p.b.RecvStream(s)
	require.NoError(t, err)
	require.Zero(t, m.Guarantee)
	for range 400 {
		p.step()
	}
	got, err := recvAll(t, p.b, s)
	require.ErrorIs(t, err, io.EOF)
	require.Equal(t, [][]byte{[]byte("lost")}, got)
}

// TestStreamChurn: 10,000 streams opened, used and closed one after
// another (at most 4 at once, the peer's limit) leave nothing behind on
// either side: no stream, tables no larger than the limit, nothing
// scheduled, and the heap where it was.
func TestStreamChurn(t *testing.T) {
	p := newStreamPair(t, nil, &Config{MaxIncomingStreams: 4})
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const total = 10000
	opened, done := 0, 0
	for i := 0; done < total && i < 50*total; i++ {
		for opened < total && p.a.StreamsAvailable() > 0 {
			s, err := p.a.OpenStream(Delivery)
			require.NoError(t, err)
			require.NoError(t, p.a.SendStream(s, Delivery, []byte("ping")))
			require.NoError(t, p.a.CloseStreamWrite(s))
			opened++
		}
		p.step()
		for {
			s, _, ok := p.b.AcceptStream()
			if !ok {
				break
			}
			got, err := recvAll(t, p.b, s)
			require.True(t, err == nil || errors.Is(err, io.EOF), "%v", err)
			if err == nil {
				// The FIN comes in a packet of its own, maybe later.
				require.Len(t, got, 1)
			}
			require.NoError(t, p.b.CloseStreamWrite(s))
		}
		// Both ends read to io.EOF whatever is left.
		for _, c := range []*Conn{p.a, p.b} {
			if c.streams == nil {
				continue
			}
			for _, st := range slices.Clone(c.streams.list) {
				_, _ = recvAll(t, c, st.id)
			}
		}
		done = int(p.b.streams.peerEnded)
		require.LessOrEqual(t, len(p.b.streams.list), 4)
	}
	require.Equal(t, total, done)
	for range 20 {
		p.step()
	}
	require.Empty(t, p.a.streams.list)
	require.Empty(t, p.b.streams.list)
	require.Empty(t, p.a.streams.ctl)
	require.Zero(t, p.a.streams.ready.len())
	require.LessOrEqual(t, cap(p.b.streams.list), 8)
	require.Equal(t, uint64(total+4), p.b.streams.limit)
	runtime.GC()
	runtime.ReadMemStats(&after)
	grew := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%d streams churned: the heap grew %d bytes", total, grew)
	require.Less(t, grew, int64(64<<10), "the streams left memory behind")
}

// TestStreamStopAfterFin: a stream whose peer half-closed before we
// stopped reading it ends once our own direction ended too (it was left
// open forever: the peer's OpenStream then waited for a place that never
// came back).
func TestStreamStopAfterFin(t *testing.T) {
	p := newStreamPair(t, nil, &Config{MaxIncomingStreams: 1})
	s, err := p.a.OpenStream(Delivery)
	require.NoError(t, err)
	require.NoError(t, p.a.SendStream(s, Delivery, []byte("x")))
	require.NoError(t, p.a.CloseStreamWrite(s))
	for range 10 {
		p.step()
	}
	_, _, ok := p.b.AcceptStream()
	require.True(t, ok)
	// b closes: its direction half-closed, and it reads nothing more.
	require.NoError(t, p.b.CloseStreamWrite(s))
	require.NoError(t, p.b.StopStream(s, 0))
	require.NoError(t, p.a.StopStream(s, 0))
	for range 20 {
		p.step()
	}
	require.Empty(t, p.b.streams.list)
	require.Empty(t, p.a.streams.list)
	require.Equal(t, 1, p.a.StreamsAvailable())
}

// TestIdleStreamMemory bounds what an open, idle stream costs each side:
// its record (ordering domain, control state) and its place in the table,
// nothing per stream until it carries data. Measured: about 250 bytes.
func TestIdleStreamMemory(t *testing.T) {
	const n = 1000
	p := newStreamPair(t, nil, &Config{MaxIncomingStreams: n})
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range n {
		_, err := p.a.OpenStream(Delivery)
		require.NoError(t, err)
	}
	for range 50 {
		p.step()
	}
	for range n {
		_, _, ok := p.b.AcceptStream()
		require.True(t, ok)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perStream := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / (2 * n)
	t.Logf("an idle stream costs %d bytes a side", perStream)
	require.Len(t, p.b.streams.list, n)
	require.Less(t, perStream, int64(512))
}

// TestStreamInterleave: a 1 MiB message queued on one stream delays a
// small message queued after it on another by a fragment, not by the
// whole message: fragments go a stream at a time. So it is when the bulk
// stream's weight is 16 (deficit round robin would send 16 of its
// fragments in a row: sched.go).
func TestStreamInterleave(t *testing.T) {
	for _, weight := range []int{1, 16} {
		t.Run(fmt.Sprint("weight=", weight), func(t *testing.T) {
			p := newStreamPair(t, &Config{MaxMessageSize: 1 << 20}, &Config{MaxMessageSize: 1 << 20})
			bulk, err := p.a.OpenStream(Delivery)
			require.NoError(t, err)
			small, err := p.a.OpenStream(Delivery)
			require.NoError(t, err)
			require.NoError(t, p.a.SetStreamPriority(bulk, 0, weight))
			for range 5 {
				p.step()
			}
			require.NoError(t, p.a.SendStream(bulk, Delivery, make([]byte, 1<<20)))
			require.NoError(t, p.a.SendStream(small, Delivery, []byte("chat")))
			datagrams := 0
			for datagrams < 1000 {
				n := p.a.PollTransmit(p.now, p.buf)
				if n == 0 {
					p.step()
					continue
				}
				datagrams++
				p.b.HandleDatagram(p.now, p.buf[:n])
				if got, _ := recvAll(t, p.b, small); len(got) == 1 {
					break
				}
			}
			require.LessOrEqual(t, datagrams, 2, "the small message waited behind %d datagrams of the bulk one", datagrams)
		})
	}
}

// TestStreamSendBuffers: a stream whose send buffer is full holds back no
// Send on another stream (nor on stream 0).
func TestStreamSendBuffers(t *testing.T) {
	p := newStreamPair(t, &Config{SendBufferSize: 64 << 10, MaxMessageSize: 8 << 10}, nil)
	bulk, err := p.a.OpenStream(Delivery)
	require.NoError(t, err)
	other, err := p.a.OpenStream(Delivery)
	require.NoError(t, err)
	msg := make([]byte, 8<<10)
	for range 100 {
		if err = p.a.SendStream(bulk, Delivery, msg); err != nil {
			break
		}
	}
	require.ErrorIs(t, err, ErrSendBufferFull)
	require.NoError(t, p.a.SendStream(other, Delivery, msg))
	require.NoError(t, p.a.Send(Delivery, msg))
	for range 200 {
		p.step()
	}
	got, err := recvAll(t, p.b, other)
	require.NoError(t, err)
	require.Len(t, got, 1)
}
