package rudp_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/nettest"

	"github.com/rudp-go/rudp"
	"github.com/rudp-go/rudp/core"
)

// withPump runs appLoop over both connections in Manual mode (nothing
// else); it returns the stop.
func withPump(cfg *rudp.Config, c1, c2 *rudp.Conn) func() {
	if !cfg.Manual {
		return func() {}
	}
	return appLoop(c1, c2)
}

// streamPair opens a stream on a new connection's dialing side and accepts
// it on the listening side.
func streamPair(t testing.TB, cfg *rudp.Config, o *rudp.StreamOptions) (opened, accepted *rudp.Stream, stop func()) {
	c1, c2, stopConns := pair(t, cfg)
	stopPump := withPump(cfg, c1, c2)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	opened, err := c1.OpenStream(ctx, o)
	require.NoError(t, err)
	accepted, err = c2.AcceptStream(ctx)
	require.NoError(t, err)
	return opened, accepted, func() {
		opened.Close()
		accepted.Close()
		stopPump()
		stopConns()
	}
}

// TestNettestStream runs x/net/nettest's conformance suite on a stream
// pair, with the opening side as either end, in default and Manual mode.
func TestNettestStream(t *testing.T) {
	modes(t, func(t *testing.T, cfg *rudp.Config) {
		for _, openerFirst := range []bool{true, false} {
			t.Run(fmt.Sprint("opener-first=", openerFirst), func(t *testing.T) {
				nettest.TestConn(t, func() (net.Conn, net.Conn, func(), error) {
					s1, s2, stop := streamPair(t, cfg, nil)
					if !openerFirst {
						s1, s2 = s2, s1
					}
					return s1, s2, stop, nil
				})
			})
		}
	})
}

// TestStreamRequestResponse: a request on a stream of its own, ended by
// CloseWrite; the response comes back on it, and stream 0 is untouched.
func TestStreamRequestResponse(t *testing.T) {
	modes(t, func(t *testing.T, cfg *rudp.Config) {
		c1, c2, stop := pair(t, cfg)
		defer stop()
		defer withPump(cfg, c1, c2)()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		want := make([]byte, 200<<10)
		rand.Read(want)
		served := make(chan error, 1)
		go func() {
			s, err := c2.AcceptStream(ctx)
			if err != nil {
				served <- err
				return
			}
			req, err := io.ReadAll(s)
			if err == nil {
				_, err = s.Write(append([]byte("echo:"), req...))
			}
			if err == nil {
				err = s.Close()
			}
			served <- err
		}()
		s, err := c1.OpenStream(ctx, &rudp.StreamOptions{Guarantee: rudp.Delivery})
		require.NoError(t, err)
		require.Equal(t, rudp.Delivery, s.Guarantee())
		_, err = s.Write(want)
		require.NoError(t, err)
		require.NoError(t, s.CloseWrite())
		_, err = s.Write([]byte("late"))
		require.ErrorIs(t, err, net.ErrClosed)
		resp, err := io.ReadAll(s)
		require.NoError(t, err)
		require.NoError(t, <-served)
		// The end is read again, as on a TCP connection, even once the
		// stream ended on both sides.
		_, err = s.Read(make([]byte, 1))
		require.Equal(t, io.EOF, err)
		require.True(t, bytes.Equal(append([]byte("echo:"), want...), resp))
		require.NoError(t, s.Close())
	})
}

// TestStreamMessages: an Order stream carries one message per Write and
// per Read, on its own; the guarantee travelled with the opening.
func TestStreamMessages(t *testing.T) {
	modes(t, func(t *testing.T, cfg *rudp.Config) {
		s1, s2, stop := streamPair(t, cfg, &rudp.StreamOptions{Guarantee: rudp.Order})
		defer stop()
		require.Equal(t, rudp.Order, s2.Guarantee())
		require.Equal(t, s1.ID(), s2.ID())
		for i := range 3 {
			_, err := s1.Write([]byte(fmt.Sprint("state ", i)))
			require.NoError(t, err)
		}
		require.NoError(t, s1.SendMessage(rudp.Delivery, []byte("chat")))
		buf := make([]byte, 100)
		var got []string
		for len(got) < 4 {
			s2.SetReadDeadline(time.Now().Add(10 * time.Second))
			n, g, err := s2.ReadMessage(buf)
			require.NoError(t, err)
			if g == rudp.Order || g == rudp.Delivery {
				got = append(got, string(buf[:n]))
			}
		}
		require.Equal(t, []string{"state 0", "state 1", "state 2", "chat"}, got)
	})
}

