package rudp_test

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rudp-go/rudp"
	"github.com/rudp-go/rudp/core"
)

// tapRelay carries one client's datagrams to a server and back through an
// outside socket. An attacker on the path sees the client's packets: when
// spoofNext is set, the relay calls spoof with the header of the next data
// packet the client sends, before it forwards that packet; copy, if set,
// is called with every data packet of the client's before it is forwarded.
// The relay keeps the client's last HELLO that echoed a cookie, and hands
// what the server sends to answers while there is room.
type tapRelay struct {
	inside, outside *net.UDPConn
	target          netip.AddrPort
	client          atomic.Pointer[netip.AddrPort]
	spoofNext       atomic.Bool
	spoof           atomic.Pointer[func(cid uint64, pn uint32)]
	copy            atomic.Pointer[func(d []byte)]
	hello           atomic.Pointer[[]byte]
	answers         chan []byte
	wg              sync.WaitGroup
}

func newTapRelay(t *testing.T, target netip.AddrPort) *tapRelay {
	loop := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}
	inside, err := net.ListenUDP("udp4", loop)
	require.NoError(t, err)
	outside, err := net.ListenUDP("udp4", loop)
	require.NoError(t, err)
	r := &tapRelay{inside: inside, outside: outside, target: target, answers: make(chan []byte, 16)}
	r.wg.Go(func() {
		buf := make([]byte, 65536)
		sinceSpoof := 0 // the client's data packets since the last spoofed one
		for {
			n, from, err := inside.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			r.client.Store(&from)
			h, body, err := core.ParseHeader(buf[:n])
			if err == nil && h.Type == core.PacketData && h.DstCID == 0 {
				if hello, ok := core.PeekHello(body); ok && len(hello.Cookie) > 0 {
					d := bytes.Clone(buf[:n])
					r.hello.Store(&d)
				}
			}
			if f := r.copy.Load(); f != nil && err == nil && h.Type == core.PacketData && h.DstCID != 0 {
				(*f)(buf[:n])
			}
			if err == nil && h.Type == core.PacketData && h.DstCID != 0 {
				sinceSpoof++
				if sinceSpoof > spoofEvery && r.spoofNext.CompareAndSwap(true, false) {
					if spoof := r.spoof.Load(); spoof != nil {
						sinceSpoof = 0
						(*spoof)(h.DstCID, h.PacketNumber)
					}
				}
			}
			_, _ = outside.WriteToUDPAddrPort(buf[:n], target)
		}
	})
	r.wg.Go(func() {
		buf := make([]byte, 65536)
		for {
			n, _, err := outside.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			select {
			case r.answers <- bytes.Clone(buf[:n]):
			default:
			}
			if c := r.client.Load(); c != nil {
				_, _ = inside.WriteToUDPAddrPort(buf[:n], *c)
			}
		}
	})
	t.Cleanup(func() {
		inside.Close()
		outside.Close()
		r.wg.Wait()
	})
	return r
}

// spoofEvery is how many of the client's packets at least pass between two
// that the attacker races: each one it races arrives as a duplicate and is
// dropped, so an attacker racing them all would drop them all, which no
// protocol without authentication survives (a loaded machine, where the
// client sends less often than every 5 ms, came close: the server never
// heard the client's last acknowledgement, and its Close gave up after the
// 10 s linger).
const spoofEvery = 2

// spoofedPing is the 19-byte datagram an attacker makes from a header it
// saw: a PING for connection cid with packet number pn.
func spoofedPing(cid uint64, pn uint32) []byte {
	b := []byte{core.Version, byte(core.PacketData)}
	b = binary.BigEndian.AppendUint64(b, cid)
	b = binary.BigEndian.AppendUint32(b, pn)
	b = append(b, 0x01) // PING
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)))
}

// spoofRun downloads total bytes from a listener through a tapRelay while,
// if spoof is set, an attacker sends every few milliseconds (and every
// spoofEvery packets of the client's at most) from a third address (its
// victim, for a reflection) a PING copying the header of a packet the
// client sent, ahead of that packet: the server takes the PING
// for the newest packet, and the client's own for a duplicate. (A PING with
// a packet number the client has not sent yet, as this attacker sent
// before, ends the connection when it wins the race: the server
// acknowledges it, and the client, acknowledged a packet it never sent,
// ends with ErrProtocolViolation, as it must rather than lose the data of
// its own packet of that number, which the server then drops.) It returns
// how long the download took, the bytes the attacker sent and the bytes
// its victim received from the server.
func spoofRun(t *testing.T, total int, spoof bool) (took time.Duration, spoofed, reflected int64) {
	ln, err := rudp.Listen("udp4", "127.0.0.1:0", nil)
	require.NoError(t, err)
	defer ln.Close()
	var srv sync.WaitGroup
	defer srv.Wait()
	srv.Go(func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = c.Write(make([]byte, total))
	})
	relay := newTapRelay(t, ln.Addr().(*net.UDPAddr).AddrPort())
	victim, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	var refl atomic.Int64
	var bg sync.WaitGroup
	defer bg.Wait()
	defer victim.Close()
	bg.Go(func() {
		buf := make([]byte, 65536)
		for {
			n, _, err := victim.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			refl.Add(int64(n))
		}
	})
	stop := make(chan struct{})
	var attacker sync.WaitGroup
	var mu sync.Mutex // spoofed, and the end of the attack
	if spoof {
		to := ln.Addr().(*net.UDPAddr).AddrPort()
		spoofPing := func(cid uint64, pn uint32) {
			mu.Lock()
			defer mu.Unlock()
			select {
			case <-stop:
				return
			default:
			}
			d := spoofedPing(cid, pn)
			if _, err := victim.WriteToUDPAddrPort(d, to); err == nil {
				spoofed += int64(len(d))
			}
		}
		relay.spoof.Store(&spoofPing)
		attacker.Go(func() {
			tick := time.NewTicker(5 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					relay.spoofNext.Store(true)
				}
			}
		})
	}
	start := time.Now()
	c, err := rudp.Dial("udp4", relay.inside.LocalAddr().String(), nil)
	require.NoError(t, err)
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	n, err := io.Copy(io.Discard, c)
	took = time.Since(start)
	mu.Lock()
	close(stop)
	mu.Unlock()
	attacker.Wait()
	require.NoError(t, err, "after %d of %d bytes, %v", n, total, took)
	require.EqualValues(t, total, n)
	time.Sleep(50 * time.Millisecond) // what the server still sent the victim arrives
	return took, spoofed, refl.Load()
}

