package stream_test

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rudp-go/rudp/core"
)

var seedFlag = flag.Uint64("seed", 0, "seed for TestByteStream (0: random; the seed used is logged)")

// TestByteStream writes 4 MiB in random-sized Writes and reads it back
// through random-sized Reads, with and without send-buffer backpressure.
func TestByteStream(t *testing.T) {
	const total = 4 << 20
	for _, tc := range []struct {
		name      string
		cfg       *core.Config
		maxWrite  int
		wantBlock bool
	}{
		// The receive window stays at its default: a small one gets the
		// sender flow-control blocked, where the core floods PING-only
		// packets (see the report); the send buffer alone makes Write block.
		{"small send buffer", &core.Config{MaxMessageSize: 16 << 10, SendBufferSize: 32 << 10}, 100 << 10, true},
		{"jumbo datagrams", &core.Config{MaxDatagramSize: 9000, SendBufferSize: 1 << 20}, 1 << 20, true},
		{"defaults", nil, 256 << 10, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seed := *seedFlag
			if seed == 0 {
				seed = rand.Uint64()
			}
			t.Logf("seed %d (rerun: go test ./stream -run TestByteStream -seed %d)", seed, seed)
			rng := rand.New(rand.NewPCG(seed, 0))
			sent := make([]byte, total)
			for i := range sent {
				sent[i] = byte(rng.Uint32())
			}
			p := newPair(t, tc.cfg)
			got := make([]byte, 0, total)
			readBuf := make([]byte, 64<<10)
			written, blocked := 0, 0
			for steps := 0; len(got) < total; steps++ {
				require.Less(t, steps, 1_000_000, "seed %d: stalled at %d written, %d read", seed, written, len(got))
				for written < total {
					size := min(1+rng.IntN(tc.maxWrite), total-written)
					n, err := p.sa.Write(sent[written : written+size])
					written += n
					if err != nil {
						require.ErrorIs(t, err, core.ErrWouldBlock, "seed %d", seed)
						require.Less(t, n, size)
						blocked++
						break // retry sent[written:] after the link moved
					}
					require.Equal(t, size, n)
				}
				p.step()
				for {
					n, err := p.sb.Read(readBuf[:1+rng.IntN(len(readBuf))])
					require.NoError(t, err, "seed %d", seed)
					if n == 0 {
						break
					}
					got = append(got, readBuf[:n]...)
				}
			}
			if i := firstDiff(sent, got); i >= 0 {
				t.Fatalf("seed %d: stream differs at byte %d of %d", seed, i, total)
			}
			if tc.wantBlock {
				require.Positive(t, blocked, "no Write hit backpressure")
			}
			t.Logf("%d Writes refused for backpressure; virtual time %v", blocked, p.now.Sub(epoch))
			n, err := p.sb.Read(readBuf)
			require.Equal(t, 0, n)
			require.NoError(t, err)
			require.False(t, p.sb.Readable())
		})
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}

// deliver writes each message with WriteMessage and steps the pair until
// the receiver has a message to read.
func deliver(t *testing.T, p *pair, g core.Guarantee, msgs ...[]byte) {
	t.Helper()
	for _, m := range msgs {
		require.NoError(t, p.sa.WriteMessage(g, m))
	}
	p.runUntil(func() bool { return !p.a.HasPendingData() && p.sb.Readable() })
}

func TestReadMessageTooSmallKeepsMessage(t *testing.T) {
	p := newPair(t, nil)
	msg := bytes.Repeat([]byte("0123456789"), 300) // 3000 bytes: fragmented
	deliver(t, p, core.Delivery, msg)

	small := make([]byte, 100)
	for range 2 {
		n, g, err := p.sb.ReadMessage(small)
		require.ErrorIs(t, err, core.ErrBufferTooSmall)
		require.Contains(t, err.Error(), "3000")
		require.Equal(t, 0, n)
		require.Equal(t, core.Delivery, g)
		require.True(t, p.sb.Readable())
	}
	buf := make([]byte, 4000)
	n, g, err := p.sb.ReadMessage(buf)
	require.NoError(t, err)
	require.Equal(t, core.Delivery, g)
	require.Equal(t, msg, buf[:n])

	n, g, err = p.sb.ReadMessage(buf)
	require.Equal(t, 0, n)
	require.Equal(t, core.Guarantee(0), g)
	require.NoError(t, err)
}

