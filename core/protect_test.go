package core

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// quicLabels are RFC 9001's labels: the key schedule is rudp's with them,
// so RFC 9001's test vectors check its construction.
var quicLabels = keyLabels{"quic key", "quic iv", "quic hp", "quic ku"}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestKeyScheduleRFC9001 derives the keys of RFC 9001 Appendix A.1 (the
// client's Initial secret, AES-128-GCM) and A.5 (ChaCha20-Poly1305) under
// QUIC's labels.
func TestKeyScheduleRFC9001(t *testing.T) {
	for _, tc := range []struct {
		name            string
		suite           uint16
		secret          string
		key, iv, hp, ku string
	}{{
		name:   "A.1 client initial",
		suite:  tls.TLS_AES_128_GCM_SHA256,
		secret: "c00cf151ca5be075ed0ebfb5c80323c42d6b7db67881289af4008f1f6c357aea",
		key:    "1f369613dd76d5467730efcbe3b1a22d",
		iv:     "fa044b2f42a3fd3b46fb255c",
		hp:     "9f50449e04a0e810283a1e9933adedd2",
	}, {
		name:   "A.5 ChaCha20-Poly1305",
		suite:  tls.TLS_CHACHA20_POLY1305_SHA256,
		secret: "9ac312a7f877468ebe69422748ad00a15443f18203a07d6060f688f30f21632b",
		key:    "c6d98ff3441c3fe1b2182094f69caa2ed4b716b65488960a7a984979fb23e1c8",
		iv:     "e0459b3474bdd0e44a41c144",
		hp:     "25a282b9e82f06f21f488917a4fc8f1b73573685608597d0efcb076b0ab7a7a4",
		ku:     "1223504755036d556342ee9361d253421a826c9ecdf3c7148684b36b714881f9",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			s := suiteByID(tc.suite)
			secret := unhex(t, tc.secret)
			for _, f := range []struct {
				label, want string
				n           int
			}{
				{quicLabels.key, tc.key, s.keyLen},
				{quicLabels.iv, tc.iv, aeadNonceLen},
				{quicLabels.hp, tc.hp, s.keyLen},
				{quicLabels.ku, tc.ku, len(secret)},
			} {
				if f.want == "" {
					continue
				}
				if got := hkdfExpandLabel(s.hash, secret, f.label, f.n); !bytes.Equal(got, unhex(t, f.want)) {
					t.Errorf("%s: %x, want %s", f.label, got, f.want)
				}
			}
		})
	}
}

// TestPacketProtectionRFC9001 protects RFC 9001 A.5's short header packet
// with rudp's primitives (AEAD, nonce from the full packet number, the
// ChaCha20 header protection mask) and gets its bytes.
func TestPacketProtectionRFC9001(t *testing.T) {
	secret := unhex(t, "9ac312a7f877468ebe69422748ad00a15443f18203a07d6060f688f30f21632b")
	k, err := newDirectionKeys(tls.TLS_CHACHA20_POLY1305_SHA256, secret, &quicLabels)
	if err != nil {
		t.Fatal(err)
	}
	const pn = 654360564
	hdr := unhex(t, "4200bff4") // short header, 3-byte packet number
	var nonce [aeadNonceLen]byte
	k.cur.nonce(pn, &nonce)
	pkt := k.cur.aead.Seal(append([]byte(nil), hdr...), nonce[:], []byte{0x01}, hdr)
	var mask [5]byte
	k.hp.mask(pkt[1+4:1+4+hpSampleLen], &mask) // sample: 4 bytes after the packet number's start
	pkt[0] ^= mask[0] & 0x1f
	for i := 0; i < 3; i++ {
		pkt[1+i] ^= mask[1+i]
	}
	if want := unhex(t, "4cfe4189655e5cd55c41f69080575d7999c25a5bfb"); !bytes.Equal(pkt, want) {
		t.Fatalf("protected %x, want %x", pkt, want)
	}
}

