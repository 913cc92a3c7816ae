//go:build !linux

package rudp

import "net/netip"

// Other systems report no ICMP errors to an unconnected UDP socket (or, as
// Windows, fail a later read without saying about which peer): a closed
// port is found by the handshake timeout there, a restarted peer by its
// stateless reset.

func (u *udpSocket) enableErrQueue() {}

func (u *udpSocket) readErrQueue(func(dst netip.AddrPort, quote []byte)) {}
