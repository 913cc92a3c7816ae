package rudp

import (
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestCookieKey: a cookie is valid for its address and connection ID, in
// its time bucket and the next, from the key that made it only.
func TestCookieKey(t *testing.T) {
	k, other := newCookieKey(), newCookieKey()
	addr := netip.MustParseAddrPort("192.0.2.1:4000")
	now := time.Unix(1_700_000_000, 0)
	c := k.make(addr, 7, bucketOf(now))
	require.True(t, k.valid(c[:], addr, 7, now))
	require.True(t, k.valid(c[:], addr, 7, now.Add(cookieBucket)), "the next bucket")
	require.False(t, k.valid(c[:], addr, 7, now.Add(2*cookieBucket)), "two buckets later")
	require.False(t, k.valid(c[:], addr, 7, now.Add(-cookieBucket)), "an earlier bucket")
	require.False(t, k.valid(c[:], netip.MustParseAddrPort("192.0.2.1:4001"), 7, now), "another port")
	require.False(t, k.valid(c[:], netip.MustParseAddrPort("192.0.2.2:4000"), 7, now), "another host")
	require.False(t, k.valid(c[:], addr, 8, now), "another connection ID")
	require.False(t, other.valid(c[:], addr, 7, now), "another socket's key")
	require.False(t, k.valid(c[:cookieLen-1], addr, 7, now), "truncated")
	require.False(t, k.valid(nil, addr, 7, now), "none")
}
