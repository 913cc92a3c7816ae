package core

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The Wireshark dissector (contrib/wireshark/rudp.lua) is checked against
// this package's own decoder: a real transfer over loopback is captured
// with tcpdump, every datagram each side wrote is recorded by a wrapper
// around its socket and decoded here, and tshark with the dissector must
// show every one of them, with no malformed or expert mark, and the same
// frame types in the same order. Datagrams that break the receiver's rules
// are captured too, and must be marked with the error that says why.

// dissectorScript is the dissector, relative to this package.
const dissectorScript = "../contrib/wireshark/rudp.lua"

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

// capture is a tcpdump process writing what crosses one UDP port on
// loopback to a pcap file.
type capture struct {
	cmd    *exec.Cmd
	path   string
	stderr bytes.Buffer
	done   chan error
	beacon *net.UDPConn // sends marker datagrams to the port
	to     *net.UDPAddr // the port
}

// startCapture starts tcpdump on lo for UDP port port and returns once it
// captures (a marker datagram sent to the port is in the file). It skips
// the test, saying why, where tcpdump cannot capture.
func startCapture(t *testing.T, tcpdump string, port int) *capture {
	t.Helper()
	c := &capture{path: filepath.Join(t.TempDir(), "rudp.pcap"), done: make(chan error, 1),
		to: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}}
	args := []string{"-i", "lo", "-n", "-U", "-s", "0", "-w", c.path}
	if os.Geteuid() == 0 {
		args = append(args, "-Z", "root") // keep the rights to write the file
	}
	args = append(args, "udp", "port", strconv.Itoa(port))
	c.cmd = exec.Command(tcpdump, args...)
	c.cmd.Stderr = &lockedWriter{w: &c.stderr}
	require.NoError(t, c.cmd.Start())
	go func() { c.done <- c.cmd.Wait() }()
	t.Cleanup(func() {
		if c.cmd.ProcessState == nil {
			_ = c.cmd.Process.Kill()
			<-c.done
		}
	})
	var err error
	// Unconnected: nothing listens on the port before the transfer starts,
	// and the ICMP errors that earns must not fail later writes.
	c.beacon, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	t.Cleanup(func() { c.beacon.Close() })
	if !c.mark(t, "start") {
		skipDissector(t, "tcpdump cannot capture on lo here: %s", c.stderrText())
	}
	return c
}

// lockedWriter serializes the writes of exec's copying goroutine with reads.
type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (c *capture) stderrText() string {
	w := c.cmd.Stderr.(*lockedWriter)
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.TrimSpace(w.w.String())
}

// markerPrefix starts every marker datagram: not an rudp datagram (its
// first byte is not the version).
const markerPrefix = "rudp dissector test marker "

// mark sends a marker datagram to the port until the capture file holds
// it; false if tcpdump ended first or the capture never shows it.
func (c *capture) mark(t *testing.T, name string) bool {
	t.Helper()
	payload := []byte(markerPrefix + name)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		_, err := c.beacon.WriteToUDP(payload, c.to)
		require.NoError(t, err)
		select {
		case <-c.done:
			c.done <- nil
			return false
		case <-time.After(20 * time.Millisecond):
		}
		for _, p := range readPcap(t, c.path) {
			if bytes.Equal(p.payload, payload) {
				return true
			}
		}
	}
	return false
}

// stop ends tcpdump once everything sent so far is in the file.
func (c *capture) stop(t *testing.T) {
	t.Helper()
	require.True(t, c.mark(t, "end"), "the capture never showed the end marker: %s", c.stderrText())
	require.NoError(t, c.cmd.Process.Signal(os.Interrupt))
	select {
	case <-c.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("tcpdump did not end: %s", c.stderrText())
	}
}

// udpPacket is one captured UDP datagram.
type udpPacket struct {
	srcPort, dstPort int
	payload          []byte
}

// readPcap returns the IPv4 UDP datagrams of a pcap file written by
// tcpdump on lo (Ethernet framing), as far as it is complete.
func readPcap(t *testing.T, path string) []udpPacket {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil || len(b) < 24 {
		return nil
	}
	var order binary.ByteOrder = binary.LittleEndian
	switch binary.LittleEndian.Uint32(b) {
	case 0xa1b2c3d4, 0xa1b23c4d:
	case 0xd4c3b2a1, 0x4d3cb2a1:
		order = binary.BigEndian
	default:
		t.Fatalf("%s is not a pcap file", path)
	}
	require.EqualValues(t, 1, order.Uint32(b[20:]), "link type of lo: Ethernet")
	var out []udpPacket
	for off := 24; off+16 <= len(b); {
		n := int(order.Uint32(b[off+8:]))
		if off+16+n > len(b) {
			break // being written
		}
		f := b[off+16 : off+16+n]
		off += 16 + n
		if len(f) < 14+20+8 || binary.BigEndian.Uint16(f[12:]) != 0x0800 {
			continue
		}
		ip := f[14:]
		ihl := int(ip[0]&0x0f) * 4
		if ip[9] != 17 || len(ip) < ihl+8 {
			continue
		}
		udp := ip[ihl:]
		ulen := int(binary.BigEndian.Uint16(udp[4:]))
		if ulen < 8 || ulen > len(udp) {
			continue
		}
		out = append(out, udpPacket{
			srcPort: int(binary.BigEndian.Uint16(udp[0:])),
			dstPort: int(binary.BigEndian.Uint16(udp[2:])),
			payload: udp[8:ulen],
		})
	}
	return out
}

