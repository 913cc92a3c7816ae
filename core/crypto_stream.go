package core

import (
	"crypto/tls"
	"encoding/binary"
	"math/rand/v2"
	"time"
)

// The connection's side of the cryptographic handshake: it starts the
// handshake (the client with its first packet, the server on the client's
// HELLO), carries its bytes in CRYPTO frames (appendCrypto, handleCrypto),
// checks the peer's transport parameters against its HELLO, and completes
// the connection's handshake (Established) only once the cryptographic
// one has completed. A failure aborts the connection with
// CloseHandshakeFailed and the reason, so the peer learns which in one
// round trip.

// initSecurity is NewConn's part: a connection configured for protection
// gets its security, its randomness seeded from cfg.Rand if set (an
// Endpoint seeds it from its own, see seedSecurity).
func (c *Conn) initSecurity(cfg *Config) {
	mode := cfg.Protection()
	if mode == Plaintext {
		return
	}
	c.sec = &security{mode: mode, tlsConfig: cfg.TLS, psk: cfg.PSK}
	if cfg.Rand != nil {
		c.seedSecurity(cfg.Rand)
	}
}

// seedSecurity seeds the handshake's randomness from src (32 bytes).
func (c *Conn) seedSecurity(src rand.Source) {
	if c.sec == nil {
		return
	}
	var seed [32]byte
	for i := 0; i < len(seed); i += 8 {
		binary.LittleEndian.PutUint64(seed[i:], src.Uint64())
	}
	c.sec.rng = rand.NewChaCha8(seed)
}

// setResetToken sets the stateless reset token of our connection ID,
// which our transport parameters tell the peer (an Endpoint calls it for
// the connections it makes).
func (c *Conn) setResetToken(token [ResetTokenLen]byte) {
	if c.sec != nil {
		c.sec.resetToken = token
	}
}

// setServer makes this side the handshake's server: an Endpoint's
// listener calls it for the connections it creates.
func (c *Conn) setServer() {
	if c.sec != nil {
		c.sec.server = true
	}
}

// secure reports whether this side runs a cryptographic handshake (a
// security whose mode is Plaintext holds keys a test installed alone).
func (c *Conn) secure() bool { return c.sec != nil && c.sec.mode != Plaintext }

// protection is the mode this side is configured for.
func (c *Conn) protection() Protection {
	if c.sec == nil {
		return Plaintext
	}
	return c.sec.mode
}

// ConnectionState describes the cryptographic handshake: with TLS, what
// crypto/tls reports (the peer's certificates, the negotiated protocol,
// the cipher suite; HandshakeComplete once it completed); with a PSK, the
// cipher suite and HandshakeComplete; the zero value on a plaintext
// connection.
func (c *Conn) ConnectionState() tls.ConnectionState {
	if c.sec == nil || c.sec.hs == nil {
		return tls.ConnectionState{}
	}
	return c.sec.hs.connectionState()
}

// Acceptable reports whether a listener's application may take the
// connection: a plaintext one at once, a protected one once its
// cryptographic handshake completed (Established).
func (c *Conn) Acceptable() bool { return !c.secure() || c.life.established() }

// ourHello is our HELLO's fields but the cookie (lifecycle.appendHello
// adds it): what the HELLO says and the transport parameters authenticate.
func (c *Conn) ourHello() HelloFrame {
	return HelloFrame{
		SrcCID:      c.localCID,
		InitialSeq:  c.cfg.InitialSequence,
		MaxData:     c.advertisedMaxData(),
		MaxAckDelay: uint64(c.cfg.MaxAckDelay / time.Microsecond),
		// The limits of what we accept: Validate keeps both in range.
		MaxMessageSize:  uint64(c.cfg.MaxMessageSize),
		MaxDatagramSize: uint64(c.cfg.MaxDatagramSize),
		Protection:      c.protection(),
	}
}

