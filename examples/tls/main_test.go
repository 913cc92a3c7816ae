package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rudp-go/rudp/examples/internal/leakcheck"
)

func TestTLS(t *testing.T) {
	defer leakcheck.Verify(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out bytes.Buffer
	err := run(ctx, nil, &out)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"TLS 1.3", "4 MiB echoed through TLS and verified", "server: echoed everything"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
}
