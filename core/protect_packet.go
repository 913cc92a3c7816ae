package core

import (
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"
)

// A protected packet (docs/PROTOCOL.md, "Packet protection"):
//
//	offset size field
//	0      1    version
//	1      1    type: PacketHandshake (4) or PacketApp (6), | key phase (bit 0, masked)
//	2      8    destination connection ID, in the clear (routing needs it)
//	10     4    packet number, low 32 bits (masked)
//	14     n    frames, encrypted
//	14+n   16   AEAD tag
//
// The AEAD's associated data is the header before masking, its nonce the
// IV XOR the full 64-bit packet number. Header protection XORs a mask,
// computed from the 16 bytes of ciphertext after the packet number, into
// the type byte's key phase bit and the packet number.

// replayWindowBits is how far below the newest packet number authenticated
// at a level a packet is still taken: an older one is dropped as a replay,
// whether or not it is one (reordering by more than this many packets
// costs a retransmission).
const replayWindowBits = 1024

// replayWindow is the packet numbers received at one read key level: the
// newest, and a bit for each of the replayWindowBits below and at it.
type replayWindow struct {
	largest uint64
	any     bool
	seen    [replayWindowBits / 64]uint64 // bit pn%replayWindowBits
}

// replayed reports whether pn was received before or is too old to tell.
func (w *replayWindow) replayed(pn uint64) bool {
	switch {
	case !w.any || pn > w.largest:
		return false
	case w.largest-pn >= replayWindowBits:
		return true
	}
	i := pn % replayWindowBits
	return w.seen[i/64]&(1<<(i%64)) != 0
}

// record notes pn, which authenticated.
func (w *replayWindow) record(pn uint64) {
	if !w.any || pn > w.largest {
		from := w.largest + 1
		if !w.any || pn-w.largest >= replayWindowBits {
			w.seen = [len(w.seen)]uint64{}
			from = pn
		}
		for q := from; q < pn; q++ { // the numbers skipped: not received
			i := q % replayWindowBits
			w.seen[i/64] &^= 1 << (i % 64)
		}
		w.largest, w.any = pn, true
	}
	i := pn % replayWindowBits
	w.seen[i/64] |= 1 << (i % 64)
}

// AEAD usage limits, in packets (RFC 9001 §6.6).
const (
	// aesGCMConfidentialityLimit: packets one AES-GCM key may seal.
	aesGCMConfidentialityLimit = 1 << 23
	// aesGCMIntegrityLimit, chachaIntegrityLimit: packets that may fail
	// authentication, across all keys, before the connection ends.
	aesGCMIntegrityLimit = 1 << 52
	chachaIntegrityLimit = 1 << 36
)

// keyUpdateAfter is how many packets are sealed with one key before a key
// update: half the confidentiality limit (ChaCha20-Poly1305 has none worth
// the name: 2^62), or the test knob.
func (p *protection) keyUpdateAfter(s *cipherSuite) uint64 {
	switch {
	case p.keyUpdateEvery > 0:
		return p.keyUpdateEvery
	case s.id == tls.TLS_CHACHA20_POLY1305_SHA256:
		return 1 << 62
	}
	return aesGCMConfidentialityLimit / 2
}

// integrityLimitOf is the failed packets that end the connection.
func (p *protection) integrityLimitOf(s *cipherSuite) uint64 {
	switch {
	case p.integrityLimit > 0:
		return p.integrityLimit
	case s.id == tls.TLS_CHACHA20_POLY1305_SHA256:
		return chachaIntegrityLimit
	}
	return aesGCMIntegrityLimit
}

// sealOverhead is what protection adds to a packet beyond the plaintext
// format's: the tag's bytes beyond the checksum's.
func (c *Conn) sealOverhead() int {
	if c.sec == nil {
		return 0
	}
	return aeadTagLen - trailerLen
}

// trailerLenAt is the trailer of a packet sealed at level l.
func trailerLenAt(l keyLevel) int {
	if l == levelInitial {
		return trailerLen
	}
	return aeadTagLen
}

// writeLevel is the level packets are sealed at (levelInitial on a
// plaintext connection).
func (c *Conn) writeLevel() keyLevel {
	if c.sec == nil {
		return levelInitial
	}
	return c.sec.writeLevel()
}

