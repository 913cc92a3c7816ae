package core

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestUnwrap32(t *testing.T) {
	const w = uint64(1) << 32
	for _, c := range []struct {
		expected uint64
		v        uint32
		want     uint64
	}{
		{0, 0, 0},
		{0, 1, 1},
		{0, 0x7fffffff, 0x7fffffff},
		{0, 0x80000000, 0x80000000}, // +2^31: the forward half includes it
		{0, 0xffffffff, 0xffffffff}, // would be -1: no number below 0
		{5, 3, 3},                   // a little late
		{w - 1, 0, w},               // forward across the wrap
		{w - 16, 5, w + 5},          // forward across the wrap
		{w, 0xffffffff, w - 1},      // backward across the wrap
		{w + 5, 0xfffffff0, w - 16}, // backward across the wrap
		{w + 3, 3, w + 3},           // exactly expected
		{3 * w, 0x80000000, 3*w + 1<<31},
		{3 * w, 0x80000001, 2*w + 1<<31 + 1},     // -(2^31-1)
		{3*w + 1<<31, 0, 4 * w},                  // +2^31
		{3*w + 1<<31 + 1, 0, 4 * w},              // +2^31-1
		{3*w + 1<<31, 1, 3*w + 1},                // -(2^31-1)
		{^uint64(0) - w, 7, 0xffffffff_00000007}, // +8, high in the 64-bit range
	} {
		t.Run(fmt.Sprintf("%#x/%#x", c.expected, c.v), func(t *testing.T) {
			if got := unwrap32(c.expected, c.v); got != c.want {
				t.Fatalf("unwrap32(%#x, %#x) = %#x, want %#x", c.expected, c.v, got, c.want)
			}
		})
	}
}

// TestUnwrap32Property: a value within 2^31-1 of the expected one, in
// either direction, is recovered exactly from its low 32 bits.
func TestUnwrap32Property(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	const span = 1<<31 - 1
	for i := 0; i < 1_000_000; i++ {
		var expected uint64
		switch i % 4 {
		case 0:
			expected = rng.Uint64N(1 << 40)
		case 1: // near a wrap
			expected = rng.Uint64N(1<<8)<<32 + rng.Uint64N(64) - 32 + 1<<32
		case 2:
			expected = rng.Uint64N(1 << 33)
		default:
			expected = rng.Uint64() >> 1
		}
		delta := rng.Int64N(2*span+1) - span
		if i%7 == 0 {
			delta = []int64{span, -span, 0, 1, -1}[i%5]
		}
		want := int64(expected) + delta
		if want < 0 {
			// Below zero there is no number: the result is the only
			// candidate >= 0 with those low bits below 2^32.
			if got := unwrap32(expected, uint32(want)); got != uint64(uint32(want)) {
				t.Fatalf("unwrap32(%d, %#x) = %d", expected, uint32(want), got)
			}
			continue
		}
		if got := unwrap32(expected, uint32(want)); got != uint64(want) {
			t.Fatalf("unwrap32(%d, %#x) = %d, want %d (delta %d)", expected, uint32(want), got, want, delta)
		}
	}
}

