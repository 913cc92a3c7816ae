package rudp_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rudp-go/rudp"
)

// The close-then-exit child: closeExitEnv names how it connects, closeExitAddr
// where to.
const (
	closeExitEnv   = "RUDP_CLOSE_EXIT_MODE"
	closeExitAddr  = "RUDP_CLOSE_EXIT_ADDR"
	closeExitLines = 2000
)

// closeExitLine is the i-th line a chat client sends (about 60 bytes).
func closeExitLine(i int) string {
	return fmt.Sprintf("line %04d: the quick brown fox jumps over the lazy dog\n", i)
}

// TestCloseThenExit: a program written for TCP writes
// its last lines, closes the connection (defer conn.Close()) and exits at
// once. TCP's kernel goes on sending after the process is gone; rudp has
// no kernel, so Close itself must not return before the peer has
// acknowledged everything. The child process (this test binary, re-run)
// does exactly that, in each way a program may hold a connection; the
// parent must read every line, then io.EOF, in every run.
func TestCloseThenExit(t *testing.T) {
	if mode := os.Getenv(closeExitEnv); mode != "" {
		closeThenExitChild(t, mode, os.Getenv(closeExitAddr))
		return
	}
	runs := 3
	if testing.Short() {
		runs = 2
	}
	for _, mode := range []string{"dial", "manual", "listenerdial", "packetconn", "packetconn-manual"} {
		t.Run(mode, func(t *testing.T) {
			for run := range runs {
				closeThenExit(t, mode, run)
			}
		})
	}
}

func closeThenExit(t *testing.T, mode string, run int) {
	ln, err := rudp.Listen("udp", "127.0.0.1:0", nil)
	require.NoError(t, err)
	defer ln.Close()
	accepted := acceptOne(ln)

	cmd := exec.Command(os.Args[0], "-test.run=^TestCloseThenExit$", "-test.count=1")
	cmd.Env = append(os.Environ(), closeExitEnv+"="+mode, closeExitAddr+"="+ln.Addr().String())
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	var c *rudp.Conn
	select {
	case c = <-accepted:
	case err := <-exited:
		t.Fatalf("child exited before connecting: %v\n%s", err, out.String())
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
		t.Fatalf("no connection from the child\n%s", out.String())
	}
	require.NotNil(t, c)
	defer c.Close()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(30*time.Second)))
	r := bufio.NewReader(c)
	lines := 0
	var lastLine, eof time.Time
	var readErr error
	for {
		s, err := r.ReadString('\n')
		if err != nil {
			readErr = err
			eof = time.Now()
			break
		}
		if s != closeExitLine(lines) {
			t.Fatalf("run %d: line %d is %q", run, lines, s)
		}
		lines++
		lastLine = time.Now()
	}
	childErr := <-exited
	report := strings.TrimSpace(out.String())
	t.Logf("run %d: %d of %d lines, then %v (%v after the last line); child: %s",
		run, lines, closeExitLines, readErr, eof.Sub(lastLine).Round(time.Microsecond), report)
	require.NoError(t, childErr, "child: %s", report)
	require.Equal(t, closeExitLines, lines, "run %d: lines delivered", run)
	require.Equal(t, io.EOF, readErr, "run %d: the peer's close must read as io.EOF", run)
	// The child reports when it called Close (the wall clock, shared with
	// the parent): the server learnt of its departure that long after.
	if f := strings.Fields(report); len(f) >= 2 && strings.HasPrefix(f[0], "close-start=") {
		if ns, err := strconv.ParseInt(strings.TrimPrefix(f[0], "close-start="), 10, 64); err == nil {
			t.Logf("run %d: EOF read %v after the child's Close began", run, eof.Sub(time.Unix(0, ns)).Round(time.Microsecond))
		}
	}
}

