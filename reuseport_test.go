package rudp

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/bpf"

	"github.com/rudp-go/rudp/core"
)

// craftedPacket is a datagram with the rudp header (version, type, DstCID,
// packet number) and body bytes after it; the steering program reads the
// header only, so the trailer is 4 zero bytes.
func craftedPacket(version, typ byte, dstCID uint64, body int) []byte {
	b := make([]byte, 14+body+4)
	b[0], b[1] = version, typ
	binary.BigEndian.PutUint64(b[2:], dstCID)
	binary.BigEndian.PutUint32(b[10:], 0x7fffffff) // no tag TestSteeringKernel uses
	return b
}

// routableCID is a connection ID carrying serverID.
func routableCID(seed uint64, serverID ...byte) uint64 {
	return core.RoutableConnectionID(rand.NewPCG(seed, 1), serverID)
}

func steeringVM(t testing.TB, idLen int) *bpf.VM {
	vm, err := bpf.NewVM(steeringProgram(idLen))
	require.NoError(t, err)
	return vm
}

func steer(t testing.TB, vm *bpf.VM, b []byte) uint32 {
	v, err := vm.Run(b)
	require.NoError(t, err)
	return uint32(v)
}

// TestSteeringProgram runs the reuseport steering program (x/net/bpf's
// VM, the kernel's classic BPF semantics: an out-of-range load ends it
// with 0) over crafted datagrams of every packet type: one whose DstCID
// carries a server ID goes to the socket that ID's last byte names;
// everything else falls back to the kernel's hash (noSteering), never to
// an index by accident, short or garbage datagrams included.
func TestSteeringProgram(t *testing.T) {
	for idLen := 1; idLen <= core.MaxServerIDLen; idLen++ {
		vm := steeringVM(t, idLen)
		id := []byte{9, 8, 5}[:idLen] // last byte: the socket index
		last := uint32(id[idLen-1])
		cid := routableCID(uint64(idLen), id...)
		for _, tc := range []struct {
			name string
			b    []byte
			want uint32
		}{
			{"data", craftedPacket(core.Version, byte(core.PacketData), cid, 40), last},
			{"data, empty body", craftedPacket(core.Version, byte(core.PacketData), cid, 0), last},
			{"retry", craftedPacket(core.Version, byte(core.PacketRetry), cid, 20), last},
			{"handshake", craftedPacket(core.Version, 0x04, cid, 30), last},
			{"handshake, phase bit", craftedPacket(core.Version, 0x05, cid, 30), last},
			{"application", craftedPacket(core.Version, 0x06, cid, 30), last},
			{"application, phase bit", craftedPacket(core.Version, 0x07, cid, 30), last},
			{"reset: the peer's ID", craftedPacket(core.Version, byte(core.PacketReset), cid, 0), noSteering},
			{"hello: DstCID 0", craftedPacket(core.Version, byte(core.PacketData), 0, 1200), noSteering},
			{"random ID", craftedPacket(core.Version, byte(core.PacketData), 0x1122334455667788, 40), noSteering},
			{"other version", craftedPacket(core.Version+1, byte(core.PacketData), cid, 40), noSteering},
			{"type 0", craftedPacket(core.Version, 0, cid, 40), noSteering},
			{"type 8", craftedPacket(core.Version, 8, cid, 40), noSteering},
			{"type 0xff", craftedPacket(core.Version, 0xff, cid, 40), noSteering},
			{"empty", nil, noSteering},
		} {
			require.Equal(t, tc.want, steer(t, vm, tc.b), "server ID length %d: %s", idLen, tc.name)
		}
		// Every prefix shorter than the shortest packet falls back, also
		// where a load beyond it would have ended the program with 0.
		full := craftedPacket(core.Version, byte(core.PacketData), cid, 0)
		for n := range core.PacketOverhead {
			require.Equal(t, uint32(noSteering), steer(t, vm, full[:n]), "server ID length %d: %d bytes", idLen, n)
		}
		// Every index a byte can name.
		for k := range 256 {
			id := append(id[:idLen-1:idLen-1], byte(k))
			b := craftedPacket(core.Version, byte(core.PacketData), routableCID(uint64(k), id...), 10)
			require.Equal(t, uint32(k), steer(t, vm, b))
		}
	}
}

// wantSteering is what the steering program must return for b: the rules
// of steeringProgram's doc, written out.
func wantSteering(b []byte, idLen int) uint32 {
	if len(b) < core.PacketOverhead || b[0] != core.Version {
		return noSteering
	}
	if t := b[1]; t == 0 || t == byte(core.PacketReset) || t > 7 {
		return noSteering
	}
	if b[2] != core.RoutableCIDOctet {
		return noSteering
	}
	return uint32(b[2+idLen])
}

// FuzzSteeringProgram: on any datagram the program returns a socket
// index only as its rules say (the server ID's last byte of a routable
// DstCID), and noSteering otherwise; it never fails to run.
func FuzzSteeringProgram(f *testing.F) {
	f.Add(craftedPacket(core.Version, byte(core.PacketData), routableCID(1, 3), 8), uint8(1))
	f.Add(craftedPacket(core.Version, byte(core.PacketReset), routableCID(2, 1, 2), 0), uint8(2))
	f.Add([]byte{core.Version, 1, core.RoutableCIDOctet}, uint8(3))
	vms := make([]*bpf.VM, core.MaxServerIDLen+1)
	for n := 1; n <= core.MaxServerIDLen; n++ {
		vms[n] = steeringVM(f, n)
	}
	f.Fuzz(func(t *testing.T, b []byte, n uint8) {
		idLen := 1 + int(n)%core.MaxServerIDLen
		require.Equal(t, wantSteering(b, idLen), steer(t, vms[idLen], b))
	})
}
