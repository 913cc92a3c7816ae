package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestEcho(t *testing.T) {
	defer noLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out bytes.Buffer
	err := run(ctx, nil, &out)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"listening on 127.0.0.1:", "echoed back intact", "stats: RTT", "server: echoed 1024000 bytes"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

func TestEchoBadFlags(t *testing.T) {
	if err := run(context.Background(), []string{"-n", "0"}, &bytes.Buffer{}); err == nil {
		t.Fatal("run accepted -n 0")
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
