package rudp_test

import (
	"bytes"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rudp-go/rudp"
)

// TestMessageOverPeerLimit: a message over the peer's MaxMessageSize (which
// its handshake announced) fails at once, as *net.OpError matching
// ErrMessageTooLarge, from SendMessage, from Write of a message view and
// from PacketConn.WriteTo; the connection keeps working. (It used to be
// accepted, its fragments acknowledged and dropped by the receiver, and
// the receiver read io.EOF without the messages after it.)
func TestMessageOverPeerLimit(t *testing.T) {
	big := make([]byte, 1536<<10)
	bigCfg := func(g rudp.Guarantee) *rudp.Config {
		return &rudp.Config{MaxMessageSize: 2 << 20, ReceiveWindow: 4 << 20, Guarantee: g}
	}
	requireTooLarge := func(t *testing.T, err error) {
		t.Helper()
		require.ErrorIs(t, err, rudp.ErrMessageTooLarge)
		var op *net.OpError
		require.True(t, errors.As(err, &op), "%T %v", err, err)
	}
	for _, g := range []rudp.Guarantee{rudp.Delivery, rudp.Order} {
		t.Run(g.String(), func(t *testing.T) {
			ln, err := rudp.Listen("udp", "127.0.0.1:0", nil) // MaxMessageSize 1 MiB
			require.NoError(t, err)
			defer ln.Close()
			accepted := acceptOne(ln)
			c1, err := rudp.Dial("udp", ln.Addr().String(), bigCfg(g))
			require.NoError(t, err)
			defer c1.Close()
			c2 := <-accepted
			require.NotNil(t, c2)
			defer c2.Close()

			requireTooLarge(t, c1.SendMessage(rudp.Delivery, big))
			if g != rudp.Delivery {
				_, err := c1.Write(big) // a message view: one message per Write
				requireTooLarge(t, err)
			}
			require.NoError(t, c1.SendMessage(rudp.Delivery, []byte("after")))
			require.NoError(t, c2.SetReadDeadline(time.Now().Add(10*time.Second)))
			buf := make([]byte, 64)
			n, _, err := c2.ReadMessage(buf)
			require.NoError(t, err)
			require.Equal(t, "after", string(buf[:n]))
		})
	}
	t.Run("PacketConn", func(t *testing.T) {
		pc1, err := rudp.ListenPacket("udp", "127.0.0.1:0", bigCfg(rudp.Delivery))
		require.NoError(t, err)
		defer pc1.Close()
		pc2, err := rudp.ListenPacket("udp", "127.0.0.1:0", nil)
		require.NoError(t, err)
		defer pc2.Close()
		_, err = pc1.WriteTo([]byte("hello"), pc2.LocalAddr())
		require.NoError(t, err)
		require.NoError(t, pc2.SetReadDeadline(time.Now().Add(10*time.Second)))
		buf := make([]byte, 64)
		n, _, err := pc2.ReadFrom(buf) // the connection is established: pc1 knows pc2's limit
		require.NoError(t, err)
		require.Equal(t, "hello", string(buf[:n]))
		_, err = pc1.WriteTo(big, pc2.LocalAddr())
		requireTooLarge(t, err)
		_, err = pc1.WriteTo(bytes.Repeat([]byte("x"), 1<<20), pc2.LocalAddr())
		require.NoError(t, err, "a message at the peer's limit")
	})
	t.Run("PacketConn before the handshake", func(t *testing.T) {
		// The first WriteTo to a new peer is queued before its limit is
		// known: the connection ends, and a later WriteTo reports why.
		pc1, err := rudp.ListenPacket("udp", "127.0.0.1:0", bigCfg(rudp.Delivery))
		require.NoError(t, err)
		defer pc1.Close()
		pc2, err := rudp.ListenPacket("udp", "127.0.0.1:0", nil)
		require.NoError(t, err)
		defer pc2.Close()
		_, err = pc1.WriteTo(big, pc2.LocalAddr())
		require.NoError(t, err, "queued before the handshake")
		var reported error
		for deadline := time.Now().Add(10 * time.Second); reported == nil && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
			_, reported = pc1.WriteTo([]byte("x"), pc2.LocalAddr())
		}
		requireTooLarge(t, reported)
		// A new connection to the peer works.
		require.NoError(t, pc2.SetReadDeadline(time.Now().Add(10*time.Second)))
		buf := make([]byte, 2<<20)
		for {
			_, err := pc1.WriteTo([]byte("after"), pc2.LocalAddr())
			require.NoError(t, err)
			n, _, err := pc2.ReadFrom(buf)
			require.NoError(t, err)
			require.NotEqual(t, len(big), n, "the message over the peer's limit arrived")
			if string(buf[:n]) == "after" {
				break
			}
		}
	})
}