// dissectorTools returns the paths of tcpdump and tshark, or skips.
func dissectorTools(t *testing.T) (tcpdump, tshark string) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("captures on Linux's lo only")
	}
	if testing.Short() {
		t.Skip("-short: a capture and tshark take seconds")
	}
	tcpdump, err := exec.LookPath("tcpdump")
	if err != nil {
		skipDissector(t, "tcpdump is not installed (apt-get install tcpdump)")
	}
	tshark, err = exec.LookPath("tshark")
	if err != nil {
		skipDissector(t, "tshark is not installed (apt-get install tshark)")
	}
	return tcpdump, tshark
}

// skipDissector skips the test, saying why; where .ci/run installed the
// tools (RUDP_DISSECTOR_TEST=required) it fails instead, so that CI never
// passes without having run it.
func skipDissector(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("RUDP_DISSECTOR_TEST") == "required" {
		t.Fatalf("RUDP_DISSECTOR_TEST=required, but: "+format, args...)
	}
	t.Skipf(format, args...)
}

// runTshark runs tshark with the dissector over the capture and returns
// its standard output; tshark must not report a Lua error.
func runTshark(t *testing.T, tshark, pcap string, args ...string) string {
	t.Helper()
	script, err := filepath.Abs(dissectorScript)
	require.NoError(t, err)
	all := append([]string{"-n", "-r", pcap, "-X", "lua_script:" + script,
		// A port some other dissector registered must not hide rudp.
		"-o", "udp.try_heuristic_first:TRUE"}, args...)
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(tshark, all...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	require.NoError(t, err, "tshark %s: %s", strings.Join(all, " "), stderr.String())
	require.NotContains(t, stderr.String(), "Lua", "tshark reports a Lua error")
	return stdout.String()
}

// dissected is what tshark shows of one captured datagram.
type dissected struct {
	srcPort    int
	pn         string
	checksum   string
	frameTypes []byte
	expert     string
	protocol   string
}

// tsharkFields dissects the capture, one entry per captured frame.
func tsharkFields(t *testing.T, tshark, pcap string) []dissected {
	t.Helper()
	out := runTshark(t, tshark, pcap, "-T", "fields", "-E", "separator=/t", "-E", "occurrence=a", "-E", "aggregator=,",
		"-e", "udp.srcport", "-e", "rudpgo.pn", "-e", "rudpgo.checksum", "-e", "rudpgo.frame_type",
		"-e", "_ws.expert.message", "-e", "_ws.col.Protocol")
	var rows []dissected
	for line := range strings.Lines(out) {
		f := strings.Split(strings.TrimRight(line, "\n"), "\t")
		require.Len(t, f, 6, "tshark line %q", line)
		port, err := strconv.Atoi(f[0])
		require.NoError(t, err)
		d := dissected{srcPort: port, pn: f[1], checksum: f[2], expert: f[4], protocol: f[5]}
		if f[3] != "" {
			for _, s := range strings.Split(f[3], ",") {
				v, err := strconv.ParseUint(s, 0, 8)
				require.NoError(t, err, "frame type %q", s)
				d.frameTypes = append(d.frameTypes, byte(v))
			}
		}
		rows = append(rows, d)
	}
	return rows
}

// datagramKey names a datagram as tshark shows it: its sender's port, its
// packet number and its checksum.
func datagramKey(port int, datagram []byte) string {
	end := len(datagram) - trailerLen
	return fmt.Sprintf("%d/%d/0x%08x", port, binary.BigEndian.Uint32(datagram[10:14]),
		binary.BigEndian.Uint32(datagram[end:]))
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
	tcpdump, tshark := dissectorTools(t)

	loopback := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}
	la, err := net.ListenUDP("udp", loopback)
	require.NoError(t, err)
	la.Close()
	lb, err := net.ListenUDP("udp", loopback)
	require.NoError(t, err)
	lb.Close()
	addrA, addrB := la.LocalAddr().(*net.UDPAddr), lb.LocalAddr().(*net.UDPAddr)

	capt := startCapture(t, tcpdump, addrA.Port)

	ua, err := net.DialUDP("udp", addrA, addrB)
	require.NoError(t, err)
	defer ua.Close()
	ub, err := net.DialUDP("udp", addrB, addrA)
	require.NoError(t, err)
	defer ub.Close()
	sockA, sockB := &recordingSocket{UDPConn: ua}, &recordingSocket{UDPConn: ub}
	a, err := NewSession(sockA, nil)
	require.NoError(t, err)
	b, err := NewSession(sockB, nil)
	require.NoError(t, err)

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
	bad := []struct {
		name, expert string
		body         []byte
		corruptCRC   bool
	}{
		{"valid", "", []byte{framePing}, false},
		{"bad checksum", "CRC-32C is", []byte{framePing}, true},
		{"unknown frame type", "unknown frame type 0x55", []byte{framePing, 0x55}, false},
		{"truncated varint", "varint cut off", []byte{frameStreamLimit, 0x80}, false},
		{"non-minimal varint", "non-minimal varint", []byte{frameStreamLimit, 0x80, 0x00}, false},
		{"ack range count", "range count above 63", appendAck(nil, &ackFrame{largest: 200, ranges: ranges65}), false},
		{"hello max message size", "MaxMessageSize not in 1..2^30", appendHello(nil, &HelloFrame{SrcCID: 1,
			MaxMessageSize: 1<<30 + 1, MaxDatagramSize: 1452}), false},
		{"fragment past total", "offset + length above total", appendMsg(nil, &msgFrame{guarantee: Delivery,
			fragment: true, total: 10, offset: 8, data: []byte("abc")}), false},
		{"stream 0", "stream ID 0", appendStreamCtl(nil, frameStreamOpen, &streamCtlFrame{id: 0, guarantee: Delivery}), false},
	}
	for i, c := range bad {
		buf := sealed(Header{Type: PacketData, DstCID: 7, PacketNumber: uint32(1000 + i)}, c.body)
		if c.corruptCRC {
			buf[len(buf)-1] ^= 1
		}
		_, err := capt.beacon.WriteToUDP(buf, capt.to)
		require.NoError(t, err)
	}
	capt.stop(t)

	// What each side wrote, decoded by core: datagram by datagram.
	type sent struct {
		side  string
		types []byte
	}
	wantByKey := map[string]sent{}
	wantCount := map[string]int{}
	for _, side := range []struct {
		name string
		sock *recordingSocket
		port int
		s    *Session
	}{{"a", sockA, addrA.Port, a}, {"b", sockB, addrB.Port, b}} {
		require.EqualValues(t, side.s.Stats().PacketsSent, len(side.sock.written),
			"%s: Stats.PacketsSent is the datagrams its socket took", side.name)
		for _, d := range side.sock.written {
			k := datagramKey(side.port, d)
			require.NotContains(t, wantByKey, k)
			types, ok := frameTypes(d)
			require.True(t, ok, "%s sent a datagram core does not decode", side.name)
			wantByKey[k] = sent{side.name, types}
			for _, ft := range wantByKey[k].types {
				wantCount[frameTypeName(ft)]++
			}
		}
	}

	rows := tsharkFields(t, tshark, capt.path)
	gotCount := map[string]int{}
	seen := map[string]bool{}
	var badRows []dissected
	beaconPort := capt.beacon.LocalAddr().(*net.UDPAddr).Port
	for _, r := range rows {
		if r.srcPort == beaconPort {
			if r.protocol == "rudp" {
				badRows = append(badRows, r)
			}
			continue
		}
		require.Equal(t, "rudp", r.protocol, "every datagram between the two sides is dissected as rudp: %+v", r)
		require.Empty(t, r.expert, "datagram %s/%s has an expert mark", r.pn, r.checksum)
		k := fmt.Sprintf("%d/%s/%s", r.srcPort, r.pn, r.checksum)
		w, ok := wantByKey[k]
		require.True(t, ok, "tshark shows datagram %s, which no side sent", k)
		require.False(t, seen[k], "datagram %s captured twice", k)
		seen[k] = true
		require.Equal(t, w.types, r.frameTypes, "frame types of %s's datagram %s", w.side, k)
		for _, ft := range r.frameTypes {
			gotCount[frameTypeName(ft)]++
		}
	}
	require.Len(t, seen, len(wantByKey), "every datagram the sides sent was captured and dissected")
	require.Equal(t, wantCount, gotCount)
	for _, name := range []string{"HELLO", "PADDING", "ACK", "MSG", "STREAM_OPEN", "STREAM_MSG", "STREAM_FIN", "CLOSE"} {
		require.NotZero(t, gotCount[name], "the transfer carried no %s frame", name)
	}

	// The hostile datagrams: each marked with its own error, the valid one
	// with none.
	require.Len(t, badRows, len(bad), "every crafted datagram is dissected as rudp")
	for i, c := range bad {
		if c.expert == "" {
			require.Empty(t, badRows[i].expert, c.name)
		} else {
			require.Contains(t, badRows[i].expert, c.expert, c.name)
		}
	}
	marked := runTshark(t, tshark, capt.path, "-Y", fmt.Sprintf("(_ws.malformed || _ws.expert) && udp.srcport != %d", beaconPort))
	require.Empty(t, marked, "datagrams of the transfer marked malformed")
	t.Logf("%d datagrams (a %d, b %d), frames per type: %v", len(seen), len(sockA.written), len(sockB.written), gotCount)
}
