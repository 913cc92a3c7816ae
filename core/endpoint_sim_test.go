package core_test

import (
	"container/heap"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/rudp-go/rudp/core"
	"github.com/rudp-go/rudp/internal/sim"
)

// The Endpoint in the simulator: one listening core.Endpoint and many
// clients, each a core.Endpoint of its own (its own socket and address)
// with one connection dialed by Connect. The simulator joins two nodes,
// so all clients share one node and one impaired link pair; each datagram
// carries, ahead of the protocol's bytes, the client's address (the
// source on the way in, the destination on the way back), as the UDP
// header would. The links lose, duplicate and reorder, never corrupt: a
// corrupted address would be a spoofed datagram, which is another test's.
//
// On every step the nodes check:
//   - no client attempt makes the listener create a second connection;
//   - the listener's own datagrams (Retry, refusal, reset) to an address
//     never add up to more bytes than it received from that address.
//
// At the end every client is established with exactly one server
// connection, paired both ways (or, past the accept budget, refused).

// epAddrLen is the address ahead of each simulated datagram.
const epAddrLen = 6

var epServerAddr = netip.MustParseAddrPort("10.0.0.1:4433")

func epClientAddr(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), uint16(5000+i))
}

func putEpAddr(b []byte, a netip.AddrPort) {
	ip := a.Addr().As4()
	copy(b, ip[:])
	binary.BigEndian.PutUint16(b[4:], a.Port())
}

func epAddr(b []byte) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[:4])), binary.BigEndian.Uint16(b[4:]))
}

// epConns is a node's connections: the ones with work to send, and a
// heap of their timers. A connection's timers change only in the calls
// that hand it something or take something from it, after each of which
// the node calls touch or schedule: so the next timeout is the heap's
// top, not a scan of a thousand connections on every step (which took
// nine tenths of TestSimEndpointThousandClients' time).
type epConns struct {
	dirty []*core.Conn
	isDir map[*core.Conn]bool
	// due is each live connection's next timeout as last read (zero: none
	// armed); timers holds (time, connection) entries, stale ones (whose
	// time is no longer the connection's due) dropped as they surface.
	due    map[*core.Conn]time.Time
	timers epTimerHeap
}

func (s *epConns) add(c *core.Conn) {
	if s.due == nil {
		s.due = map[*core.Conn]time.Time{}
	}
	s.due[c] = time.Time{}
	s.touch(c)
}

// touch marks c as having work to send, and reads its timers again.
func (s *epConns) touch(c *core.Conn) {
	if s.isDir == nil {
		s.isDir = map[*core.Conn]bool{}
	}
	if !s.isDir[c] {
		s.isDir[c] = true
		s.dirty = append(s.dirty, c)
	}
	s.schedule(c)
}

// schedule reads c's next timeout again (after any call on it).
func (s *epConns) schedule(c *core.Conn) {
	old, live := s.due[c]
	if !live {
		return
	}
	if c.Closed() {
		delete(s.due, c)
		return
	}
	t := c.NextTimeout()
	if t.Equal(old) {
		return
	}
	s.due[c] = t
	if !t.IsZero() {
		heap.Push(&s.timers, epTimer{t, c})
	}
}

// top drops the stale entries off the heap and returns the first live one.
func (s *epConns) top() (epTimer, bool) {
	for len(s.timers) > 0 {
		e := s.timers[0]
		if t, live := s.due[e.c]; live && t.Equal(e.t) {
			return e, true
		}
		heap.Pop(&s.timers)
	}
	return epTimer{}, false
}

func (s *epConns) nextTimeout() time.Time {
	e, _ := s.top()
	return e.t
}

// fire runs the due timers; update is told about each connection fired.
func (s *epConns) fire(now time.Time, update func(*core.Conn)) {
	for {
		e, ok := s.top()
		if !ok || e.t.After(now) {
			return
		}
		heap.Pop(&s.timers)
		s.due[e.c] = time.Time{}
		e.c.HandleTimeout(now)
		update(e.c)
		s.touch(e.c)
	}
}

type epTimer struct {
	t time.Time
	c *core.Conn
}

// epTimerHeap orders timers by time, then by connection ID (so that the
// order connections due at the same instant fire in is the seed's).
type epTimerHeap []epTimer

