package core

import (
	"sort"
	"time"
)

// A fragmented message is reassembled in chunks of recvChunk bytes (the
// last one shorter), each allocated when its first byte arrives, so that
// what a receiver holds grows with the bytes received, never with the total
// a first fragment declares. A message of at most recvChunk bytes is one
// such chunk, its data; a longer one is copied into one buffer when it
// completes.
const recvChunk = 16 << 10

// fragmentRunBytes sets how many disjoint pieces (runs) an incomplete
// message may be held in: runLimit. An honest sender's fragments are at
// least 1106 bytes, so a gap is too and its runs never reach
// 1 + total/2212, whatever it loses: a Delivery message must never be
// dropped once its acknowledged fragments cannot be sent again. A peer that
// scatters more is misbehaving and the message is dropped.
const fragmentRunBytes = 2048

// runLimit is the number of pieces a message of total bytes may be in.
func runLimit(total int) int { return 2 + total/fragmentRunBytes }

// The receiver's bookkeeping of an incomplete fragmented message: a run
// (pnRange) and a chunk table entry (recvChunkRef), charged per slot.
const (
	runBytes        = 16
	chunkEntryBytes = 32
)

// recvChunkRef is one allocated chunk of a message being reassembled.
type recvChunkRef struct {
	index int // the chunk's offset / recvChunk
	b     []byte
}

// recvMsg is a message (or the message a fragment belongs to) held by the
// receiver until the application reads it.
type recvMsg struct {
	seq       uint64         // Order/Delivery: sequence; None: id
	group     uint64         // first sequence of its set (seq when not in a set)
	d         uint64         // Delivery: delivery index
	base      uint64         // delivery messages that must be read before it
	total     int            // the message's length
	data      []byte         // its bytes; while incomplete, nil if longer than recvChunk
	filled    int            // bytes received so far
	runs      []pnRange      // received byte runs [lo, hi) while incomplete
	chunks    []recvChunkRef // while incomplete and longer than recvChunk, by index
	firstAt   time.Time
	guarantee Guarantee
	inSet     bool
	inArena   bool
	yielded   bool
	// held is its share of the receive buffers: data plus msgCreditOverhead,
	// in pendingDelivery (Delivery, where it is flow-control credit) or in
	// unreliableBytes. The overhead stays held while a read message is kept
	// for duplicate detection, so that entries are bounded in number too.
	// (An int32, as a message's charge is below 2^31 (MaxMessageSizeLimit),
	// so that stream fits the record's 160 bytes.)
	held int32
	// stream is the stream other than 0 whose Delivery credit (§17.6) it
	// holds until it is read or dropped (release), nil on stream 0.
	stream *stream
}

// recordBytes is what a message's record costs its receiver: the recvMsg
// (in its 160-byte allocation class) and its slot in pending or noneMsgs,
// twice over for the slices' growth.
const recordBytes = 160 + 16

func (m *recvMsg) complete() bool { return m.filled == m.total }

// footprint is the memory m holds for the peer: its record, its data
// (outside the arena), chunks and reassembly bookkeeping. It never
// exceeds m.held (fill refuses what would), so the bytes held for a peer
// stay within what its messages are charged.
func (m *recvMsg) footprint() int {
	n := recordBytes + runBytes*cap(m.runs) + chunkEntryBytes*cap(m.chunks)
	if !m.inArena {
		n += cap(m.data)
	}
	for _, ch := range m.chunks {
		n += cap(ch.b)
	}
	return n
}

// reassembly keeps the bytes of the messages received (PROTOCOL.md §6):
// whole messages' data, incomplete ones' pieces (their runs and chunks),
// in the receive arena or in buffers from a pool, and the records of
// messages for reuse. Its job, and nothing more: make a message's record
// (newMsg), put a fragment's bytes in place (fill), free a message's memory
// (freeData, recycle) and keep its pools within the room flow control
// leaves them (room, shrink), and give its memory back when idle (trim,
// dropPools). What a message costs, and whether it is admitted, is flow
// control's (recv.go); where it stands in its order, the ordering
// domain's.
type reassembly struct {
	arena   arena
	bufPool bufPool
	msgFree []*recvMsg
}

// room is what the pools may hold: free, what flow control leaves beside
// the messages' charges (Conn.heldFree), less the free records.
func (r *reassembly) room(free int) int { return free - recordBytes*len(r.msgFree) }

// pooled is what the pools hold: buffers and free records.
func (r *reassembly) pooled() int { return r.bufPool.pooled + recordBytes*len(r.msgFree) }

// newRecvMsg makes the record of a message of total bytes. An unfragmented
// message's data is allocated now (it is all here); a fragmented one's as
// its bytes arrive (store).
func (r *reassembly) newMsg(total int, fragmented bool, now time.Time) *recvMsg {
	var m *recvMsg
	if k := len(r.msgFree); k > 0 {
		m = r.msgFree[k-1]
		r.msgFree = r.msgFree[:k-1]
	} else {
		m = &recvMsg{}
	}
	m.total = total
	if !fragmented {
		m.data, m.inArena = r.allocData(total)
	}
	m.firstAt = now
	return m
}