func TestReadThenReadMessage(t *testing.T) {
	p := newPair(t, nil)
	deliver(t, p, core.Delivery, []byte("hello world"), []byte("second"))

	buf := make([]byte, 64)
	n, err := p.sb.Read(buf[:5])
	require.NoError(t, err)
	require.Equal(t, "hello", string(buf[:n]))

	// The rest of the partly read message comes first, as a message.
	n, g, err := p.sb.ReadMessage(buf[:3])
	require.ErrorIs(t, err, core.ErrBufferTooSmall)
	require.Contains(t, err.Error(), "needs 6 bytes")
	require.Equal(t, 0, n)
	require.Equal(t, core.Delivery, g)

	n, g, err = p.sb.ReadMessage(buf)
	require.NoError(t, err)
	require.Equal(t, core.Delivery, g)
	require.Equal(t, " world", string(buf[:n]))

	n, _, err = p.sb.ReadMessage(buf)
	require.NoError(t, err)
	require.Equal(t, "second", string(buf[:n]))

	n, err = p.sb.Read(buf)
	require.Equal(t, 0, n)
	require.NoError(t, err)
}

func TestReadAcrossMessages(t *testing.T) {
	p := newPair(t, nil)
	deliver(t, p, core.Delivery, []byte("ab"), nil, []byte("cd"), []byte("efg"))
	buf := make([]byte, 64)
	n, err := p.sb.Read(buf)
	require.NoError(t, err)
	require.Equal(t, "abcdefg", string(buf[:n]), "one Read spans messages and skips the empty one")
}

func TestEOFAfterPeerClose(t *testing.T) {
	p := newPair(t, nil)
	sent := make([]byte, 300<<10)
	for i := range sent {
		sent[i] = byte(i * 7)
	}
	n, err := p.sa.Write(sent)
	require.NoError(t, err)
	require.Equal(t, len(sent), n)
	p.a.Close(p.now)
	require.ErrorIs(t, p.a.Send(core.Delivery, []byte("x")), core.ErrClosed)
	n, err = p.sa.Write([]byte("late"))
	require.Equal(t, 0, n)
	require.ErrorIs(t, err, core.ErrClosed, "core errors pass through Write")

	// Read only once the close has completed: the bytes must come first.
	p.runUntil(p.a.Closed)
	require.NoError(t, p.a.Err())
	require.True(t, p.b.PeerClosed())

	var got []byte
	buf := make([]byte, 1000)
	for {
		require.True(t, p.sb.Readable())
		n, err := p.sb.Read(buf)
		if err != nil {
			require.Equal(t, io.EOF, err, "io.EOF unwrapped")
			require.Equal(t, 0, n)
			break
		}
		require.Positive(t, n, "Readable was true")
		got = append(got, buf[:n]...)
	}
	require.Equal(t, len(sent), len(got))
	require.True(t, bytes.Equal(sent, got))

	// EOF again, from both views.
	n, err = p.sb.Read(buf)
	require.Equal(t, 0, n)
	require.Equal(t, io.EOF, err)
	_, _, err = p.sb.ReadMessage(buf)
	require.Equal(t, io.EOF, err)
	p.b.Close(p.now)
	p.runUntil(p.b.Closed)
}

func TestMessages(t *testing.T) {
	for _, g := range []core.Guarantee{core.None, core.Order, core.Delivery} {
		for _, size := range []int{0, 1, 1000, 5000} {
			t.Run(fmt.Sprintf("%v/%d", g, size), func(t *testing.T) {
				p := newPair(t, nil)
				msgs := [][]byte{bytes.Repeat([]byte{1}, size), bytes.Repeat([]byte{2}, size), bytes.Repeat([]byte{3}, size)}
				deliver(t, p, g, msgs...)
				p.runUntil(func() bool { return !p.a.HasPendingData() && p.a.Stats().BytesInFlight == 0 })
				buf := make([]byte, 8000)
				var got [][]byte
				for {
					n, mg, err := p.sb.ReadMessage(buf)
					require.NoError(t, err)
					if mg == 0 {
						require.Equal(t, 0, n)
						break
					}
					require.Equal(t, g, mg)
					got = append(got, bytes.Clone(buf[:n]))
				}
				require.Len(t, got, len(msgs), "lossless link: every message arrives")
				if g != core.None { // None may arrive in any order
					for i := range msgs {
						require.True(t, bytes.Equal(msgs[i], got[i]), "message %d", i)
					}
				}
				require.False(t, p.sb.Readable())
			})
		}
	}
}

