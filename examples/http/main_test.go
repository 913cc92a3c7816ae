package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestHTTP(t *testing.T) {
	defer noLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// The race detector slows everything down about tenfold: the same 200
	// requests, fewer of them with 1 MiB bodies.
	args, want := []string{}, "200 requests (100 GET, 20 POST with 1 MiB bodies, 80 small POST)"
	if raceEnabled {
		args, want = []string{"-big-every", "40"}, "200 requests (100 GET, 5 POST with 1 MiB bodies, 95 small POST)"
	}
	var out bytes.Buffer
	err := run(ctx, args, &out)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{want, "all verified", "shut down cleanly"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
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