// TestSetSecretArguments: a secret the protection cannot use is refused
// with an error naming the argument, and nothing is installed.
func TestSetSecretArguments(t *testing.T) {
	secret32 := make([]byte, sha256.Size)
	for _, tc := range []struct {
		name   string
		level  keyLevel
		suite  uint16
		secret []byte
		want   string
	}{
		{"initial level", levelInitial, tls.TLS_AES_128_GCM_SHA256, secret32, "level"},
		{"unknown level", numLevels, tls.TLS_AES_128_GCM_SHA256, secret32, "level"},
		{"TLS 1.2 suite", levelApp, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, secret32, "suite"},
		{"short secret", levelApp, tls.TLS_AES_128_GCM_SHA256, secret32[:31], "secret must be 32 bytes"},
		{"SHA-384 suite, SHA-256 secret", levelHandshake, tls.TLS_AES_256_GCM_SHA384, secret32, "secret must be 48 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &Conn{}
			for _, set := range []func(keyLevel, uint16, []byte) error{c.setReadSecret, c.setWriteSecret} {
				err := set(tc.level, tc.suite, tc.secret)
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("error %v, want one naming %q", err, tc.want)
				}
			}
			if c.sec != nil {
				t.Errorf("keys installed after an error")
			}
		})
	}
	c := &Conn{}
	for _, suite := range []uint16{tls.TLS_AES_128_GCM_SHA256, tls.TLS_CHACHA20_POLY1305_SHA256} {
		if err := c.setWriteSecret(levelApp, suite, secret32); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.setReadSecret(levelHandshake, tls.TLS_AES_256_GCM_SHA384, make([]byte, 48)); err != nil {
		t.Fatal(err)
	}
	if c.sec.writeLevel() != levelApp || c.sec.read[levelHandshake] == nil {
		t.Errorf("write level %v, read keys %v", c.sec.writeLevel(), c.sec.read)
	}
}

var testSuites = []uint16{tls.TLS_AES_128_GCM_SHA256, tls.TLS_AES_256_GCM_SHA384, tls.TLS_CHACHA20_POLY1305_SHA256}

// newProtectedPair is a wirePair whose connection is protected with suite
// (ProtectPair: keys from a seeded source), keys updated every
// keyUpdateEvery packets (0: at the AEAD's limit).
func newProtectedPair(t testing.TB, suite uint16, keyUpdateEvery uint64) *wirePair {
	t.Helper()
	return newWirePairWith(t, nil, func(a, b *Conn) {
		if err := ProtectPair(a, b, rand.New(rand.NewPCG(7, 11)), suite, keyUpdateEvery); err != nil {
			t.Fatal(err)
		}
	})
}

// sealedFrom sends one message of g from c and returns the datagram
// carrying it (not delivered).
func (p *wirePair) sealedFrom(t testing.TB, c *Conn, g Guarantee, msg []byte) []byte {
	t.Helper()
	if err := c.Send(g, msg); err != nil {
		t.Fatal(err)
	}
	n := c.PollTransmit(p.now, p.buf)
	if n == 0 {
		t.Fatal("nothing to send")
	}
	d := bytes.Clone(p.buf[:n])
	if PacketType(d[1])&^packetKeyPhase != PacketApp {
		t.Fatalf("message sent in a packet of type %d", d[1])
	}
	if len(msg) >= 4 && bytes.Contains(d, msg) {
		t.Fatal("the message is in the datagram in plaintext")
	}
	return d
}

// dropped is every datagram c dropped, whatever the reason.
func dropped(c *Conn) uint64 {
	s := c.Stats()
	return s.DatagramsDropped + s.DroppedUnauthenticated + s.DroppedReplayed + s.DuplicatesDropped
}