func (h epTimerHeap) Len() int { return len(h) }
func (h epTimerHeap) Less(i, j int) bool {
	if !h[i].t.Equal(h[j].t) {
		return h[i].t.Before(h[j].t)
	}
	return h[i].c.LocalCID() < h[j].c.LocalCID()
}
func (h epTimerHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *epTimerHeap) Push(x any)   { *h = append(*h, x.(epTimer)) }
func (h *epTimerHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// epServer is the listening node.
type epServer struct {
	ep      *core.Endpoint
	conns   epConns
	created map[uint64]*core.Conn // by the client's connection ID
	all     []*core.Conn
	accept  bool // the application takes every connection at once
	// in and own: bytes received from, and sent by the Endpoint itself
	// to, each address.
	in, own map[netip.AddrPort]int
	// hellos: each datagram that created a connection, as it arrived.
	hellos []epDatagram
	err    error
	// spoofer, if set, races and replays the clients' datagrams from
	// epSpoofAddr (TestSimEndpointPaths).
	spoofer *epSpoofer
	// send, if set, is the application of the listener's connection c,
	// called after each datagram it took once accepted (taken).
	send  func(c *core.Conn)
	taken map[*core.Conn]bool
}

// epSpoofAddr is the spoofer's address in the Endpoint simulations.
var epSpoofAddr = netip.MustParseAddrPort("192.0.2.66:6666")

// epSpoofer is a spoofer on the path to the listener: what it copied
// recently, and, for each of the listener's connections, the bytes that
// came to it from the spoofer's address and that it sent there.
type epSpoofer struct {
	r         *rand.Rand
	recent    [][]byte
	in, out   map[*core.Conn]int
	totalSent int
}

type epDatagram struct {
	from netip.AddrPort
	b    []byte
}

func (s *epServer) fail(format string, args ...any) {
	if s.err == nil {
		s.err = fmt.Errorf(format, args...)
	}
}

func (s *epServer) HandleDatagram(now time.Time, b []byte) {
	if len(b) < epAddrLen {
		return
	}
	from, d := epAddr(b), b[epAddrLen:]
	if p := s.spoofer; p != nil {
		// Some datagrams are raced by an exact copy from the spoofer's
		// address (the original is then a duplicate), and older ones
		// replayed from there.
		if p.r.IntN(8) == 0 {
			s.handle(now, epSpoofAddr, slices.Clone(d))
		}
		s.handle(now, from, d)
		if len(p.recent) > 0 && p.r.IntN(8) == 0 {
			s.handle(now, epSpoofAddr, slices.Clone(p.recent[p.r.IntN(len(p.recent))]))
		}
		if len(p.recent) < 32 {
			p.recent = append(p.recent, slices.Clone(d))
		} else {
			p.recent[p.r.IntN(32)] = slices.Clone(d)
		}
		return
	}
	s.handle(now, from, d)
}

// handle takes datagram d from the address from.
func (s *epServer) handle(now time.Time, from netip.AddrPort, d []byte) {
	s.in[from] += len(d)
	ev := s.ep.HandleDatagram(now, from, d)
	if st := s.ep.Stats(); st.Refused != st.RefusedBudget+st.RefusedHostShare+st.RefusedAttempts+st.RefusedClosed+st.RefusedRejected+st.RefusedReplayed+st.RefusedMode {
		s.fail("refusals by cause do not add up to Refused: %+v", st)
	}
	switch ev.Kind {
	case core.EventNone:
		return
	case core.EventNewConn:
		s.hellos = append(s.hellos, epDatagram{from, slices.Clone(d)})
	}
	if s.spoofer != nil && from == epSpoofAddr {
		s.spoofer.in[ev.Conn] += len(d)
	}
	largest, had := core.LargestReceived(ev.Conn)
	established := ev.Conn.Established()
	s.ep.Deliver(now, ev.Conn, from, d)
	if s.spoofer != nil && from != epSpoofAddr && established && ev.Conn.Established() && !core.Probing(d) {
		// The path invariant: the peer's newest packet (accepted with a
		// number above all before) leaves the connection sending to the
		// address it came from.
		if pn, ok := core.LargestReceived(ev.Conn); ok && (!had || pn > largest) && s.ep.Addr(ev.Conn) != from {
			s.fail("connection %x: the peer's newest packet came from %v, and it sends to %v (%+v)", ev.Conn.LocalCID(), from, s.ep.Addr(ev.Conn), ev.Conn.PathStats())
		}
	}
	if ev.Kind == core.EventNewConn {
		client := ev.Conn.RemoteCID()
		if prior := s.created[client]; prior != nil {
			s.fail("client %x's attempt created a second connection (%x, then %x)", client, prior.LocalCID(), ev.Conn.LocalCID())
		}
		s.created[client] = ev.Conn
		s.all = append(s.all, ev.Conn)
		s.conns.add(ev.Conn)
	}
	if s.accept {
		for c := s.ep.Accept(now); c != nil; c = s.ep.Accept(now) {
			s.taken[c] = true
			if s.send != nil {
				s.send(c)
			}
			s.conns.touch(c)
		}
	}
	if s.send != nil && s.taken[ev.Conn] {
		s.send(ev.Conn)
	}
	s.conns.touch(ev.Conn)
}

func (s *epServer) PollTransmit(now time.Time, buf []byte) int {
	if n, to, ok := s.ep.PollTransmit(now, buf[epAddrLen:]); ok {
		if s.own[to] += n; s.own[to] > s.in[to] {
			s.fail("the listener sent %s %d bytes of its own, having received %d", to, s.own[to], s.in[to])
		}
		putEpAddr(buf, to)
		return epAddrLen + n
	}
	for len(s.conns.dirty) > 0 {
		c := s.conns.dirty[len(s.conns.dirty)-1]
		n, to := s.ep.PollConn(now, c, buf[epAddrLen:])
		s.conns.schedule(c)
		if n > 0 {
			if p := s.spoofer; p != nil && to == epSpoofAddr {
				p.totalSent += n
				if p.out[c] += n; p.out[c] > 3*p.in[c] {
					s.fail("connection %x sent the spoofer's address %d bytes, over 3x the %d that came to it from there", c.LocalCID(), p.out[c], p.in[c])
				}
			}
			putEpAddr(buf, to)
			return epAddrLen + n
		}
		s.conns.dirty = s.conns.dirty[:len(s.conns.dirty)-1]
		delete(s.conns.isDir, c)
	}
	return 0
}

func (s *epServer) NextTimeout() time.Time { return s.conns.nextTimeout() }

func (s *epServer) HandleTimeout(now time.Time) { s.conns.fire(now, s.ep.Update) }

// epClients is the node of every client, each its own Endpoint.
type epClients struct {
	eps    []*core.Endpoint
	conns  []*core.Conn
	byAddr map[netip.AddrPort]int
	set    epConns
	// own: client Endpoints' own datagrams waiting (stateless resets).
	ownDue []int
	// send, if set, is client i's application, called after each datagram
	// its connection c took (the flow-control credit it may have brought).
	send func(i int, c *core.Conn)
	// addr, if set, is each client's address now (a NAT rebinding changes
	// it: see rebindIn); zero: epClientAddr(i).
	addr []netip.AddrPort
	// rebindIn counts down client i's datagrams, once established, until
	// its NAT rebinds (0: never, or done): from then on it sends from a
	// new address, and what goes to the old one is lost.
	rebindIn []int
}

// from returns client i's address now.
func (s *epClients) from(i int) netip.AddrPort {
	if s.addr != nil && s.addr[i].IsValid() {
		return s.addr[i]
	}
	return epClientAddr(i)
}

// sent counts a datagram of client i's towards its NAT rebinding.
func (s *epClients) sent(i int, c *core.Conn) {
	if s.rebindIn == nil || s.rebindIn[i] == 0 || !c.Established() {
		return
	}
	if s.rebindIn[i]--; s.rebindIn[i] == 0 {
		old := s.from(i)
		delete(s.byAddr, old)
		s.addr[i] = epReboundAddr(i)
		s.byAddr[s.addr[i]] = i
	}
}

// epReboundAddr is client i's address after its NAT rebinding.
func epReboundAddr(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 2, byte(i >> 8), byte(i)}), uint16(30000+i))
}

