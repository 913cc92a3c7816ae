package core

import "encoding/binary"

// The CRYPTO frame and the handshake's byte stream at one key level
// (docs/PROTOCOL.md "Cryptographic handshake"). The handshake (crypto/tls
// or Noise) writes and reads a byte stream per key level; CRYPTO frames
// carry it with offsets, so that a flight larger than a datagram (a TLS
// ClientHello with post-quantum key shares is about 1.5 KB, a server's
// certificate chain more) crosses several datagrams, each of which may be
// lost, duplicated or reordered. A packet's key level is the level of the
// CRYPTO frame it carries: the frame itself does not say it.

// cryptoFrame is a CRYPTO frame: data at offset of its level's stream.
type cryptoFrame struct {
	level  keyLevel
	offset uint64
	data   []byte // aliases the datagram
}

// maxCryptoOffset bounds a CRYPTO frame's end: no handshake comes near it
// (crypto/tls refuses a message over 64 KiB, a certificate chain included,
// and a flight is a few messages), and it keeps offsets far from overflow.
const maxCryptoOffset = 1 << 20

// cryptoWindow is how far beyond the bytes handed to the handshake a
// receiver holds a level's data: a frame ending beyond it is refused (not
// acknowledged), so that the peer sends it again once the gap before it
// has filled. It bounds what a peer can make us hold to cryptoWindow bytes
// per level, whatever offsets it declares.
const cryptoWindow = 64 << 10

// CRYPTO: type, level u8 (0 Initial, 1 Handshake, 2 App), offset varint,
// length varint, data. The end (offset + length) is at most
// maxCryptoOffset; the length may be 0 (a frame that carries nothing,
// never sent). The level is the packet's (a packet sealed at another
// level drops it: protect*.go); saying it in the frame keeps the streams
// apart whatever carries them.
func decodeCrypto(b []byte, f *frame) (int, error) {
	if len(b) < 2 {
		return 0, errTruncated
	}
	level := keyLevel(b[1])
	if level > levelApp {
		return 0, errBadFrame
	}
	r := reader{b: b, off: 2}
	off := r.uvarint()
	n := r.uvarint()
	if r.err == nil && (off > maxCryptoOffset || n > maxCryptoOffset-off) {
		return 0, errBadFrame
	}
	data := r.bytes(n)
	if r.err != nil {
		return 0, r.err
	}
	f.crypto = cryptoFrame{level: level, offset: off, data: data}
	return r.off, nil
}

func appendCryptoFrame(b []byte, l keyLevel, off uint64, data []byte) []byte {
	b = append(b, frameCrypto, byte(l))
	b = binary.AppendUvarint(b, off)
	b = binary.AppendUvarint(b, uint64(len(data)))
	return append(b, data...)
}

// byteRange is the offsets lo..hi-1 of a stream.
type byteRange struct{ lo, hi uint64 }

// byteRanges is a set of offsets as sorted, disjoint, non-adjacent ranges.
type byteRanges []byteRange

// add adds lo..hi-1.
func (s *byteRanges) add(lo, hi uint64) {
	if lo >= hi {
		return
	}
	r := *s
	i := 0
	for i < len(r) && r[i].hi < lo {
		i++
	}
	j := i
	for j < len(r) && r[j].lo <= hi {
		lo, hi = min(lo, r[j].lo), max(hi, r[j].hi)
		j++
	}
	if i == j {
		r = append(r, byteRange{})
		copy(r[i+1:], r[i:])
	} else {
		r = append(r[:i+1], r[j:]...)
	}
	r[i] = byteRange{lo, hi}
	*s = r
}

// remove removes lo..hi-1.
func (s *byteRanges) remove(lo, hi uint64) {
	if lo >= hi {
		return
	}
	var out byteRanges
	for _, g := range *s {
		if g.hi <= lo || g.lo >= hi {
			out = append(out, g)
			continue
		}
		if g.lo < lo {
			out = append(out, byteRange{g.lo, lo})
		}
		if g.hi > hi {
			out = append(out, byteRange{hi, g.hi})
		}
	}
	*s = out
}

// covers reports whether every offset of lo..hi-1 is in the set.
func (s byteRanges) covers(lo, hi uint64) bool {
	for _, g := range s {
		if g.lo <= lo && hi <= g.hi {
			return true
		}
	}
	return lo >= hi
}