// startHandshake makes the handshake and starts it: a client writes its
// first flight. Its transport parameters are our HELLO's fields and our
// stateless reset token (none from a TLS client); a server's cookie is
// the one the client's HELLO echoed.
func (c *Conn) startHandshake(now time.Time) error {
	s := c.sec
	if s.rng == nil {
		return handshakeError("no source of randomness for the keys (Config.Rand, or an Endpoint's)")
	}
	params := transportParams{server: s.server, hello: c.ourHello()}
	if s.server || s.mode == ProtectionPSK {
		// A TLS client's parameters travel in its ClientHello, in the
		// clear: its token would be anyone's on the path, so it sends
		// none (RFC 9000 §18.2 likewise); Noise encrypts the client's.
		params.resetToken = s.resetToken
	}
	clientCID := c.localCID
	if s.server {
		params.hello.Cookie = s.peerHello.Cookie
		clientCID = s.peerHello.SrcCID
	}
	local := appendTransportParams(nil, &params)
	switch s.mode {
	case ProtectionTLS:
		s.hs = newTLSHandshake(s.tlsConfig, s.server, s.rng, local, c)
	default:
		hs, err := newNoiseHandshake(s.psk, s.server, clientCID, s.rng, local, c)
		if err != nil {
			return handshakeError("%w", err)
		}
		s.hs = hs
	}
	return s.hs.start(now)
}

// readSecret and writeSecret install a level's secrets (handshakeOut) in
// the packet protection; a level read is one whose CRYPTO frames we take
// (before, they are refused: the peer sends them again).
func (c *Conn) readSecret(l keyLevel, suite uint16, secret []byte) error {
	if err := c.setReadSecret(l, suite, secret); err != nil {
		return handshakeError("%w", err)
	}
	c.sec.readable[l] = true
	return nil
}

func (c *Conn) writeSecret(l keyLevel, suite uint16, secret []byte) error {
	if err := c.setWriteSecret(l, suite, secret); err != nil {
		return handshakeError("%w", err)
	}
	return nil
}

// writeCrypto queues the handshake's bytes at level l (handshakeOut).
func (c *Conn) writeCrypto(l keyLevel, p []byte) { c.sec.crypto[l].write(p) }

// peerParams checks the peer's authenticated transport parameters
// (handshakeOut): they must match its HELLO, and on a client the cookie
// the listener saw must be the one we echoed (an attacker's Retry, or a
// HELLO of ours it changed, fails here).
func (c *Conn) peerParams(p *transportParams) error {
	s := c.sec
	if !c.life.peerHelloSeen() {
		return handshakeError("transport parameters before the peer's HELLO")
	}
	if err := p.matchHello(&s.peerHello, !s.server); err != nil {
		return err
	}
	if !s.server && string(p.hello.Cookie) != string(c.life.cookie()) {
		return handshakeError("the cookie the listener saw differs from the one this side sent")
	}
	s.peerResetToken = p.resetToken
	s.paramsOK = true
	return nil
}

// cryptoPending reports whether handshake bytes of level l are owed.
func (c *Conn) cryptoPending(l keyLevel) bool {
	return c.sec != nil && c.sec.crypto[l].pending()
}

// appendCrypto appends a CRYPTO frame of level l with the handshake bytes
// owed that fit before limit to buf[:n], and records them in pkt (one
// CRYPTO frame per packet); it returns the new length.
func (c *Conn) appendCrypto(l keyLevel, buf []byte, n, limit int, pkt *sentPacket) int {
	if c.sec == nil || pkt.cryptoHi != 0 {
		return n
	}
	n, r := c.sec.crypto[l].appendFrame(buf, n, limit, l)
	if r.hi > r.lo {
		pkt.cryptoLo, pkt.cryptoHi = uint32(r.lo), uint32(r.hi) // (l is pkt.level)
		pkt.eliciting = true
	}
	return n
}

// onCryptoAcked and onCryptoLost tell the stream what became of the
// handshake bytes p carried; the acknowledgement of a client's last ones
// may establish it.
func (c *Conn) onCryptoAcked(now time.Time, p *sentPacket) {
	if p.cryptoHi != 0 {
		c.sec.crypto[p.level].onAcked(byteRange{uint64(p.cryptoLo), uint64(p.cryptoHi)})
		c.maybeEstablish(now)
	}
}

func (c *Conn) onCryptoLost(p *sentPacket) {
	if p.cryptoHi != 0 {
		c.sec.crypto[p.level].onLost(byteRange{uint64(p.cryptoLo), uint64(p.cryptoHi)})
	}
}