// TestSpoofedPingMovesNothing: an attacker that copies a client's packet
// header into a 19-byte PING sent from a third address (its victim) every
// 5 ms during a download neither hijacks the connection nor turns the
// server into a reflector: the download completes, and the victim receives
// at most 3x what the attacker sent (path challenges, core/path.go). Before,
// each spoofed PING moved the server's connection to the victim's address
// until the client's next packet, and the download went to the victim.
func TestSpoofedPingMovesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("a 16 MiB download twice")
	}
	const total = 16 << 20
	base, _, quiet := spoofRun(t, total, false)
	took, spoofed, reflected := spoofRun(t, total, true)
	t.Logf("download of %d MiB: %v alone, %v with the attacker; the attacker sent %d bytes, its victim received %d (%.2fx)",
		total>>20, base, took, spoofed, reflected, float64(reflected)/float64(max(spoofed, 1)))
	require.Zero(t, quiet, "the victim received datagrams with no attacker")
	require.Positive(t, spoofed)
	require.LessOrEqual(t, reflected, 3*spoofed, "reflection beyond 3x what the attacker sent")
}

// TestReplayedHelloCreatesNothing: the HELLO a client sent with its cookie,
// replayed from the client's address after the connection ended (within
// the cookie's lifetime), is refused: no connection is made and none is
// offered to Accept. Before, the listener accepted a ghost connection per
// replay, which Accept returned and whose HELLOs went to the client.
func TestReplayedHelloCreatesNothing(t *testing.T) {
	ln, err := rudp.Listen("udp4", "127.0.0.1:0", nil)
	require.NoError(t, err)
	defer ln.Close()
	target := ln.Addr().(*net.UDPAddr).AddrPort()
	relay := newTapRelay(t, target)
	c, err := rudp.Dial("udp4", relay.inside.LocalAddr().String(), nil)
	require.NoError(t, err)
	sc, err := ln.Accept()
	require.NoError(t, err)
	_, err = c.Write([]byte("hi"))
	require.NoError(t, err)
	buf := make([]byte, 16)
	_, err = io.ReadFull(sc, buf[:2])
	require.NoError(t, err)
	require.NoError(t, c.Close())
	require.NoError(t, sc.Close())
	for i := 0; i < 500 && rudp.ListenerConns(ln) > 0; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	require.Zero(t, rudp.ListenerConns(ln), "the connection ended")
	hello := relay.hello.Load()
	require.NotNil(t, hello, "the client's HELLO with its cookie")

	for len(relay.answers) > 0 {
		<-relay.answers
	}
	for range 3 {
		_, err = relay.outside.WriteToUDPAddrPort(*hello, target)
		require.NoError(t, err)
	}
	var answer []byte
	select {
	case answer = <-relay.answers:
	case <-time.After(5 * time.Second):
		t.Fatal("no answer to the replayed HELLO")
	}
	require.LessOrEqual(t, len(answer), len(*hello), "the answer is no larger than the replay")
	require.Zero(t, rudp.ListenerConns(ln), "a replayed HELLO made a connection")

	accepted := make(chan net.Conn, 1)
	go func() {
		if g, err := ln.Accept(); err == nil {
			accepted <- g
		}
		close(accepted)
	}()
	time.Sleep(20 * time.Millisecond) // Accept would return a queued ghost at once
	ln.Close()
	if g, ok := <-accepted; ok {
		g.Close()
		t.Fatal("Accept returned a ghost connection made by a replayed HELLO")
	}
}

// TestPacketConnReadFromIgnoresSpoofer: while an attacker on the path
// races every packet of a client's with a copy of it from a third address
// (RFC 9000 §9.3.2), a PacketConn's ReadFrom reports the client's address
// for each of its messages, never the third one (a reply there would go to
// the attacker's victim): the connection may send to an address it moved
// to, but the application sees the last validated one.
func TestPacketConnReadFromIgnoresSpoofer(t *testing.T) {
	cfg := &rudp.Config{Guarantee: rudp.Order}
	pc, err := rudp.ListenPacket("udp4", "127.0.0.1:0", cfg)
	require.NoError(t, err)
	defer pc.Close()
	to := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	relay := newTapRelay(t, to)
	victim, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer victim.Close()
	race := func(d []byte) {
		_, _ = victim.WriteToUDPAddrPort(d, to)
	}
	relay.copy.Store(&race)
	defer relay.copy.Store(nil)
	c, err := rudp.Dial("udp4", relay.inside.LocalAddr().String(), cfg)
	require.NoError(t, err)
	defer c.Close()
	want := relay.outside.LocalAddr().String()
	buf := make([]byte, 64)
	for i := range 200 {
		_, err := c.Write([]byte{byte(i)})
		require.NoError(t, err)
		pc.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, from, err := pc.ReadFrom(buf)
		require.NoError(t, err, "message %d", i)
		require.Equal(t, want, from.String(), "message %d: ReadFrom reported another address than the client's", i)
	}
}
