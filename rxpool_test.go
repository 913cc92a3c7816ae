package rudp

import (
	"net/netip"
	"testing"
)

// TestRxBatchReleaseKeepsSizes: a receive batch goes back to the pool of
// its own buffer size. A socket that switched to large buffers (a peer
// sent a longer datagram) once put its small batch into the large pool,
// and every later read through it truncated again.
func TestRxBatchReleaseKeepsSizes(t *testing.T) {
	small := rxPool(1400, 4).Get().(*rxBatch)
	small.release()
	for range 100 {
		b := rxPool(maxUDPPayload, 4).Get().(*rxBatch)
		if b.size != maxUDPPayload {
			t.Fatalf("the large-buffer pool handed out a batch of %d-byte buffers", b.size)
		}
		defer b.release()
	}
}

// TestSmallRead: a lone datagram that fits rxSmallSize leaves the big
// batch it was read into for a small one, bytes, sender and GRO segment
// size intact; anything else keeps its batch.
func TestSmallRead(t *testing.T) {
	from := netip.MustParseAddrPort("192.0.2.1:9000")
	fill := func(b *rxBatch, sizes ...int) {
		b.n = len(sizes)
		for i, n := range sizes {
			for j := range n {
				b.bufs[i][j] = byte(i + j)
			}
			b.lens[i], b.segs[i], b.from[i] = n, 7, from
		}
	}
	big := rxPool(maxUDPPayload, 1).Get().(*rxBatch)
	fill(big, 64)
	s := smallRead(big)
	if s == big || s.size != rxSmallSize || s.n != 1 || s.lens[0] != 64 || s.segs[0] != 7 || s.from[0] != from {
		t.Fatalf("64-byte datagram: got batch size %d, n %d, len %d, seg %d, from %v", s.size, s.n, s.lens[0], s.segs[0], s.from[0])
	}
	for j := range 64 {
		if s.bufs[0][j] != byte(j) {
			t.Fatalf("byte %d is %d, want %d", j, s.bufs[0][j], j)
		}
	}
	s.release()

	for _, c := range []struct {
		name  string
		size  int
		sizes []int
	}{
		{"too large", maxUDPPayload, []int{rxSmallSize + 1}},
		{"two datagrams", maxUDPPayload, []int{64, 64}},
		{"already small", 1400, []int{64}},
	} {
		b := rxPool(c.size, 2).Get().(*rxBatch)
		fill(b, c.sizes...)
		if got := smallRead(b); got != b {
			t.Errorf("%s: moved to another batch", c.name)
		}
		b.release()
	}
}

// TestRxBatchDrained: a lone datagram's read counts as having emptied the
// socket, in a batch of one buffer too, so that the reader lets the
// goroutine it woke run before it reads again (a dial's client, reading its
// peer's HELLO and probes one at a time without that yield, acknowledged
// them in two datagrams instead of one).
func TestRxBatchDrained(t *testing.T) {
	for _, c := range []struct {
		bufs, n int
		want    bool
	}{{3, 1, true}, {3, 3, false}, {1, 1, true}, {32, 31, true}, {32, 32, false}} {
		b := &rxBatch{bufs: make([][]byte, c.bufs), n: c.n}
		if got := b.drained(); got != c.want {
			t.Errorf("%d of %d buffers filled: drained %v, want %v", c.n, c.bufs, got, c.want)
		}
	}
}
