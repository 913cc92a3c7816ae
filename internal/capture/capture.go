// Package capture runs the tests of the Wireshark dissector
// (contrib/wireshark/rudp.lua): tcpdump captures what crosses a UDP port on
// Linux's loopback into a pcap file, and tshark dissects the file with the
// dissector. Tests use it; it skips a test, saying why, where tcpdump,
// tshark or the rights to capture are missing, and fails it instead where
// the environment says they must be there (RUDP_DISSECTOR_TEST=required,
// set by .ci/run once it installed them).
//
// A Capture is used by one test goroutine.
package capture

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Tools returns the paths of tcpdump and tshark, or skips the test (also
// in -short: a capture and tshark take seconds).
func Tools(t testing.TB) (tcpdump, tshark string) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("captures on Linux's lo only")
	}
	if testing.Short() {
		t.Skip("-short: a capture and tshark take seconds")
	}
	tcpdump, err := exec.LookPath("tcpdump")
	if err != nil {
		skip(t, "tcpdump is not installed (apt-get install tcpdump)")
	}
	tshark, err = exec.LookPath("tshark")
	if err != nil {
		skip(t, "tshark is not installed (apt-get install tshark)")
	}
	return tcpdump, tshark
}

// skip skips the test, saying why; where .ci/run installed the tools
// (RUDP_DISSECTOR_TEST=required) it fails instead, so that CI never passes
// without having run it.
func skip(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("RUDP_DISSECTOR_TEST") == "required" {
		t.Fatalf("RUDP_DISSECTOR_TEST=required, but: "+format, args...)
	}
	t.Skipf(format, args...)
}

// Capture is a tcpdump process writing what crosses one UDP port on
// loopback to a pcap file.
type Capture struct {
	// Path is the pcap file.
	Path string
	// Beacon is a socket of the test's that sends datagrams to the port:
	// the markers, and whatever else a test wants captured.
	Beacon *net.UDPConn
	// To is the port's address.
	To *net.UDPAddr

	cmd        *exec.Cmd
	stderrPath string // tcpdump's standard error: a file, so that no goroutine copies it
	done       chan error
}

// Start starts tcpdump on lo for UDP port port and returns once it
// captures (a marker datagram sent to the port is in the file). It skips
// the test, saying why, where tcpdump cannot capture.
func Start(t testing.TB, tcpdump string, port int) *Capture {
	t.Helper()
	c := &Capture{
		Path: filepath.Join(t.TempDir(), "rudp.pcap"),
		To:   &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port},
		done: make(chan error, 1),
	}
	// A 64 MiB buffer (-B, in KiB): a bulk transfer over loopback must not
	// outrun the capture (Stop checks that the kernel dropped nothing).
	args := []string{"-i", "lo", "-n", "-U", "-s", "0", "-B", "65536", "-w", c.Path}
	if os.Geteuid() == 0 {
		args = append(args, "-Z", "root") // keep the rights to write the file
	}
	args = append(args, "udp", "port", strconv.Itoa(port))
	c.cmd = exec.Command(tcpdump, args...)
	c.stderrPath = filepath.Join(filepath.Dir(c.Path), "tcpdump.stderr")
	stderr, err := os.Create(c.stderrPath)
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close() // tcpdump has its own copy
	c.cmd.Stderr = stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.done <- c.cmd.Wait() }()
	t.Cleanup(func() {
		if c.cmd.ProcessState == nil {
			_ = c.cmd.Process.Kill()
			<-c.done
		}
	})
	// Unconnected: nothing may listen on the port yet, and the ICMP errors
	// that earns must not fail later writes.
	if c.Beacon, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Beacon.Close() })
	if !c.mark(t, "start") {
		skip(t, "tcpdump cannot capture on lo here: %s", c.stderrText())
	}
	return c
}

// BeaconPort is the port the beacon sends from.
func (c *Capture) BeaconPort() int { return c.Beacon.LocalAddr().(*net.UDPAddr).Port }

// Send sends b from the beacon to the port.
func (c *Capture) Send(t testing.TB, b []byte) {
	t.Helper()
	if _, err := c.Beacon.WriteToUDP(b, c.To); err != nil {
		t.Fatal(err)
	}
}

// MarkerPrefix starts every marker datagram: not an rudp datagram (its
// first byte is not the version).
const MarkerPrefix = "rudp dissector test marker "

// mark sends a marker datagram to the port until the capture file holds
// it; false if tcpdump ended first or the capture never shows it.
func (c *Capture) mark(t testing.TB, name string) bool {
	t.Helper()
	payload := []byte(MarkerPrefix + name)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		c.Send(t, payload)
		select {
		case <-c.done:
			c.done <- nil
			return false
		case <-time.After(20 * time.Millisecond):
		}
		for _, p := range ReadPcap(t, c.Path) {
			if bytes.Equal(p.Payload, payload) {
				return true
			}
		}
	}
	return false
}

// Stop ends tcpdump once everything sent so far is in the file.
func (c *Capture) Stop(t testing.TB) {
	t.Helper()
	if !c.mark(t, "end") {
		t.Fatalf("the capture never showed the end marker: %s", c.stderrText())
	}
	if err := c.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("tcpdump did not end: %s", c.stderrText())
	}
	if text := c.stderrText(); !strings.Contains(text, "\n0 packets dropped by kernel") {
		t.Fatalf("the capture lost datagrams: %s", text)
	}
}

// stderrText is what tcpdump wrote on its standard error.
func (c *Capture) stderrText() string {
	b, _ := os.ReadFile(c.stderrPath)
	return strings.TrimSpace(string(b))
}

// UDPPacket is one captured UDP datagram.
type UDPPacket struct {
	SrcPort, DstPort int
	Payload          []byte
}