// TestProtectedTampering: every bit of a protected datagram flipped in
// turn makes a datagram that is dropped and counted (as unauthenticated
// wherever the header still names the connection), applies nothing, is
// never acknowledged, and leaves the connection working: the genuine
// datagram is then taken.
func TestProtectedTampering(t *testing.T) {
	for _, suite := range testSuites {
		t.Run(tls.CipherSuiteName(suite), func(t *testing.T) {
			p := newProtectedPair(t, suite, 0)
			a, b := p.a, p.b
			msg := []byte("attack at dawn, bring the ladders")
			d := p.sealedFrom(t, a, None, msg)
			largest, _ := b.acks.largest()
			for i := range len(d) * 8 {
				x := bytes.Clone(d)
				x[i/8] ^= 1 << (i % 8)
				before, unauth := dropped(b), b.Stats().DroppedUnauthenticated
				b.HandleDatagram(p.now, x)
				if dropped(b) != before+1 {
					t.Fatalf("bit %d flipped: not dropped (stats %+v)", i, b.Stats())
				}
				// (The packet number, the frames, the tag: unauthenticated,
				// or, a packet number made that of one received, replayed.)
				if i/8 >= 10 && b.Stats().DroppedUnauthenticated != unauth+1 && b.Stats().DroppedReplayed == 0 {
					t.Fatalf("bit %d flipped: not counted unauthenticated", i)
				}
				if l, _ := b.acks.largest(); l != largest || b.acks.owed() || b.Closed() {
					t.Fatalf("bit %d flipped: largest %d (was %d), ACK owed %v, closed %v", i, l, largest, b.acks.owed(), b.Closed())
				}
				if m, _ := b.Recv(); m.Data != nil {
					t.Fatalf("bit %d flipped: %q delivered", i, m.Data)
				}
			}
			if n := b.PollTransmit(p.now, p.buf); n != 0 {
				t.Fatalf("b answered tampered datagrams with %d bytes", n)
			}
			b.HandleDatagram(p.now, d)
			if m, _ := b.Recv(); !bytes.Equal(m.Data, msg) {
				t.Fatalf("the genuine datagram gave %q", m.Data)
			}
			reply := []byte("ladders ready")
			b.Send(Delivery, reply)
			for range 20 {
				p.step()
			}
			if m, _ := a.Recv(); !bytes.Equal(m.Data, reply) {
				t.Fatalf("after the tampering, the reply was %q", m.Data)
			}
		})
	}
}

// TestProtectedReplay: a genuine datagram received again, from the same
// address or from another, is dropped before it is opened and counted; a
// None message is delivered once, and the copy from another address moves
// the connection nowhere. A datagram older than the replay window is
// dropped as a replay too.
func TestProtectedReplay(t *testing.T) {
	p := newProtectedPair(t, tls.TLS_AES_128_GCM_SHA256, 0)
	a, b := p.a, p.b
	first := p.sealedFrom(t, a, None, []byte("once"))
	b.HandleDatagram(p.now, first)
	if m, _ := b.Recv(); string(m.Data) != "once" {
		t.Fatalf("got %q", m.Data)
	}
	other := netip.MustParseAddrPort("203.0.113.9:4444")
	for i, from := range []netip.AddrPort{{}, other} {
		b.HandleDatagramFrom(p.now, from, first)
		if got := b.Stats().DroppedReplayed; got != uint64(i+1) {
			t.Fatalf("replay %d: DroppedReplayed %d", i, got)
		}
		if m, _ := b.Recv(); m.Data != nil {
			t.Fatalf("replay %d delivered %q again", i, m.Data)
		}
	}
	if b.PeerAddr().IsValid() || b.PathStats().Migrations != 0 {
		t.Fatalf("a replay from %v moved the connection: %+v", other, b.PathStats())
	}
	// Past the window: replayWindowBits newer packets later.
	for i := range replayWindowBits + 10 {
		b.HandleDatagram(p.now, p.sealedFrom(t, a, None, []byte{byte(i)}))
		b.Recv()
		p.step() // (acknowledgements keep a's window open)
	}
	before := b.Stats().DroppedReplayed
	b.HandleDatagram(p.now, first)
	if got := b.Stats().DroppedReplayed; got != before+1 {
		t.Fatalf("a datagram older than the window: DroppedReplayed %d, was %d", got, before)
	}
}

