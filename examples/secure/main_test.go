package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestSecure(t *testing.T) {
	defer noLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out bytes.Buffer
	err := run(ctx, nil, &out)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`server certificate "localhost" verified`,
		"a client trusting another certificate: Dial failed",
		"certificate signed by unknown authority",
		"both sides proved they hold the key",
		"a client holding another key: Dial failed",
		"pre-shared keys differ",
	} {
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