func TestZeroLengthMessage(t *testing.T) {
	p := newPair(t, nil)
	deliver(t, p, core.Delivery, nil)
	require.True(t, p.sb.Readable())
	n, g, err := p.sb.ReadMessage(nil)
	require.NoError(t, err)
	require.Equal(t, 0, n)
	require.Equal(t, core.Delivery, g, "an empty message is not 'nothing ready'")
	n, g, err = p.sb.ReadMessage(nil)
	require.NoError(t, err)
	require.Equal(t, 0, n)
	require.Equal(t, core.Guarantee(0), g)
}

func TestWriteMessageErrors(t *testing.T) {
	p := newPair(t, &core.Config{MaxMessageSize: 2000})
	require.ErrorIs(t, p.sa.WriteMessage(core.Guarantee(9), nil), core.ErrInvalidGuarantee)
	require.ErrorIs(t, p.sa.WriteMessage(core.Delivery, make([]byte, 2001)), core.ErrMessageTooLarge)
	n, err := p.sa.Write(nil)
	require.Equal(t, 0, n)
	require.NoError(t, err)
	require.False(t, p.a.HasPendingData(), "an empty Write queues nothing")
}

func TestReadNothingReady(t *testing.T) {
	p := newPair(t, nil)
	require.False(t, p.sb.Readable())
	n, err := p.sb.Read(make([]byte, 10))
	require.Equal(t, 0, n)
	require.NoError(t, err)
	n, g, err := p.sb.ReadMessage(make([]byte, 10))
	require.Equal(t, 0, n)
	require.Equal(t, core.Guarantee(0), g)
	require.NoError(t, err)
	require.False(t, errors.Is(err, core.ErrWouldBlock))
}

// BenchmarkWriteRead moves 64 KiB per operation through Stream.Write, the
// pair's link and Stream.Read.
func BenchmarkWriteRead(b *testing.B) {
	const chunk = 64 << 10
	p := newPair(b, nil)
	data := make([]byte, chunk)
	buf := make([]byte, chunk)
	b.SetBytes(chunk)
	b.ReportAllocs()
	for b.Loop() {
		written, read := 0, 0
		for read < chunk {
			if written < chunk {
				n, err := p.sa.Write(data[written:])
				written += n
				if err != nil && !errors.Is(err, core.ErrWouldBlock) {
					b.Fatal(err)
				}
			}
			p.step()
			for read < chunk {
				n, err := p.sb.Read(buf[read:])
				if err != nil {
					b.Fatal(err)
				}
				if n == 0 {
					break
				}
				read += n
			}
		}
	}
}

// TestWriteChunksWithinMessageLimit: Write splits the bytes into messages
// no longer than the largest message Send takes (ours, or the peer's once
// its HELLO said), even where that is below a datagram's payload.
func TestWriteChunksWithinMessageLimit(t *testing.T) {
	p := newPair(t, &core.Config{MaxMessageSize: 500})
	data := make([]byte, 10000)
	for i := range data {
		data[i] = byte(i * 7)
	}
	n, err := p.sa.Write(data)
	require.NoError(t, err)
	require.Equal(t, len(data), n)
	require.Equal(t, data, p.readAll(len(data)))
}

// TestWritesFillDatagrams: writes queued while the sender waits go out in
// full datagrams, whatever the writes' sizes: three writes of a datagram's
// payload and 100 bytes are four datagrams, not six (a full one and one of
// 100 bytes each, as when every Write was cut into messages on its own).
func TestWritesFillDatagrams(t *testing.T) {
	// (At the first datagram size: no path MTU probe is sent.)
	p := newPair(t, &core.Config{MaxDatagramSize: core.MinHelloDatagram})
	limit := p.a.MaxFragmentPayload()
	size := limit + 100
	data := make([]byte, 3*size)
	for i := range data {
		data[i] = byte(i * 7)
	}
	for i := range 3 {
		n, err := p.sa.Write(data[i*size : (i+1)*size])
		require.NoError(t, err)
		require.Equal(t, size, n)
	}
	sent0 := p.a.Stats().PacketsSent
	require.Equal(t, data, p.readAll(len(data)))
	require.EqualValues(t, 4, p.a.Stats().PacketsSent-sent0, "datagrams the sender sent for the data")
}