// TestProtectedForgery: on a protected connection, what an attacker can
// make without the keys has no effect. Plaintext packets with a valid
// checksum (a message, a CLOSE, an ACK of everything, a future packet
// number) and protected-looking ones with a future packet number are
// dropped and counted, and the connection goes on in step: the packet
// numbers it expects did not move.
func TestProtectedForgery(t *testing.T) {
	p := newProtectedPair(t, tls.TLS_CHACHA20_POLY1305_SHA256, 0)
	a, b := p.a, p.b
	largest, _ := b.acks.largest()
	future := uint32(largest) + 1<<30
	forged := [][]byte{
		sealed(Header{Type: PacketData, DstCID: b.localCID, PacketNumber: uint32(largest) + 1}, appendMsg(nil, &msgFrame{guarantee: Delivery, data: []byte("forged")})),
		sealed(Header{Type: PacketData, DstCID: b.localCID, PacketNumber: uint32(largest) + 2}, appendClose(nil, CloseError, 0, "forged")),
		sealed(Header{Type: PacketData, DstCID: b.localCID, PacketNumber: uint32(largest) + 3}, appendClose(nil, CloseRefused, 0, "")),
		sealed(Header{Type: PacketData, DstCID: b.localCID, PacketNumber: future}, appendAck(nil, &ackFrame{largest: uint32(b.nextPN - 1), ranges: []ackRange{{0, 1000}}})),
		sealed(Header{Type: PacketData, DstCID: b.localCID, PacketNumber: future}, []byte{framePing}),
	}
	for _, typ := range []PacketType{PacketApp, PacketApp | packetKeyPhase, PacketHandshake} {
		x := make([]byte, 100)
		putHeader(x, Header{Type: typ, DstCID: b.localCID, PacketNumber: future})
		forged = append(forged, x)
	}
	for i, x := range forged {
		before := b.Stats().DroppedUnauthenticated + b.Stats().DatagramsDropped
		b.HandleDatagram(p.now, x)
		if after := b.Stats().DroppedUnauthenticated + b.Stats().DatagramsDropped; after != before+1 {
			t.Fatalf("forgery %d not dropped: %+v", i, b.Stats())
		}
		if l, _ := b.acks.largest(); l != largest || b.Closed() || b.PeerClosed() {
			t.Fatalf("forgery %d: largest %d (was %d), closed %v", i, l, largest, b.Closed())
		}
	}
	if m, _ := b.Recv(); m.Data != nil {
		t.Fatalf("forged message delivered: %q", m.Data)
	}
	for i := range 50 {
		a.Send(Delivery, []byte{byte(i)})
	}
	for range 100 {
		p.step()
	}
	for i := range 50 {
		if m, err := b.Recv(); err != nil || len(m.Data) != 1 || m.Data[0] != byte(i) {
			t.Fatalf("message %d after the forgeries: %v %v", i, m.Data, err)
		}
	}
}

// TestProtectedIntegrityLimit: when the packets that failed authentication
// reach the integrity limit, the connection ends, and the peer, told by an
// authenticated CLOSE, ends too.
func TestProtectedIntegrityLimit(t *testing.T) {
	p := newProtectedPair(t, tls.TLS_AES_128_GCM_SHA256, 0)
	a, b := p.a, p.b
	SetIntegrityLimit(b, 3)
	d := p.sealedFrom(t, a, Delivery, []byte("x"))
	for i := range 3 {
		if b.Closed() {
			t.Fatalf("closed after %d failures", i)
		}
		x := bytes.Clone(d)
		x[len(x)-1] ^= 1
		b.HandleDatagram(p.now, x)
	}
	if !errors.Is(b.Err(), ErrProtocolViolation) && !errors.Is(b.life.endError(), ErrProtocolViolation) {
		t.Fatalf("b: %v, want the integrity limit's ErrProtocolViolation", b.life.endError())
	}
	for range 50 {
		p.step()
	}
	if !a.Closed() || !errors.Is(a.Err(), ErrPeerProtocolViolation) {
		t.Fatalf("a: closed %v, %v; want ErrPeerProtocolViolation", a.Closed(), a.Err())
	}
}

