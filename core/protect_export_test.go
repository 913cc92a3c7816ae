package core

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
)

// ProtectPair protects the connection between a and b as a completed
// handshake would, until the handshake itself runs in the simulator:
// application traffic secrets drawn from r (the simulation's seeded
// randomness), a's write secret b's read secret and the reverse, of the TLS
// 1.3 cipher suite suite, with a key update every keyUpdateEvery packets a
// side seals (0: at the AEAD's confidentiality limit), and each side's
// stateless reset token known to the other (ResetToken). Call it right
// after NewConn: fragments are cut for the tag from then on.
func ProtectPair(a, b *Conn, r *rand.Rand, suite uint16, keyUpdateEvery uint64) error {
	s := suiteByID(suite)
	if s == nil {
		return fmt.Errorf("suite %#04x", suite)
	}
	secret := func() []byte {
		k := make([]byte, s.hash().Size())
		for i := range k {
			k[i] = byte(r.Uint32())
		}
		return k
	}
	for _, dir := range [][2]*Conn{{a, b}, {b, a}} {
		k := secret()
		if err := dir[0].setWriteSecret(levelApp, suite, k); err != nil {
			return err
		}
		if err := dir[1].setReadSecret(levelApp, suite, k); err != nil {
			return err
		}
	}
	for _, c := range []*Conn{a, b} {
		c.sec.keyUpdateEvery = keyUpdateEvery
	}
	// Each side's stateless reset token, known to the other as the
	// handshake's transport parameters would make it (after the secrets:
	// the keys stay what they were).
	for _, dir := range [][2]*Conn{{a, b}, {b, a}} {
		for i := range dir[0].sec.resetToken {
			dir[0].sec.resetToken[i] = byte(r.Uint32())
		}
		dir[1].sec.peerResetToken = dir[0].sec.resetToken
		dir[1].sec.paramsOK = true
	}
	return nil
}

// SetIntegrityLimit sets the failed packets that end c, a protected
// connection.
func SetIntegrityLimit(c *Conn, n uint64) { c.sec.integrityLimit = n }

// KeyUpdates returns how many key updates c's write and read keys at
// levelApp went through.
func KeyUpdates(c *Conn) (write, read uint32) {
	return c.sec.write[levelApp].updates, c.sec.read[levelApp].updates
}

// PlaintextLeak reports the first frame of datagram b, sent on a
// protected connection, that travels in plaintext though only the first
// flight's frames may (levelAllows): "" if none.
func PlaintextLeak(b []byte) string {
	h, body, err := ParseHeader(b)
	if err != nil || h.Type != PacketData {
		return ""
	}
	var f frame
	for len(body) > 0 {
		n, err := decodeFrame(body, &f)
		if err != nil {
			return "malformed"
		}
		if !levelAllows(levelInitial, &f) {
			return fmt.Sprintf("frame type %#02x", f.typ)
		}
		body = body[n:]
	}
	return ""
}

// ProbeInFlight reports whether c has a path MTU probe of size bytes in
// flight: the check of a protected datagram over the confirmed size, whose
// frames the checker cannot read.
func ProbeInFlight(c *Conn, size int) bool {
	for _, p := range c.sent.inFlight() {
		if p != nil && p.pathProbe && p.size == size {
			return true
		}
	}
	return false
}

// ProbingTo is Probing of a datagram delivered to c: a protected one is
// opened with c's read keys (any key phase it still has), changing nothing.
func ProbingTo(c *Conn, b []byte) bool {
	h, _, err := ParseHeader(b)
	if err != nil || h.Type == PacketData || c.sec == nil {
		return Probing(b)
	}
	body, ok := openForTest(c, h, b)
	return ok && probingBody(body)
}

// openForTest decrypts protected datagram b with c's read keys, as
// openProtected does but with no effect on c.
func openForTest(c *Conn, h Header, b []byte) ([]byte, bool) {
	l := levelHandshake
	if h.Type == PacketApp {
		l = levelApp
	}
	k := c.sec.read[l]
	if k == nil {
		return nil, false
	}
	var hdr [headerLen]byte
	copy(hdr[:], b)
	var mask [5]byte
	k.hp.mask(b[headerLen:headerLen+hpSampleLen], &mask)
	applyHeaderMask(hdr[:], &mask)
	expected := c.life.peerInitial()
	if largest, had := c.acks.largest(); had {
		expected = largest + 1
	}
	pn := unwrap32(expected, binary.BigEndian.Uint32(hdr[10:14]))
	for _, keys := range []*packetKeys{&k.cur, &k.prev, &k.next} {
		if keys.aead == nil {
			continue
		}
		var nonce [aeadNonceLen]byte
		keys.nonce(pn, &nonce)
		if body, err := keys.aead.Open(nil, nonce[:], b[headerLen:], hdr[:]); err == nil {
			return body, true
		}
	}
	return nil, false
}
