package rudp

import (
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rudp-go/rudp/core"
)

// shardedSockets opens n sockets sharing a loopback port with the
// steering program for idLen-byte server IDs, or skips the test where the
// kernel cannot (no SO_REUSEPORT BPF: before Linux 4.5, or a sandbox).
func shardedSockets(t *testing.T, n, idLen int) []*net.UDPConn {
	socks, err := listenSharded("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, n, idLen)
	if errors.Is(err, syscall.ENOPROTOOPT) || errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EINVAL) {
		t.Skipf("the kernel does not steer SO_REUSEPORT groups with classic BPF here: %v", err)
	}
	require.NoError(t, err)
	t.Cleanup(func() {
		for _, s := range socks {
			s.Close()
		}
	})
	return socks
}

// TestSteeringKernel sends crafted datagrams to a port shared by four
// sockets with the steering program attached: the kernel runs it on the
// UDP payload (offset 0 is the rudp header), so each datagram whose DstCID
// carries server ID k reaches socket k, whatever port it came from, and
// every other datagram (a HELLO, a reset, garbage, a short one) reaches
// exactly one socket by the kernel's hash.
func TestSteeringKernel(t *testing.T) {
	const n = 4
	socks := shardedSockets(t, n, 2)
	to := socks[0].LocalAddr().(*net.UDPAddr).AddrPort()
	for _, s := range socks[1:] {
		require.Equal(t, to, s.LocalAddr().(*net.UDPAddr).AddrPort())
	}
	type arrival struct {
		sock int
		tag  uint32 // the packet number field: which datagram
	}
	got := make(chan arrival, 1024)
	var wg sync.WaitGroup
	for k, s := range socks {
		wg.Go(func() {
			buf := make([]byte, 2048)
			for {
				m, err := s.Read(buf)
				if err != nil {
					return
				}
				tag := uint32(1 << 31) // too short to carry one
				if m >= 14 {
					tag = binary.BigEndian.Uint32(buf[10:14])
				}
				got <- arrival{k, tag}
			}
		})
	}
	defer func() {
		for _, s := range socks {
			s.SetReadDeadline(time.Now())
		}
		wg.Wait()
	}()
	// Steered datagrams, from several source ports (a client whose
	// address changes), each tagged in its packet number field.
	want := map[uint32]int{}
	var fallback int
	send := func(from *net.UDPConn, b []byte) {
		_, err := from.WriteToUDPAddrPort(b, to)
		require.NoError(t, err)
	}
	var tag uint32
	for range 4 {
		from, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		require.NoError(t, err)
		defer from.Close()
		for k := range n {
			for _, typ := range []byte{byte(core.PacketData), byte(core.PacketRetry), 0x04, 0x07} {
				b := craftedPacket(core.Version, typ, routableCID(uint64(tag), 0x42, byte(k)), 20)
				binary.BigEndian.PutUint32(b[10:], tag)
				want[tag] = k
				tag++
				send(from, b)
			}
		}
		for _, b := range [][]byte{
			craftedPacket(core.Version, byte(core.PacketData), 0, 1200),                       // a HELLO
			craftedPacket(core.Version, byte(core.PacketReset), routableCID(1, 0x42, 1), 0),   // a reset
			craftedPacket(core.Version, byte(core.PacketData), routableCID(2, 0x42, n+3), 20), // an index beyond the group
			craftedPacket(core.Version, byte(core.PacketData), 0x0102030405060708, 20),        // a random ID
			{core.Version, 1, core.RoutableCIDOctet, 0x42, 1}, {}, {0xff},                     // short
		} {
			send(from, b)
			fallback++
		}
	}
	steered := map[uint32]int{}
	total := 0
	deadline := time.After(10 * time.Second)
	for total < len(want)+fallback {
		select {
		case a := <-got:
			total++
			if _, ok := want[a.tag]; ok {
				steered[a.tag] = a.sock
			}
		case <-deadline:
			t.Fatalf("%d of %d datagrams arrived", total, len(want)+fallback)
		}
	}
	require.Equal(t, want, steered, "datagram (tag) → socket")
}