// sendLevel is the level of the next packet (a probe if probe): the write
// level, or a lower one whose CRYPTO data waits to be sent, or
// levelInitial for our HELLO while the peer may still need it.
func (c *Conn) sendLevel(probe bool) keyLevel {
	w := c.writeLevel()
	if w == levelApp && !c.handshakeComplete() {
		// A TLS server has its traffic keys before the client, which
		// takes them only from the server's last flight: until the
		// client's Finished arrived it may not read them (crypto_stream.go).
		w = levelHandshake
	}
	if w == levelInitial || c.life.helloWanted(probe) && !c.sec.peerSealed {
		return levelInitial
	}
	for l := levelInitial; l < w; l++ {
		if c.cryptoPending(l) {
			return l
		}
	}
	return w
}

// sealProtected finishes the packet whose frames occupy buf[headerLen:n]
// as packet number pn, sealed at level l (not levelInitial), and returns
// the datagram's length; cap(buf) must allow aeadTagLen more bytes.
func (p *protection) sealProtected(buf []byte, n int, l keyLevel, dstCID, pn uint64) int {
	k := p.write[l]
	if l == levelApp {
		if k.sealed >= p.keyUpdateAfter(k.suite) && k.phaseAcked && p.read[levelApp] != nil && p.read[levelApp].phase == k.phase {
			// Initiate a key update (RFC 9001 §6.1): the previous one is
			// done, both directions in its phase, and the peer
			// acknowledged a packet of it, so it reads this phase and
			// will take the next.
			k.rotate(pn)
		}
		k.sealed++
	}
	typ := PacketHandshake
	if l == levelApp {
		typ = PacketApp | PacketType(k.phase)
	}
	putHeader(buf, Header{Type: typ, DstCID: dstCID, PacketNumber: uint32(pn)})
	k.cur.nonce(pn, &p.nonce)
	k.cur.aead.Seal(buf[headerLen:headerLen], p.nonce[:], buf[headerLen:n], buf[:headerLen])
	k.hp.mask(buf[headerLen:headerLen+hpSampleLen], &p.mask)
	applyHeaderMask(buf, &p.mask)
	return n + aeadTagLen
}

// applyHeaderMask masks (or unmasks) a protected header: the key phase bit
// and the packet number.
func applyHeaderMask(hdr []byte, mask *[5]byte) {
	hdr[1] ^= mask[0] & packetKeyPhase
	for i := 0; i < 4; i++ {
		hdr[10+i] ^= mask[1+i]
	}
}

