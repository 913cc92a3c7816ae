package rudp

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"testing"
	"time"
	"unsafe"
)

// stepClock simulates a step of the system clock by step since clockBase
// was read (or a suspend, during which the wall clock runs on and the
// monotonic one stops): clockBase keeps its monotonic reading and gets a
// wall reading off by -step, as monoNow's wall clock then is. Every
// goroutine reading the time reads clockBase, so this happens in a process
// of its own (clockStepEnv) before any of them starts, and is not undone.
func stepClock(t *testing.T, step time.Duration) {
	b := time.Now()
	// The wall field of a Time with a monotonic reading holds whole
	// seconds (since 1885) above 30 bits of nanoseconds.
	wall := (*int64)(unsafe.Pointer(&b))
	*wall -= int64(step/time.Second) << 30
	clockBase = b
	if off := time.Now().Round(0).Sub(monoNow().Round(0)); off < step-time.Second || off > step+time.Second {
		t.Skipf("could not simulate the clock step (time.Time layout?): monoNow is %v off", off)
	}
}

// clockStepEnv names the clock step TestDeadlineAfterClockStep's child
// process simulates.
const clockStepEnv = "RUDP_TEST_CLOCK_STEP"

// TestDeadlineAfterClockStep: a read or write deadline without a monotonic
// reading (time.Unix, a decoded timestamp, t.Round(0)) set after the system
// clock stepped fires when it says, neither an hour late (the Read or Write
// spinning at full CPU until then) nor at once.
func TestDeadlineAfterClockStep(t *testing.T) {
	if s := os.Getenv(clockStepEnv); s != "" {
		step, err := time.ParseDuration(s)
		if err != nil {
			t.Fatal(err)
		}
		deadlineAfterClockStep(t, step)
		return
	}
	for _, step := range []time.Duration{time.Hour, -time.Hour} {
		t.Run(step.String(), func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestDeadlineAfterClockStep$", "-test.count=1", "-test.v")
			cmd.Env = append(os.Environ(), clockStepEnv+"="+step.String())
			out, err := cmd.CombinedOutput()
			if err == nil && bytes.Contains(out, []byte("--- SKIP")) {
				t.Skipf("%s", out)
			}
			if err != nil || !bytes.Contains(out, []byte("--- PASS")) {
				t.Fatalf("%v\n%s", err, out)
			}
		})
	}
}

func deadlineAfterClockStep(t *testing.T, step time.Duration) {
	stepClock(t, step)
	ln, err := Listen("udp", "127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan *Conn, 1)
	go func() {
		c, _ := ln.AcceptRUDP()
		accepted <- c
	}()
	c, err := Dial("udp", ln.Addr().String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if s := <-accepted; s != nil {
		defer s.Close()
	}
	const wait = 300 * time.Millisecond
	for _, op := range []struct {
		name string
		set  func(time.Time) error
		do   func() error
	}{
		{"Read", c.SetReadDeadline, func() error {
			_, err := c.Read(make([]byte, 8))
			return err
		}},
		// The peer reads nothing: the Write blocks once the peer's
		// window and the send buffer are full.
		{"Write", c.SetWriteDeadline, func() error {
			_, err := c.Write(make([]byte, 64<<20))
			return err
		}},
	} {
		start := time.Now()
		if err := op.set(start.Round(0).Add(wait)); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- op.do() }()
		select {
		case err := <-done:
			took := time.Since(start)
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("%s: %v, want a deadline error", op.name, err)
			}
			if took < wait-50*time.Millisecond {
				t.Errorf("%s with a %v deadline returned after %v", op.name, wait, took)
			}
		case <-time.After(3 * time.Second):
			t.Errorf("%s with a %v deadline still blocked after 3s", op.name, wait)
			_ = op.set(aLongTimeAgo)
			<-done
		}
	}
}
