package core

import (
	"math/rand/v2"
	"testing"
)

// TestDecodePaddingRuns checks decodePadding's word-at-a-time scan against
// the byte-by-byte definition: a PADDING frame's run ends at the first
// non-zero byte or at the end, whatever the lengths and alignments.
func TestDecodePaddingRuns(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 20000; i++ {
		b := make([]byte, 1+rng.IntN(100))
		if rng.IntN(4) > 0 {
			b[rng.IntN(len(b))] = byte(1 + rng.IntN(255))
		}
		b[0] = framePadding
		want := 1
		for want < len(b) && b[want] == 0 {
			want++
		}
		got, err := decodePadding(b, nil)
		if err != nil || got != want {
			t.Fatalf("decodePadding(%x) = %d, %v; want %d", b, got, err, want)
		}
	}
}

func BenchmarkDecodePadding(b *testing.B) {
	p := make([]byte, 65000)
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		if n, _ := decodePadding(p, nil); n != len(p) {
			b.Fatal(n)
		}
	}
}
