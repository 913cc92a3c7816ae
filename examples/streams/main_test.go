package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rudp-go/rudp/examples/internal/leakcheck"
)

func TestStreams(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"direct", nil},
		{"lossy relay", []string{"-loss", "0.02", "-rtt", "20ms"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer leakcheck.Verify(t)
			ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
			defer cancel()
			// As the yamux example's test: 32 concurrent streams, less
			// on each under the race detector and through the relay.
			args, each, total := []string{"-kib", "1024"}, "1 MiB", "32 MiB"
			if raceEnabled || tc.args != nil {
				args, each, total = []string{"-kib", "256"}, "256 KiB", "8 MiB"
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