func (s *epClients) HandleDatagram(now time.Time, b []byte) {
	if len(b) < epAddrLen {
		return
	}
	i, ok := s.byAddr[epAddr(b)]
	if !ok {
		return
	}
	d := b[epAddrLen:]
	ev := s.eps[i].HandleDatagram(now, epServerAddr, d)
	if ev.Conn != nil {
		s.eps[i].Deliver(now, ev.Conn, epServerAddr, d)
		if s.send != nil {
			s.send(i, ev.Conn)
		}
		s.set.touch(ev.Conn)
	} else {
		s.ownDue = append(s.ownDue, i)
	}
}

func (s *epClients) PollTransmit(now time.Time, buf []byte) int {
	for len(s.ownDue) > 0 {
		i := s.ownDue[len(s.ownDue)-1]
		if n, _, ok := s.eps[i].PollTransmit(now, buf[epAddrLen:]); ok {
			putEpAddr(buf, s.from(i))
			return epAddrLen + n
		}
		s.ownDue = s.ownDue[:len(s.ownDue)-1]
	}
	for len(s.set.dirty) > 0 {
		c := s.set.dirty[len(s.set.dirty)-1]
		i := int(c.LocalCID() >> 48) // see newEpSim: the client's index is in its ID's top bits
		n, _ := s.eps[i].PollConn(now, c, buf[epAddrLen:])
		s.set.schedule(c)
		if n > 0 {
			s.sent(i, c)
			putEpAddr(buf, s.from(i))
			return epAddrLen + n
		}
		s.set.dirty = s.set.dirty[:len(s.set.dirty)-1]
		delete(s.set.isDir, c)
	}
	return 0
}

func (s *epClients) NextTimeout() time.Time { return s.set.nextTimeout() }

func (s *epClients) HandleTimeout(now time.Time) {
	s.set.fire(now, func(c *core.Conn) { s.eps[c.LocalCID()>>48].Update(c) })
}

// indexedSource draws connection IDs whose top 16 bits are a client's
// index (so the clients' node finds a connection's Endpoint from its ID).
type indexedSource struct {
	r rand.Source
	i uint64
}

func (s indexedSource) Uint64() uint64 { return s.i<<48 | s.r.Uint64()>>16 | 1 }

type epSim struct {
	net     *sim.Network
	server  *epServer
	clients *epClients
}

// epSimConfig is the connections' config in the Endpoint simulations: a
// handshake that may take a minute (the scenarios check who gets in, not
// how fast, through 10% loss).
var epSimConfig = &core.Config{HandshakeTimeout: 60 * time.Second, IdleTimeout: 120 * time.Second, HeartbeatPeriod: 30 * time.Second}

func newEpSim(t testing.TB, seed uint64, link sim.LinkConfig, clients int, scfg core.EndpointConfig) *epSim {
	return newEpSimWith(t, seed, link, clients, scfg, epSimConfig)
}