// TestPnRangesModel adds packet numbers in random orders, as HandleDatagram
// does (only numbers contains reports new), and checks pnRanges against a
// set: every added number is contained, nothing else at or above the floor
// is, runs stay sorted newest first, disjoint and at most maxAckRanges.
func TestPnRangesModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	for iter := 0; iter < 2000; iter++ {
		base := uint64(rng.Uint32())
		if iter%3 == 0 {
			base = 1<<32 - 50 // across the 32-bit boundary
		}
		n := 1 + rng.IntN(400)
		spread := 1 + rng.IntN(3*n)
		var order []uint64
		switch iter % 4 {
		case 0: // in order with losses
			for i := 0; i < n; i++ {
				if rng.IntN(5) != 0 {
					order = append(order, base+uint64(i))
				}
			}
		case 1: // a permutation of a range
			for _, i := range rng.Perm(n) {
				order = append(order, base+uint64(i))
			}
		case 2: // random numbers with duplicates
			for i := 0; i < n; i++ {
				order = append(order, base+uint64(rng.IntN(spread)))
			}
		default: // mostly increasing with reordering
			for i := 0; i < n; i++ {
				order = append(order, base+uint64(max(0, i+rng.IntN(9)-4)))
			}
		}
		var r pnRanges
		seen := map[uint64]bool{}
		for _, pn := range order {
			if r.contains(pn) {
				if !seen[pn] && pn >= r.floor {
					t.Fatalf("iter %d: contains(%d) for a number never added", iter, pn)
				}
				continue
			}
			if seen[pn] {
				t.Fatalf("iter %d: contains(%d) false after add", iter, pn)
			}
			largest, had := r.largest()
			inOrder := r.add(pn)
			if want := !had || pn == largest+1; inOrder != want {
				t.Fatalf("iter %d: add(%d) inOrder %v, want %v", iter, pn, inOrder, want)
			}
			seen[pn] = true
			checkRuns(t, &r, seen)
			if l, _ := r.largest(); l != slices.Max(keys(seen)) {
				t.Fatalf("iter %d: largest %d", iter, l)
			}
		}
		// Everything below the floor counts as seen; above it, only what was added.
		lo := base
		if r.floor > 0 {
			lo = min(lo, r.floor-1)
		}
		for pn := lo; pn < base+uint64(3*n)+2; pn++ {
			want := seen[pn] || pn < r.floor
			if got := r.contains(pn); got != want {
				t.Fatalf("iter %d: contains(%d) = %v, want %v (floor %d)", iter, pn, got, want, r.floor)
			}
		}
	}
}

// TestPnRangesFloor: more than maxAckRanges separate runs drop the oldest,
// which then count as seen.
func TestPnRangesFloor(t *testing.T) {
	var r pnRanges
	for i := uint64(0); i < 2*maxAckRanges; i++ {
		r.add(100 + 2*i)
	}
	if len(r.runs) != maxAckRanges {
		t.Fatalf("%d runs", len(r.runs))
	}
	wantFloor := uint64(100+2*maxAckRanges) - 1
	if r.floor != wantFloor {
		t.Fatalf("floor %d, want %d", r.floor, wantFloor)
	}
	for pn := uint64(0); pn < wantFloor; pn++ {
		if !r.contains(pn) {
			t.Fatalf("contains(%d) false below the floor", pn)
		}
	}
	if r.contains(wantFloor) || !r.contains(wantFloor+1) {
		t.Fatal("wrong membership at the floor")
	}
}

// TestPnRangesSpan: runs older than maxAckSpan below the newest are
// forgotten (or cut), so every ACK built from them decodes: one early loss
// once left a run behind for good, and 2^32 packets later the ACK carried a
// range its peer rejects, dropping the packet with it.
func TestPnRangesSpan(t *testing.T) {
	var r pnRanges
	for pn := uint64(0); pn <= 10; pn++ {
		r.add(pn)
	}
	r.add(20)
	const far = 5_000_000_000
	r.add(far)
	r.add(far + 2)
	for _, run := range r.runs {
		if run.lo < far+2-maxAckSpan {
			t.Fatalf("run %d..%d kept, more than maxAckSpan below %d", run.lo, run.hi, uint64(far+2))
		}
	}
	if !r.contains(5) || !r.contains(20) || r.contains(far+1) {
		t.Fatal("wrong membership after forgetting old runs")
	}
	// An unbroken run longer than the span is cut, not kept whole.
	var long pnRanges
	long.add(0)
	long.runs[0].hi = far // as if every number up to far had arrived in order
	long.add(far + 1)
	if got := long.runs[0].lo; got != far+1-maxAckSpan {
		t.Fatalf("long run starts at %d, want %d", got, uint64(far+1-maxAckSpan))
	}
	// The ACK frames built from both decode.
	for _, rr := range []*pnRanges{&r, &long} {
		largest := rr.runs[0].hi
		a := ackFrame{largest: uint32(largest)}
		for _, run := range rr.runs {
			a.ranges = append(a.ranges, ackRange{lo: largest - run.hi, hi: largest - run.lo})
		}
		var f frame
		if _, err := decodeFrame(appendAck(nil, &a), &f); err != nil {
			t.Fatalf("ACK of runs %v does not decode: %v", rr.runs, err)
		}
	}
}

func keys(m map[uint64]bool) []uint64 {
	var out []uint64
	for k := range m {
		out = append(out, k)
	}
	return out
}
