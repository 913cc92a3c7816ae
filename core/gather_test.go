package core

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// flushGather polls c for every datagram it has now, as the root's batched
// sender does with PollTransmitGather: the pieces of every datagram are
// kept and put together only once the whole flush was polled, so data
// left in the send buffer must stay as it was until then.
func flushGather(t *testing.T, c *Conn, now time.Time, min int) (dgrams [][]byte, gathered int) {
	type pieces struct {
		buf   []byte
		n, at int
		data  []byte
	}
	var ps []pieces
	for {
		buf := make([]byte, 65536)
		n, at, data, _ := c.PollTransmitGather(now, buf, min)
		if n == 0 {
			require.Nil(t, data)
			break
		}
		if data == nil {
			require.Equal(t, n, at)
		} else {
			require.GreaterOrEqual(t, len(data), min)
			gathered++
		}
		ps = append(ps, pieces{buf, n, at, data})
	}
	for _, p := range ps {
		dgrams = append(dgrams, append(append(append([]byte{}, p.buf[:p.at]...), p.data...), p.buf[p.at:p.n]...))
	}
	return dgrams, gathered
}

// flushCopy is flushGather with PollTransmit.
func flushCopy(c *Conn, now time.Time) (dgrams [][]byte) {
	for {
		buf := make([]byte, 65536)
		n := c.PollTransmit(now, buf)
		if n == 0 {
			return dgrams
		}
		dgrams = append(dgrams, buf[:n])
	}
}

// TestPollTransmitGather: a connection sending with PollTransmitGather
// sends, byte for byte, the datagrams the same connection sends with
// PollTransmit, with the data of large Delivery fragments left in the
// send buffer until the flush is put together. Both directions carry a
// byte stream of writes of random sizes, through loss; datagrams grow to
// 64 KiB (path MTU discovery).
func TestPollTransmitGather(t *testing.T) {
	for _, loss := range []int{0, 5} {
		ref := newSmokePair(t, &Config{MaxDatagramSize: MaxDatagramSizeLimit})
		gat := newSmokePair(t, &Config{MaxDatagramSize: MaxDatagramSizeLimit})
		data := make([]byte, 2<<20)
		for i := range data {
			data[i] = byte(i*7 + i>>11)
		}
		var written, read [2]int
		gathered, lost := 0, 0
		for steps := 0; read[0] < len(data) || read[1] < len(data); steps++ {
			require.Less(t, steps, 100000, "stalled: read %v of %d", read, len(data))
			moved := false
			for dir := range 2 {
				from, to, gfrom, gto := ref.a, ref.b, gat.a, gat.b
				if dir == 1 {
					from, to, gfrom, gto = ref.b, ref.a, gat.b, gat.a
				}
				for from.Established() && written[dir] < len(data) {
					size := min(1+(written[dir]*31+steps)%100000, len(data)-written[dir])
					n, err := from.WriteStream(0, data[written[dir]:written[dir]+size])
					gn, gerr := gfrom.WriteStream(0, data[written[dir]:written[dir]+size])
					require.Equal(t, n, gn)
					require.Equal(t, err, gerr)
					if err != nil {
						break
					}
					written[dir] += n
				}
				refs := flushCopy(from, ref.now)
				gats, k := flushGather(t, gfrom, gat.now, 1024)
				gathered += k
				require.Equal(t, len(refs), len(gats), "datagrams in a flush")
				for i := range refs {
					require.Equal(t, refs[i], gats[i], "datagram %d of a flush", i)
					moved = true
					ref.n++
					if loss > 0 && ref.n%loss == 0 {
						lost++
						continue
					}
					to.HandleDatagram(ref.now, refs[i])
					gto.HandleDatagram(gat.now, gats[i])
				}
				for _, c := range [2]*Conn{to, gto} {
					for {
						m, err := c.Recv()
						require.NoError(t, err)
						if m.Guarantee == 0 {
							break
						}
						if c == to {
							require.Equal(t, data[read[dir]:read[dir]+len(m.Data)], m.Data)
							read[dir] += len(m.Data)
						}
					}
				}
			}
			if moved {
				ref.now = ref.now.Add(50 * time.Microsecond)
				gat.now = ref.now
				continue
			}
			next := ref.a.NextTimeout()
			if tb := ref.b.NextTimeout(); !tb.IsZero() && (next.IsZero() || tb.Before(next)) {
				next = tb
			}
			require.Equal(t, ref.a.NextTimeout(), gat.a.NextTimeout())
			require.Equal(t, ref.b.NextTimeout(), gat.b.NextTimeout())
			if next.After(ref.now) {
				ref.now, gat.now = next, next
			}
			for _, c := range [4]*Conn{ref.a, ref.b, gat.a, gat.b} {
				c.HandleTimeout(ref.now)
			}
		}
		require.Positive(t, gathered, "no datagram gathered")
		require.Equal(t, loss > 0, lost > 0)
		require.Equal(t, ref.a.Stats(), gat.a.Stats())
		t.Logf("loss 1/%d: %d datagrams gathered, %d lost; datagram size %d", loss, gathered, lost, ref.a.DatagramSize())
	}
}
