package core_test

import (
	"bytes"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/rudp-go/rudp/core"
	"github.com/rudp-go/rudp/internal/sim"
)

// epBalancer is a stateless load balancer in front of several listeners
// sharing one address, as docs/PROTOCOL.md §1.1 describes it: a datagram
// whose DstCID carries a server's ID (EndpointConfig.ServerID) goes to
// that server, anything else (a HELLO, a reset, an unroutable ID) by a
// hash of its source address. It remembers nothing.
//
// On every step it checks that no listener sends a stateless reset: none
// restarts here, so a reset could only answer a datagram the balancer
// misrouted, and it would end a healthy connection.
type epBalancer struct {
	servers []*epServer
	ids     [][]byte
	err     error
}

func (b *epBalancer) route(d []byte) int {
	if len(d) >= core.PacketOverhead && d[0] == core.Version && d[1] != byte(core.PacketReset) && d[2] == core.RoutableCIDOctet {
		for k, id := range b.ids {
			if bytes.Equal(d[3:3+len(id)], id) {
				return k
			}
		}
	}
	return -1
}

func (b *epBalancer) HandleDatagram(now time.Time, d []byte) {
	if len(d) < epAddrLen {
		return
	}
	k := b.route(d[epAddrLen:])
	if k < 0 {
		h := fnv.New32a()
		h.Write(d[:epAddrLen]) // the source address
		k = int(h.Sum32() % uint32(len(b.servers)))
	}
	b.servers[k].HandleDatagram(now, d)
}

func (b *epBalancer) PollTransmit(now time.Time, buf []byte) int {
	for _, s := range b.servers {
		if n := s.PollTransmit(now, buf); n > 0 {
			if h, _, err := core.ParseHeader(buf[epAddrLen:n]); err == nil && h.Type == core.PacketReset && b.err == nil {
				b.err = fmt.Errorf("a listener sent a stateless reset for %x: a datagram was misrouted", h.DstCID)
			}
			return n
		}
	}
	return 0
}

