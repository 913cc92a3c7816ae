package rudp

import (
	"net"
	"net/netip"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestGROSegmentSize decodes the control messages a GRO read returns.
func TestGROSegmentSize(t *testing.T) {
	msg := func(level, typ int32, v int32) []byte {
		c := make([]byte, unix.CmsgSpace(4))
		h := (*unix.Cmsghdr)(unsafe.Pointer(&c[0]))
		h.Level, h.Type = level, typ
		h.SetLen(unix.CmsgLen(4))
		*(*int32)(unsafe.Pointer(&c[unix.CmsgLen(0)])) = v
		return c
	}
	gro := msg(unix.IPPROTO_UDP, unix.UDP_GRO, 1200)
	other := msg(unix.SOL_IP, unix.IP_TOS, 4)
	for _, tc := range []struct {
		name string
		c    []byte
		want int
	}{
		{"none", nil, 0},
		{"gro", gro, 1200},
		{"after another", append(append([]byte{}, other...), gro...), 1200},
		{"another only", other, 0},
		{"truncated", gro[:unix.CmsgLen(0)+2], 0},
		{"bad length", func() []byte {
			c := append([]byte{}, gro...)
			(*unix.Cmsghdr)(unsafe.Pointer(&c[0])).Len = 2
			return c
		}(), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, groSegmentSize(tc.c))
		})
	}
}

// TestGROReceive sends one GSO buffer of datagrams over loopback and checks
// that a GRO socket reads it whole, with the datagrams' size (the transfers
// of TestBatchIOModes check that the reader cuts it up right).
func TestGROReceive(t *testing.T) {
	set, err := (&Config{Manual: true}).resolve()
	require.NoError(t, err)
	sock, err := listenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	m := newMux(sock, set, 1, false)
	defer m.release()
	if !m.rxGRO {
		t.Skip("no UDP GRO on this kernel")
	}
	require.Equal(t, maxUDPPayload, m.rxSize)

	tx, err := listenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer tx.Close()
	tm := newMux(tx, set, 1, false)
	defer tm.release()
	if !tm.gso.Load() {
		t.Skip("no UDP GSO on this kernel")
	}
	b := tm.txBatches.Get().(*txBatch)
	defer tm.txBatches.Put(b)
	sizes := []int{1000, 1000, 1000, 400}
	for i, n := range sizes {
		room := b.next(n)
		for j := range n {
			room[j] = byte(i)
		}
		b.add(n)
	}
	to := sock.LocalAddr().(*net.UDPAddr).AddrPort()
	tm.send(b, to)

	var rb *rxBatch
	for end := time.Now().Add(5 * time.Second); rb == nil; {
		rb, err = m.receive(false)
		if err != nil {
			require.ErrorIs(t, err, unix.EAGAIN)
			require.True(t, time.Now().Before(end), "nothing received")
			time.Sleep(time.Millisecond)
		}
	}
	defer m.rxPool.Put(rb)
	require.Equal(t, 1, rb.n, "one coalesced buffer")
	require.Equal(t, 3400, rb.lens[0])
	require.Equal(t, 1000, rb.segs[0])
	require.Equal(t, netip.MustParseAddrPort(tx.LocalAddr().String()), rb.from[0])
}

// TestPackProbeAlone: a path MTU probe (longer than the datagrams around
// it) is a message of its own, never the segment size of a GSO run nor a
// member of one: a run whose segment size exceeds the route's MTU fails
// whole (EINVAL), which turned GSO off for the socket.
func TestPackProbeAlone(t *testing.T) {
	b := txPool(1500).Get().(*txBatch)
	defer txPool(1500).Put(b)
	b.reset()
	for _, n := range []int{1200, 1200, 1200} {
		b.next(n)
		b.add(n)
	}
	b.next(1452)
	b.addProbe(1452)
	for _, n := range []int{1200, 1100} {
		b.next(n)
		b.add(n)
	}
	b.sys.pack(b, 0, true)
	// Messages: the first three as one run, the probe alone, the last two as one run.
	require.Equal(t, 3, b.sys.msgs)
	require.Equal(t, []int{0, 3, 4}, b.sys.first[:3])
	require.Zero(t, b.sys.hdrs[1].Hdr.Controllen, "the probe carries no UDP_SEGMENT")
	require.EqualValues(t, 1452, b.sys.iovs[1].Len)
	b.reset()
	require.Zero(t, b.probe)
}