// TestProtectedKeyUpdate: with a key update forced every 100 packets, a
// two-way exchange of many messages goes through many updates on both
// sides, each side initiating some, with no message lost or out of order.
func TestProtectedKeyUpdate(t *testing.T) {
	for _, suite := range testSuites {
		t.Run(tls.CipherSuiteName(suite), func(t *testing.T) {
			p := newProtectedPair(t, suite, 100)
			a, b := p.a, p.b
			const count = 3000
			sent := [2]int{}
			got := [2]int{}
			for step := 0; step < 100000 && (got[0] < count || got[1] < count); step++ {
				for i, c := range []*Conn{a, b} {
					for sent[i] < count && c.Send(Delivery, binary.BigEndian.AppendUint32(make([]byte, 0, 600), uint32(sent[i]))[:600]) == nil {
						sent[i]++
					}
				}
				p.step()
				for i, c := range []*Conn{b, a} {
					recvEach(t, c, func(m Message) {
						if v := binary.BigEndian.Uint32(m.Data); v != uint32(got[i]) {
							t.Fatalf("message %d, want %d", v, got[i])
						}
						got[i]++
					})
				}
			}
			if got != [2]int{count, count} {
				t.Fatalf("got %v of %d", got, count)
			}
			for _, c := range []*Conn{a, b} {
				w, r := KeyUpdates(c)
				if w < 10 || r < 10 {
					t.Errorf("key updates: write %d, read %d", w, r)
				}
				if s := c.Stats(); s.DroppedUnauthenticated != 0 {
					t.Errorf("%d packets failed authentication across the updates", s.DroppedUnauthenticated)
				}
			}
		})
	}
}

// TestProtectedNoAllocs: in steady state sealing and opening a packet
// allocates nothing (a message of a packet's size sent, opened, read and
// acknowledged), with each cipher suite.
func TestProtectedNoAllocs(t *testing.T) {
	for _, suite := range testSuites {
		t.Run(tls.CipherSuiteName(suite), func(t *testing.T) {
			p := newProtectedPair(t, suite, 0)
			msg := make([]byte, 1100)
			round := func() {
				if err := p.a.Send(Delivery, msg); err != nil {
					t.Fatal(err)
				}
				for range 4 {
					p.exchange(nil)
					for {
						m, err := p.b.Recv()
						if err != nil || m.Data == nil {
							break
						}
					}
				}
				p.now = p.now.Add(time.Millisecond)
				p.a.HandleTimeout(p.now)
				p.b.HandleTimeout(p.now)
			}
			for range 2000 { // (pools and windows grown)
				round()
			}
			if n := testing.AllocsPerRun(500, round); n != 0 {
				t.Fatalf("%.2f allocations a packet", n)
			}
		})
	}
}

// TestProtectedFirstFlight: before the peer sealed a packet, a plaintext
// packet is taken only with the first flight's frames: one carrying a
// message (anyone's, in plaintext) is dropped and counted, and nothing in
// it is applied; once the peer sealed a packet, every plaintext packet is.
func TestProtectedFirstFlight(t *testing.T) {
	a, b, now := newConnPair(t, &Config{Rand: rand.NewPCG(1, 2)}, &Config{Rand: rand.NewPCG(3, 4)})
	if err := ProtectPair(a, b, rand.New(rand.NewPCG(5, 6)), tls.TLS_AES_128_GCM_SHA256, 0); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	n := a.PollTransmit(now, buf)
	if h, _, err := ParseHeader(buf[:n]); err != nil || h.Type != PacketData || PlaintextLeak(buf[:n]) != "" {
		t.Fatalf("a's HELLO: %+v %v", h, err)
	}
	b.HandleDatagram(now, buf[:n])
	if !b.life.peerHelloSeen() || b.sec.peerSealed {
		t.Fatal("b did not take a's HELLO")
	}
	largest, _ := b.acks.largest()
	msg := appendMsg(nil, &msgFrame{guarantee: Delivery, seq: 0, data: []byte("forged")})
	b.HandleDatagram(now, sealed(Header{Type: PacketData, DstCID: b.localCID, PacketNumber: uint32(largest) + 1}, msg))
	if s := b.Stats(); s.DroppedUnauthenticated != 1 {
		t.Fatalf("a plaintext message: %+v", s)
	}
	if l, _ := b.acks.largest(); l != largest {
		t.Fatalf("the dropped packet was recorded: largest %d, was %d", l, largest)
	}
	b.HandleDatagram(now, sealed(Header{Type: PacketData, DstCID: b.localCID, PacketNumber: uint32(largest) + 2}, []byte{framePing}))
	if l, _ := b.acks.largest(); l != largest+2 {
		t.Fatalf("a plaintext PING of the first flight was not taken: largest %d", l)
	}
}

