package rudp

import (
	"crypto/hmac"
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"net/netip"
	"time"
)

// Cookies: an HMAC over the client's address and connection ID and a coarse
// time bucket; the current and the previous bucket are accepted, so a cookie
// lives between one and two buckets.
const (
	cookieBucket = 30 * time.Second
	cookieLen    = 16
)

// cookieKey makes and checks the cookies of one socket's stateless
// handshake (docs/PROTOCOL.md): a HELLO from a new address gets a Retry
// carrying one, and only a HELLO echoing a valid one makes a connection.
// It is never changed after newCookieKey: safe for concurrent use.
type cookieKey struct {
	secret [32]byte // the HMAC key
}

func newCookieKey() cookieKey {
	var k cookieKey
	_, _ = crand.Read(k.secret[:])
	return k
}

func bucketOf(now time.Time) uint64 { return uint64(now.Unix()) / uint64(cookieBucket/time.Second) }

// make returns the cookie for a client's address and connection ID in a
// time bucket.
func (k *cookieKey) make(addr netip.AddrPort, cid, bucket uint64) (cookie [cookieLen]byte) {
	mac := hmac.New(sha256.New, k.secret[:])
	a := addr.Addr().As16()
	var buf [16 + 2 + 8 + 8]byte
	copy(buf[:16], a[:])
	binary.BigEndian.PutUint16(buf[16:], addr.Port())
	binary.BigEndian.PutUint64(buf[18:], cid)
	binary.BigEndian.PutUint64(buf[26:], bucket)
	mac.Write(buf[:])
	var sum [sha256.Size]byte
	copy(cookie[:], mac.Sum(sum[:0]))
	return cookie
}

// valid reports whether cookie is the one for the client's address and
// connection ID in the current or the previous time bucket.
func (k *cookieKey) valid(cookie []byte, addr netip.AddrPort, cid uint64, now time.Time) bool {
	if len(cookie) != cookieLen {
		return false
	}
	bucket := bucketOf(now)
	for _, b := range []uint64{bucket, bucket - 1} {
		if want := k.make(addr, cid, b); hmac.Equal(cookie, want[:]) {
			return true
		}
	}
	return false
}
