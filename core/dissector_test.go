package core

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rudp-go/rudp/internal/capture"
)

// The Wireshark dissector (contrib/wireshark/rudp.lua) is checked against
// this package's own decoder: a real transfer over loopback is captured
// with tcpdump, every datagram each side wrote is recorded by a wrapper
// around its socket and decoded here, and tshark with the dissector must
// show every one of them, with no malformed or expert mark, and the same
// frame types in the same order. Datagrams that break the receiver's rules
// are captured too, and must be marked with the error that says why.

// recordingSocket is a UDPLike that records every datagram written.
type recordingSocket struct {
	*net.UDPConn
	mu      sync.Mutex
	written [][]byte
}

func (s *recordingSocket) Write(p []byte) (int, error) {
	n, err := s.UDPConn.Write(p)
	if err == nil {
		s.mu.Lock()
		s.written = append(s.written, bytes.Clone(p))
		s.mu.Unlock()
	}
	return n, err
}

// frameTypeName names a frame type byte the way PROTOCOL.md does.
func frameTypeName(t byte) string {
	switch {
	case t&0xf0 == frameMsg:
		return "MSG"
	case t&0xf0 == frameStreamMsg:
		return "STREAM_MSG"
	}
	return [...]string{"PADDING", "PING", "ACK", "HELLO", "CLOSE", "PATH_CHALLENGE", "PATH_RESPONSE",
		"STREAM_FIN", "STREAM_OPEN", "STREAM_RESET", "STOP_SENDING", "STREAM_CREDIT", "STREAM_LIMIT"}[t]
}

func TestWiresharkDissector(t *testing.T) {
	tcpdump, tshark := capture.Tools(t)
	t.Run("plaintext", func(t *testing.T) { dissectTransfer(t, tcpdump, tshark, false) })
	// Packet protection (PROTOCOL.md §19), keyed as a handshake would:
	// tshark sees version, type and DstCID of the protected packets.
	t.Run("protected", func(t *testing.T) { dissectTransfer(t, tcpdump, tshark, true) })
}

