package rudp_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rudp-go/rudp"
)

// TestCloseWriteRequestResponse: an HTTP/1.0-like client writes its
// request and half-closes; the server reads the request to io.EOF, then
// answers on the same connection and closes; the client reads the whole
// answer, then io.EOF. After CloseWrite the client's writes fail with
// net.ErrClosed.
func TestCloseWriteRequestResponse(t *testing.T) {
	modes(t, func(t *testing.T, cfg *rudp.Config) {
		client, server, stop := pair(t, cfg)
		defer stop()
		request := randBytes(300 << 10)
		response := randBytes(1 << 20)
		served := make(chan error, 1)
		go func() {
			got, err := io.ReadAll(server) // to the client's io.EOF
			switch {
			case err != nil:
				served <- err
			case !bytes.Equal(got, request):
				served <- errors.New("the request arrived damaged")
			default:
				_, err = server.Write(response)
				served <- errors.Join(err, server.Close())
			}
		}()
		if cfg.Manual {
			// The server's Read and Write drive its socket; the client's
			// socket needs a pump while nothing of the client's waits.
			defer appLoop(client)()
		}
		_, err := client.Write(request)
		require.NoError(t, err)
		require.NoError(t, client.CloseWrite())
		require.NoError(t, client.CloseWrite(), "a second CloseWrite")
		_, err = client.Write([]byte("late"))
		require.ErrorIs(t, err, net.ErrClosed)
		var opErr *net.OpError
		require.ErrorAs(t, err, &opErr)
		require.ErrorIs(t, client.SendMessage(rudp.None, []byte("late")), net.ErrClosed)
		got, err := io.ReadAll(client)
		require.NoError(t, err)
		require.True(t, bytes.Equal(got, response), "got %d bytes of the %d-byte response", len(got), len(response))
		require.NoError(t, <-served)
		require.NoError(t, client.Close())
		require.ErrorIs(t, client.CloseWrite(), net.ErrClosed)
	})
}

// TestCloseWriteRequestResponseLossy: the request/half-close/response
// exchange through a proxy losing 5%, duplicating 2% and reordering 5% of
// the datagrams each way: the server reads the whole request, then io.EOF
// (never before: a STREAM_FIN over a gap is refused until it fills), and
// the client the whole response.
func TestCloseWriteRequestResponseLossy(t *testing.T) {
	for seed := uint64(1); seed <= 3; seed++ {
		client, server, _, stop := impairedPair(t, nil, lossyLink(seed), lossyLink(seed+100))
		request, response := randBytes(200<<10), randBytes(500<<10)
		served := make(chan error, 1)
		go func() {
			got, err := io.ReadAll(server)
			switch {
			case err != nil:
				served <- err
			case !bytes.Equal(got, request):
				served <- errors.New("the request arrived damaged or cut")
			default:
				_, err = server.Write(response)
				served <- errors.Join(err, server.CloseWrite())
			}
		}()
		_, err := client.Write(request)
		require.NoError(t, err)
		require.NoError(t, client.CloseWrite())
		got, err := io.ReadAll(client)
		require.NoError(t, err)
		require.True(t, bytes.Equal(got, response), "seed %d: got %d bytes of the %d-byte response", seed, len(got), len(response))
		require.NoError(t, <-served)
		t.Logf("seed %d: packets refused (a STREAM_FIN over a gap): server %d, client %d; lost: client %d, server %d",
			seed, server.Stats().PacketsRefused, client.Stats().PacketsRefused, client.Stats().PacketsLost, server.Stats().PacketsLost)
		stop()
	}
}