// TestProtectedKeyUpdateTraced: the tracer sees each side's application
// keys installed (generation 0) and every key update, ours and the peer's,
// numbered as the keys count them.
func TestProtectedKeyUpdateTraced(t *testing.T) {
	events := map[uint64][]KeyEvent{}
	cfg := &Config{Tracer: func(info TraceInfo) *Tracer {
		return &Tracer{KeyUpdated: func(e KeyEvent) { events[info.LocalCID] = append(events[info.LocalCID], e) }}
	}}
	p := newWirePairWith(t, cfg, func(a, b *Conn) {
		if err := ProtectPair(a, b, rand.New(rand.NewPCG(7, 11)), tls.TLS_AES_128_GCM_SHA256, 50); err != nil {
			t.Fatal(err)
		}
	})
	sent, got := 0, 0
	for step := 0; step < 100000 && got < 2000; step++ {
		for sent < 2000 && p.a.Send(Delivery, make([]byte, 600)) == nil {
			sent++
		}
		p.step()
		recvEach(t, p.b, func(Message) { got++ })
	}
	if got != 2000 {
		t.Fatalf("got %d of 2000", got)
	}
	for _, c := range []*Conn{p.a, p.b} {
		w, r := KeyUpdates(c)
		var installed, local, remote int
		var lastW, lastR uint64
		for _, e := range events[c.localCID] {
			switch {
			case e.Generation == 0:
				installed++
			case e.Remote:
				remote++
				if e.Generation != lastR+1 {
					t.Errorf("read keys: generation %d after %d", e.Generation, lastR)
				}
				lastR = e.Generation
			default:
				local++
				if e.Generation != lastW+1 {
					t.Errorf("write keys: generation %d after %d", e.Generation, lastW)
				}
				lastW = e.Generation
			}
		}
		if w < 5 || installed != 2 || uint32(local) != w || uint32(remote) != r {
			t.Errorf("conn %x: %d write and %d read updates; traced %d installed, %d ours, %d the peer's", c.localCID, w, r, installed, local, remote)
		}
	}
}

