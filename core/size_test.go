package core

import (
	"testing"
	"unsafe"
)

// TestConnSize keeps an idle connection's fixed state in the allocator's
// 2 KiB size class: what it holds only while busy (buffer pools, decode
// scratch) is allocated on demand and given back by trimIdle. Crossing the
// class costs 256 bytes per connection at once (12% of an idle one).
func TestConnSize(t *testing.T) {
	if n := unsafe.Sizeof(Conn{}); n > 2048 {
		t.Errorf("core.Conn is %d bytes, over the 2048-byte size class: move state only a busy connection needs behind a pointer allocated on demand", n)
	}
}
