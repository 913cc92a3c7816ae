package core

import "time"

// sentPacket is what we remember of an ack-eliciting packet in flight.
type sentPacket struct {
	pn        uint64
	sentAt    time.Time
	size      int
	eliciting bool
	hello     bool
	close     bool
	fin       bool // our STREAM_FIN for stream 0
	ping      bool
	// pathProbe: a path MTU probe (pmtu.go); its loss is neither
	// congestion nor lost data.
	pathProbe bool
	// level is the key level it was sealed at: an ACK in a plaintext
	// packet acknowledges only plaintext packets (protect_packet.go).
	level keyLevel
	// appLimited: sent with the window far from full; its acknowledgement
	// says nothing about the path's capacity and must not grow the window.
	appLimited bool
	// cryptoLo..cryptoHi: the handshake bytes of its level it carries in
	// a CRYPTO frame (crypto_stream.go), at most one per packet; cryptoHi
	// is 0 if none. (Offsets are below maxCryptoOffset.)
	cryptoLo uint32
	cryptoHi uint32
	// The connection's delivery-rate state when it was sent: bytes
	// acknowledged so far, when that count last grew, and when the packet
	// most recently acknowledged by then was sent.
	delivered   uint64
	deliveredAt time.Time
	firstSentAt time.Time
	frags       []*outFragment // Delivery fragments it carries, and any sent twice (redundancy.go)
	ctl         []ctlRef       // stream control frames it carries (stream.go)
}

func (p *sentPacket) ackEliciting() bool { return p.eliciting }

// sentList is the packets in flight: every ack-eliciting packet sent and
// neither acknowledged nor declared lost, by packet number, and a pool of
// records to reuse. Its job, and nothing more: hand out records
// (newPacket, recycle), keep the packets in flight in order (add, at,
// remove, inFlight, clear) and give back its memory when idle (trim).
// What a packet's acknowledgement or loss means is loss recovery's.
type sentList struct {
	// ring holds the packets in flight indexed by pn-base from head;
	// acknowledged and lost ones are nil, and base advances past them.
	ring []*sentPacket
	head int
	base uint64
	free []*sentPacket
}

// newPacket returns a record for a packet about to be sent.
func (l *sentList) newPacket() *sentPacket {
	if k := len(l.free); k > 0 {
		p := l.free[k-1]
		l.free = l.free[:k-1]
		return p
	}
	return &sentPacket{}
}

// recycle clears p's record and keeps it for reuse while fewer than limit
// are kept.
func (l *sentList) recycle(p *sentPacket, limit int) {
	frags, ctl := p.frags[:0], p.ctl[:0]
	*p = sentPacket{frags: frags, ctl: ctl}
	if len(l.free) < limit {
		l.free = append(l.free, p)
	}
}

// add records p, the newest packet, as in flight. The ring is contiguous in
// packet numbers from base: the numbers it skips (packets that were not
// ack-eliciting) are nil.
func (l *sentList) add(p *sentPacket) {
	for l.base+uint64(len(l.ring)-l.head) < p.pn {
		l.ring = append(l.ring, nil)
	}
	l.ring = append(l.ring, p)
}

// at returns the packet in flight numbered pn, or nil.
func (l *sentList) at(pn uint64) *sentPacket {
	if pn < l.base {
		return nil
	}
	i := l.head + int(pn-l.base)
	if i >= len(l.ring) {
		return nil
	}
	return l.ring[i]
}

// remove drops pn, in flight, and advances the base past the holes; next
// is the next packet number to be sent (the base once nothing is in
// flight).
func (l *sentList) remove(pn, next uint64) {
	l.ring[l.head+int(pn-l.base)] = nil
	for l.head < len(l.ring) && l.ring[l.head] == nil {
		l.head++
		l.base++
	}
	if l.head == len(l.ring) {
		l.ring, l.head = l.ring[:0], 0
		l.base = next
	} else if l.head > 256 && l.head*2 > len(l.ring) {
		n := copy(l.ring, l.ring[l.head:])
		clear(l.ring[n:])
		l.ring, l.head = l.ring[:n], 0
	}
}

// inFlight returns the ring from its oldest packet on (nil entries are
// numbers no longer in flight).
func (l *sentList) inFlight() []*sentPacket { return l.ring[l.head:] }

// clear hands every packet in flight to forget and forgets them all; next
// is the next packet number to be sent.
func (l *sentList) clear(next uint64, forget func(*sentPacket)) {
	for _, p := range l.ring[l.head:] {
		if p != nil {
			forget(p)
		}
	}
	l.ring, l.head = l.ring[:0], 0
	l.base = next
}

// trim gives back the pool, and the ring if nothing is in flight (an idle
// connection's trimIdle).
func (l *sentList) trim() {
	l.free = nil
	if l.head == len(l.ring) {
		l.ring, l.head = nil, 0
	}
}
