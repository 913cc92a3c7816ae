package core

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"strings"
	"testing"
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
