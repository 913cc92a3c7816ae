package core

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"
)

var (
	epTestServer = netip.MustParseAddrPort("192.0.2.1:4433")
	epTestClient = netip.MustParseAddrPort("198.51.100.7:50000")
	epTestNow    = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
)

func newTestEndpoint(t testing.TB, cfg EndpointConfig) *Endpoint {
	t.Helper()
	if cfg.Rand == nil {
		cfg.Rand = rand.NewPCG(1, 2)
	}
	ep, err := NewEndpoint(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	return ep
}

// helloDatagram is a client's first datagram: a HELLO echoing cookie,
// padded to MinHelloDatagram.
func helloDatagram(cid uint64, cookie []byte) []byte {
	body := appendHello(nil, &HelloFrame{SrcCID: cid, MaxData: 1 << 20, MaxMessageSize: 1 << 20, MaxDatagramSize: 1400, Cookie: cookie})
	body = append(body, make([]byte, MinHelloDatagram-PacketOverhead-len(body))...)
	return sealed(Header{Type: PacketData}, body)
}

// pollOwn returns the Endpoint's own datagrams waiting.
func pollOwn(ep *Endpoint, now time.Time) (out [][]byte, to []netip.AddrPort) {
	buf := make([]byte, 2048)
	for {
		n, a, ok := ep.PollTransmit(now, buf)
		if !ok {
			return out, to
		}
		out = append(out, bytes.Clone(buf[:n]))
		to = append(to, a)
	}
}

// retryCookie runs the first round of the handshake and returns the cookie.
func retryCookie(t *testing.T, ep *Endpoint, now time.Time, from netip.AddrPort, cid uint64) []byte {
	t.Helper()
	if ev := ep.HandleDatagram(now, from, helloDatagram(cid, nil)); ev.Kind != EventNone {
		t.Fatalf("a HELLO without a cookie: event %d", ev.Kind)
	}
	out, to := pollOwn(ep, now)
	if len(out) != 1 || to[0] != from {
		t.Fatalf("%d answers (to %v), want one Retry to %v", len(out), to, from)
	}
	h, body, err := ParseHeader(out[0])
	if err != nil || h.Type != PacketRetry || h.DstCID != cid {
		t.Fatalf("answer %+v, %v: want a Retry to %x", h, err, cid)
	}
	cookie, err := parseRetry(body)
	if err != nil || len(cookie) != CookieLen {
		t.Fatalf("Retry cookie %x, %v", cookie, err)
	}
	return cookie
}

func TestEndpointHandshake(t *testing.T) {
	ep := newTestEndpoint(t, EndpointConfig{Listen: true})
	cookie := retryCookie(t, ep, epTestNow, epTestClient, 77)
	hello := helloDatagram(77, cookie)
	ev := ep.HandleDatagram(epTestNow, epTestClient, hello)
	if ev.Kind != EventNewConn || ev.Conn == nil {
		t.Fatalf("a HELLO with its cookie: event %+v, want a new connection", ev)
	}
	c := ev.Conn
	ep.Deliver(epTestNow, c, epTestClient, hello)
	if !c.Established() || c.RemoteCID() != 77 || ep.Addr(c) != epTestClient || ep.Pending() != 1 {
		t.Fatalf("new connection: established %v, peer %x, addr %v, pending %d", c.Established(), c.RemoteCID(), ep.Addr(c), ep.Pending())
	}
	// Retransmitted: to the same connection.
	if ev := ep.HandleDatagram(epTestNow, epTestClient, hello); ev.Kind != EventDatagram || ev.Conn != c {
		t.Fatalf("retransmitted HELLO: %+v", ev)
	}
	// The same cookie from another address, or for another ID: a Retry.
	other := netip.MustParseAddrPort("198.51.100.7:50001")
	if ev := ep.HandleDatagram(epTestNow, other, hello); ev.Kind != EventNone {
		t.Fatalf("cookie from another address: %+v", ev)
	}
	if ev := ep.HandleDatagram(epTestNow, epTestClient, helloDatagram(78, cookie)); ev.Kind != EventNone {
		t.Fatalf("cookie of another ID: %+v", ev)
	}
	if st := ep.Stats(); st.RetriesSent != 3 || st.Accepted != 1 {
		t.Fatalf("stats %+v", st)
	}
	// The server's answer goes to the client.
	buf := make([]byte, 2048)
	if n, to := ep.PollConn(epTestNow, c, buf); n < MinHelloDatagram || to != epTestClient {
		t.Fatalf("server HELLO: %d bytes to %v", n, to)
	}
	if got := ep.Accept(epTestNow); got != c || ep.Pending() != 0 || ep.Accept(epTestNow) != nil {
		t.Fatalf("Accept: %v, pending %d", got, ep.Pending())
	}
}

// TestEndpointCookieLife: a cookie is good in its time bucket and the
// next, then a Retry again.
func TestEndpointCookieLife(t *testing.T) {
	ep := newTestEndpoint(t, EndpointConfig{Listen: true, CookieBucket: 10 * time.Second})
	cookie := retryCookie(t, ep, epTestNow, epTestClient, 5)
	if ev := ep.HandleDatagram(epTestNow.Add(20*time.Second), epTestClient, helloDatagram(5, cookie)); ev.Kind != EventNone {
		t.Fatalf("a cookie two buckets old: %+v", ev)
	}
	if ev := ep.HandleDatagram(epTestNow.Add(19*time.Second), epTestClient, helloDatagram(5, cookie)); ev.Kind != EventNewConn {
		t.Fatalf("a cookie from the previous bucket: %+v", ev)
	}
	// The key is injected: another Endpoint with it takes the cookie.
	key := bytes.Repeat([]byte{7}, 32)
	a := newTestEndpoint(t, EndpointConfig{Listen: true, CookieKey: key})
	b := newTestEndpoint(t, EndpointConfig{Listen: true, CookieKey: key, Rand: rand.NewPCG(9, 9)})
	cookie = retryCookie(t, a, epTestNow, epTestClient, 6)
	if ev := b.HandleDatagram(epTestNow, epTestClient, helloDatagram(6, cookie)); ev.Kind != EventNewConn {
		t.Fatalf("the same key: %+v", ev)
	}
}

// TestEndpointBudget: the accept budget and a host's share of it.
func TestEndpointBudget(t *testing.T) {
	ep := newTestEndpoint(t, EndpointConfig{Listen: true, AcceptBudget: 8, HostShare: 2})
	accept := func(from netip.AddrPort, cid uint64) EventKind {
		cookie := retryCookie(t, ep, epTestNow, from, cid)
		ev := ep.HandleDatagram(epTestNow, from, helloDatagram(cid, cookie))
		if ev.Kind == EventNone {
			out, _ := pollOwn(ep, epTestNow)
			if len(out) != 1 || !bytes.Equal(out[0], AppendRefuse(nil, cid)) {
				t.Fatalf("not accepted, not refused: %x", out)
			}
		}
		return ev.Kind
	}
	host := func(i int) netip.AddrPort {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), 1000)
	}
	// One host alone takes up to half the budget.
	for i := range 4 {
		if k := accept(netip.AddrPortFrom(host(0).Addr(), uint16(2000+i)), uint64(100+i)); k != EventNewConn {
			t.Fatalf("host 0's connection %d: %d", i, k)
		}
	}
	if k := accept(netip.AddrPortFrom(host(0).Addr(), 3000), 200); k != EventNone {
		t.Fatal("host 0 took more than its share of a half-spent budget")
	}
	for i := 1; i <= 4; i++ {
		if k := accept(host(i), uint64(300+i)); k != EventNewConn {
			t.Fatalf("host %d: refused within the budget", i)
		}
	}
	if k := accept(host(9), 400); k != EventNone || ep.Pending() != 8 {
		t.Fatalf("over the budget: %d, pending %d", k, ep.Pending())
	}
	// Accept gives a place back.
	ep.Accept(epTestNow)
	if k := accept(host(9), 401); k != EventNewConn {
		t.Fatal("refused after Accept made room")
	}
	// A closed listener refuses without a cookie check; one that only dials drops.
	ep.Refuse()
	ep.HandleDatagram(epTestNow, host(20), helloDatagram(500, nil))
	if out, _ := pollOwn(ep, epTestNow); len(out) != 1 || !bytes.Equal(out[0], AppendRefuse(nil, 500)) {
		t.Fatalf("closed listener: %x", out)
	}
	// Each refusal is counted by its cause.
	if st := ep.Stats(); st.RefusedHostShare != 1 || st.RefusedBudget != 1 || st.RefusedClosed != 1 ||
		st.RefusedAttempts != 0 || st.RefusedRejected != 0 || st.RefusedReplayed != 0 || st.Refused != 3 {
		t.Fatalf("refusals by cause: %+v", st)
	}
	dialer := newTestEndpoint(t, EndpointConfig{})
	if ev := dialer.HandleDatagram(epTestNow, host(20), helloDatagram(500, nil)); ev.Kind != EventNone {
		t.Fatal("a dialing Endpoint took a HELLO")
	}
	if out, _ := pollOwn(dialer, epTestNow); len(out) != 0 || dialer.Stats().DroppedUnknown != 1 {
		t.Fatalf("a dialing Endpoint answered a HELLO: %x", out)
	}
}

