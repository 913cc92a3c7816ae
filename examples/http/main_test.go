package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rudp-go/rudp/examples/internal/leakcheck"
)

func TestHTTP(t *testing.T) {
	defer leakcheck.Verify(t)
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