// dissectTransfer runs the transfer, protected or not, and checks what
// tshark shows of it.
func dissectTransfer(t *testing.T, tcpdump, tshark string, protected bool) {

	ua, ub := connectedLoopbackPair(t)
	defer ua.Close()
	defer ub.Close()
	addrA, addrB := ua.LocalAddr().(*net.UDPAddr), ub.LocalAddr().(*net.UDPAddr)

	capt := capture.Start(t, tcpdump, addrA.Port)
	sockA, sockB := &recordingSocket{UDPConn: ua}, &recordingSocket{UDPConn: ub}
	a, err := NewSession(sockA, nil)
	require.NoError(t, err)
	b, err := NewSession(sockB, nil)
	require.NoError(t, err)
	if protected {
		require.NoError(t, ProtectPair(a.Conn(), b.Conn(), rand.New(rand.NewPCG(1, 2)), tls.TLS_AES_128_GCM_SHA256, 50))
	}

	deadline := time.Now().Add(60 * time.Second)
	pumpUntil := func(what string, done func() bool) {
		t.Helper()
		for !done() {
			require.True(t, time.Now().Before(deadline), "timed out waiting for %s", what)
			for _, s := range []*Session{a, b} {
				if err := s.Maintain(); err != nil && !s.Closed() {
					require.NoError(t, err)
				}
			}
		}
	}
	pumpUntil("the handshake", func() bool { return a.Conn().Established() && b.Conn().Established() })

	// What a sends: messages of the three guarantees, a set, a message in
	// fragments, a stream with data and its end, then its half-close of
	// stream 0 and its close. b answers a few messages and closes.
	big := bytes.Repeat([]byte("fragmented "), 2000) // 22 000 bytes: 20 fragments
	var want [][]byte
	for i := range 5 {
		for _, g := range []Guarantee{None, Order, Delivery} {
			require.NoError(t, a.SendPayload(g, fmt.Appendf(nil, "%v message %d", g, i)))
		}
	}
	require.NoError(t, a.AsSet(func(s *Set) error {
		for i := range 3 {
			if err := s.SendPayload(Delivery, fmt.Appendf(nil, "set member %d", i)); err != nil {
				return err
			}
		}
		return s.SendPayload(Order, []byte("set member order"))
	}))
	require.NoError(t, a.SendPayload(Delivery, big))
	want = append(want, big)
	id, err := a.Conn().OpenStream(Delivery)
	require.NoError(t, err)
	streamData := bytes.Repeat([]byte("stream "), 500) // 3500 bytes: fragments too
	require.NoError(t, a.Conn().SendStream(id, Delivery, streamData))
	require.NoError(t, a.Conn().SendStream(id, None, []byte("stream none")))
	require.NoError(t, a.Conn().CloseStreamWrite(id))
	for i := range 3 {
		require.NoError(t, b.SendPayload(Delivery, fmt.Appendf(nil, "answer %d", i)))
	}

	// b reads stream 0 to io.EOF and the stream to its end.
	var gotBig, streamEOF, zeroEOF bool
	var streamGot []byte
	var streamOpened, closedWrite bool
	pumpUntil("a's data at b", func() bool {
		for {
			m, err := b.RecvMessage()
			if errors.Is(err, io.EOF) {
				zeroEOF = true
				break
			}
			require.NoError(t, err)
			if m.Guarantee == 0 {
				break
			}
			gotBig = gotBig || bytes.Equal(m.Data, big)
		}
		if !streamOpened {
			if sid, g, ok := b.Conn().AcceptStream(); ok {
				require.Equal(t, id, sid)
				require.Equal(t, Delivery, g)
				streamOpened = true
			}
		}
		for streamOpened && !streamEOF {
			m, err := b.Conn().RecvStream(id)
			if errors.Is(err, io.EOF) {
				streamEOF = true
				break
			}
			require.NoError(t, err)
			if m.Guarantee == 0 {
				break
			}
			if m.Guarantee == Delivery {
				streamGot = append(streamGot, m.Data...)
			}
		}
		if gotBig && streamEOF && !closedWrite {
			require.NoError(t, a.CloseWrite())
			closedWrite = true
		}
		return zeroEOF && streamEOF
	})
	require.True(t, gotBig, "b read the fragmented message")
	require.Equal(t, streamData, streamGot)

	var gotAnswers int
	pumpUntil("b's answers at a", func() bool {
		for {
			m, err := a.RecvMessage()
			require.NoError(t, err)
			if m.Guarantee == 0 {
				return gotAnswers == 3
			}
			gotAnswers++
		}
	})
	require.NoError(t, b.Close())
	require.NoError(t, a.Close())
	pumpUntil("both closed", func() bool { return a.Closed() && b.Closed() })
	require.NoError(t, a.Conn().Err())
	require.NoError(t, b.Conn().Err())

	// Datagrams that break the receiver's rules, sent from another port:
	// each must be marked with the error that says why. The first, valid,
	// makes the conversation rudp for the dissector, so that the one with a
	// bad checksum is dissected (and marked) rather than left as data.
	var ranges65 []ackRange // one range more than an ACK may carry
	for i := range maxAckRanges + 1 {
		ranges65 = append(ranges65, ackRange{lo: uint64(2 * i), hi: uint64(2 * i)})
	}
	datagram := func(body []byte) []byte {
		return sealed(Header{Type: PacketData, DstCID: 7, PacketNumber: 1000}, body)
	}
	corrupt := func(b []byte) []byte {
		b[len(b)-1] ^= 1
		return b
	}
	// sealedPacket is a protected packet's bytes as the path sees them
	// (PROTOCOL.md §19): only version, type and DstCID are readable.
	sealedPacket := func(typ byte, size int) []byte {
		b := bytes.Repeat([]byte{0xA5}, size)
		b[0], b[1] = Version, typ
		binary.BigEndian.PutUint64(b[2:], 7)
		return b
	}
	// A GSO buffer captured whole: datagrams of one size back to back, the
	// last one shorter.
	segment := datagram(append([]byte{framePing}, make([]byte, 40)...))
	gso := slices.Concat(segment, segment, segment, datagram([]byte{framePing}))
	hello := appendHello(nil, &HelloFrame{SrcCID: 1, MaxMessageSize: 1 << 20, MaxDatagramSize: 1452})
	bad := []struct {
		name, expert string
		datagram     []byte
		info         string // what the Info column shows, if not ""
	}{
		{"valid", "", datagram([]byte{framePing}), "[PING]"},
		{"bad checksum", "CRC-32C is", corrupt(datagram([]byte{framePing})), ""},
		{"unknown frame type", "unknown frame type 0x55", datagram([]byte{framePing, 0x55}), ""},
		{"truncated varint", "varint cut off", datagram([]byte{frameStreamLimit, 0x80}), ""},
		{"non-minimal varint", "non-minimal varint", datagram([]byte{frameStreamLimit, 0x80, 0x00}), ""},
		{"ack range count", "range count above 63", datagram(appendAck(nil, &ackFrame{largest: 200, ranges: ranges65})), ""},
		{"hello max message size", "MaxMessageSize not in 1..2^30", datagram(appendHello(nil, &HelloFrame{SrcCID: 1,
			MaxMessageSize: 1<<30 + 1, MaxDatagramSize: 1452})), ""},
		{"fragment past total", "offset + length above total", datagram(appendMsg(nil, &msgFrame{guarantee: Delivery,
			fragment: true, total: 10, offset: 8, data: []byte("abc")})), ""},
		{"stream 0", "stream ID 0", datagram(appendStreamCtl(nil, frameStreamOpen, &streamCtlFrame{id: 0, guarantee: Delivery})), ""},
		{"gso buffer", "", gso, "GSO 4 datagrams"},
		// What the security handshake adds (PROTOCOL.md §18, §19): the
		// HELLO's protection byte, the CRYPTO frame, protected packets.
		{"hello protection", "", datagram(append(hello, 0xF2)), "HELLO(pre-shared key)"},
		{"crypto", "", datagram([]byte{0x0F, 0, 0, 3, 'a', 'b', 'c'}), "CRYPTO(Initial)"},
		{"crypto level", "key level above 2", datagram([]byte{0x0F, 3, 0, 1, 'x'}), ""},
		{"crypto end", "offset + length above 2^20", datagram([]byte{0x0F, 1, 0x80, 0x80, 0x40, 1, 'x'}), ""},
		{"handshake packet", "", sealedPacket(0x05, 60), "Handshake DCID=0x0000000000000007 [protected]"},
		{"application packet", "", sealedPacket(0x06, 1200), "Application DCID=0x0000000000000007 [protected]"},
		{"protected gso buffer", "", slices.Concat(sealedPacket(0x06, 100), sealedPacket(0x07, 100), sealedPacket(0x06, 31)),
			"GSO 3 datagrams"},
		{"protected too short", "shorter than 31 bytes", sealedPacket(0x07, 30), ""},
	}
	for _, c := range bad {
		capt.Send(t, c.datagram)
	}
	capt.Stop(t)

	// What each side wrote, decoded by core: datagram by datagram.
	type sent struct {
		side  string
		types []byte
	}
	wantByKey := map[string]sent{}
	wantCount := map[string]int{}
	sealedCount := 0 // protected datagrams
	for _, side := range []struct {
		name string
		sock *recordingSocket
		port int
		s    *Session
	}{{"a", sockA, addrA.Port, a}, {"b", sockB, addrB.Port, b}} {
		require.EqualValues(t, side.s.Stats().PacketsSent, len(side.sock.written),
			"%s: Stats.PacketsSent is the datagrams its socket took", side.name)
		for _, d := range side.sock.written {
			k := capture.Key(side.port, d)
			require.NotContains(t, wantByKey, k)
			if d[1] != byte(PacketData) {
				wantByKey[k] = sent{side.name, nil} // protected: its frames are not in the clear
				sealedCount++
				continue
			}
			types, ok := frameTypes(d)
			require.True(t, ok, "%s sent a datagram core does not decode", side.name)
			wantByKey[k] = sent{side.name, types}
			for _, ft := range wantByKey[k].types {
				wantCount[frameTypeName(ft)]++
			}
		}
	}

	rows := capture.Fields(t, tshark, capt.Path)
	gotCount := map[string]int{}
	seen := map[string]bool{}
	var badRows []capture.Dissected
	beaconPort := capt.BeaconPort()
	for _, r := range rows {
		if r.SrcPort == beaconPort {
			if r.Protocol == "rudp" {
				badRows = append(badRows, r)
			}
			continue
		}
		require.Equal(t, "rudp", r.Protocol, "every datagram between the two sides is dissected as rudp: %+v", r)
		require.Empty(t, r.Expert, "datagram %v has an expert mark", r)
		require.Len(t, r.Types, 1, "one rudp datagram per UDP datagram (no GSO here): %v", r)
		k := r.Key()
		w, ok := wantByKey[k]
		require.True(t, ok, "tshark shows datagram %s, which no side sent", k)
		require.False(t, seen[k], "datagram %s captured twice", k)
		seen[k] = true
		require.Equal(t, w.types, r.FrameTypes, "frame types of %s's datagram %s", w.side, k)
		for _, ft := range r.FrameTypes {
			gotCount[frameTypeName(ft)]++
		}
	}
	require.Len(t, seen, len(wantByKey), "every datagram the sides sent was captured and dissected")
	require.Equal(t, wantCount, gotCount)
	inClear := []string{"HELLO", "PADDING", "ACK", "MSG", "STREAM_OPEN", "STREAM_MSG", "STREAM_FIN", "CLOSE"}
	if protected {
		require.Positive(t, sealedCount, "the connection sealed its packets")
		inClear = []string{"HELLO", "PADDING"} // the first flight's
	}
	for _, name := range inClear {
		require.NotZero(t, gotCount[name], "the transfer carried no %s frame", name)
	}

	// The hostile datagrams: each marked with its own error, the valid one
	// with none.
	require.Len(t, badRows, len(bad), "every crafted datagram is dissected as rudp")
	for i, c := range bad {
		if c.expert == "" {
			require.Empty(t, badRows[i].Expert, c.name)
		} else {
			require.Contains(t, badRows[i].Expert, c.expert, c.name)
		}
		require.Contains(t, badRows[i].Info, c.info, c.name)
	}
	marked := capture.Tshark(t, tshark, capt.Path, "-Y", fmt.Sprintf("(_ws.malformed || _ws.expert) && udp.srcport != %d", beaconPort))
	require.Empty(t, marked, "datagrams of the transfer marked malformed")
	t.Logf("%d datagrams (a %d, b %d; %d protected), frames in the clear per type: %v", len(seen),
		len(sockA.written), len(sockB.written), sealedCount, gotCount)
}

// connectedLoopbackPair returns two UDP sockets on loopback, each connected
// to the other. A port found free may be taken before it is bound (another
// test's socket: EADDRINUSE), so a pair is tried again with other ports.
func connectedLoopbackPair(t *testing.T) (a, b *net.UDPConn) {
	t.Helper()
	loopback := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}
	free := func() *net.UDPAddr {
		c, err := net.ListenUDP("udp", loopback)
		require.NoError(t, err)
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr)
	}
	for try := 1; ; try++ {
		addrA, addrB := free(), free()
		a, err := net.DialUDP("udp", addrA, addrB)
		if err == nil {
			if b, err = net.DialUDP("udp", addrB, addrA); err == nil {
				return a, b
			}
			a.Close()
		}
		if try == 10 {
			t.Fatal(err)
		}
	}
}