// TestEndpointReset: a data packet for an unknown connection gets a
// stateless reset (no larger than it, within the rate limit), and the
// reset reaches the connection whose peer's ID it echoes, which ends.
func TestEndpointReset(t *testing.T) {
	client := newTestEndpoint(t, EndpointConfig{})
	server := newTestEndpoint(t, EndpointConfig{Listen: true, ResetBurst: 2, ResetRate: 1})
	c, err := client.Connect(epTestNow, epTestServer, nil)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	now := epTestNow
	// The handshake, datagram by datagram.
	for range 10 {
		for n, to := client.PollConn(now, c, buf); n > 0; n, to = client.PollConn(now, c, buf) {
			if to != epTestServer {
				t.Fatalf("client sends to %v", to)
			}
			d := bytes.Clone(buf[:n])
			if ev := server.HandleDatagram(now, epTestClient, d); ev.Conn != nil {
				server.Deliver(now, ev.Conn, epTestClient, d)
				for n, _ := server.PollConn(now, ev.Conn, buf); n > 0; n, _ = server.PollConn(now, ev.Conn, buf) {
					d := bytes.Clone(buf[:n])
					if ev := client.HandleDatagram(now, epTestServer, d); ev.Conn == c {
						client.Deliver(now, c, epTestServer, d)
					}
				}
			}
			out, _ := pollOwn(server, now)
			for _, d := range out {
				if ev := client.HandleDatagram(now, epTestServer, d); ev.Conn == c {
					client.Deliver(now, c, epTestServer, d)
				}
			}
		}
		now = now.Add(10 * time.Millisecond)
	}
	if !c.Established() {
		t.Fatal("not established")
	}
	// The server restarts: it has lost the connection.
	server = newTestEndpoint(t, EndpointConfig{Listen: true, ResetBurst: 2, ResetRate: 1, Rand: rand.NewPCG(3, 3)})
	if err := c.Send(Delivery, []byte("after the restart")); err != nil {
		t.Fatal(err)
	}
	n, _ := client.PollConn(now, c, buf)
	trigger := bytes.Clone(buf[:n])
	if ev := server.HandleDatagram(now, epTestClient, trigger); ev.Kind != EventNone {
		t.Fatal("a packet for an unknown connection was routed")
	}
	out, to := pollOwn(server, now)
	if len(out) != 1 || to[0] != epTestClient || len(out[0]) != ResetLen || len(out[0]) > len(trigger) {
		t.Fatalf("answer %x to %v", out, to)
	}
	// The rate limit: a burst of 2, then 1 a second.
	for range 3 {
		server.HandleDatagram(now, epTestClient, trigger)
	}
	if st := server.Stats(); st.ResetsSent != 2 || st.ResetsLimited != 2 {
		t.Fatalf("stats %+v", st)
	}
	ev := client.HandleDatagram(now, epTestServer, out[0])
	if ev.Kind != EventDatagram || ev.Conn != c {
		t.Fatalf("the reset was not routed to its connection: %+v", ev)
	}
	client.Deliver(now, c, epTestServer, out[0])
	if !errors.Is(c.Err(), ErrReset) || client.Len() != 0 {
		t.Fatalf("after the reset: %v, %d connections", c.Err(), client.Len())
	}
}