// allocData returns n bytes from the arena, or else the buffer pool.
func (r *reassembly) allocData(n int) ([]byte, bool) {
	if b, ok := r.arena.alloc(n); ok {
		return b, true
	}
	return r.bufPool.get(n), false
}

// fill copies a frame's data into its message (free, asked only when a
// message in chunks completes and they go back to the pool: see room). It reports
// false in ok when the message must be dropped: a peer scattering it in
// more pieces than runLimit, or making it hold more than it was charged;
// stored says whether a piece of a fragmented message was stored.
func (r *reassembly) fill(m *recvMsg, f *msgFrame, free func() int) (ok, stored bool) {
	if !f.fragment {
		copy(m.data, f.data)
		m.filled = m.total
		return true, false
	}
	lo, hi := f.offset, f.offset+uint64(len(f.data))
	if hi > uint64(m.total) {
		return true, false // inconsistent total: ignore the piece
	}
	if lo == hi {
		return true, false
	}
	// Merge [lo, hi) into the runs; count only bytes not already present.
	runs := m.runs
	i := sort.Search(len(runs), func(k int) bool { return runs[k].hi >= lo })
	j := i
	newLo, newHi := lo, hi
	covered := uint64(0)
	for j < len(runs) && runs[j].lo <= hi {
		newLo = min(newLo, runs[j].lo)
		newHi = max(newHi, runs[j].hi)
		covered += min(runs[j].hi, hi) - max(runs[j].lo, lo)
		j++
	}
	if j == i {
		limit := runLimit(m.total)
		if len(runs) >= limit {
			return false, false
		}
		if len(runs) == cap(runs) {
			// Grown by hand, so that its capacity (charged in
			// footprint) never passes runLimit.
			runs = append(make([]pnRange, 0, min(max(2*cap(runs), 2), limit)), runs...)
		}
		runs = append(runs, pnRange{})
		copy(runs[i+1:], runs[i:])
	} else if j-i > 1 {
		runs = append(runs[:i+1], runs[j:]...)
	}
	runs[i] = pnRange{newLo, newHi}
	m.runs = runs
	r.store(m, lo, f.data)
	m.filled += int(hi - lo - covered)
	if m.footprint() > int(m.held) {
		return false, true
	}
	if m.complete() {
		r.assemble(m, free())
	}
	return true, true
}

// store copies p to offset off of an incomplete message, allocating the
// chunks it lands in.
func (r *reassembly) store(m *recvMsg, off uint64, p []byte) {
	if m.total <= recvChunk {
		if m.data == nil {
			m.data, m.inArena = r.allocData(m.total)
		}
		copy(m.data[off:], p)
		return
	}
	for len(p) > 0 {
		k := int(off / recvChunk)
		n := copy(r.chunk(m, k)[int(off)-k*recvChunk:], p)
		p, off = p[n:], off+uint64(n)
	}
}

// chunk returns chunk k of m, allocating it on first use.
func (r *reassembly) chunk(m *recvMsg, k int) []byte {
	i := sort.Search(len(m.chunks), func(x int) bool { return m.chunks[x].index >= k })
	if i < len(m.chunks) && m.chunks[i].index == k {
		return m.chunks[i].b
	}
	if len(m.chunks) == cap(m.chunks) {
		limit := (m.total + recvChunk - 1) / recvChunk
		m.chunks = append(make([]recvChunkRef, 0, min(max(2*cap(m.chunks), 1), limit)), m.chunks...)
	}
	b := r.bufPool.get(min(recvChunk, m.total-k*recvChunk))
	m.chunks = append(m.chunks, recvChunkRef{})
	copy(m.chunks[i+1:], m.chunks[i:])
	m.chunks[i] = recvChunkRef{index: k, b: b}
	return b
}

// assemble turns a message just completed into one buffer and frees its
// reassembly state.
func (r *reassembly) assemble(m *recvMsg, free int) {
	m.runs = nil
	if m.chunks == nil {
		return
	}
	m.data, m.inArena = r.allocData(m.total)
	for _, ch := range m.chunks {
		copy(m.data[ch.index*recvChunk:], ch.b)
	}
	r.freeChunks(m, free)
}

func (r *reassembly) freeChunks(m *recvMsg, free int) {
	for _, ch := range m.chunks {
		r.bufPool.put(ch.b, r.room(free))
	}
	m.chunks = nil
}

// freeData frees m's data and chunks (free: see room).
func (r *reassembly) freeData(m *recvMsg, free int) {
	r.freeChunks(m, free)
	if m.data == nil {
		return
	}
	if m.inArena {
		r.arena.release()
	} else {
		r.bufPool.put(m.data, r.room(free))
	}
	m.data, m.inArena = nil, false
}

