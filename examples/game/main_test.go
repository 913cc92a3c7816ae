package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestGame runs the three runs briefly. The program itself fails a run if a
// client's state updates arrive out of order or not at all, a chat line is
// missing, repeated or out of place, or a download differs from the asset;
// the figures are printed, not judged (they depend on the machine's load).
func TestGame(t *testing.T) {
	defer noLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out bytes.Buffer
	err := run(ctx, []string{"-clients", "2", "-duration", "1s", "-warmup", "200ms", "-download-kib", "256"}, &out)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"run 1: state alone",
		"run 2: state + chat + download, one domain",
		"run 3: state + chat + download, streams",
		"download: every client received 256 KiB byte-exact",
		"chat: the clients received all",
		"state + chat + download, streams ",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if n := strings.Count(out.String(), "byte-exact"); n != 2 {
		t.Errorf("%d runs reported a complete download, want 2", n)
	}
}

// TestGameFlags checks that a bad flag is refused, naming it.
func TestGameFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-clients", "0"},
		{"-loss", "1"},
		{"-loss", "-0.1"},
		{"-rtt", "-1ms"},
		{"-duration", "0s"},
		{"-warmup", "5s"},
		{"-hz", "0"},
		{"-chat", "0"},
		{"-download-kib", "0"},
		{"-state-bytes", "15"},
		{"-runs", "alone,none"},
	} {
		err := run(context.Background(), args, new(bytes.Buffer))
		if err == nil || !strings.Contains(err.Error(), args[0]) {
			t.Errorf("run(%q) = %v, want an error naming %s", args, err, args[0])
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