// TestEndpointQueueBound: the Endpoint's own datagrams wait in a bounded
// queue; past it they are dropped and counted.
func TestEndpointQueueBound(t *testing.T) {
	ep := newTestEndpoint(t, EndpointConfig{Listen: true, MaxQueued: 4})
	for i := range 10 {
		ep.HandleDatagram(epTestNow, epTestClient, helloDatagram(uint64(i+1), nil))
	}
	if out, _ := pollOwn(ep, epTestNow); len(out) != 4 || ep.Stats().DroppedQueueFull != 6 {
		t.Fatalf("%d queued, %d dropped", len(out), ep.Stats().DroppedQueueFull)
	}
}

// TestEndpointAddressFollowing: a connection follows its peer to a new
// address only for a packet it accepted.
func TestEndpointAddressFollowing(t *testing.T) {
	ep := newTestEndpoint(t, EndpointConfig{Listen: true})
	cookie := retryCookie(t, ep, epTestNow, epTestClient, 77)
	hello := helloDatagram(77, cookie)
	ev := ep.HandleDatagram(epTestNow, epTestClient, hello)
	ep.Deliver(epTestNow, ev.Conn, epTestClient, hello)
	c := ev.Conn
	moved := netip.MustParseAddrPort("198.51.100.7:50002")
	// A datagram naming c that c drops (a duplicate of its HELLO's packet) moves nothing.
	ep.Deliver(epTestNow, c, moved, hello)
	if ep.Addr(c) != epTestClient {
		t.Fatalf("followed a dropped datagram to %v", ep.Addr(c))
	}
	ping := sealed(Header{Type: PacketData, DstCID: c.LocalCID(), PacketNumber: 1}, []byte{framePing})
	if ev := ep.HandleDatagram(epTestNow, moved, ping); ev.Conn != c {
		t.Fatalf("PING not routed: %+v", ev)
	}
	ep.Deliver(epTestNow, c, moved, ping)
	if ep.Addr(c) != moved {
		t.Fatalf("did not follow an accepted packet: %v", ep.Addr(c))
	}
}

func TestEndpointConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg   EndpointConfig
		field string
	}{
		{EndpointConfig{AcceptBudget: -1}, "EndpointConfig.AcceptBudget"},
		{EndpointConfig{AcceptBudget: 4, HostShare: 5}, "EndpointConfig.HostShare"},
		{EndpointConfig{CookieKey: []byte("short")}, "EndpointConfig.CookieKey"},
		{EndpointConfig{CookieBucket: time.Millisecond}, "EndpointConfig.CookieBucket"},
		{EndpointConfig{ResetKey: make([]byte, 16)}, "EndpointConfig.ResetKey"},
		{EndpointConfig{ResetBurst: -1}, "EndpointConfig.ResetBurst"},
		{EndpointConfig{MaxQueued: 1 << 20}, "EndpointConfig.MaxQueued"},
		{EndpointConfig{MaxAttempts: -1}, "EndpointConfig.MaxAttempts"},
		{EndpointConfig{ServerID: []byte{1, 2, 3, 4}}, "EndpointConfig.ServerID"},
		{EndpointConfig{Conn: &Config{IdleTimeout: -time.Second}}, "EndpointConfig.Conn.IdleTimeout"},
		{EndpointConfig{Listen: true}, "EndpointConfig.Rand"}, // the core reads no global randomness
	} {
		_, err := NewEndpoint(&tc.cfg)
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Field != tc.field || !strings.Contains(err.Error(), "invalid "+tc.field+" ") {
			t.Errorf("%+v: %v, want an error naming %s", tc.cfg, err, tc.field)
		}
	}
	ep := newTestEndpoint(t, EndpointConfig{})
	if _, err := ep.Connect(epTestNow, netip.AddrPort{}, nil); err == nil || !strings.Contains(err.Error(), "invalid to ") {
		t.Errorf("Connect to the zero address: %v", err)
	}
	if _, err := ep.Connect(epTestNow, epTestServer, &Config{MaxDatagramSize: 1}); err == nil || !strings.Contains(err.Error(), "MaxDatagramSize") {
		t.Errorf("Connect with a bad Config: %v", err)
	}
}