// recycle clears m's record, its memory freed, and keeps it for reuse if
// the room allows (free: see room).
func (r *reassembly) recycle(m *recvMsg, free int) {
	*m = recvMsg{}
	if r.room(free)-r.bufPool.pooled >= recordBytes {
		r.msgFree = append(r.msgFree, m)
	}
}

// shrink drops free records and pooled buffers that new charges left no
// room for (free: see room).
func (r *reassembly) shrink(free int) {
	for len(r.msgFree) > 0 && r.room(free) < r.bufPool.pooled {
		r.msgFree[len(r.msgFree)-1] = nil
		r.msgFree = r.msgFree[:len(r.msgFree)-1]
	}
	r.bufPool.shrink(r.room(free))
}

// trim gives back the memory an idle connection keeps only to go fast when
// busy: the arena if no message is in it, and the pools.
func (r *reassembly) trim() {
	if r.arena.live == 0 {
		r.arena.buf, r.arena.top = nil, 0
	}
	r.dropPools()
}

// dropPools gives back the pools (nothing more is received, or idle).
func (r *reassembly) dropPools() {
	r.bufPool = bufPool{}
	r.msgFree = nil
}

// arena is the stack-like receive store: messages are carved from one
// block in arrival order and the block is reused from the start whenever
// every message in it has been released. When it is full, bufPool serves.
//
// The block starts at minArenaBlock and doubles, up to size, when a
// message finds it empty and too small: a connection of small messages
// read as they come (request-response) holds 256 bytes, not the 4 KiB a
// stream of full datagrams wants (issue 12: memory per active
// connection).
type arena struct {
	size int // the largest block
	buf  []byte
	top  int
	live int
}

// minArenaBlock is an arena's first block.
const minArenaBlock = 256

func (a *arena) alloc(n int) ([]byte, bool) {
	if a.size == 0 || n > a.size {
		return nil, false
	}
	if a.buf == nil || n > len(a.buf)-a.top {
		if a.live != 0 {
			return nil, false
		}
		// None yet, or empty (top is 0) and too small: a larger block.
		// (A message of 0 bytes gets one too: its data must not be nil.)
		grow := max(minArenaBlock, 2*len(a.buf))
		for grow < n {
			grow *= 2
		}
		a.buf = make([]byte, min(grow, a.size))
	}
	b := a.buf[a.top : a.top+n : a.top+n]
	a.top += n
	a.live++
	return b, true
}

func (a *arena) release() {
	a.live--
	if a.live == 0 {
		a.top = 0
	}
}

// bufPool keeps freed heap buffers by power-of-two size class, at most
// put's limit bytes of them. A buffer is reused only for a message of its
// exact length (a steady stream's messages, reassembly chunks), so that a
// message holds no more than its charge. Its class table (552 bytes) is
// allocated on the first buffer put back, so that a connection that never
// overflowed its arena, as most idle ones, does not carry it.
type bufPool struct {
	classes *[numSizeClasses][][]byte
	pooled  int
}

const (
	minSizeClass   = 8 // 256 bytes at least
	numSizeClasses = 31 - minSizeClass
	// bufPoolScan is how many of a class's newest buffers get looks at
	// for one of the exact length.
	bufPoolScan = 4
)

func sizeClass(n int) int {
	k := minSizeClass
	for 1<<k < n {
		k++
	}
	return k
}

func (p *bufPool) get(n int) []byte {
	k := sizeClass(n) - minSizeClass
	if p.classes != nil && k < numSizeClasses {
		free := p.classes[k]
		for j := len(free) - 1; j >= max(0, len(free)-bufPoolScan); j-- {
			if b := free[j]; cap(b) == n {
				free[j] = free[len(free)-1]
				free[len(free)-1] = nil
				p.classes[k] = free[:len(free)-1]
				p.pooled -= n
				return b[:n]
			}
		}
	}
	return make([]byte, n)
}

// shrink drops buffers, the largest first, until at most limit bytes are pooled.
func (p *bufPool) shrink(limit int) {
	if p.pooled <= limit {
		return
	}
	for k := numSizeClasses - 1; k >= 0 && p.pooled > limit; k-- {
		free := p.classes[k]
		for len(free) > 0 && p.pooled > limit {
			p.pooled -= cap(free[len(free)-1])
			free[len(free)-1] = nil
			free = free[:len(free)-1]
		}
		p.classes[k] = free
	}
}

func (p *bufPool) put(b []byte, limit int) {
	k := sizeClass(cap(b)) - minSizeClass
	if cap(b) == 0 || k >= numSizeClasses || p.pooled+cap(b) > limit {
		return
	}
	if p.classes == nil {
		p.classes = new([numSizeClasses][][]byte)
	}
	p.pooled += cap(b)
	p.classes[k] = append(p.classes[k], b[:0])
}