// cryptoStream is the handshake's bytes at one key level, both ways. Its
// job, and nothing more: keep what the handshake wrote until the peer
// acknowledged it, hand out what is owed (first time or after a loss) as
// CRYPTO frames, and put the peer's frames back in order for the
// handshake, holding at most cryptoWindow bytes ahead of it.
type cryptoStream struct {
	// out is the bytes written from offset outBase on: everything below
	// was acknowledged and is forgotten.
	out     []byte
	outBase uint64
	// unsent is what must go (first time or again); acked is what the peer
	// acknowledged above outBase.
	unsent byteRanges
	acked  byteRanges

	// in is the offset up to which the peer's bytes went to the handshake;
	// held keeps what arrived beyond it (held[i] is offset in+i), present
	// says which of those bytes arrived.
	in      uint64
	held    []byte
	present byteRanges
}

// write queues p (the handshake's next bytes at this level).
func (s *cryptoStream) write(p []byte) {
	end := s.outBase + uint64(len(s.out))
	s.out = append(s.out, p...)
	s.unsent.add(end, end+uint64(len(p)))
}

// pending reports whether bytes are owed to the peer.
func (s *cryptoStream) pending() bool { return len(s.unsent) > 0 }

// appendFrame appends a CRYPTO frame of level l with the first bytes owed,
// as many as fit before limit, to buf[:n]; it returns the new length and
// the range sent (empty if nothing fit or nothing was owed).
func (s *cryptoStream) appendFrame(buf []byte, n, limit int, l keyLevel) (int, byteRange) {
	if len(s.unsent) == 0 {
		return n, byteRange{}
	}
	g := s.unsent[0]
	room := limit - n - 2 - uvarintLen(g.lo) - uvarintLen(g.hi-g.lo)
	if room <= 0 {
		return n, byteRange{}
	}
	hi := min(g.hi, g.lo+uint64(room))
	data := s.out[g.lo-s.outBase : hi-s.outBase]
	n = len(appendCryptoFrame(buf[:n], l, g.lo, data))
	s.unsent.remove(g.lo, hi)
	return n, byteRange{g.lo, hi}
}

// acknowledged reports whether the peer acknowledged every byte written.
func (s *cryptoStream) acknowledged() bool { return len(s.out) == 0 && len(s.unsent) == 0 }

// onAcked takes the acknowledgement of a frame that carried r.
func (s *cryptoStream) onAcked(r byteRange) {
	s.acked.add(max(r.lo, s.outBase), r.hi)
	s.unsent.remove(r.lo, r.hi)
	if len(s.acked) > 0 && s.acked[0].lo == s.outBase {
		done := s.acked[0].hi
		s.out = s.out[done-s.outBase:]
		if len(s.out) == 0 {
			s.out = nil // the flight is done: give its memory back
		}
		s.outBase = done
		s.acked = s.acked[1:]
	}
}

// confirm takes everything written as acknowledged (the peer showed it
// has it); it reports whether anything was not.
func (s *cryptoStream) confirm() bool {
	if s.acknowledged() {
		return false
	}
	s.outBase += uint64(len(s.out))
	s.out, s.unsent, s.acked = nil, nil, nil
	return true
}

// onLost takes the loss of a frame that carried r: what of it the peer has
// not acknowledged is owed again.
func (s *cryptoStream) onLost(r byteRange) {
	s.unsent.add(max(r.lo, s.outBase), r.hi)
	for _, g := range s.acked {
		s.unsent.remove(g.lo, g.hi)
	}
}

// resend makes everything not acknowledged owed again (after a Retry: the
// listener kept nothing of our first flight).
func (s *cryptoStream) resend() {
	s.onLost(byteRange{s.outBase, s.outBase + uint64(len(s.out))})
}

// receive takes a CRYPTO frame and hands the bytes that are now in order
// to deliver (the handshake), at most once each. It returns false if the
// frame ends beyond the window: it is refused, the peer sends it again. An
// error from deliver ends the handshake and is returned.
func (s *cryptoStream) receive(f *cryptoFrame, deliver func([]byte) error) (ok bool, err error) {
	end := f.offset + uint64(len(f.data))
	if end <= s.in || len(f.data) == 0 {
		return true, nil // a duplicate, or nothing
	}
	if end > s.in+cryptoWindow {
		return false, nil
	}
	data, off := f.data, f.offset
	if off < s.in {
		data, off = data[s.in-off:], s.in
	}
	if off == s.in && len(s.present) == 0 {
		// In order, nothing held: straight to the handshake.
		s.in = end
		return true, deliver(data)
	}
	if need := int(end - s.in); need > len(s.held) {
		s.held = append(s.held, make([]byte, need-len(s.held))...)
	}
	copy(s.held[off-s.in:], data)
	s.present.add(off, end)
	if s.present[0].lo != s.in {
		return true, nil // a gap before it
	}
	k := int(s.present[0].hi - s.in)
	ready := s.held[:k]
	s.in += uint64(k)
	s.present = s.present[1:]
	err = deliver(ready)
	s.held = s.held[k:]
	if len(s.present) == 0 {
		s.held, s.present = nil, nil
	}
	return true, err
}
