package core

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// TestRoutableConnectionIDLayout pins the layout of docs/PROTOCOL.md §1.1:
// the first octet (config rotation 0, length 8 less one), the server ID
// in the clear, then bytes of the injected source; and what
// CarriesServerID recognises.
func TestRoutableConnectionIDLayout(t *testing.T) {
	if RoutableCIDOctet != 0x07 || ConnectionIDLen != 8 || MaxServerIDLen != 3 {
		t.Fatalf("constants %#x %d %d", RoutableCIDOctet, ConnectionIDLen, MaxServerIDLen)
	}
	for _, id := range [][]byte{{0}, {0xab}, {1, 2}, {0xff, 0xfe, 0xfd}} {
		src := rand.NewPCG(5, 6)
		want := rand.NewPCG(5, 6).Uint64()
		cid := RoutableConnectionID(src, id)
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], cid)
		var w [8]byte
		binary.BigEndian.PutUint64(w[:], want)
		if b[0] != 0x07 || string(b[1:1+len(id)]) != string(id) || string(b[1+len(id):]) != string(w[1+len(id):]) {
			t.Fatalf("server ID %x: %x (source drew %x)", id, b, w)
		}
		if !CarriesServerID(cid, id) {
			t.Fatalf("%x does not carry %x", b, id)
		}
		other := append([]byte(nil), id...)
		other[len(other)-1]++
		if CarriesServerID(cid, other) {
			t.Fatalf("%x carries %x too", b, other)
		}
		// A random ID with another first octet carries no server ID.
		if CarriesServerID(cid&^(0xff<<56)|0x08<<56, id) {
			t.Fatal("another first octet")
		}
	}
}

// TestEndpointServerID: an Endpoint with a server ID puts it in every
// connection ID it chooses, accepted or dialed; it answers a packet for an
// unknown connection whose ID carries its server ID with a stateless reset
// (a restart lost it), and drops one carrying another server's ID
// unanswered (DroppedMisrouted): the reset would end that server's
// connection.
func TestEndpointServerID(t *testing.T) {
	id := []byte{0x0a, 0x01}
	ep := newTestEndpoint(t, EndpointConfig{Listen: true, ServerID: id})
	for i := range 50 {
		cookie := retryCookie(t, ep, epTestNow, epTestClient, uint64(100+i))
		ev := ep.HandleDatagram(epTestNow, epTestClient, helloDatagram(uint64(100+i), cookie))
		if ev.Kind != EventNewConn || !CarriesServerID(ev.Conn.LocalCID(), id) {
			t.Fatalf("accepted connection %d: %+v", i, ev)
		}
		c, err := ep.Connect(epTestNow, epTestServer, nil)
		if err != nil || !CarriesServerID(c.LocalCID(), id) {
			t.Fatalf("dialed connection %d: %x, %v", i, c.LocalCID(), err)
		}
	}
	ping := func(cid uint64) []byte {
		return sealed(Header{Type: PacketData, DstCID: cid, PacketNumber: 9}, []byte{framePing})
	}
	src := rand.NewPCG(9, 9)
	ep.HandleDatagram(epTestNow, epTestClient, ping(RoutableConnectionID(src, id)))
	if out, _ := pollOwn(ep, epTestNow); len(out) != 1 || ep.Stats().ResetsSent != 1 {
		t.Fatalf("own server ID: %d answers, stats %+v", len(out), ep.Stats())
	}
	for _, cid := range []uint64{
		RoutableConnectionID(src, []byte{0x0a, 0x02}), // the next shard's
		RoutableConnectionID(src, []byte{0x0b, 0x01}), // another machine's
		0x1122334455667788,                            // random: no server's
	} {
		ep.HandleDatagram(epTestNow, epTestClient, ping(cid))
	}
	if out, _ := pollOwn(ep, epTestNow); len(out) != 0 || ep.Stats().DroppedMisrouted != 3 || ep.Stats().ResetsSent != 1 {
		t.Fatalf("other servers' IDs: %d answers, stats %+v", len(out), ep.Stats())
	}
	// Dropping one costs nothing (a flood of misrouted datagrams).
	misrouted := ping(RoutableConnectionID(src, []byte{0x0a, 0x02}))
	if n := testing.AllocsPerRun(100, func() { ep.HandleDatagram(epTestNow, epTestClient, misrouted) }); n != 0 {
		t.Fatalf("a misrouted datagram: %v allocations", n)
	}
	// Without a server ID, every unknown ID may be one of ours.
	plain := newTestEndpoint(t, EndpointConfig{Listen: true})
	plain.HandleDatagram(epTestNow, epTestClient, ping(RoutableConnectionID(src, id)))
	if plain.Stats().ResetsSent != 1 || plain.Stats().DroppedMisrouted != 0 {
		t.Fatalf("no server ID: stats %+v", plain.Stats())
	}
}
