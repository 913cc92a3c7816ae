package core

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"

	"golang.org/x/crypto/chacha20"
	"golang.org/x/crypto/chacha20poly1305"
)

// Packet protection (issue 11; docs/PROTOCOL.md, "Packet protection"),
// modelled on RFC 9001 §5 and §6: AEAD over every packet after the
// handshake's first flight, with the packet's header as associated data and
// the nonce derived from the full 64-bit packet number; header protection
// masks the packet number; keys come from the handshake's traffic secrets
// through TLS 1.3's HKDF-Expand-Label under rudp's own labels.

// keyLevel is the protection a packet travels under. The levels are
// ordered: a connection's write level only rises.
type keyLevel uint8

const (
	levelInitial   keyLevel = iota // plaintext Data packets with the CRC (HELLO, CRYPTO of the first flight, ACK, PADDING, PING, a refusal CLOSE)
	levelHandshake                 // sealed with the handshake secrets (TLS's Handshake level)
	levelApp                       // sealed with the traffic (1-RTT) secrets: everything after the handshake
	numLevels
)

func (l keyLevel) String() string {
	switch l {
	case levelInitial:
		return "initial"
	case levelHandshake:
		return "handshake"
	case levelApp:
		return "application"
	}
	return fmt.Sprintf("keyLevel(%d)", uint8(l))
}

// The HKDF-Expand-Label labels of rudp's key schedule (RFC 8446 §7.1's
// construction; "tls13 " is prefixed to each, as there). Distinct from
// QUIC's ("quic key", ...) so that keys of one protocol are never the
// other's.
const (
	labelKey       = "rudp key" // the AEAD key, of the suite's key length
	labelIV        = "rudp iv"  // the 12-byte IV the nonce is derived from
	labelHP        = "rudp hp"  // the header protection key, of the suite's key length
	labelKeyUpdate = "rudp ku"  // the next traffic secret (key update), of the hash's length
)

const (
	// aeadTagLen is the tag every protected packet ends with, in place of
	// the CRC: all three suites' AEADs have 16-byte tags.
	aeadTagLen = 16
	// aeadNonceLen is the nonce (and IV) length of all three AEADs.
	aeadNonceLen = 12
	// hpSampleLen is the ciphertext sample header protection is computed
	// from (RFC 9001 §5.4.2).
	hpSampleLen = 16
)

// keyLabels are the labels one key schedule uses: rudp's, or (in tests
// against RFC 9001's vectors) QUIC's.
type keyLabels struct{ key, iv, hp, ku string }

var rudpLabels = keyLabels{labelKey, labelIV, labelHP, labelKeyUpdate}

// Errors of setReadSecret and setWriteSecret: a handshake handing out a
// secret the protection cannot use is a bug of the caller (or a suite crypto/tls
// added), so each names what was wrong.
var (
	errSecretLevel = errors.New("rudp: secret for a key level without keys (level must be handshake or application)")
	// errUnauthenticated: a packet failed authentication (never returned:
	// such a packet is dropped and counted).
	errUnauthenticated = errors.New("rudp: packet failed authentication")
)

// cipherSuite is what protection needs to know of a TLS 1.3 cipher suite.
type cipherSuite struct {
	id     uint16
	keyLen int              // AEAD and header protection key length
	hash   func() hash.Hash // the HKDF hash; its size is the secrets' length
	// aead makes the packet AEAD from a key; hp the header protection.
	aead func(key []byte) (cipher.AEAD, error)
	hp   func(key []byte) (headerProtector, error)
}

var cipherSuites = [...]cipherSuite{
	{id: tls.TLS_AES_128_GCM_SHA256, keyLen: 16, hash: sha256.New, aead: newAESGCM, hp: newAESHeaderProtector},
	{id: tls.TLS_AES_256_GCM_SHA384, keyLen: 32, hash: sha512.New384, aead: newAESGCM, hp: newAESHeaderProtector},
	{id: tls.TLS_CHACHA20_POLY1305_SHA256, keyLen: 32, hash: sha256.New, aead: chacha20poly1305.New, hp: newChaChaHeaderProtector},
}

// suiteByID returns the cipher suite id names, nil if protection does not
// know it.
func suiteByID(id uint16) *cipherSuite {
	for i := range cipherSuites {
		if cipherSuites[i].id == id {
			return &cipherSuites[i]
		}
	}
	return nil
}