// TestStreamLimitWaits: OpenStream waits while the peer's
// MaxIncomingStreams is reached, returns ctx's error when ctx ends, and
// goes on once a stream of the peer's ended (both directions closed).
func TestStreamLimitWaits(t *testing.T) {
	modes(t, func(t *testing.T, cfg *rudp.Config) {
		cfg.MaxIncomingStreams = 1
		c1, c2, stop := pair(t, cfg)
		defer stop()
		defer withPump(cfg, c1, c2)()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s1, err := c1.OpenStream(ctx, nil)
		require.NoError(t, err)
		short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancelShort()
		_, err = c1.OpenStream(short, nil)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		s2, err := c2.AcceptStream(ctx)
		require.NoError(t, err)
		opened := make(chan error, 1)
		go func() {
			s, err := c1.OpenStream(ctx, nil)
			if err == nil {
				err = s.Close()
			}
			opened <- err
		}()
		require.NoError(t, s1.Close())
		require.NoError(t, s2.Close())
		require.NoError(t, <-opened)
	})
}

// TestStreamOptionsInvalid: bad options are refused naming the field.
func TestStreamOptionsInvalid(t *testing.T) {
	c1, _, stop := pair(t, nil)
	defer stop()
	_, err := c1.OpenStream(context.Background(), &rudp.StreamOptions{Guarantee: 7})
	var ce *rudp.ConfigError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, "StreamOptions.Guarantee", ce.Field)
	for _, w := range []int{-1, core.MaxStreamWeight + 1} {
		_, err = c1.OpenStream(context.Background(), &rudp.StreamOptions{Weight: w})
		require.ErrorAs(t, err, &ce)
		require.Equal(t, "StreamOptions.Weight", ce.Field)
	}
	s, _, stopStreams := streamPair(t, &rudp.Config{}, nil)
	defer stopStreams()
	require.ErrorAs(t, s.SetPriority(1, core.MaxStreamWeight+1), &ce)
	require.Equal(t, "weight", ce.Field)
	require.NoError(t, s.SetPriority(1, 0))
	require.NoError(t, s.Close())
	require.ErrorIs(t, s.SetPriority(1, 1), net.ErrClosed)
	_, err = rudp.Dial("udp", "127.0.0.1:1", &rudp.Config{MaxIncomingStreams: -2})
	require.ErrorAs(t, err, &ce)
	require.Equal(t, "MaxIncomingStreams", ce.Field)
	require.False(t, errors.Is(err, net.ErrClosed))
}

// settledLibraryGoroutines waits until the library's goroutines (those of
// earlier tests' closes ending) stop changing, and returns their count.
func settledLibraryGoroutines() int {
	n := libraryGoroutines()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); {
		time.Sleep(50 * time.Millisecond)
		m := libraryGoroutines()
		if m == n {
			return n
		}
		n = m
	}
	return n
}

// TestStreamsNoGoroutine: streams cost no goroutine: 50 streams opened,
// accepted and used leave the library's goroutines as they were (one
// reader per socket in default mode, none in Manual mode: OpenStream,
// AcceptStream, Read and Write drive the socket themselves there).
func TestStreamsNoGoroutine(t *testing.T) {
	modes(t, func(t *testing.T, cfg *rudp.Config) {
		c1, c2, stop := pair(t, cfg)
		defer stop()
		before := settledLibraryGoroutines()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var streams []*rudp.Stream
		buf := make([]byte, 16)
		for i := range 50 {
			s1, err := c1.OpenStream(ctx, nil)
			require.NoError(t, err)
			s2, err := c2.AcceptStream(ctx)
			require.NoError(t, err)
			msg := []byte(fmt.Sprint("hello ", i))
			_, err = s1.Write(msg)
			require.NoError(t, err)
			s2.SetReadDeadline(time.Now().Add(10 * time.Second))
			n, err := io.ReadFull(s2, buf[:len(msg)])
			require.NoError(t, err)
			require.Equal(t, msg, buf[:n])
			streams = append(streams, s1, s2)
		}
		// None added (one fewer may be: a goroutine of the pair's setup
		// ending meanwhile, seen under -race; a goroutine per stream
		// would add 50 or 100).
		require.LessOrEqual(t, settledLibraryGoroutines(), before)
		for _, s := range streams {
			s.Close()
		}
	})
}