// newEpSimWith is newEpSim with the clients' config ccfg.
func newEpSimWith(t testing.TB, seed uint64, link sim.LinkConfig, clients int, scfg core.EndpointConfig, ccfg *core.Config) *epSim {
	rng := rand.New(rand.NewPCG(seed, 0xe9))
	scfg.Listen = true
	scfg.Rand = rand.NewPCG(rng.Uint64(), rng.Uint64())
	if scfg.Conn == nil {
		scfg.Conn = epSimConfig
	}
	sep, err := core.NewEndpoint(&scfg)
	if err != nil {
		t.Fatal(err)
	}
	s := &epSim{net: newSimNet(seed), server: newEpServer(sep)}
	s.clients = newEpClients(t, rng, s.net.Now(), clients, ccfg)
	a, b := s.net.AddNode(s.clients), s.net.AddNode(s.server)
	if err := s.net.Connect(a, b, link); err != nil {
		t.Fatal(err)
	}
	s.net.MaxStepsPerInstant = 1 << 20
	return s
}

// newEpServer is the listening node around ep.
func newEpServer(ep *core.Endpoint) *epServer {
	return &epServer{ep: ep, created: map[uint64]*core.Conn{}, taken: map[*core.Conn]bool{},
		in: map[netip.AddrPort]int{}, own: map[netip.AddrPort]int{}}
}

// newEpClients is the node of n clients, each with a connection dialed at
// now with ccfg, their Endpoints' randomness drawn from rng.
func newEpClients(t testing.TB, rng *rand.Rand, now time.Time, n int, ccfg *core.Config) *epClients {
	s := &epClients{byAddr: map[netip.AddrPort]int{}}
	for i := range n {
		ep, err := core.NewEndpoint(&core.EndpointConfig{Conn: ccfg,
			Rand: indexedSource{rand.NewPCG(rng.Uint64(), rng.Uint64()), uint64(i)}})
		if err != nil {
			t.Fatal(err)
		}
		c, err := ep.Connect(now, epServerAddr, nil)
		if err != nil {
			t.Fatal(err)
		}
		s.eps = append(s.eps, ep)
		s.conns = append(s.conns, c)
		s.byAddr[epClientAddr(i)] = i
		s.set.add(c)
	}
	return s
}

// settled: every client is established or ended.
func (s *epSim) settled() bool {
	for _, c := range s.clients.conns {
		if !c.Established() && !c.Closed() {
			return false
		}
	}
	return true
}

// run steps until every client settled, checking the invariants.
func (s *epSim) run(limit time.Duration) error {
	err := s.net.RunUntil(func() bool { return s.server.err != nil || s.settled() }, limit)
	if s.server.err != nil {
		return s.server.err
	}
	return err
}

// check verifies that the established clients are paired one to one
// with the listener's connections, and returns how many are.
func (s *epSim) check() (established int, err error) {
	for i, c := range s.clients.conns {
		if !c.Established() {
			continue
		}
		established++
		sc := s.server.created[c.LocalCID()]
		switch {
		case sc == nil:
			return 0, fmt.Errorf("client %d is established, the listener has no connection for it", i)
		case sc.RemoteCID() != c.LocalCID() || c.RemoteCID() != sc.LocalCID():
			return 0, fmt.Errorf("client %d: IDs %x->%x, the listener's %x->%x", i, c.LocalCID(), c.RemoteCID(), sc.LocalCID(), sc.RemoteCID())
		case !sc.Established():
			return 0, fmt.Errorf("client %d is established, its listener connection is not", i)
		}
	}
	if got := len(s.server.created); got != established {
		return 0, fmt.Errorf("the listener created %d connections for %d established clients", got, established)
	}
	return established, nil
}

// epSimProfiles are the links of the Endpoint simulations.
func epSimProfiles() map[string]sim.LinkConfig {
	return map[string]sim.LinkConfig{
		"loss10": {Latency: 10 * time.Millisecond, Jitter: 2 * time.Millisecond, Loss: 0.10},
		"dupreorder": {Latency: 10 * time.Millisecond, Jitter: 3 * time.Millisecond,
			Duplicate: 0.10, Reorder: 0.20, ReorderDelay: 12 * time.Millisecond},
		"harsh": {Latency: 20 * time.Millisecond, Jitter: 5 * time.Millisecond,
			Loss: 0.10, Duplicate: 0.05, Reorder: 0.10, ReorderDelay: 15 * time.Millisecond},
	}
}

// epSimEach runs fn over epSeeds' seeds in a parallel subtest for each
// link of epSimProfiles.
func epSimEach(t *testing.T, seeds int, fn func(t *testing.T, link sim.LinkConfig, seed uint64) error) {
	for name, link := range epSimProfiles() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			epSeeds(t, seeds, func(seed uint64) error { return fn(t, link, seed) })
		})
	}
}

// epSeeds runs fn over the seeds of one Endpoint simulation, the test t: n
// by default, -soak N, or only -simseed.
func epSeeds(t *testing.T, n int, fn func(seed uint64) error) {
	first, count := *simFirst, uint64(n)
	if *soakSeeds > 0 {
		count = uint64(*soakSeeds)
	}
	if *simSeed >= 0 {
		first, count = uint64(*simSeed), 1
	}
	for seed := first; seed < first+count; seed++ {
		if err := fn(seed); err != nil {
			t.Fatalf("seed %d: %v\nrerun: go test ./core/ -run '%s$' -simseed %d -v", seed, err, t.Name(), seed)
		}
	}
}