// TestEndpointHostileAllocs: what a hostile sender's datagrams cost the
// Endpoint: nothing allocated for a malformed one, a HELLO without a
// valid cookie (answered by a Retry), a data packet for an unknown
// connection (a reset), or a replayed HELLO.
func TestEndpointHostileAllocs(t *testing.T) {
	ep := newTestEndpoint(t, EndpointConfig{Listen: true})
	cookie := retryCookie(t, ep, epTestNow, epTestClient, 77)
	hello := helloDatagram(77, cookie)
	c := ep.HandleDatagram(epTestNow, epTestClient, hello).Conn
	ep.Remove(c)
	unknown := sealed(Header{Type: PacketData, DstCID: 12345}, []byte{framePing})
	buf := make([]byte, 2048)
	for name, d := range map[string][]byte{
		"malformed":        bytes.Repeat([]byte{0xff}, 1300),
		"retry":            helloDatagram(99, nil),
		"bad cookie":       helloDatagram(99, bytes.Repeat([]byte{1}, CookieLen)),
		"reset":            unknown,
		"token reset":      protectedFor(12345, 200),
		"replayed":         hello,
		"unpadded hello":   sealed(Header{Type: PacketData}, appendHello(nil, &HelloFrame{SrcCID: 5})),
		"retry for nobody": AppendRetry(nil, 3, []byte("x")),
	} {
		allocs := testing.AllocsPerRun(100, func() {
			ep.HandleDatagram(epTestNow, epTestClient, d)
			for _, _, ok := ep.PollTransmit(epTestNow, buf); ok; _, _, ok = ep.PollTransmit(epTestNow, buf) {
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %.1f allocations per datagram", name, allocs)
		}
	}
	if ep.Len() != 0 || ep.Stats().Accepted != 1 {
		t.Fatalf("%d connections, %d accepted", ep.Len(), ep.Stats().Accepted)
	}
}

// protectedFor is a protected-looking datagram of n bytes to the
// connection ID cid (its body random: no keys are needed to draw a reset).
func protectedFor(cid uint64, n int) []byte {
	d := make([]byte, n)
	putHeader(d, Header{Type: PacketApp, DstCID: cid, PacketNumber: 9})
	for i := headerLen; i < n; i++ {
		d[i] = byte(i * 7)
	}
	return d
}

// TestEndpointTokenReset: a protected packet for a connection ID the
// Endpoint does not know is answered by a reset carrying the ID's token
// (docs/PROTOCOL.md §14.3), smaller than the packet (a packet no longer
// than the reset gets nothing), within the rate limit it shares with
// plaintext resets; a reset is never answered. The token is the reset
// key's: the same on another Endpoint with that key (a restarted
// process), derived from the cookie key when no reset key is given.
func TestEndpointTokenReset(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	ep := newTestEndpoint(t, EndpointConfig{Listen: true, ResetKey: key, ResetBurst: 3, ResetRate: 1})
	trigger := protectedFor(12345, 100)
	ep.HandleDatagram(epTestNow, epTestClient, trigger)
	out, to := pollOwn(ep, epTestNow)
	if len(out) != 1 || to[0] != epTestClient || len(out[0]) != TokenResetLen {
		t.Fatalf("answer %x to %v", out, to)
	}
	h, body, err := ParseHeader(out[0])
	token := ep.ResetToken(12345)
	if err != nil || h.Type != PacketReset || h.DstCID != 12345 || !bytes.Equal(body, token[:]) {
		t.Fatalf("reset %+v %x (%v), want the token %x", h, body, err, token)
	}
	// Nothing answers a datagram no longer than the reset, nor a reset.
	for name, d := range map[string][]byte{
		"as long as a reset": protectedFor(12345, TokenResetLen),
		"a token reset":      AppendTokenReset(nil, Header{DstCID: 12345}, &token),
		"a plaintext reset":  AppendReset(nil, Header{DstCID: 12345}),
	} {
		before := ep.Stats().DroppedUnknown
		ep.HandleDatagram(epTestNow, epTestClient, d)
		if out, _ := pollOwn(ep, epTestNow); len(out) != 0 || ep.Stats().DroppedUnknown != before+1 {
			t.Errorf("%s: answered %x (stats %+v)", name, out, ep.Stats())
		}
	}
	// The rate limit, shared with plaintext resets: a burst of 3.
	ep.HandleDatagram(epTestNow, epTestClient, sealed(Header{Type: PacketData, DstCID: 12345}, []byte{framePing}))
	ep.HandleDatagram(epTestNow, epTestClient, trigger)
	ep.HandleDatagram(epTestNow, epTestClient, trigger)
	if out, _ := pollOwn(ep, epTestNow); len(out) != 2 || ep.Stats().ResetsSent != 3 || ep.Stats().ResetsLimited != 1 {
		t.Fatalf("%d answers, stats %+v", len(out), ep.Stats())
	}
	// Another Endpoint with the key: the same tokens; another key, or an
	// ID, another token.
	again := newTestEndpoint(t, EndpointConfig{ResetKey: key, Rand: rand.NewPCG(9, 9)})
	other := newTestEndpoint(t, EndpointConfig{ResetKey: bytes.Repeat([]byte{8}, 32)})
	if again.ResetToken(12345) != token || other.ResetToken(12345) == token || ep.ResetToken(12346) == token {
		t.Fatal("the token is not a function of the key and the ID alone")
	}
	cookieKey := bytes.Repeat([]byte{3}, 32)
	a := newTestEndpoint(t, EndpointConfig{CookieKey: cookieKey, Rand: rand.NewPCG(1, 1)})
	b := newTestEndpoint(t, EndpointConfig{CookieKey: cookieKey, Rand: rand.NewPCG(2, 2)})
	c := newTestEndpoint(t, EndpointConfig{Rand: rand.NewPCG(2, 2)})
	if a.ResetToken(5) != b.ResetToken(5) || a.ResetToken(5) == c.ResetToken(5) {
		t.Fatal("without a ResetKey, the reset key is not the cookie key's")
	}
}

// FuzzEndpointHandleDatagram: whatever arrives, from wherever, the
// Endpoint never panics, answers no address with more than it received
// from it, and creates a connection only for a HELLO echoing a cookie it
// made for that address and ID.
func FuzzEndpointHandleDatagram(f *testing.F) {
	f.Add(helloDatagram(7, nil), uint16(1))
	f.Add(helloDatagram(7, bytes.Repeat([]byte{1}, CookieLen)), uint16(2))
	f.Add(sealed(Header{Type: PacketData, DstCID: 9}, []byte{framePing}), uint16(3))
	f.Add(AppendReset(nil, Header{DstCID: 9}), uint16(4))
	f.Add(protectedFor(9, 60), uint16(7))
	f.Add(AppendRetry(nil, 9, []byte("cookie")), uint16(5))
	f.Add(AppendRefuse(nil, 9), uint16(6))
	f.Fuzz(func(t *testing.T, b []byte, port uint16) {
		ep := newTestEndpoint(t, EndpointConfig{Listen: true})
		from := netip.AddrPortFrom(epTestClient.Addr(), port)
		// A valid attempt first, so that routed datagrams reach a connection.
		cookie := retryCookie(t, ep, epTestNow, epTestClient, 77)
		hello := helloDatagram(77, cookie)
		c := ep.HandleDatagram(epTestNow, epTestClient, hello).Conn
		ep.Deliver(epTestNow, c, epTestClient, hello)
		buf := make([]byte, 65536)
		drain := func(c *Conn) {
			for i := 0; ; i++ {
				if n, _ := ep.PollConn(epTestNow, c, buf); n == 0 {
					return
				}
				if i > 1000 {
					t.Fatal("PollConn never returns 0")
				}
			}
		}
		drain(c)
		before := ep.Stats()
		ev := ep.HandleDatagram(epTestNow, from, b)
		switch ev.Kind {
		case EventNewConn:
			t.Fatalf("a fuzzed datagram created a connection: %x", b)
		case EventDatagram:
			ep.Deliver(epTestNow, ev.Conn, from, b)
			drain(ev.Conn)
		}
		sent := 0
		for n, to, ok := ep.PollTransmit(epTestNow, buf); ok; n, to, ok = ep.PollTransmit(epTestNow, buf) {
			if to != from {
				t.Fatalf("answered %v, the datagram came from %v", to, from)
			}
			sent += n
		}
		if sent > len(b) {
			t.Fatalf("answered %d bytes to %d", sent, len(b))
		}
		if after := ep.Stats(); after.DatagramsReceived != before.DatagramsReceived+1 {
			t.Fatalf("stats %+v", after)
		}
	})
}

// TestEndpointTakeRejectQuoted: a caller with its own queue takes a new
// connection out of the budget (Take) or turns it down (Reject: refused,
// forgotten, and the client may try again); an ICMP quote finds its
// connection by either ID.
func TestEndpointTakeRejectQuoted(t *testing.T) {
	ep := newTestEndpoint(t, EndpointConfig{AcceptBudget: 1})
	ep.HandleDatagram(epTestNow, epTestClient, helloDatagram(1, nil))
	if out, _ := pollOwn(ep, epTestNow); len(out) != 0 {
		t.Fatal("a dialing Endpoint answered a HELLO")
	}
	ep.Listen()
	cookie := retryCookie(t, ep, epTestNow, epTestClient, 1)
	c := ep.HandleDatagram(epTestNow, epTestClient, helloDatagram(1, cookie)).Conn
	ep.Take(epTestNow, c)
	if ep.Pending() != 0 || ep.Accept(epTestNow) != nil {
		t.Fatal("Take left the connection in the budget")
	}
	if got := ep.QuotedConn(Quoted{DstCID: 1}); got != c {
		t.Fatal("a quote by the peer's ID")
	}
	if got := ep.QuotedConn(Quoted{SrcCID: c.LocalCID()}); got != c {
		t.Fatal("a quote of a HELLO by our ID")
	}
	cookie = retryCookie(t, ep, epTestNow, epTestClient, 2)
	d := ep.HandleDatagram(epTestNow, epTestClient, helloDatagram(2, cookie)).Conn
	if d == nil {
		t.Fatal("the budget's place was not given back")
	}
	ep.Reject(d)
	if out, _ := pollOwn(ep, epTestNow); len(out) != 1 || !bytes.Equal(out[0], AppendRefuse(nil, 2)) || ep.Len() != 1 {
		t.Fatalf("Reject: %x, %d connections", out, ep.Len())
	}
	if ev := ep.HandleDatagram(epTestNow, epTestClient, helloDatagram(2, cookie)); ev.Kind != EventNewConn {
		t.Fatalf("the rejected client's next try: %+v", ev)
	}
	if st := ep.Stats(); st.RefusedRejected != 1 || st.Refused != 1 {
		t.Fatalf("Reject's refusal by cause: %+v", st)
	}
}

// TestEndpointRefusedAttempts: past MaxAttempts remembered attempts, a new
// attempt is refused, counted as RefusedAttempts; Connect counts in
// Connected.
func TestEndpointRefusedAttempts(t *testing.T) {
	ep := newTestEndpoint(t, EndpointConfig{Listen: true, MaxAttempts: 1})
	cookie := retryCookie(t, ep, epTestNow, epTestClient, 1)
	if ev := ep.HandleDatagram(epTestNow, epTestClient, helloDatagram(1, cookie)); ev.Kind != EventNewConn {
		t.Fatalf("the first attempt: %+v", ev)
	}
	cookie = retryCookie(t, ep, epTestNow, epTestClient, 2)
	if ev := ep.HandleDatagram(epTestNow, epTestClient, helloDatagram(2, cookie)); ev.Kind != EventNone {
		t.Fatalf("an attempt past MaxAttempts: %+v", ev)
	}
	if st := ep.Stats(); st.RefusedAttempts != 1 || st.Refused != 1 || st.Accepted != 1 {
		t.Fatalf("stats %+v", st)
	}
	if _, err := ep.Connect(epTestNow, epTestServer, nil); err != nil {
		t.Fatal(err)
	}
	if st := ep.Stats(); st.Connected != 1 {
		t.Fatalf("Connected = %d, want 1", st.Connected)
	}
}

// TestEndpointUnacceptedWindow: a connection the handshake created waits
// for Accept with the receive window EndpointConfig.UnacceptedReceiveWindow
// (16 KiB by default), from its HELLO's credit on; Take (as Accept) lifts
// it, and the full window goes out at once. A negative value sets no cap.
// Before, the Endpoint capped nothing unless told (the root package
// capped its Listener's connections itself).
func TestEndpointUnacceptedWindow(t *testing.T) {
	full := DefaultConfig().ReceiveWindow
	for _, tc := range []struct {
		window int
		want   int
	}{
		{0, DefaultUnacceptedReceiveWindow},
		{40 << 10, 40 << 10},
		{-1, full},
	} {
		ep := newTestEndpoint(t, EndpointConfig{Listen: true, UnacceptedReceiveWindow: tc.window})
		cookie := retryCookie(t, ep, epTestNow, epTestClient, 7)
		d := helloDatagram(7, cookie)
		ev := ep.HandleDatagram(epTestNow, epTestClient, d)
		if ev.Kind != EventNewConn {
			t.Fatalf("window %d: event %d", tc.window, ev.Kind)
		}
		c := ev.Conn
		ep.Deliver(epTestNow, c, epTestClient, d)
		buf := make([]byte, 2048)
		n, _ := ep.PollConn(epTestNow, c, buf)
		_, body, err := ParseHeader(buf[:n])
		if err != nil {
			t.Fatal(err)
		}
		hello, ok := PeekHello(body)
		if !ok || hello.MaxData != uint64(tc.want) {
			t.Fatalf("window %d: the server's HELLO grants %d (ok %v), want %d", tc.window, hello.MaxData, ok, tc.want)
		}
		ep.Take(epTestNow, c)
		if c.window() != full || c.advertisedMaxData() != uint64(full) {
			t.Fatalf("window %d: after Take the window is %d (advertised %d), want %d", tc.window, c.window(), c.advertisedMaxData(), full)
		}
		if tc.window >= 0 && !c.acks.owed() {
			t.Fatalf("window %d: the new credit does not go out at once", tc.window)
		}
	}
}
