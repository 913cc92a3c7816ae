package core_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"time"

	"github.com/rudp-go/rudp/core"
)

// Addresses in the path scenarios: the client's after its NAT rebinding,
// and a spoofer's.
var (
	simNATAddr   = netip.MustParseAddrPort("198.51.100.7:40000")
	simSpoofAddr = netip.MustParseAddrPort("192.0.2.66:6666")
)

// pathSim gives the server side of a simulated connection addresses
// (core/path.go): its peer's datagrams arrive from the peer's address,
// which a NAT rebinding changes once mid-run (the old address then
// receives nothing), and, on seeds with a spoofer on the path, exact copies
// of some of them arrive first from the spoofer's address, and copies of
// older ones later. What the server sends goes where PollTransmitTo says;
// only what goes to the peer's address now reaches it. The invariants,
// checked on every datagram: the spoofer's address is never sent more than
// 3x what came from it, and the peer's newest packet (one the connection
// accepted with a packet number above all before, not a probe, while
// established) leaves the connection sending to the peer's address, where
// it was before: this is how a NAT rebinding is followed, and how a move
// to the spoofer's address ends. A rebinding late in a run may see only
// older packets (reordered, duplicated) from the new address before the
// workload ends: rightly, they move nothing. The workload's checkers
// (every message exactly once, nothing acknowledged dropped, a graceful
// close) run as usual.
type pathSim struct {
	r *rand.Rand
	// rebindIn counts down the peer's datagrams until its NAT rebinds, from
	// the handshake's end (0: never, or done).
	rebindIn int
	rebound  bool
	peer     netip.AddrPort // the peer's address now (zero: where it started)
	spoof    bool
	recent   [][]byte // the peer's recent datagrams, for the spoofer's replays

	spoofed, reflected, lost int
	// followed counts the peer's newest packets from its new address after
	// the rebinding (each one must leave the connection there).
	followed int
}

// newPathSim draws a seed's path scenario from a source of its own (so that
// the workload's draws stay as they were): nothing, a NAT rebinding, a
// spoofer, or both.
func newPathSim(seed uint64) *pathSim {
	r := rand.New(rand.NewPCG(seed, 0x9a7b5))
	mode := r.IntN(4)
	if mode == 0 {
		return nil
	}
	p := &pathSim{r: r, spoof: mode >= 2}
	if mode != 2 {
		p.rebindIn = 1 + r.IntN(300)
	}
	return p
}

// sim0 is the simulator's epoch, for the scenario's times.

var sim0 = time.Date(2000, time.January, 1, 0, 0, 0, 0, time.UTC)

// deliver hands c a datagram of its peer's.
func (p *pathSim) deliver(now time.Time, c *core.Conn, b []byte) error {
	if p.rebindIn > 0 && c.Established() {
		if p.rebindIn--; p.rebindIn == 0 {
			p.rebound, p.peer = true, simNATAddr
		}
	}
	if p.spoof && p.r.IntN(8) == 0 {
		p.spoofed += len(b) // the copy arrives first: the original is a duplicate
		c.HandleDatagramFrom(now, simSpoofAddr, b)
	}
	established := c.Established()
	largest, had := core.LargestReceived(c)
	c.HandleDatagramFrom(now, p.peer, b)
	if pn, ok := core.LargestReceived(c); ok && (!had || pn > largest) && established && c.Established() && !core.ProbingTo(c, b) {
		if p.rebound {
			p.followed++
		}
		if c.PeerAddr() != p.peer {
			return fmt.Errorf("the peer's newest packet (%d) came from %v, and the connection sends to %v (%+v)", pn, p.peer, c.PeerAddr(), c.PathStats())
		}
	}
	if !p.spoof {
		return nil
	}
	if len(p.recent) > 0 && p.r.IntN(8) == 0 {
		old := p.recent[p.r.IntN(len(p.recent))]
		p.spoofed += len(old)
		c.HandleDatagramFrom(now, simSpoofAddr, old)
	}
	if len(p.recent) < 16 {
		p.recent = append(p.recent, append([]byte(nil), b...))
	} else {
		p.recent[p.r.IntN(16)] = append(p.recent[p.r.IntN(16)][:0], b...)
	}
	return nil
}

// poll returns the next datagram c sends that reaches its peer.
func (p *pathSim) poll(now time.Time, c *core.Conn, buf []byte) (int, error) {
	for {
		n, to := c.PollTransmitTo(now, buf)
		if n == 0 || to == p.peer {
			return n, nil
		}
		if to == simSpoofAddr {
			p.reflected += n
			if p.reflected > 3*p.spoofed {
				return 0, fmt.Errorf("sent the spoofer's address %d bytes, over 3x the %d that came from it", p.reflected, p.spoofed)
			}
		} else {
			p.lost++ // the address before the NAT rebinding, or another: gone
		}
	}
}

func (p *pathSim) String() string {
	if p == nil {
		return "paths: one address"
	}
	return fmt.Sprintf("paths: rebound %v (%d newest packets from the new address), spoofer %v (sent %d, reflected %d), %d datagrams to a dead address", p.rebound, p.followed, p.spoof, p.spoofed, p.reflected, p.lost)
}