// epClients overrides TestSimEndpointThousandClients' number of clients:
// a soak of many seeds runs a smaller listener (-epclients 100 -soak 20000).
var epClientsFlag = flag.Int("epclients", 0, "TestSimEndpointThousandClients: the clients per seed (default 1000; 200 in -short)")

// TestSimEndpointThousandClients: a listener Endpoint and 1,000 clients
// handshaking at once through loss, duplication and reordering: every
// client gets exactly one connection, each went through a Retry first.
func TestSimEndpointThousandClients(t *testing.T) {
	clients, seeds := 1000, 3
	if testing.Short() {
		clients, seeds = 200, 1
	}
	if *epClientsFlag > 0 {
		clients = *epClientsFlag
	}
	epSimEach(t, seeds, func(t *testing.T, link sim.LinkConfig, seed uint64) error {
		s := newEpSim(t, seed, link, clients, core.EndpointConfig{AcceptBudget: clients})
		s.server.accept = true
		if err := s.run(120 * time.Second); err != nil {
			return err
		}
		n, err := s.check()
		if err != nil {
			return err
		}
		st := s.server.ep.Stats()
		switch {
		case n != clients:
			return fmt.Errorf("%d of %d clients established", n, clients)
		case st.Accepted != uint64(clients) || s.server.ep.Len() != clients:
			return fmt.Errorf("the listener accepted %d connections and routes to %d, want %d", st.Accepted, s.server.ep.Len(), clients)
		case st.RetriesSent < uint64(clients):
			return fmt.Errorf("%d Retries for %d clients", st.RetriesSent, clients)
		case st.Refused != 0:
			return fmt.Errorf("%d refusals within the budget", st.Refused)
		}
		return nil
	})
}

// TestSimEndpointBudget: an accept budget of 100 that the application
// never takes from, and 300 clients: exactly 100 get in, every other is
// refused (ErrRefused, in about a round trip of its validated HELLO).
func TestSimEndpointBudget(t *testing.T) {
	const clients, budget = 300, 100
	epSimEach(t, 2, func(t *testing.T, link sim.LinkConfig, seed uint64) error {
		s := newEpSim(t, seed, link, clients, core.EndpointConfig{AcceptBudget: budget, HostShare: 1})
		if err := s.run(120 * time.Second); err != nil {
			return err
		}
		n, err := s.check()
		if err != nil {
			return err
		}
		if n != budget {
			return fmt.Errorf("%d clients established, want the budget, %d", n, budget)
		}
		for i, c := range s.clients.conns {
			if !c.Established() && !errors.Is(c.Err(), core.ErrRefused) {
				return fmt.Errorf("client %d ended with %v, want ErrRefused", i, c.Err())
			}
		}
		if st := s.server.ep.Stats(); st.Accepted != budget || st.Refused < clients-budget {
			return fmt.Errorf("accepted %d, refused %d", st.Accepted, st.Refused)
		}
		if s.server.ep.Pending() != budget {
			return fmt.Errorf("%d connections wait for Accept, want %d", s.server.ep.Pending(), budget)
		}
		return nil
	})
}

// TestSimEndpointReplayedHello: the HELLOs that created connections,
// replayed: while the connection lives they reach it (no second one);
// after it ended, within the cookie's life, they create nothing and are
// refused; once the cookie expired, a Retry (stateless).
func TestSimEndpointReplayedHello(t *testing.T) {
	const clients = 50
	epSimEach(t, 2, func(t *testing.T, link sim.LinkConfig, seed uint64) error {
		s := newEpSim(t, seed, link, clients, core.EndpointConfig{AcceptBudget: clients})
		s.server.accept = true
		if err := s.run(60 * time.Second); err != nil {
			return err
		}
		ep := s.server.ep
		replay := func(want core.EventKind) error {
			for _, h := range s.server.hellos {
				if ev := ep.HandleDatagram(s.net.Now(), h.from, h.b); ev.Kind != want {
					return fmt.Errorf("replayed HELLO from %s at %v: event %d, want %d", h.from, s.net.Elapsed(), ev.Kind, want)
				}
			}
			return nil
		}
		if len(s.server.hellos) != clients {
			return fmt.Errorf("%d HELLOs created connections, want %d", len(s.server.hellos), clients)
		}
		if err := replay(core.EventDatagram); err != nil {
			return err
		}
		// Both sides close; the listener forgets its connections.
		now := s.net.Now()
		for _, c := range s.clients.conns {
			c.Close(now)
			s.clients.set.touch(c)
		}
		for _, c := range s.server.all {
			c.Close(now)
			s.server.conns.touch(c)
		}
		if err := s.net.RunUntil(func() bool { return ep.Len() == 0 }, 30*time.Second); err != nil {
			return fmt.Errorf("closing: %v (%d connections left)", err, ep.Len())
		}
		if s.net.Elapsed() >= 30*time.Second {
			return fmt.Errorf("closed at %v: the cookies expired, the replay proves nothing", s.net.Elapsed())
		}
		before := ep.Stats()
		if err := replay(core.EventNone); err != nil {
			return err
		}
		after := ep.Stats()
		buf := make([]byte, 2048)
		for i := 0; ; i++ {
			n, to, ok := ep.PollTransmit(s.net.Now(), buf)
			if !ok {
				if i != clients {
					return fmt.Errorf("%d answers to %d replays", i, clients)
				}
				break
			}
			h := s.server.hellos[i]
			if hello, _ := core.PeekHello(h.b[14:]); to != h.from || string(buf[:n]) != string(core.AppendRefuse(nil, hello.SrcCID)) {
				return fmt.Errorf("replay %d answered with %x to %v, want a refusal to %v", i, buf[:n], to, h.from)
			}
		}
		if ep.Len() != 0 || after.HellosReplayed-before.HellosReplayed != clients || after.Accepted != clients {
			return fmt.Errorf("replays after the end: %d connections, %d counted as replays, %d accepted",
				ep.Len(), after.HellosReplayed-before.HellosReplayed, after.Accepted)
		}
		// Past the cookie's life (two 30s buckets), the attempt is
		// forgotten and its cookie no longer valid: a Retry.
		if err := s.net.RunFor(61 * time.Second); err != nil {
			return err
		}
		if err := replay(core.EventNone); err != nil {
			return err
		}
		if st := ep.Stats(); st.RetriesSent-after.RetriesSent != clients || st.Accepted != clients {
			return fmt.Errorf("expired replays: %d Retries, %d accepted", st.RetriesSent-after.RetriesSent, st.Accepted)
		}
		return s.server.err
	})
}