func (b *epBalancer) NextTimeout() time.Time {
	var next time.Time
	for _, s := range b.servers {
		if t := s.NextTimeout(); !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	return next
}

func (b *epBalancer) HandleTimeout(now time.Time) {
	for _, s := range b.servers {
		if t := s.NextTimeout(); !t.IsZero() && !t.After(now) {
			s.HandleTimeout(now)
		}
	}
}

// failed returns the first invariant a node broke.
func (b *epBalancer) failed() error {
	errs := []error{b.err}
	for _, s := range b.servers {
		errs = append(errs, s.err)
	}
	return cmpErr(errs...)
}

// TestSimEndpointLoadBalancer: three listeners, each with its own server
// ID, behind a stateless balancer that routes by connection ID (docs/
// PROTOCOL.md §1.1), and clients whose addresses change (NAT rebinding)
// while they send: every client is established with exactly one
// listener, the one whose server ID its peer's connection ID carries;
// every connection ID a listener chose carries its ID; all the clients
// sent, also from their new addresses, is acknowledged (only the
// connection's own listener can); no listener reset anything, nor saw a
// datagram of another's connections (DroppedMisrouted).
func TestSimEndpointLoadBalancer(t *testing.T) {
	clients, seeds := 60, 4
	if testing.Short() {
		clients, seeds = 20, 2
	}
	epSimEach(t, seeds, func(t *testing.T, link sim.LinkConfig, seed uint64) error {
		return runEpBalancer(t, seed, link, clients)
	})
}

func runEpBalancer(t *testing.T, seed uint64, link sim.LinkConfig, clients int) error {
	rng := rand.New(rand.NewPCG(seed, 0x1b))
	bal := &epBalancer{ids: [][]byte{{0x0a, 0}, {0x0a, 1}, {0x0b, 0}}}
	for _, id := range bal.ids {
		ep, err := core.NewEndpoint(&core.EndpointConfig{Listen: true, AcceptBudget: clients, ServerID: id,
			Conn: epSimConfig, Rand: rand.NewPCG(rng.Uint64(), rng.Uint64())})
		if err != nil {
			return err
		}
		s := newEpServer(ep)
		s.accept = true
		bal.servers = append(bal.servers, s)
	}
	net := newSimNet(seed)
	cs := newEpClients(t, rng, net.Now(), clients, epSimConfig)
	cs.addr = make([]netip.AddrPort, clients)
	cs.rebindIn = make([]int, clients)
	for i := range clients {
		cs.rebindIn[i] = 1 + rng.IntN(8)
	}
	if err := net.Connect(net.AddNode(cs), net.AddNode(bal), link); err != nil {
		return err
	}
	net.MaxStepsPerInstant = 1 << 20
	settled := func() bool {
		for _, c := range cs.conns {
			if !c.Established() && !c.Closed() {
				return false
			}
		}
		return true
	}
	if err := net.RunUntil(func() bool { return bal.failed() != nil || settled() }, 120*time.Second); err != nil || bal.failed() != nil {
		return cmpErr(bal.failed(), err)
	}
	// Every client sends; its NAT rebinds within its first few datagrams.
	msg := make([]byte, 3000)
	for i, c := range cs.conns {
		if !c.Established() {
			return fmt.Errorf("client %d: not established: %v", i, c.Err())
		}
		for range 3 {
			if err := c.Send(core.Delivery, msg); err != nil {
				return fmt.Errorf("client %d: Send: %v", i, err)
			}
		}
		cs.set.touch(c)
	}
	acked := func() bool {
		for _, c := range cs.conns {
			// (Sent and acknowledged: nothing in flight while some waits
			// unsent is only a pause, a lost packet's PTO say.)
			if c.Stats().BytesInFlight > 0 || c.HasPendingData() || c.Closed() {
				return false
			}
		}
		return true
	}
	if err := net.RunUntil(func() bool { return bal.failed() != nil || acked() }, 120*time.Second); err != nil || bal.failed() != nil {
		return cmpErr(bal.failed(), err)
	}
	for i, c := range cs.conns {
		if cs.rebindIn[i] != 0 {
			return fmt.Errorf("client %d never rebound (%d datagrams to go)", i, cs.rebindIn[i])
		}
		owner := bal.route(cidPacket(c.RemoteCID()))
		if owner < 0 {
			return fmt.Errorf("client %d: the listener's ID %x carries no server ID", i, c.RemoteCID())
		}
		for k, s := range bal.servers {
			sc := s.created[c.LocalCID()]
			switch {
			case k == owner && (sc == nil || sc.LocalCID() != c.RemoteCID()):
				return fmt.Errorf("client %d: its listener %d has no connection %x for it", i, k, c.RemoteCID())
			case k != owner && sc != nil:
				return fmt.Errorf("client %d: listener %d created a connection too", i, k)
			}
		}
	}
	for k, s := range bal.servers {
		for _, c := range s.all {
			if !core.CarriesServerID(c.LocalCID(), bal.ids[k]) {
				return fmt.Errorf("listener %d chose ID %x without its server ID %x", k, c.LocalCID(), bal.ids[k])
			}
		}
		if st := s.ep.Stats(); st.DroppedMisrouted != 0 || st.ResetsSent != 0 {
			return fmt.Errorf("listener %d: %d misrouted, %d resets", k, st.DroppedMisrouted, st.ResetsSent)
		}
	}
	return nil
}

// cidPacket is the start of a data packet to cid, as far as routing reads.
func cidPacket(cid uint64) []byte {
	b := make([]byte, core.PacketOverhead)
	b[0], b[1] = core.Version, byte(core.PacketData)
	for i := range 8 {
		b[2+i] = byte(cid >> (56 - 8*i))
	}
	return b
}
