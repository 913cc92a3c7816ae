package core

import (
	"math/rand/v2"
	"runtime"
	"testing"
)

// heapInUse is the live heap after a full collection.
func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// fragmentFrame is a MSG fragment of a message declaring total bytes.
func fragmentFrame(g Guarantee, seq uint32, total, offset uint64, data []byte) []byte {
	m := msgFrame{guarantee: g, seq: seq, d: seq, fragment: true, total: total, offset: offset, data: data}
	return appendMsg(nil, &m)
}

// TestHostileDeclaredTotals: a first fragment's declared total allocates
// nothing; memory grows with the bytes received. One datagram of four
// 1-byte fragments, each opening a message that declares a quarter of the
// window (about 1 MiB), on many connections with the default window.
// (Each such datagram pinned 4 MiB when the first fragment sized the
// reassembly buffer.)
func TestHostileDeclaredTotals(t *testing.T) {
	const conns = 16
	peers := make([]*hostilePeer, conns)
	for k := range peers {
		peers[k] = newHostilePeerConfig(t, &Config{})
	}
	total := uint64(maxMessageFor(peers[0].c.cfg.ReceiveWindow / 4))
	var frames []byte
	for j := uint32(0); j < 4; j++ {
		frames = append(frames, fragmentFrame(Delivery, 0xFFFFFFF0+j, total, total/2, []byte{1})...)
	}
	before := heapInUse()
	for _, h := range peers {
		h.send(frames)
	}
	perDatagram := (heapInUse() - before) / conns
	for _, h := range peers {
		if h.c.Closed() || len(h.c.ord.pending) != 4 {
			t.Fatalf("the receiver holds %d messages (closed %v: %v), want the 4 the datagram opened", len(h.c.ord.pending), h.c.Closed(), h.c.Err())
		}
		if err := CheckHeldMemory(h.c); err != nil {
			t.Fatal(err)
		}
	}
	// Four fragments: at most a chunk each, and their records.
	if limit := int64(4*recvChunk + 4<<10); perDatagram > limit {
		t.Fatalf("%d bytes held per hostile datagram of %d bytes (four 1-byte fragments), want at most %d", perDatagram, headerLen+len(frames)+trailerLen, limit)
	}
	t.Logf("%d bytes held per hostile datagram of %d bytes (%.0fx)", perDatagram, headerLen+len(frames)+trailerLen, float64(perDatagram)/float64(headerLen+len(frames)+trailerLen))
	runtime.KeepAlive(peers)
}

// TestHostileScatteredPieces: messages scattered in as many pieces as the
// receiver takes hold no more than they are charged (their bytes, their
// pieces' bookkeeping), however small they are. (128-byte messages in 64
// pieces held 7-8x their charge: a 256-byte buffer and a 1 KiB run table
// each.)
func TestHostileScatteredPieces(t *testing.T) {
	for _, total := range []int{128, 4096, 64 << 10, 1 << 20} {
		const conns = 8
		msgs := min(32, (4<<20)/(total+total/64+64)-1) // what the window takes
		peers := make([]*hostilePeer, conns)
		for k := range peers {
			peers[k] = newHostilePeerConfig(t, &Config{MaxMessageSize: 1 << 20, ReceiveWindow: 4 << 20})
		}
		before := heapInUse()
		charged := 0
		for _, h := range peers {
			// One byte a piece, one piece a datagram, spread evenly: 64
			// pieces, or as many as the receiver takes (more would end
			// the connection: an honest sender's gaps are 1106 bytes at least).
			pieces := min(64, runLimit(total))
			step := total / pieces
			for m := range msgs {
				for off := 0; off < pieces*step; off += step {
					h.send(fragmentFrame(Delivery, 0xFFFFFFF0+uint32(m), uint64(total), uint64(off), []byte{1}))
				}
			}
			charged += h.c.pendingDelivery
		}
		// The receive arena (4 KiB) is a connection's, whatever it holds.
		held := heapInUse() - before - conns*4<<10
		t.Logf("%d-byte messages in pieces: %d held for %d charged (%.2fx)", total, held, charged, float64(held)/float64(max(charged, 1)))
		// The charge covers the records too; beyond it a connection has
		// only its slices' slack.
		if held > int64(charged)+conns*2<<10 {
			t.Errorf("%d-byte messages scattered: %d bytes held, %d charged", total, held, charged)
		}
		for _, h := range peers {
			if err := CheckHeldMemory(h.c); err != nil {
				t.Fatal(err)
			}
		}
		runtime.KeepAlive(peers)
	}
}

// TestReceiveLimitBoundsHostileFlood: connections limited by
// SetReceiveLimit (a listener's, not yet accepted) hold at most about
// twice the limit whatever a peer sends: declared totals up to the maximum,
// scattered pieces, never-completed messages of every guarantee.
func TestReceiveLimitBoundsHostileFlood(t *testing.T) {
	const conns, limit = 64, 16 << 10
	r := rand.New(rand.NewPCG(1, 2))
	peers := make([]*hostilePeer, conns)
	for k := range peers {
		peers[k] = newHostilePeerLimited(t, &Config{}, limit)
	}
	before := heapInUse()
	for _, h := range peers {
		for i := 0; i < 400; i++ {
			g := Guarantee(1 + r.IntN(3))
			total := uint64(1 + r.IntN(h.c.cfg.MaxMessageSize))
			var frames []byte
			for j := 0; j < 8; j++ {
				off := r.Uint64N(total)
				n := min(total-off, uint64(1+r.IntN(100)))
				frames = append(frames, fragmentFrame(g, 0xFFFFFFF0+uint32(r.IntN(64)), total, off, make([]byte, n))...)
			}
			h.send(frames)
			if err := CheckHeldMemory(h.c); err != nil {
				t.Fatal(err)
			}
		}
	}
	held := heapInUse() - before
	per := held / conns
	// The bound: heldLimit (twice the limit) plus the connection's fixed
	// state, its records and the arena.
	if bound := int64(2*limit + 16<<10); per > bound {
		t.Fatalf("%d bytes held per limited connection, want at most %d", per, bound)
	}
	t.Logf("%d bytes held per limited connection under a hostile flood", per)
	runtime.KeepAlive(peers)
}