// TestSimEndpointUnacceptedFlood: clients handshake and at once send what
// they can (Delivery messages of several fragment-filled windows, None
// and Order messages) to a listener whose application takes nothing for a
// while. On every step each connection waiting for Accept holds at most
// twice the Endpoint's UnacceptedReceiveWindow (its default, applied by
// the Endpoint itself) of its peer's data and buffers, within what the
// peer was charged (core.CheckHeldMemory): the flood is bounded by the
// accept budget times that, whatever the clients send. Then the
// application accepts them all, the full windows open, and every
// Delivery message arrives, exactly once and whole (None and Order at
// most once, whole).
func TestSimEndpointUnacceptedFlood(t *testing.T) {
	clients, seeds := 60, 3
	if testing.Short() {
		clients, seeds = 20, 1
	}
	epSimEach(t, seeds, func(t *testing.T, link sim.LinkConfig, seed uint64) error {
		return runEpFlood(t, seed, link, clients)
	})
}

// epMsg is one message of a client's workload: guarantee and bytes (the
// first four: the client's index, then the message's).
type epMsg struct {
	g core.Guarantee
	b []byte
}

// epWorkload is what each client sends (as flow control allows) and the
// listener's checker of what it reads: every Delivery message exactly once
// and whole, None and Order at most once and whole, each on its client's
// connection.
type epWorkload struct {
	s         *epSim
	msgs      [][]epMsg
	next      []int // messages handed to Send, per client
	got       []map[int]bool
	delivered int // Delivery messages read
	want      int // Delivery messages sent
	// The other way, if replies: what the listener's connection for each
	// client sends it, and the clients' reading of it.
	down                    [][]epMsg
	downNext                []int
	downGot                 []map[int]bool
	downDelivered, downWant int
}

// newEpWorkload draws count messages per client (8 to 19 if zero):
// fragmented Delivery messages of 2 to 12 KiB, None and Order messages of
// up to 3 KiB, and, if big, a last one of 16 to 64 KiB.
func newEpWorkload(s *epSim, r *rand.Rand, big bool) *epWorkload {
	n := len(s.clients.conns)
	w := &epWorkload{s: s, msgs: make([][]epMsg, n), next: make([]int, n), got: make([]map[int]bool, n)}
	for i := range w.msgs {
		w.got[i] = map[int]bool{}
		count := 8 + r.IntN(12)
		for k := range count {
			m := epMsg{g: core.Delivery}
			size := 2<<10 + r.IntN(10<<10)
			switch {
			case big && k == count-1:
				size = 16<<10 + r.IntN(48<<10)
			case r.IntN(2) == 0:
				m.g, size = core.Guarantee(1+r.IntN(2)), 8+r.IntN(3000)
			}
			w.add(i, m.g, size, r)
		}
	}
	s.clients.send = w.send
	return w
}

// replies adds to w what the listener's connection for each client sends
// it, count messages as newEpWorkload draws them (so that a spoofer's
// moves would send the spoofer's address data, not only ACKs).
func (w *epWorkload) replies(r *rand.Rand, count int) {
	n := len(w.msgs)
	w.down, w.downNext, w.downGot = make([][]epMsg, n), make([]int, n), make([]map[int]bool, n)
	for i := range w.down {
		w.downGot[i] = map[int]bool{}
		for range count {
			m := epMsg{g: core.Delivery, b: make([]byte, 2<<10+r.IntN(10<<10))}
			if r.IntN(2) == 0 {
				m.g, m.b = core.Guarantee(1+r.IntN(2)), make([]byte, 8+r.IntN(3000))
			}
			for j := range m.b {
				m.b[j] = byte(r.Uint32())
			}
			binary.BigEndian.PutUint16(m.b, uint16(i))
			binary.BigEndian.PutUint16(m.b[2:], uint16(len(w.down[i])))
			w.down[i] = append(w.down[i], m)
			if m.g == core.Delivery {
				w.downWant++
			}
		}
	}
	w.s.server.send = func(c *core.Conn) {
		i := int(c.RemoteCID() >> 48)
		for c.Established() && w.downNext[i] < len(w.down[i]) {
			m := w.down[i][w.downNext[i]]
			if err := c.Send(m.g, m.b); err != nil {
				if !errors.Is(err, core.ErrWouldBlock) {
					w.s.server.fail("the listener's connection for client %d: Send: %v", i, err)
				}
				return
			}
			w.downNext[i]++
		}
	}
}

