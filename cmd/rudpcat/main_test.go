package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// watcher is a stderr that reports the address of the "listening on" line
// and, with -v, when the first connection was accepted.
type watcher struct {
	mu       sync.Mutex
	buf      bytes.Buffer
	addr     chan string
	found    bool
	accepted chan struct{} // closed at the first "connection from" line
}

var listeningOn = regexp.MustCompile(`listening on (\S+)`)

func newWatcher() *watcher {
	return &watcher{addr: make(chan string, 1), accepted: make(chan struct{})}
}

func (w *watcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if m := listeningOn.FindStringSubmatch(w.buf.String()); m != nil && !w.found {
		w.found = true
		w.addr <- m[1]
	}
	select {
	case <-w.accepted:
	default:
		if strings.Contains(w.buf.String(), "rudpcat: connection from ") {
			close(w.accepted)
		}
	}
	return len(p), nil
}

// gatedReader is an input that starts once gate is closed: it fails with
// ctx's error if ctx ends first.
type gatedReader struct {
	ctx  context.Context
	gate <-chan struct{}
	r    io.Reader
}

func (g *gatedReader) Read(p []byte) (int, error) {
	select {
	case <-g.gate:
		return g.r.Read(p)
	case <-g.ctx.Done():
		return 0, g.ctx.Err()
	}
}

func (w *watcher) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// lockedBuffer is a stdout written by one goroutine and read after it ends.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

// pipe runs a receiving listener (-l -d) and a dialer that sends input, both
// with the extra flags, and returns what the listener wrote out.
func pipe(t *testing.T, flags []string, input []byte) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	var out lockedBuffer
	lnErr := newWatcher()
	listened := make(chan error, 1)
	go func() {
		args := append([]string{"-l", "-d", "-v"}, flags...)
		listened <- run(ctx, append(args, "127.0.0.1:0"), strings.NewReader(""), &out, lnErr)
	}()
	var addr string
	select {
	case addr = <-lnErr.addr:
	case err := <-listened:
		t.Fatalf("listener: %v\n%s", err, lnErr)
	}

	// The input starts once the listener accepted the connection: before,
	// the connection has rudp.UnacceptedReceiveWindow, and None and Order
	// messages beyond a quarter of it (14 of these lines, with each
	// message's overhead) are dropped, as the guarantees allow. Once it is
	// accepted, nothing on loopback drops them.
	var dialErr bytes.Buffer
	args := append(append([]string{"-v"}, flags...), addr)
	stdin := &gatedReader{ctx: ctx, gate: lnErr.accepted, r: bytes.NewReader(input)}
	if err := run(ctx, args, stdin, io.Discard, &dialErr); err != nil {
		t.Fatalf("dialer: %v\n%s", err, dialErr.String())
	}
	if err := <-listened; err != nil {
		t.Fatalf("listener: %v\n%s", err, lnErr)
	}
	t.Logf("listener:\n%sdialer:\n%s", lnErr, dialErr.String())
	return out.Bytes()
}

func TestDeliveryMiB(t *testing.T) {
	defer goleak.VerifyNone(t)
	payload := make([]byte, 1<<20)
	rand.NewChaCha8([32]byte{1}).Read(payload)
	got := pipe(t, []string{"-g", "delivery"}, payload)
	if !bytes.Equal(got, payload) {
		t.Fatalf("received %d bytes, want the %d sent", len(got), len(payload))
	}
}

func TestLines(t *testing.T) {
	var in strings.Builder
	for i := range 20 {
		fmt.Fprintf(&in, "line %d: the quick brown fox\n", i)
	}
	in.WriteString("\nlast line without a newline")
	want := in.String() + "\n" // every message is written out as a line
	for _, g := range []string{"order", "none"} {
		t.Run(g, func(t *testing.T) {
			defer goleak.VerifyNone(t)
			got, want := string(pipe(t, []string{"-g", g}, []byte(in.String()))), want
			if g == "none" {
				// None promises no order: compare the lines as sets.
				got, want = sortLines(got), sortLines(want)
			}
			if got != want {
				t.Fatalf("received\n%q\nwant\n%q", got, want)
			}
		})
	}
}

func sortLines(s string) string {
	lines := strings.SplitAfter(s, "\n")
	slices.Sort(lines)
	return strings.Join(lines, "")
}

// -k serves one connection after another, until interrupted.
func TestKeepAccepting(t *testing.T) {
	defer goleak.VerifyNone(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lnCtx, stopListener := context.WithCancel(ctx)
	var out lockedBuffer
	lnErr := newWatcher()
	listened := make(chan error, 1)
	go func() {
		listened <- run(lnCtx, []string{"-l", "-k", "-d", "-v", "127.0.0.1:0"}, strings.NewReader(""), &out, lnErr)
	}()
	addr := <-lnErr.addr
	for _, line := range []string{"first\n", "second\n", "third\n"} {
		if err := run(ctx, []string{addr}, strings.NewReader(line), io.Discard, io.Discard); err != nil {
			t.Fatalf("dialer: %v", err)
		}
	}
	// The listener writes what the last dialer sent before it returns to
	// Accept; give it that moment, then stop it.
	deadline := time.Now().Add(5 * time.Second)
	for string(out.Bytes()) != "first\nsecond\nthird\n" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	stopListener()
	if err := <-listened; !errors.Is(err, context.Canceled) {
		t.Errorf("listener: err = %v, want context.Canceled", err)
	}
	if got := string(out.Bytes()); got != "first\nsecond\nthird\n" {
		t.Errorf("listener wrote %q", got)
	}
	t.Logf("listener:\n%s", lnErr)
}

func TestDialSilentPort(t *testing.T) {
	defer goleak.VerifyNone(t)
	// A bound UDP socket that never answers.
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	start := time.Now()
	err = run(context.Background(), []string{"-w", "300ms", silent.LocalAddr().String()}, strings.NewReader("x"), io.Discard, io.Discard)
	if err == nil {
		t.Fatal("dialing a silent port succeeded")
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("err = %v, want a timeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("gave up after %v, want about 300ms", d)
	}
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"-g", "sometimes", "127.0.0.1:1"},
		{"-k", "127.0.0.1:1"},
		{"no-port"},
		{"a:1", "b:2"},
		{"-nosuchflag", "a:1"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			err := run(context.Background(), args, strings.NewReader(""), io.Discard, io.Discard)
			if !errors.Is(err, errUsage) {
				t.Fatalf("err = %v, want a usage error", err)
			}
		})
	}
	var help bytes.Buffer
	if err := run(context.Background(), []string{"-h"}, strings.NewReader(""), io.Discard, &help); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: err = %v", err)
	}
	if !strings.Contains(help.String(), "usage: rudpcat") || !strings.Contains(help.String(), "-g") {
		t.Errorf("-h printed\n%s", help.String())
	}
}
