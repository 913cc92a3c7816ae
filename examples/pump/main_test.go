package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rudp-go/rudp/examples/internal/leakcheck"
)

func TestPump(t *testing.T) {
	defer leakcheck.Verify(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out bytes.Buffer
	err := run(ctx, nil, &out)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"played 120 frames at 60 Hz", "server sent 120 updates", "strictly increasing", "client -> server 10/10 lines, server -> client 10/10 lines, all in order"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

// Without loss nothing is dropped on loopback.
func TestPumpNoLoss(t *testing.T) {
	defer leakcheck.Verify(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out bytes.Buffer
	err := run(ctx, []string{"-loss", "0", "-seconds", "0.5"}, &out)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "client received 30 ") {
		t.Error("updates were dropped on a lossless link")
	}
}