// add appends a message of size random bytes to client i's workload.
func (w *epWorkload) add(i int, g core.Guarantee, size int, r *rand.Rand) {
	m := epMsg{g: g, b: make([]byte, size)}
	for j := range m.b {
		m.b[j] = byte(r.Uint32())
	}
	binary.BigEndian.PutUint16(m.b, uint16(i))
	binary.BigEndian.PutUint16(m.b[2:], uint16(len(w.msgs[i])))
	w.msgs[i] = append(w.msgs[i], m)
	if g == core.Delivery {
		w.want++
	}
}

// send is client i's application: it sends what flow control takes.
func (w *epWorkload) send(i int, c *core.Conn) {
	for c.Established() && w.next[i] < len(w.msgs[i]) {
		m := w.msgs[i][w.next[i]]
		if err := c.Send(m.g, m.b); err != nil {
			if !errors.Is(err, core.ErrWouldBlock) {
				w.s.server.fail("client %d: Send: %v", i, err)
			}
			return
		}
		w.next[i]++
	}
}

// kick has every established client send what it can (after more
// messages were added).
func (w *epWorkload) kick() {
	for i, c := range w.s.clients.conns {
		w.send(i, c)
		w.s.clients.set.touch(c)
	}
}

// read has the listener's application read every connection it took, and
// reports whether the workload is done (or failed).
func (w *epWorkload) read() bool {
	s := w.s.server
	for _, c := range s.all {
		for {
			m, err := c.Recv()
			if err != nil || m.Data == nil {
				break
			}
			if len(m.Data) < 4 {
				s.fail("a %d-byte message", len(m.Data))
				return true
			}
			i, k := int(binary.BigEndian.Uint16(m.Data)), int(binary.BigEndian.Uint16(m.Data[2:]))
			switch {
			case i >= len(w.msgs) || k >= len(w.msgs[i]) || int(c.RemoteCID()>>48) != i:
				s.fail("message %d of client %d on the connection of client %d", k, i, c.RemoteCID()>>48)
				return true
			case w.got[i][k]:
				s.fail("client %d's message %d delivered twice", i, k)
			case m.Guarantee != w.msgs[i][k].g || string(m.Data) != string(w.msgs[i][k].b):
				s.fail("client %d's message %d differs from what was sent", i, k)
			}
			w.got[i][k] = true
			if m.Guarantee == core.Delivery {
				w.delivered++
			}
		}
	}
	for i, c := range w.s.clients.conns {
		for w.down != nil {
			m, err := c.Recv()
			if err != nil || m.Data == nil {
				break
			}
			k := int(binary.BigEndian.Uint16(m.Data[2:]))
			switch {
			case len(m.Data) < 4 || int(binary.BigEndian.Uint16(m.Data)) != i || k >= len(w.down[i]):
				s.fail("client %d got a message not for it", i)
				return true
			case w.downGot[i][k]:
				s.fail("client %d got message %d twice", i, k)
			case m.Guarantee != w.down[i][k].g || string(m.Data) != string(w.down[i][k].b):
				s.fail("client %d's message %d from the listener differs from what was sent", i, k)
			}
			w.downGot[i][k] = true
			if m.Guarantee == core.Delivery {
				w.downDelivered++
			}
		}
	}
	return s.err != nil || (w.delivered == w.want && w.downDelivered == w.downWant)
}

func runEpFlood(t *testing.T, seed uint64, link sim.LinkConfig, clients int) error {
	s := newEpSim(t, seed, link, clients, core.EndpointConfig{AcceptBudget: clients})
	w := newEpWorkload(s, rand.New(rand.NewPCG(seed, 0xf100d)), true)
	bound := 2 * core.DefaultUnacceptedReceiveWindow
	var peak int
	check := func() bool {
		if s.server.accept {
			return true
		}
		for _, c := range s.server.all {
			if c.Closed() {
				continue
			}
			if err := core.CheckHeldMemory(c); err != nil {
				s.server.fail("connection %x waiting for Accept: %v", c.LocalCID(), err)
			}
			held := core.HeldBytes(c)
			peak = max(peak, held)
			if held > bound {
				s.server.fail("connection %x waiting for Accept holds %d bytes, over twice the unaccepted window (%d)", c.LocalCID(), held, bound)
			}
		}
		return s.server.err != nil
	}
	// The flood, for 3 s and until every client is in (a handshake
	// through loss may take longer: loss10 seed 271): nobody accepts.
	flood := func() bool { return check() || (s.net.Elapsed() >= 3*time.Second && s.settled()) }
	if err := s.net.RunUntil(flood, 60*time.Second); err != nil || s.server.err != nil {
		return cmpErr(s.server.err, err)
	}
	if n := len(s.server.all); n != clients {
		return fmt.Errorf("%d of %d clients got a connection before the application accepted", n, clients)
	}
	if peak < core.DefaultUnacceptedReceiveWindow/2 {
		return fmt.Errorf("the clients' data never filled the waiting connections (peak %d bytes held): the bound proves nothing", peak)
	}
	// The application accepts them all, and reads.
	s.server.accept = true
	now := s.net.Now()
	for c := s.server.ep.Accept(now); c != nil; c = s.server.ep.Accept(now) {
		s.server.conns.touch(c)
	}
	if err := s.net.RunUntil(w.read, 60*time.Second); err != nil || s.server.err != nil {
		return cmpErr(s.server.err, fmt.Errorf("after Accept: %v (%d of %d Delivery messages)", err, w.delivered, w.want))
	}
	return nil
}