// TestTxBatchRoom: a socket whose connections may grow to 64 KiB datagrams
// (MaxDatagramSize following loopback's route) still packs a GSO buffer's
// worth of datagrams of 1472 bytes (a connection over a 1500-byte path)
// into one flush, and two of the largest; before, its batches held one
// datagram of any size.
func TestTxBatchRoom(t *testing.T) {
	for _, tc := range []struct{ size, want int }{
		{1472, gsoMaxBytes / 1472},
		{65507, 2},
		{1200, min(txBatchLen, gsoMaxBytes*2/1200)},
	} {
		pool := txPool(65507)
		b := pool.Get().(*txBatch)
		b.reset()
		n := 0
		for room := b.next(tc.size); room != nil; room = b.next(tc.size) {
			require.GreaterOrEqual(t, len(room), tc.size)
			b.add(tc.size)
			n++
		}
		require.GreaterOrEqual(t, n, tc.want, "datagrams of %d bytes", tc.size)
		b.reset()
		pool.Put(b)
	}
}

// TestSendGathered: a flush's datagrams whose data stays in a send buffer
// (txBatch.addGathered, from core's PollTransmitGather) go out as iovecs
// pointing there, the datagrams back to back in buf as one iovec, and
// arrive as the datagrams they are, GSO runs among them.
func TestSendGathered(t *testing.T) {
	set, err := (&Config{Manual: true, DisableGSO: true}).resolve()
	require.NoError(t, err)
	for _, gso := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "gso"}[gso], func(t *testing.T) {
			cfg := *set
			cfg.gso = gso
			rx, err := listenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			require.NoError(t, err)
			m := newMux(rx, &cfg, 1, false)
			defer m.release()
			tx, err := listenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			require.NoError(t, err)
			tm := newMux(tx, &cfg, 1, false)
			defer tm.release()
			if gso && !tm.gso.Load() {
				t.Skip("no UDP GSO on this kernel")
			}
			require.True(t, tm.gathers(), "sendmmsg is Linux's")

			// Datagrams: two whole, one of 20 + 3000 + 4 bytes whose 3000
			// are elsewhere, two whole, one in pieces again.
			payload := func(n int, seed byte) []byte {
				p := make([]byte, n)
				for i := range p {
					p[i] = seed + byte(i*7)
				}
				return p
			}
			type dgram struct {
				head, data, tail []byte
			}
			want := []dgram{
				{head: payload(1000, 1)},
				{head: payload(1000, 2)},
				{head: payload(20, 3), data: payload(3000, 4), tail: payload(4, 5)},
				{head: payload(900, 6)},
				{head: payload(900, 7)},
				{head: payload(16, 8), data: payload(5000, 9), tail: payload(4, 10)},
			}
			b := tm.txBatches.Get().(*txBatch)
			defer tm.txBatches.Put(b)
			b.reset()
			for _, d := range want {
				room := b.next(len(d.head) + len(d.data) + len(d.tail))
				n := copy(room, d.head)
				n += copy(room[n:], d.tail)
				b.addGathered(n, len(d.head), d.data)
			}
			b.sys.setName(netip.MustParseAddrPort(rx.LocalAddr().String()), false)
			b.sys.pack(b, 0, gso)
			// The gathered data's iovecs are the data itself.
			var bases []*byte
			for _, v := range b.sys.iovs[:b.sys.niov] {
				bases = append(bases, v.Base)
			}
			require.Contains(t, bases, &want[2].data[0])
			require.Contains(t, bases, &want[5].data[0])
			if gso {
				// Runs 0-1, 2-3, 4, 5; within a run, what is back to back
				// in buf is one iovec: 0 and 1; 2's tail and 3.
				require.Equal(t, 4, b.sys.msgs)
				require.Equal(t, 1+3+1+3, b.sys.niov)
			} else {
				// A message a datagram: an iovec a piece.
				require.Equal(t, 6, b.sys.msgs)
				require.Equal(t, 1+1+3+1+1+3, b.sys.niov)
			}

			tm.send(b, netip.MustParseAddrPort(rx.LocalAddr().String()))
			var got [][]byte
			for end := time.Now().Add(5 * time.Second); len(got) < len(want); {
				rb, err := m.receive(false)
				if err != nil {
					require.ErrorIs(t, err, unix.EAGAIN)
					require.True(t, time.Now().Before(end), "received %d of %d datagrams", len(got), len(want))
					time.Sleep(time.Millisecond)
					continue
				}
				for i := range rb.n {
					buf := rb.bufs[i][:rb.lens[i]]
					for seg := rb.segs[i]; seg > 0 && len(buf) > seg; buf = buf[seg:] {
						got = append(got, append([]byte{}, buf[:seg]...))
					}
					got = append(got, append([]byte{}, buf...))
				}
				rb.release()
			}
			require.Len(t, got, len(want))
			for i, d := range want {
				require.Equal(t, append(append(append([]byte{}, d.head...), d.data...), d.tail...), got[i], "datagram %d", i)
			}
		})
	}
}
