//go:build !linux

package rudp

import "net/netip"

// Without recvmmsg and sendmmsg, every call moves one datagram.

type rxSys struct{}

func (*rxSys) init(*rxBatch) {}

type txSys struct{}

func (*txSys) init(*txBatch) {}

type muxSys struct{}

func (m *mux) initIO() {}

func (m *mux) receive(wait bool) (*rxBatch, error) { return m.receiveOne(wait) }

func (m *mux) send(b *txBatch, to netip.AddrPort) { m.sendEach(b, 0, to) }
