//go:build !linux

package rudp

import "net/netip"

// Without recvmmsg and sendmmsg, every call moves one datagram.

type rxSys struct{}

func (*rxSys) init(*rxBatch) {}

type txSys struct{}

func (*txSys) init(*txBatch) {}

type muxSys struct{}

func (u *udpSocket) initIO() {}

func (u *udpSocket) receive(wait bool) (*rxBatch, error) { return u.receiveOne(wait) }

func (u *udpSocket) send(b *txBatch, to netip.AddrPort) { u.sendEach(b, 0, to) }

// gathers reports whether the socket's flushes may send datagrams in
// pieces (txParts): only with sendmmsg's iovecs.
func (u *udpSocket) gathers() bool { return false }