// openProtected opens the protected packet b (its header parsed: h) that
// came from from: it removes header protection, drops a replay before any
// decryption, authenticates and decrypts the frames, and records the
// packet number in the level's replay window. ok is false when the packet
// was dropped (and counted); otherwise body is its frames (valid until the
// next datagram), pn its full packet number and l its level.
func (c *Conn) openProtected(now time.Time, from netip.AddrPort, h Header, b []byte) (body []byte, pn uint64, l keyLevel, ok bool) {
	l = levelHandshake
	if h.Type == PacketApp {
		l = levelApp
	}
	if c.sec == nil || c.sec.read[l] == nil || h.DstCID != c.localCID || !c.life.peerHelloSeen() {
		// A plaintext connection, keys not yet there (a packet that
		// overtook the handshake's), or another connection's.
		c.stats.DatagramsDropped++
		return nil, 0, l, false
	}
	p, k := &c.sec.protection, c.sec.read[l]
	hdr := p.hdr[:]
	copy(hdr, b)
	k.hp.mask(b[headerLen:headerLen+hpSampleLen], &p.mask)
	applyHeaderMask(hdr, &p.mask)
	expected := c.life.peerInitial()
	if largest, had := c.acks.largest(); had {
		expected = largest + 1
	}
	pn = unwrap32(expected, binary.BigEndian.Uint32(hdr[10:14]))
	phase := hdr[1] & packetKeyPhase
	replay := k.replay.replayed(pn)
	if replay && (c.paths == nil || from == c.PeerAddr()) {
		c.stats.DroppedReplayed++
		return nil, pn, l, false
	}
	keys, rotate := &k.cur, false
	switch {
	case phase == k.phase:
	case l != levelApp:
		keys = nil // (a PacketHandshake has no key phase)
	case pn < k.phaseStart && k.prev.aead != nil:
		keys = &k.prev
	default:
		keys, rotate = &k.next, true
	}
	var err error
	if keys == nil {
		err = errUnauthenticated
	} else {
		keys.nonce(pn, &p.nonce)
		p.opened, err = keys.aead.Open(p.opened[:0], p.nonce[:], b[headerLen:], hdr)
	}
	if err != nil {
		c.stats.DroppedUnauthenticated++
		p.failedOpens++
		if lim := p.integrityLimitOf(k.suite); p.failedOpens >= lim {
			c.violate(now, fmt.Sprintf("integrity limit: %d packets failed authentication", p.failedOpens))
		}
		return nil, pn, l, false
	}
	if replay {
		// An authentic copy from another address: dropped, but it may
		// tell the path logic where the peer is (pathSet.sentFrom).
		c.stats.DroppedReplayed++
		c.paths.sentFrom(now, from, pn, len(b), true)
		return nil, pn, l, false
	}
	k.replay.record(pn)
	if rotate {
		// The peer updated its keys (RFC 9001 §6.2): so do we, both ways.
		k.rotate(pn)
		c.traceKeyUpdate(uint64(k.updates), true, "remote_update")
		if w := p.write[levelApp]; w != nil && w.phase != k.phase {
			w.rotate(c.nextPN)
			c.traceKeyUpdate(uint64(w.updates), false, "remote_update")
		}
	}
	if !p.peerSealed {
		p.peerSealed = true
		// The peer seals only after our HELLO reached it: should a copy of
		// ours have been declared lost, the peer, which drops plaintext now,
		// would never acknowledge it.
		c.life.onHelloAcked()
	}
	return p.opened, pn, l, true
}

// onSealedAcked notes that packet pn, sealed at level l, was acknowledged:
// once a packet of the current key phase is, a key update may follow.
func (p *protection) onSealedAcked(l keyLevel, pn uint64) {
	if k := p.write[l]; l == levelApp && k != nil && pn >= k.phaseStart {
		k.phaseAcked = true
	}
}

// plainAccepted reports whether a plaintext packet may be applied: always
// on a plaintext connection; on a protected one until a protected packet
// from the peer authenticated.
func (c *Conn) plainAccepted() bool { return c.sec == nil || !c.sec.peerSealed }

// levelAllows reports whether a packet at level l may carry frame f on a
// protected connection: levelInitial only HELLO (and the STREAM_LIMIT and
// STREAM_CREDIT that go with it: the HELLO's limits, no more trusted than
// the HELLO's own), CRYPTO, ACK, PADDING, PING and a refusing CLOSE;
// levelHandshake only CRYPTO, ACK, PADDING, PING and CLOSE; levelApp
// everything.
func levelAllows(l keyLevel, f *frame) bool {
	switch f.typ {
	case framePadding, framePing, frameAck:
		return true
	case frameHello, frameStreamLimit, frameStreamCredit:
		return l == levelInitial || l == levelApp
	case frameClose:
		// (At levelInitial only a refusal: of the attempt, or of the
		// handshake by a side that holds no keys yet, §18.5.)
		return l != levelInitial || f.close.code == CloseRefused || f.close.code == CloseHandshakeFailed
	case frameCrypto:
		return f.crypto.level == l // each level's stream in its own packets
	}
	return l == levelApp
}

// framesAllowed reports whether every frame of body may travel at level l
// (levelAllows); a malformed body is left to handleFrames.
func (c *Conn) framesAllowed(l keyLevel, body []byte) bool {
	if c.frameScratch == nil {
		c.frameScratch = new(frame)
	}
	f := c.frameScratch
	f.ack.ranges = f.ack.ranges[:0]
	for len(body) > 0 {
		n, err := decodeFrame(body, f)
		if err != nil {
			return true
		}
		if !levelAllows(l, f) {
			return false
		}
		body = body[n:]
	}
	return true
}