func newAESGCM(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// hkdfExpandLabel is TLS 1.3's HKDF-Expand-Label (RFC 8446 §7.1) with an
// empty context.
func hkdfExpandLabel(h func() hash.Hash, secret []byte, label string, length int) []byte {
	info := make([]byte, 0, 2+1+6+len(label)+1)
	info = append(info, byte(length>>8), byte(length))
	info = append(info, byte(6+len(label)))
	info = append(info, "tls13 "...)
	info = append(info, label...)
	info = append(info, 0) // context: empty
	out, err := hkdf.Expand(h, secret, string(info), length)
	if err != nil {
		// Only a length over 255 hash lengths fails: ours are constants.
		panic("rudp: HKDF-Expand-Label: " + err.Error())
	}
	return out
}

// headerProtector computes the 5-byte header protection mask from a
// 16-byte sample of the ciphertext (RFC 9001 §5.4.3, §5.4.4).
type headerProtector interface {
	mask(sample []byte, out *[5]byte)
}

// aesHeaderProtector: the mask is AES-ECB of the sample.
type aesHeaderProtector struct {
	block   cipher.Block
	scratch [aes.BlockSize]byte
}

func newAESHeaderProtector(key []byte) (headerProtector, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return &aesHeaderProtector{block: b}, nil
}

func (p *aesHeaderProtector) mask(sample []byte, out *[5]byte) {
	p.block.Encrypt(p.scratch[:], sample[:hpSampleLen])
	copy(out[:], p.scratch[:5])
}

// chachaHeaderProtector: the mask is ChaCha20's keystream, the sample's
// first 4 bytes (little endian) the block counter and the other 12 the
// nonce.
type chachaHeaderProtector struct {
	key [chacha20.KeySize]byte
}

func newChaChaHeaderProtector(key []byte) (headerProtector, error) {
	if len(key) != chacha20.KeySize {
		return nil, fmt.Errorf("rudp: ChaCha20 header protection key of %d bytes", len(key))
	}
	p := new(chachaHeaderProtector)
	copy(p.key[:], key)
	return p, nil
}

func (p *chachaHeaderProtector) mask(sample []byte, out *[5]byte) {
	counter := uint32(sample[0]) | uint32(sample[1])<<8 | uint32(sample[2])<<16 | uint32(sample[3])<<24
	c, err := chacha20.NewUnauthenticatedCipher(p.key[:], sample[4:hpSampleLen])
	if err != nil {
		panic("rudp: ChaCha20: " + err.Error()) // (key and nonce lengths are fixed)
	}
	c.SetCounter(counter)
	*out = [5]byte{}
	c.XORKeyStream(out[:], out[:])
}

// packetKeys are one key phase's AEAD and IV in one direction.
type packetKeys struct {
	aead cipher.AEAD
	iv   [aeadNonceLen]byte
}

// nonce writes the nonce of packet number pn: the IV with the packet
// number, big endian, XORed into its last 8 bytes (RFC 9001 §5.3).
func (k *packetKeys) nonce(pn uint64, out *[aeadNonceLen]byte) {
	*out = k.iv
	binary.BigEndian.PutUint64(out[aeadNonceLen-8:], binary.BigEndian.Uint64(k.iv[aeadNonceLen-8:])^pn)
}

// derivePacketKeys makes the AEAD and IV of a traffic secret.
func derivePacketKeys(s *cipherSuite, labels *keyLabels, secret []byte) (packetKeys, error) {
	var k packetKeys
	aead, err := s.aead(hkdfExpandLabel(s.hash, secret, labels.key, s.keyLen))
	if err != nil {
		return k, err
	}
	k.aead = aead
	copy(k.iv[:], hkdfExpandLabel(s.hash, secret, labels.iv, aeadNonceLen))
	return k, nil
}

// nextSecret is the traffic secret of the next key phase (key update, RFC
// 9001 §6.1).
func nextSecret(s *cipherSuite, labels *keyLabels, secret []byte) []byte {
	return hkdfExpandLabel(s.hash, secret, labels.ku, len(secret))
}

// directionKeys are one direction's keys at one level: the header
// protection key, fixed for the level's life, and the packet keys of the
// current key phase, with (at levelApp) the next phase's precomputed, so
// that a key update costs no derivation when it happens (RFC 9001 §6.3).
type directionKeys struct {
	suite      *cipherSuite
	hp         headerProtector
	cur        packetKeys
	next       packetKeys // levelApp: the next key phase's
	nextSecret []byte     // levelApp: the traffic secret next derives from
	phase      uint8      // key phase bit of cur (0 or 1)
	updates    uint32     // key updates so far
	// phaseStart is the first packet number of cur's phase: sealed with it
	// (write), or authenticated with it (read; a packet of the other phase
	// numbered below it is a late one of the previous phase).
	phaseStart uint64

	// Read only.
	prev   packetKeys // the previous key phase's, for packets reordered across an update
	replay replayWindow

	// Write only.
	sealed     uint64 // packets sealed with cur
	phaseAcked bool   // a packet sealed with cur was acknowledged: a key update may follow
}

// newDirectionKeys installs a traffic secret of suite; at levelApp the next
// key phase's keys are derived too.
func newDirectionKeys(suiteID uint16, secret []byte, labels *keyLabels) (*directionKeys, error) {
	s := suiteByID(suiteID)
	if s == nil {
		return nil, fmt.Errorf("rudp: secret of cipher suite %#04x, which packet protection does not support (suite must be TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384 or TLS_CHACHA20_POLY1305_SHA256)", suiteID)
	}
	if n := s.hash().Size(); len(secret) != n {
		return nil, fmt.Errorf("rudp: secret of %d bytes for cipher suite %s (secret must be %d bytes, the suite's hash length)", len(secret), tls.CipherSuiteName(suiteID), n)
	}
	k := &directionKeys{suite: s}
	var err error
	if k.hp, err = s.hp(hkdfExpandLabel(s.hash, secret, labels.hp, s.keyLen)); err != nil {
		return nil, err
	}
	if k.cur, err = derivePacketKeys(s, labels, secret); err != nil {
		return nil, err
	}
	k.nextSecret = nextSecret(s, labels, secret)
	if k.next, err = derivePacketKeys(s, labels, k.nextSecret); err != nil {
		return nil, err
	}
	return k, nil
}

// rotate moves k to the next key phase: cur becomes prev, next cur, and
// the phase after it is derived.
func (k *directionKeys) rotate(phaseStart uint64) {
	k.prev, k.cur = k.cur, k.next
	k.phase ^= 1
	k.updates++
	k.phaseStart = phaseStart
	k.sealed, k.phaseAcked = 0, false
	k.nextSecret = nextSecret(k.suite, &rudpLabels, k.nextSecret)
	next, err := derivePacketKeys(k.suite, &rudpLabels, k.nextSecret)
	if err != nil {
		panic("rudp: key update: " + err.Error()) // (the suite's key length is fixed)
	}
	k.next = next
}

// protection is a connection's packet protection state (in security):
// the keys of each level and direction, nil until the handshake installs
// them.
type protection struct {
	read  [numLevels]*directionKeys
	write [numLevels]*directionKeys
	// peerSealed: a protected packet from the peer authenticated. From then
	// on its plaintext packets are dropped: it has our keys, so it has all
	// it needed of the plaintext flight, and ours are acknowledged by its
	// protected packets (one packet number space).
	peerSealed bool
	// rxLevel is the level of the packet whose frames are being applied:
	// an ACK frame in a plaintext packet acknowledges only plaintext
	// packets (recovery.onAck).
	rxLevel keyLevel
	// failedOpens counts packets that failed authentication, across all
	// keys: the connection ends when it reaches the integrity limit.
	failedOpens uint64
	// opened holds the plaintext of the packet being handled (reused).
	opened []byte
	// Scratch for the packet being sealed or opened: through the AEAD's
	// and the header protector's interfaces locals would escape, an
	// allocation a packet.
	hdr   [headerLen]byte
	nonce [aeadNonceLen]byte
	mask  [5]byte

	// Test knobs: a key update every keyUpdateEvery packets sealed (0: at
	// the suite's confidentiality limit, keyUpdateAfter); the integrity
	// limit in failed packets (0: the suite's).
	keyUpdateEvery uint64
	integrityLimit uint64
}

// writeLevel is the highest level with write keys: the level packets are
// sealed at, but for a lower level's CRYPTO data (cryptoPending).
func (p *protection) writeLevel() keyLevel {
	for l := levelApp; l > levelInitial; l-- {
		if p.write[l] != nil {
			return l
		}
	}
	return levelInitial
}

// setReadSecret installs the traffic secret packets from the peer at level
// l are opened with. suite is a TLS 1.3 cipher suite ID
// (tls.TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384,
// TLS_CHACHA20_POLY1305_SHA256); secret is a traffic secret of the suite's
// hash length, copied. The handshake calls it as crypto/tls
// (QUICSetReadSecret) or the Noise handshake hands secrets out; an error
// names the argument that was wrong, and nothing is installed.
func (c *Conn) setReadSecret(l keyLevel, suite uint16, secret []byte) error {
	k, err := c.newLevelKeys(l, suite, secret)
	if err != nil {
		return err
	}
	c.sec.read[l] = k
	c.traceKeysInstalled(l, true)
	return nil
}

// setWriteSecret installs the traffic secret packets to the peer at level
// l are sealed with (see setReadSecret); from then on packets are sealed
// at the highest level with a write secret.
func (c *Conn) setWriteSecret(l keyLevel, suite uint16, secret []byte) error {
	k, err := c.newLevelKeys(l, suite, secret)
	if err != nil {
		return err
	}
	k.phaseStart = c.nextPN
	c.sec.write[l] = k
	c.traceKeysInstalled(l, false)
	return nil
}

// traceKeysInstalled reports the handshake's application keys (generation
// 0) to the tracer; a Handshake level's keys are not key updates.
func (c *Conn) traceKeysInstalled(l keyLevel, remote bool) {
	if l != levelApp {
		return
	}
	trigger := "tls"
	if c.sec.psk != nil {
		trigger = "psk"
	}
	c.traceKeyUpdate(0, remote, trigger)
}

// newLevelKeys checks the arguments of setReadSecret or setWriteSecret and
// derives the level's keys; the connection's security is allocated on first
// use.
func (c *Conn) newLevelKeys(l keyLevel, suite uint16, secret []byte) (*directionKeys, error) {
	if l != levelHandshake && l != levelApp {
		return nil, fmt.Errorf("%w: level %v", errSecretLevel, l)
	}
	k, err := newDirectionKeys(suite, secret, &rudpLabels)
	if err != nil {
		return nil, err
	}
	if c.sec == nil {
		c.sec = new(security)
	}
	// Fragments are cut for the tag, larger than the checksum.
	c.setDatagramSize(c.datagramSize())
	return k, nil
}