// ReadPcap returns the IPv4 UDP datagrams of a pcap file written by
// tcpdump on lo (Ethernet framing), as far as it is complete.
func ReadPcap(t testing.TB, path string) []UDPPacket {
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
	if lt := order.Uint32(b[20:]); lt != 1 {
		t.Fatalf("link type %d, not lo's Ethernet", lt)
	}
	var out []UDPPacket
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
		out = append(out, UDPPacket{
			SrcPort: int(binary.BigEndian.Uint16(udp[0:])),
			DstPort: int(binary.BigEndian.Uint16(udp[2:])),
			Payload: udp[8:ulen],
		})
	}
	return out
}

// Script is the dissector's path.
func Script(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("no path for package capture")
	}
	return filepath.Join(filepath.Dir(file), "..", "..", "contrib", "wireshark", "rudp.lua")
}

// Tshark runs tshark with the dissector over the capture and returns its
// standard output; tshark must not report a Lua error.
func Tshark(t testing.TB, tshark, pcap string, args ...string) string {
	t.Helper()
	all := append([]string{"-n", "-r", pcap, "-X", "lua_script:" + Script(t),
		// A port some other dissector registered must not hide rudp.
		"-o", "udp.try_heuristic_first:TRUE"}, args...)
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(tshark, all...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("tshark %s: %v: %s", strings.Join(all, " "), err, stderr.String())
	}
	if strings.Contains(stderr.String(), "Lua") {
		t.Fatalf("tshark reports a Lua error: %s", stderr.String())
	}
	return stdout.String()
}

// Dissected is what tshark shows of one captured UDP datagram. A UDP
// datagram holding several rudp datagrams (a GSO buffer captured before
// segmentation) has one entry in PacketNumbers, Checksums and Types per
// rudp datagram, in order.
type Dissected struct {
	SrcPort       int
	Protocol      string // "rudp" if the dissector took it
	Info          string
	PacketNumbers []string // plaintext packets' only
	Checksums     []string
	Types         []string // packet types
	Tags          []string // protected packets' AEAD tags, in hex
	FrameTypes    []byte   // every frame's type byte, of all its rudp datagrams
	Expert        string   // the expert infos' messages, comma-separated
}

// Fields dissects the capture, one entry per captured UDP datagram.
func Fields(t testing.TB, tshark, pcap string) []Dissected {
	t.Helper()
	out := Tshark(t, tshark, pcap, "-T", "fields", "-E", "separator=/t", "-E", "occurrence=a", "-E", "aggregator=,",
		"-e", "udp.srcport", "-e", "_ws.col.Protocol", "-e", "_ws.col.Info", "-e", "rudpgo.pn",
		"-e", "rudpgo.checksum", "-e", "rudpgo.type", "-e", "rudpgo.frame_type", "-e", "_ws.expert.message",
		"-e", "rudpgo.tag")
	var rows []Dissected
	for line := range strings.Lines(out) {
		f := strings.Split(strings.TrimRight(line, "\n"), "\t")
		if len(f) != 9 {
			t.Fatalf("tshark line %q", line)
		}
		port, err := strconv.Atoi(f[0])
		if err != nil {
			t.Fatal(err)
		}
		d := Dissected{SrcPort: port, Protocol: f[1], Info: f[2], PacketNumbers: list(f[3]),
			Checksums: list(f[4]), Types: list(f[5]), Expert: rudpExpert(f[7]), Tags: list(f[8])}
		for _, s := range list(f[6]) {
			v, err := strconv.ParseUint(s, 0, 8)
			if err != nil {
				t.Fatalf("frame type %q: %v", s, err)
			}
			d.FrameTypes = append(d.FrameTypes, byte(v))
		}
		rows = append(rows, d)
	}
	return rows
}

// notRudpExpert matches the expert messages that Wireshark's own dissectors
// add to datagrams rudp's dissector took, about something other than rudp:
// the IPv4 dissector's guess "Possible traceroute: hop #N, attempt #M"
// marks UDP datagrams to a port in traceroute's range (33434-33534), and
// the kernel may hand a test socket such a port (a fresh-clone CI run
// failed TestWiresharkDissectorSockets so). The message holds a comma, the
// aggregator Fields asks tshark for, so it is matched whole, not split.
var notRudpExpert = regexp.MustCompile(`Possible traceroute: hop #[0-9]+, attempt #[0-9]+,?`)

// rudpExpert is the comma-separated expert messages msgs less those that
// notRudpExpert matches.
func rudpExpert(msgs string) string {
	return strings.TrimSuffix(notRudpExpert.ReplaceAllString(msgs, ""), ",")
}

func list(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// Key names a datagram as Fields shows it: its sender's port, and for a
// plaintext packet its packet number and checksum (the last 4 bytes), for
// a protected one (its packet number masked) its tag (the last 16).
func Key(port int, datagram []byte) string {
	if t := datagram[1]; t >= 4 && t <= 7 {
		return fmt.Sprintf("%d/tag/%x", port, datagram[len(datagram)-16:])
	}
	end := len(datagram) - 4
	return fmt.Sprintf("%d/%d/0x%08x", port, binary.BigEndian.Uint32(datagram[10:14]),
		binary.BigEndian.Uint32(datagram[end:]))
}

// Key is the key of the datagram d shows (its only one).
func (d *Dissected) Key() string {
	if len(d.Tags) == 1 {
		return fmt.Sprintf("%d/tag/%s", d.SrcPort, d.Tags[0])
	}
	return fmt.Sprintf("%d/%s/%s", d.SrcPort, d.PacketNumbers[0], d.Checksums[0])
}
