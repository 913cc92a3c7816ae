package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rudp-go/rudp/examples/internal/leakcheck"
)

func TestEcho(t *testing.T) {
	defer leakcheck.Verify(t)
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
