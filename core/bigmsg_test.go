package core_test

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rudp-go/rudp/core"
	"github.com/rudp-go/rudp/internal/sim"
)

// TestLargeMessageManyHoles is a regression case: a 1 MiB Delivery message
// sent in one flight with every 7th datagram lost arrives in far more than
// 64 pieces. The receiver once dropped such a message as "scattered", and
// since its acknowledged fragments are never sent again, every later
// Delivery message waited behind it forever.
func TestLargeMessageManyHoles(t *testing.T) {
	net := sim.New(7)
	// A fixed 8 MiB window: the whole message leaves in one flight, so
	// about 115 holes are open at once.
	cfgA := &core.Config{Rand: rand.NewPCG(1, 1), DisablePacing: true,
		NewCongestionController: func(int) core.CongestionController { return fixedWindow{} }}
	cfgB := &core.Config{Rand: rand.NewPCG(2, 2)}
	a, err := core.NewConn(cfgA, 11, net.Now())
	require.NoError(t, err)
	b, err := core.NewConn(cfgB, 22, net.Now())
	require.NoError(t, err)
	ia, ib := net.AddNode(a), net.AddNode(b)
	n := 0
	require.NoError(t, net.ConnectAsym(ia, ib, sim.LinkConfig{
		Latency: 5 * time.Millisecond,
		Filter: func(time.Time, []byte) bool {
			n++
			return n < 10 || n%7 != 0 // the handshake passes, then every 7th is lost
		},
	}, sim.LinkConfig{Latency: 5 * time.Millisecond}))
	require.NoError(t, net.RunUntil(func() bool { return a.Established() && b.Established() }, time.Second))

	msg := make([]byte, 1<<20)
	for i := range msg {
		msg[i] = byte(i * 7)
	}
	require.NoError(t, a.Send(core.Delivery, msg))
	require.NoError(t, a.Send(core.Delivery, []byte("after")))
	var got [][]byte
	require.NoError(t, net.RunUntil(func() bool {
		for {
			m, err := b.Recv()
			require.NoError(t, err)
			if m.Data == nil {
				return len(got) == 2
			}
			got = append(got, bytes.Clone(m.Data))
		}
	}, time.Minute), "stats a=%+v b=%+v", a.Stats(), b.Stats())
	require.True(t, bytes.Equal(msg, got[0]))
	require.Equal(t, "after", string(got[1]))
}

// fixedWindow is a congestion controller that never limits.
type fixedWindow struct{}

func (fixedWindow) OnPacketSent(time.Time, int)                             {}
func (fixedWindow) OnPacketAcked(time.Time, int, time.Time, *core.RTTStats) {}
func (fixedWindow) OnPacketsLost(time.Time, int, time.Time, bool)           {}
func (fixedWindow) Window() int                                             { return 8 << 20 }