// handleCrypto takes a CRYPTO frame: its bytes, in order, go to the
// handshake. Beyond the window it is refused (the peer sends it again); a
// handshake failure ends the connection, the peer told why.
func (c *Conn) handleCrypto(now time.Time, f *cryptoFrame) verdict {
	s := c.sec
	if !c.secure() {
		return c.violate(now, "CRYPTO frame on a plaintext connection")
	}
	if s.hs == nil {
		return refused // (a server before the client's HELLO: never, the HELLO comes first)
	}
	l := f.level
	if l != levelInitial && !s.readable[l] {
		return refused // (protected, its packet could not have been opened)
	}
	ok, err := s.crypto[l].receive(f, func(d []byte) error { return s.hs.handleData(now, l, d) })
	switch {
	case err != nil:
		c.failHandshake(now, err)
		return violated
	case !ok:
		return refused
	}
	c.maybeEstablish(now)
	return applied
}

// onSecureHello takes the peer's first HELLO on a protected connection:
// its fields are kept for the check of its transport parameters, and a
// server starts its handshake.
func (c *Conn) onSecureHello(now time.Time, h *HelloFrame) {
	s := c.sec
	s.peerHello = *h
	s.peerHello.Cookie = append([]byte(nil), h.Cookie...)
	if s.hs == nil {
		if err := c.startHandshake(now); err != nil {
			c.failHandshake(now, err)
			return
		}
	}
	c.maybeEstablish(now)
}

// maybeStartClient starts a client's handshake before its first packet.
func (c *Conn) maybeStartClient(now time.Time) {
	if s := c.sec; c.secure() && s.hs == nil && !s.server && !c.life.ended() && !c.life.aborting() {
		if err := c.startHandshake(now); err != nil {
			c.failHandshake(now, err)
		}
	}
}

// maybeEstablish completes the connection's handshake once the
// cryptographic one completed and the peer's transport parameters matched
// its HELLO; a client waits until the server also acknowledged every
// handshake byte it sent (its TLS Finished, with its certificate if asked
// for): the server acknowledges them only if they completed its side, and
// refuses them otherwise (a client certificate it rejects), so that Dial
// fails then rather than the first read after it.
func (c *Conn) maybeEstablish(now time.Time) {
	s := c.sec
	if s.hs == nil || !s.hs.complete() || !s.paramsOK || !c.life.peerHelloSeen() || c.life.established() {
		return
	}
	if !s.server {
		for l := range s.crypto {
			if !s.crypto[l].acknowledged() {
				return
			}
		}
	}
	c.establish(now)
}

// failHandshake ends the connection because its handshake failed: err
// (matching ErrHandshakeFailed and wrapping the cause) becomes Err, and the
// peer gets a CLOSE(CloseHandshakeFailed) carrying its text.
func (c *Conn) failHandshake(now time.Time, err error) {
	c.obs.Debug("rudp: handshake failed", "cid", c.localCID, "err", err)
	c.Abort(now, err)
	c.discardReceived()
}

// handshakeComplete reports whether the cryptographic handshake completed
// on this side (true without one).
func (c *Conn) handshakeComplete() bool {
	return !c.secure() || c.sec.hs != nil && c.sec.hs.complete()
}

// onPeerLevel takes an authenticated packet of the peer's at level l: the
// peer holds every handshake byte we sent below l, acknowledged or not
// (it could not have keyed l otherwise: a TLS server seals at Handshake
// only after the whole ClientHello, a client only after the whole
// ServerHello, either side at App only after the other's Finished; a Noise
// side at App only after the other's message). So they are done: a
// packet of ours carrying them declared lost before its acknowledgement
// came, sent again in plaintext, would be dropped by a peer that now takes
// only sealed packets, and waited for in vain.
func (c *Conn) onPeerLevel(now time.Time, l keyLevel) {
	if !c.secure() || l == levelInitial {
		return
	}
	done := false
	for below := levelInitial; below < l; below++ {
		done = c.sec.crypto[below].confirm() || done
	}
	if done {
		c.maybeEstablish(now)
	}
}

// onCryptoProbe makes every handshake byte not yet acknowledged owed
// again (a probe timeout before the handshake completed).
func (c *Conn) onCryptoProbe() {
	if !c.secure() || c.life.established() {
		return
	}
	for l := range c.sec.crypto {
		c.sec.crypto[l].resend()
	}
}

// onRetry: the listener kept nothing of our first flight: its handshake
// bytes go again (the same ClientHello: crypto/tls made it once).
func (c *Conn) onCryptoRetry() {
	if c.secure() {
		c.sec.crypto[levelInitial].resend()
	}
}

// closeHandshake stops the handshake (crypto/tls's goroutine) when the
// connection ends.
func (c *Conn) closeHandshake() {
	if c.sec != nil && c.sec.hs != nil {
		c.sec.hs.close()
	}
}
