package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestYamux(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"direct", nil},
		{"lossy relay", []string{"-loss", "0.02", "-rtt", "20ms"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer noLeaks(t)
			ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
			defer cancel()
			// The race detector slows everything down about tenfold, and
			// the relay's loss slows the transfer: keep the 32 concurrent
			// streams, echo less on each.
			args, each, total := []string{}, "1024 KiB", "32768 KiB"
			if raceEnabled || tc.args != nil {
				args, each, total = []string{"-kib", "256"}, "256 KiB", "8192 KiB"
			}
			var out bytes.Buffer
			err := run(ctx, append(args, tc.args...), &out)
			t.Log("\n" + out.String())
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{
				"32 streams each echoed " + each + " concurrently, " + total + " verified",
				"client: streams completed: first after",
				"server: accepted 32 streams on one connection, echoed " + total,
			} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("output lacks %q", want)
				}
			}
		})
	}
}

// noLeaks fails t if goroutines other than the test's own still run. A
// closed rudp connection lingers a few round trips to acknowledge its
// peer's CLOSE (docs/PROTOCOL.md §8.2), so it waits for them to end first.
func noLeaks(t *testing.T) {
	for end := time.Now().Add(10 * time.Second); goleak.Find() != nil && time.Now().Before(end); {
		time.Sleep(20 * time.Millisecond)
	}
	goleak.VerifyNone(t)
}
