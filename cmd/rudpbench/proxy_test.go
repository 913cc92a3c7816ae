package main

import (
	"bytes"
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a bytes.Buffer safe to write from one goroutine and read
// from another.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestProxyCommand runs "rudpbench proxy" between a UDP client and an echo
// server: a datagram makes the round trip through it, and the counts it
// prints at exit say so.
func TestProxyCommand(t *testing.T) {
	echo, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := echo.ReadFrom(buf)
			if err != nil {
				return
			}
			echo.WriteTo(buf[:n], from)
		}
	}()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut lockedBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"proxy", "-to", echo.LocalAddr().String(), "-delay", "1ms", "-jitter", "1ms"}, &out, &errOut)
	}()
	var addr string
	for deadline := time.Now().Add(10 * time.Second); addr == "" && time.Now().Before(deadline); {
		if line, _, ok := strings.Cut(out.String(), "\n"); ok {
			_, after, _ := strings.Cut(line, "proxy: ")
			addr, _, _ = strings.Cut(after, " -> ")
		} else {
			time.Sleep(5 * time.Millisecond)
		}
	}
	if addr == "" {
		cancel()
		t.Fatalf("the proxy printed no address: %q, stderr %q, run: %v", out.String(), errOut.String(), <-done)
	}

	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 16)
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("read through the proxy: %q, %v", buf[:n], err)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("proxy: %v\nstderr: %s", err, errOut.String())
	}
	for _, want := range []string{"proxy: up: 1 sent (4 bytes)", "proxy: down: 1 sent (4 bytes)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestProxyCommandBadFlags(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"proxy"}, "-to"},
		{[]string{"proxy", "-to", "127.0.0.1:9", "-loss", "2"}, "Loss"},
		{[]string{"proxy", "-to", "127.0.0.1:9", "-jitter", "-1ms"}, "Jitter"},
		{[]string{"proxy", "-to", "127.0.0.1:9", "-rate", "fast"}, "-rate"},
		{[]string{"proxy", "-to", "127.0.0.1:9", "extra"}, "extra"},
		{[]string{"proxy", "-to", "127.0.0.1:9", "-stats", "-1s"}, "-stats"},
	} {
		var out, errOut bytes.Buffer
		err := run(context.Background(), tt.args, &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("run(%q) = %v, want an error naming %s", tt.args, err, tt.want)
		}
	}
}