// TestCloseWriteProxy: io.Copy both ways through a proxy that passes each
// direction's end on with CloseWrite, as TCP proxies do: each end writes,
// half-closes, and reads everything the other wrote, then io.EOF.
func TestCloseWriteProxy(t *testing.T) {
	a, pa, stopA := pair(t, nil) // a ⇄ proxy
	defer stopA()
	pb, b, stopB := pair(t, nil) // proxy ⇄ b
	defer stopB()
	var proxy sync.WaitGroup
	pipe := func(dst, src *rudp.Conn) {
		defer proxy.Done()
		if _, err := io.Copy(dst, src); err != nil {
			t.Errorf("proxy copy: %v", err)
		}
		if err := dst.CloseWrite(); err != nil {
			t.Errorf("proxy CloseWrite: %v", err)
		}
	}
	proxy.Add(2)
	go pipe(pb, pa)
	go pipe(pa, pb)

	fromA, fromB := randBytes(2<<20), randBytes(700<<10)
	end := func(c *rudp.Conn, out []byte, got chan<- []byte) {
		go func() {
			b, err := io.ReadAll(c)
			if err != nil {
				t.Errorf("read: %v", err)
			}
			got <- b
		}()
		if _, err := c.Write(out); err != nil {
			t.Errorf("write: %v", err)
		}
		if err := c.CloseWrite(); err != nil {
			t.Errorf("CloseWrite: %v", err)
		}
	}
	gotA, gotB := make(chan []byte, 1), make(chan []byte, 1)
	go end(a, fromA, gotA)
	go end(b, fromB, gotB)
	require.True(t, bytes.Equal(<-gotB, fromA), "b did not read all a wrote")
	require.True(t, bytes.Equal(<-gotA, fromB), "a did not read all b wrote")
	proxy.Wait()
}

// TestCloseWriteUnblocksWrite: a Write blocked on backpressure (the peer
// reads nothing) fails with net.ErrClosed once another goroutine
// half-closes.
func TestCloseWriteUnblocksWrite(t *testing.T) {
	c1, c2, stop := pair(t, nil)
	defer stop()
	wrote := make(chan error, 1)
	go func() {
		_, err := c1.Write(randBytes(64 << 20)) // more than the peer's window and our buffer
		wrote <- err
	}()
	// Wait until the Write is held: nothing more sent for a while.
	for end, last := time.Now().Add(30*time.Second), uint64(0); ; time.Sleep(50 * time.Millisecond) {
		sent := c1.Stats().BytesSent
		if sent > 0 && sent == last {
			break
		}
		last = sent
		require.True(t, time.Now().Before(end), "the Write never blocked")
	}
	require.NoError(t, c1.CloseWrite())
	select {
	case err := <-wrote:
		require.ErrorIs(t, err, net.ErrClosed)
	case <-time.After(20 * time.Second):
		t.Fatal("the blocked Write did not return")
	}
	_ = c2
}

// TestShutdownAfterCloseWrite: Shutdown after CloseWrite still waits until
// the peer acknowledged everything written, so a program may exit after
// it; the peer reads it all, then io.EOF.
func TestShutdownAfterCloseWrite(t *testing.T) {
	modes(t, func(t *testing.T, cfg *rudp.Config) {
		c1, c2, stop := pair(t, cfg)
		defer stop()
		if cfg.Manual {
			// The receiving application's loop goes on pumping after its
			// reader saw io.EOF, as a game loop would: the close's last
			// acknowledgement comes from there (without it the close
			// ends only at its timer, seconds under the race detector).
			defer appLoop(c2)()
		}
		payload := randBytes(3 << 20)
		got := make(chan []byte, 1)
		go func() {
			b, _ := io.ReadAll(c2)
			got <- b
		}()
		wrote := make(chan error, 1)
		go func() {
			_, err := c1.Write(payload)
			wrote <- errors.Join(err, c1.CloseWrite())
		}()
		require.NoError(t, <-wrote)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		require.NoError(t, c1.Shutdown(ctx))
		select {
		case b := <-got:
			require.True(t, bytes.Equal(payload, b), "got %d bytes, want %d", len(b), len(payload))
		case <-time.After(20 * time.Second):
			t.Fatal("peer did not read to EOF")
		}
	})
}
