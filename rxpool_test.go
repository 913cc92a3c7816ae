package rudp

import "testing"

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
