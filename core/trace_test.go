package core

import (
	"bytes"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestTraceFrames checks the frames a traced packet reports against what
// the connection sent: a message's fragment, the ACK's ranges in full
// packet numbers, on both the sending and the receiving side.
func TestTraceFrames(t *testing.T) {
	var sent, recvd []PacketEvent
	var states []StateEvent
	keep := func(to *[]PacketEvent) func(PacketEvent) {
		return func(e PacketEvent) {
			e.Frames = append([]Frame(nil), e.Frames...)
			for i := range e.Frames {
				e.Frames[i].AckRanges = append([]AckRange(nil), e.Frames[i].AckRanges...)
			}
			*to = append(*to, e)
		}
	}
	cfg := &Config{Tracer: func(info TraceInfo) *Tracer {
		return &Tracer{PacketSent: keep(&sent), PacketReceived: keep(&recvd),
			StateChanged: func(e StateEvent) { states = append(states, e) }}
	}}
	p := newWirePair(t, cfg)
	require.NotNil(t, p.a.obs)
	require.Nil(t, p.a.obs.log, "no Logger: none kept")
	msg := bytes.Repeat([]byte("x"), 3000)
	require.NoError(t, p.a.Send(Delivery, msg))
	for range 10 {
		p.step()
	}
	require.Equal(t, []ConnState{StateEstablished}, []ConnState{states[0].New})
	var data int
	var acks int
	for _, e := range append(sent, recvd...) {
		require.Positive(t, e.Size)
		for _, f := range e.Frames {
			switch f.Type {
			case FrameMsg:
				require.Equal(t, Delivery, f.Guarantee)
				require.Equal(t, uint64(len(msg)), f.Total)
				data += f.DataLen
			case FrameAck:
				acks++
				for _, r := range f.AckRanges {
					require.LessOrEqual(t, r.Lo, r.Hi)
				}
			}
		}
	}
	// Each packet of a's, sent and received (the pair is lossless): the
	// message's bytes twice over.
	require.Equal(t, 2*len(msg), data)
	require.NotZero(t, acks)
	require.Len(t, recvd, len(sent), "b's side is untraced: a's received are b's packets")
	p.a.Close(p.now)
	for range 20 {
		p.step()
	}
	require.True(t, p.a.Closed())
	last := states[len(states)-1]
	require.Equal(t, StateClosed, last.New)
	require.NoError(t, last.Err)
}

// TestTraceUnset checks that a connection without a Logger or a Tracer
// keeps no observer (one nil pointer, a nil check per event), and that a
// Logger alone still logs.
func TestTraceUnset(t *testing.T) {
	c, err := NewConn(nil, 1, time.Now())
	require.NoError(t, err)
	require.Nil(t, c.obs)
	c.traceKeyUpdate(1, false, "local_update") // (nil-safe, as every trace call)
	c.obs.Debug("nothing")

	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c, err = NewConn(&Config{Logger: log, Tracer: func(TraceInfo) *Tracer { return nil }}, 1, time.Now())
	require.NoError(t, err)
	require.NotNil(t, c.obs)
	require.Nil(t, c.obs.tr, "a constructor returning nil leaves the connection untraced")
	c.Abort(time.Now(), ErrClosed)
	c.HandleTimeout(time.Now().Add(time.Hour))
	require.Contains(t, buf.String(), "connection ended")

	var keys []KeyEvent
	c, err = NewConn(&Config{Tracer: func(TraceInfo) *Tracer {
		return &Tracer{KeyUpdated: func(e KeyEvent) { keys = append(keys, e) }}
	}}, 1, time.Now())
	require.NoError(t, err)
	c.traceKeyUpdate(2, true, "remote_update")
	require.Equal(t, []KeyEvent{{Time: c.obs.now, Generation: 2, Remote: true, Trigger: "remote_update"}}, keys)
}

// FuzzTraceFrames feeds summarizeFrames, the trace's frame decoder, any
// body: it must not panic, and what it reports must lie within the body.
func FuzzTraceFrames(f *testing.F) {
	for _, b := range seedFrames() {
		f.Add(b, uint64(100))
	}
	f.Fuzz(func(t *testing.T, body []byte, ref uint64) {
		var fr frame
		frames, ranges := summarizeFrames(body, ref, &fr, nil, nil)
		total, inRanges := 0, 0
		for _, x := range frames {
			require.Positive(t, x.Length)
			total += x.Length
			require.LessOrEqual(t, x.DataLen, x.Length)
			for _, r := range x.AckRanges {
				require.LessOrEqual(t, r.Lo, r.Hi)
			}
			inRanges += len(x.AckRanges)
		}
		require.LessOrEqual(t, total, len(body))
		require.Equal(t, len(ranges), inRanges)
	})
}

// TestTraceStreams checks the stream events: a stream opened here and one
// the peer opened, each reported open, then closed once both directions
// ended.
func TestTraceStreams(t *testing.T) {
	var events []StreamEvent // a's
	record := func(e StreamEvent) { events = append(events, e) }
	cfg := &Config{Tracer: func(info TraceInfo) *Tracer {
		if info.LocalCID != 0x1111 { // (a's CID in newWirePair)
			return nil
		}
		return &Tracer{StreamOpened: record, StreamClosed: record}
	}}
	p := newWirePair(t, cfg)
	require.NotNil(t, p.a.tracer(), "a is traced")
	require.Nil(t, p.b.tracer())
	mine, err := p.a.OpenStream(Delivery)
	require.NoError(t, err)
	theirs, err := p.b.OpenStream(Delivery)
	require.NoError(t, err)
	for range 5 {
		p.step()
	}
	_, _, ok := p.b.AcceptStream()
	require.True(t, ok)
	_, _, ok = p.a.AcceptStream()
	require.True(t, ok)
	require.Len(t, events, 2)
	require.Contains(t, events, StreamEvent{Time: events[0].Time, ID: mine, Local: true})
	for _, id := range []uint64{mine, theirs} {
		require.NoError(t, p.a.CloseStreamWrite(id))
		require.NoError(t, p.b.CloseStreamWrite(id))
	}
	for range 20 {
		p.step()
		for _, c := range []*Conn{p.a, p.b} {
			for _, id := range []uint64{mine, theirs} {
				_, _ = c.RecvStream(id) // (to io.EOF)
			}
		}
	}
	require.Len(t, events, 4, "%+v", events)
	closed := map[uint64]bool{}
	for _, e := range events[2:] {
		closed[e.ID] = true
	}
	require.Equal(t, map[uint64]bool{mine: true, theirs: true}, closed)
}