// closeThenExitChild is the chat client: it writes closeExitLines lines,
// closes, reports how long Close took, and exits at once.
func closeThenExitChild(t *testing.T, mode, addr string) {
	var (
		w     io.Writer
		close func() error
	)
	switch mode {
	case "dial", "manual":
		c, err := rudp.Dial("udp", addr, &rudp.Config{Manual: mode == "manual"})
		if err != nil {
			t.Fatal(err)
		}
		w, close = c, c.Close
	case "listenerdial":
		ln, err := rudp.Listen("udp", "127.0.0.1:0", nil)
		if err != nil {
			t.Fatal(err)
		}
		c, err := ln.Dial("udp", addr)
		if err != nil {
			t.Fatal(err)
		}
		w, close = c, func() error { return errors.Join(c.Close(), ln.Close()) }
	case "packetconn", "packetconn-manual":
		pc, err := rudp.ListenPacket("udp", "127.0.0.1:0", &rudp.Config{Manual: mode == "packetconn-manual"})
		if err != nil {
			t.Fatal(err)
		}
		to, err := net.ResolveUDPAddr("udp", addr)
		if err != nil {
			t.Fatal(err)
		}
		w, close = packetWriter{pc, to}, pc.Close
	default:
		t.Fatalf("unknown mode %q", mode)
	}
	for i := range closeExitLines {
		if _, err := io.WriteString(w, closeExitLine(i)); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	err := close()
	fmt.Printf("close-start=%d close-took=%v err=%v\n", start.UnixNano(), time.Since(start).Round(time.Microsecond), err)
	if err != nil {
		os.Exit(3)
	}
	os.Exit(0) // at once: no test teardown, no goroutine finishes anything
}

// packetWriter writes each line as one message to one peer.
type packetWriter struct {
	pc *rudp.PacketConn
	to net.Addr
}

func (p packetWriter) Write(b []byte) (int, error) { return p.pc.WriteTo(b, p.to) }

// TestCloseLingerBound: Close waits for a peer that never acknowledges
// (its Manual mode socket is never pumped) only as long as the linger
// time, then aborts the connection and fails with a timeout error; the
// peer, once it runs, reads the abort as an error, not as io.EOF. A
// negative linger returns at once (the close goes on in the background);
// a zero one aborts at once.
func TestCloseLingerBound(t *testing.T) {
	for _, tt := range []struct {
		name   string
		linger time.Duration
		err    error // Close's
		peer   error // what the peer reads at the end
	}{
		{"bounded", 300 * time.Millisecond, os.ErrDeadlineExceeded, rudp.ErrAborted},
		{"background", -1, nil, io.EOF},
		{"abort", 0, nil, rudp.ErrAborted},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := rudp.Listen("udp", "127.0.0.1:0", &rudp.Config{Manual: true})
			require.NoError(t, err)
			defer ln.Close()
			accepted := acceptOne(ln) // Accept pumps the listener's socket, then nothing does
			c, err := rudp.Dial("udp", ln.Addr().String(), nil)
			require.NoError(t, err)
			s := <-accepted
			require.NotNil(t, s)
			_, err = c.Write([]byte("last words\n"))
			require.NoError(t, err)
			require.NoError(t, c.SetLinger(tt.linger))
			start := time.Now()
			err = c.Close()
			took := time.Since(start)
			t.Logf("Close took %v: %v", took, err)
			if tt.err == nil {
				require.NoError(t, err)
				require.Less(t, took, 200*time.Millisecond, "Close waited")
			} else {
				require.ErrorIs(t, err, tt.err)
				var op *net.OpError
				require.ErrorAs(t, err, &op)
				require.Equal(t, "close", op.Op)
				require.GreaterOrEqual(t, took, tt.linger, "Close returned before its linger time")
				require.Less(t, took, tt.linger+2*time.Second, "Close outlived its linger time")
			}
			// The peer runs again: it reads the abort as an error, or (the
			// background close) the data, then io.EOF.
			require.NoError(t, s.SetReadDeadline(time.Now().Add(10*time.Second)))
			var got []byte
			buf := make([]byte, 64)
			for {
				n, err := s.Read(buf)
				got = append(got, buf[:n]...)
				if err != nil {
					require.ErrorIs(t, err, tt.peer, "peer read %q", got)
					break
				}
			}
			if tt.peer == io.EOF {
				require.Equal(t, "last words\n", string(got))
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = s.Shutdown(ctx)
		})
	}
}