// BenchmarkPacketAEAD is the ceiling of packet protection's cost: the work
// each protected packet of size bytes needs that a plaintext one does not,
// alone, in memory: seal (nonce, AEAD seal in place, header protection
// mask) at the sender and open (mask, nonce, AEAD open) at the receiver, for
// each suite, next to the CRC-32C a plaintext packet computes at each end
// instead. Its GB/s per core against the plaintext path's per-byte cost (CPU
// seconds per GiB, rudpbench bulk) bound the goodput ratio protection can
// reach where the CPU is the limit. The header protection mask is also
// measured alone (hp), once per suite: its cost does not depend on the
// packet's size.
//
//	go test ./core -run '^$' -bench PacketAEAD
func BenchmarkPacketAEAD(b *testing.B) {
	for _, suite := range testSuites {
		k, err := newDirectionKeys(suite, bytes.Repeat([]byte{1}, suiteByID(suite).hash().Size()), &rudpLabels)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(tls.CipherSuiteName(suite)+"/hp", func(b *testing.B) {
			sample := make([]byte, hpSampleLen)
			var mask [5]byte
			b.ReportAllocs()
			for b.Loop() {
				k.hp.mask(sample, &mask)
			}
		})
	}
	for _, size := range []int{1400, 65000} {
		b.Run(fmt.Sprintf("crc32c/%d", size), func(b *testing.B) {
			buf := make([]byte, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				sealPacket(buf, size-trailerLen)
			}
		})
		for _, suite := range testSuites {
			k, err := newDirectionKeys(suite, bytes.Repeat([]byte{1}, suiteByID(suite).hash().Size()), &rudpLabels)
			if err != nil {
				b.Fatal(err)
			}
			var nonce [aeadNonceLen]byte
			var mask [5]byte
			plain := size - aeadTagLen - headerLen
			buf := make([]byte, size)
			seal := func(pn uint64) {
				k.cur.nonce(pn, &nonce)
				k.cur.aead.Seal(buf[headerLen:headerLen], nonce[:], buf[headerLen:headerLen+plain], buf[:headerLen])
				k.hp.mask(buf[headerLen:headerLen+hpSampleLen], &mask)
			}
			name := tls.CipherSuiteName(suite)
			b.Run(fmt.Sprintf("%s/seal/%d", name, size), func(b *testing.B) {
				b.SetBytes(int64(plain))
				b.ReportAllocs()
				for b.Loop() {
					seal(1)
				}
			})
			b.Run(fmt.Sprintf("%s/open/%d", name, size), func(b *testing.B) {
				seal(1)
				sealed := bytes.Clone(buf)
				opened := make([]byte, 0, size)
				b.SetBytes(int64(plain))
				b.ReportAllocs()
				for b.Loop() {
					k.hp.mask(sealed[headerLen:headerLen+hpSampleLen], &mask)
					k.cur.nonce(1, &nonce)
					if _, err := k.cur.aead.Open(opened[:0], nonce[:], sealed[headerLen:], sealed[:headerLen]); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// TestProtectedSpoofedAddressChange: on a protected connection, a packet
// forged from a new address, claiming the next packet number (the one
// that moves a plaintext connection there, TestPathSpoofedPacketMovesNothing),
// and a tampered copy of a genuine packet from that address, move nothing:
// the connection still sends to its peer's address, nothing at all goes
// to the spoofer's (no challenge either), and the genuine packet is then
// taken from the peer's address.
func TestProtectedSpoofedAddressChange(t *testing.T) {
	p := newProtectedPair(t, tls.TLS_AES_128_GCM_SHA256, 0)
	a, b := p.a, p.b
	spoofer := netip.MustParseAddrPort("203.0.113.66:6666")
	d := p.sealedFrom(t, a, Delivery, []byte("genuine"))
	largest, _ := b.acks.largest()
	forged := make([]byte, len(d))
	putHeader(forged, Header{Type: PacketApp, DstCID: b.localCID, PacketNumber: uint32(largest) + 1})
	tampered := bytes.Clone(d)
	tampered[len(tampered)-1] ^= 1
	plainForged := sealed(Header{Type: PacketData, DstCID: b.localCID, PacketNumber: uint32(largest) + 1}, []byte{framePing})
	for name, x := range map[string][]byte{"forged": forged, "tampered": tampered, "plaintext": plainForged} {
		before := dropped(b)
		b.HandleDatagramFrom(p.now, spoofer, x)
		if dropped(b) != before+1 {
			t.Fatalf("%s from %v: not dropped (%+v)", name, spoofer, b.Stats())
		}
		if b.PeerAddr().IsValid() || b.PathStats().Migrations != 0 {
			t.Fatalf("%s from %v moved the connection: %v, %+v", name, spoofer, b.PeerAddr(), b.PathStats())
		}
	}
	for {
		n, to := b.PollTransmitTo(p.now, p.buf)
		if n == 0 {
			break
		}
		if to == spoofer {
			t.Fatalf("%d bytes sent to the spoofer", n)
		}
	}
	b.HandleDatagram(p.now, d)
	if m, _ := b.Recv(); string(m.Data) != "genuine" {
		t.Fatalf("the genuine packet gave %q", m.Data)
	}
}
