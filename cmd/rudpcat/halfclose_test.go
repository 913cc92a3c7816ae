package main

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/rudp-go/rudp"
)

// TestRequestResponse: printf 'GET /x\n' | rudpcat host:port prints the
// reply of a server that answers once it read the whole request (to end of
// file), as HTTP/1.0 over nc does. rudpcat half-closes when its input ends
// and prints until the server closes; it used to close the connection, so
// the server's reply failed (ErrPeerClosed) and nothing was printed.
func TestRequestResponse(t *testing.T) {
	defer goleak.VerifyNone(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ln, err := rudp.Listen("udp", "127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	reply := bytes.Repeat([]byte("HTTP/1.0 200 OK for /x\n"), 5000) // 115 KB
	served := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		defer c.Close()
		req, err := io.ReadAll(c) // the request, to rudpcat's end of file
		if err != nil {
			served <- err
			return
		}
		if string(req) != "GET /x\n" {
			served <- io.ErrUnexpectedEOF
			return
		}
		_, err = c.Write(reply)
		served <- err
	}()
	var out, stderr bytes.Buffer
	if err := run(ctx, []string{"-v", ln.Addr().String()}, strings.NewReader("GET /x\n"), &out, &stderr); err != nil {
		t.Fatalf("rudpcat: %v\n%s", err, stderr.String())
	}
	if err := <-served; err != nil {
		t.Fatalf("server: %v", err)
	}
	if !bytes.Equal(out.Bytes(), reply) {
		t.Fatalf("rudpcat printed %d bytes, want the %d-byte reply\n%s", out.Len(), len(reply), stderr.String())
	}
}

// TestReceiverWithoutInput: rudpcat -l > file < /dev/null still receives the
// whole file: its input ends at once, so it half-closes and goes on
// printing until the sender ends. It used to close the connection as soon
// as its input ended, and the sender's writes failed.
func TestReceiverWithoutInput(t *testing.T) {
	defer goleak.VerifyNone(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	payload := make([]byte, 1<<20)
	rand.NewChaCha8([32]byte{2}).Read(payload)

	var out lockedBuffer
	lnErr := newWatcher()
	listened := make(chan error, 1)
	go func() {
		listened <- run(ctx, []string{"-l", "-v", "127.0.0.1:0"}, strings.NewReader(""), &out, lnErr)
	}()
	var addr string
	select {
	case addr = <-lnErr.addr:
	case err := <-listened:
		t.Fatalf("listener: %v\n%s", err, lnErr)
	}
	var dialErr bytes.Buffer
	if err := run(ctx, []string{"-v", addr}, bytes.NewReader(payload), io.Discard, &dialErr); err != nil {
		t.Fatalf("sender: %v\n%s", err, dialErr.String())
	}
	if err := <-listened; err != nil {
		t.Fatalf("receiver: %v\n%s", err, lnErr)
	}
	if got := out.Bytes(); !bytes.Equal(got, payload) {
		t.Fatalf("received %d bytes, want the %d sent\nreceiver:\n%ssender:\n%s", len(got), len(payload), lnErr, dialErr.String())
	}
}
