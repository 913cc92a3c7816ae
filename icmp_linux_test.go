package rudp

import (
	"encoding/binary"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// errQueueCmsg builds the control message an error-queue read returns:
// level/type and a sock_extended_err with errno and origin.
func errQueueCmsg(level, typ int32, errno uint32, origin uint8) []byte {
	b := make([]byte, unix.CmsgSpace(sockExtendedErrLen))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = level, typ
	h.SetLen(unix.CmsgLen(sockExtendedErrLen))
	d := b[unix.CmsgLen(0):]
	binary.NativeEndian.PutUint32(d[0:4], errno)
	d[4] = origin
	return b
}

// TestPortUnreachable: only an ICMP or ICMPv6 report whose errno is
// ECONNREFUSED counts.
func TestPortUnreachable(t *testing.T) {
	for _, c := range []struct {
		name string
		oob  []byte
		want bool
	}{
		{"ICMP", errQueueCmsg(unix.IPPROTO_IP, unix.IP_RECVERR, uint32(unix.ECONNREFUSED), unix.SO_EE_ORIGIN_ICMP), true},
		{"ICMPv6", errQueueCmsg(unix.IPPROTO_IPV6, unix.IPV6_RECVERR, uint32(unix.ECONNREFUSED), unix.SO_EE_ORIGIN_ICMP6), true},
		{"host unreachable", errQueueCmsg(unix.IPPROTO_IP, unix.IP_RECVERR, uint32(unix.EHOSTUNREACH), unix.SO_EE_ORIGIN_ICMP), false},
		{"local error", errQueueCmsg(unix.IPPROTO_IP, unix.IP_RECVERR, uint32(unix.ECONNREFUSED), unix.SO_EE_ORIGIN_LOCAL), false},
		{"another option", errQueueCmsg(unix.IPPROTO_IP, unix.IP_TTL, uint32(unix.ECONNREFUSED), unix.SO_EE_ORIGIN_ICMP), false},
		{"short", errQueueCmsg(unix.IPPROTO_IP, unix.IP_RECVERR, uint32(unix.ECONNREFUSED), unix.SO_EE_ORIGIN_ICMP)[:unix.CmsgLen(4)], false},
		{"empty", nil, false},
	} {
		if got := portUnreachable(c.oob); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

// FuzzPortUnreachable: any control-message bytes are parsed without a
// panic.
func FuzzPortUnreachable(f *testing.F) {
	f.Add(errQueueCmsg(unix.IPPROTO_IP, unix.IP_RECVERR, uint32(unix.ECONNREFUSED), unix.SO_EE_ORIGIN_ICMP))
	f.Add(errQueueCmsg(unix.IPPROTO_IPV6, unix.IPV6_RECVERR, uint32(unix.ECONNREFUSED), unix.SO_EE_ORIGIN_ICMP6))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, oob []byte) {
		_ = portUnreachable(oob)
	})
}