// TestSimEndpointPaths: a listener Endpoint and clients sending to it
// (fragmented Delivery messages, None, Order) through loss, duplication
// and reordering, with a spoofer on the path that races one datagram in
// eight with an exact copy from its own address and replays older ones
// from there, and a third of the clients' NATs rebinding mid-transfer
// (after 1 to 60 of their datagrams; what goes to the old address is
// lost). On every step the listener's connections send the spoofer's
// address at most 3x what came from it. Every Delivery message arrives
// exactly once, None and Order at most once, all whole; then each
// rebound client sends once more, and once things are quiet the
// listener's connection for it sends to its new address (the Endpoint's
// Addr), validated, for most (a silent client's validation may fail
// under loss); on every packet, the client's newest one leaves its
// connection sending to where it came from.
func TestSimEndpointPaths(t *testing.T) {
	clients, seeds := 30, 3
	if testing.Short() {
		clients, seeds = 12, 1
	}
	epSimEach(t, seeds, func(t *testing.T, link sim.LinkConfig, seed uint64) error {
		return runEpPaths(t, seed, link, clients)
	})
}

func runEpPaths(t *testing.T, seed uint64, link sim.LinkConfig, clients int) error {
	s := newEpSim(t, seed, link, clients, core.EndpointConfig{AcceptBudget: clients})
	s.server.accept = true
	r := rand.New(rand.NewPCG(seed, 0x9a75))
	s.server.spoofer = &epSpoofer{r: rand.New(rand.NewPCG(seed, 0x5900f)), in: map[*core.Conn]int{}, out: map[*core.Conn]int{}}
	s.clients.addr = make([]netip.AddrPort, clients)
	s.clients.rebindIn = make([]int, clients)
	var rebound []int
	for i := range clients {
		if i%3 == 0 {
			s.clients.rebindIn[i] = 1 + r.IntN(60)
			rebound = append(rebound, i)
		}
	}
	w := newEpWorkload(s, r, false)
	w.replies(r, 8)
	if err := s.net.RunUntil(w.read, 60*time.Second); err != nil || s.server.err != nil {
		return cmpErr(s.server.err, fmt.Errorf("%v (%d of %d Delivery messages, %d of %d the other way)", err, w.delivered, w.want, w.downDelivered, w.downWant))
	}
	// Each rebound client sends once more (its newest packet is from its
	// new address, however its last ones went), and all goes quiet.
	for _, i := range rebound {
		if s.clients.rebindIn[i] != 0 { // (not yet: now)
			s.clients.rebindIn[i] = 1
			s.clients.sent(i, s.clients.conns[i])
		}
		w.add(i, core.Delivery, 100, r)
	}
	w.kick()
	if err := s.net.RunUntil(w.read, 60*time.Second); err != nil || s.server.err != nil {
		return cmpErr(s.server.err, fmt.Errorf("the last messages: %v (%d of %d Delivery messages)", err, w.delivered, w.want))
	}
	if err := s.net.RunFor(5 * time.Second); err != nil || s.server.err != nil {
		return cmpErr(s.server.err, err)
	}
	var ps core.PathStats
	for _, c := range s.server.all {
		st := c.PathStats()
		ps.Migrations += st.Migrations
		ps.Validated += st.Validated
		ps.ValidationsFailed += st.ValidationsFailed
		ps.AmplificationLimited += st.AmplificationLimited
	}
	if *simSeed >= 0 {
		t.Logf("seed %d: the spoofer sent %d bytes, was sent %d; paths %+v", seed, s.server.in[epSpoofAddr], s.server.spoofer.totalSent, ps)
	}
	// Each rebinding was followed (the invariant above, on every packet);
	// most end validated, at the new address. (Under loss, a client that
	// has nothing more to send may see all three challenges or their
	// answers lost: the connection then returns to the old address until
	// the client's next packet, PROTOCOL.md §16 rule 5.)
	validated := 0
	for _, i := range rebound {
		c := s.server.created[s.clients.conns[i].LocalCID()]
		if s.server.ep.Addr(c) == epReboundAddr(i) && c.ValidatedPeerAddr() == epReboundAddr(i) {
			validated++
		}
	}
	if validated*2 < len(rebound) {
		return fmt.Errorf("%d of %d rebound clients' connections validated at the new address", validated, len(rebound))
	}
	return nil
}

// cmpErr returns the first error that is not nil.
func cmpErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
