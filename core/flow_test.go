package core

import (
	"errors"
	"testing"
)

// TestUnsentLimit: Send refuses new data once unsentLimit bytes wait to be
// sent, although SendBufferSize has room, says so in SendBufferAvailable,
// and takes more once datagrams went out. A message larger than the limit
// is accepted when nothing waits.
func TestUnsentLimit(t *testing.T) {
	p := newSmokePair(t, &Config{SendBufferSize: 8 << 20, MaxMessageSize: 1 << 20})
	limit := p.a.unsentLimit()
	msg := make([]byte, 1000)
	queued := 0
	for ; queued <= limit; queued += len(msg) {
		if err := p.a.Send(Delivery, msg); err != nil {
			if !errors.Is(err, ErrSendBufferFull) {
				t.Fatal(err)
			}
			break
		}
	}
	if queued > limit || queued+len(msg) <= limit {
		t.Fatalf("queued %d bytes before a refusal, limit %d", queued, limit)
	}
	if avail := p.a.SendBufferAvailable(); avail >= len(msg) || avail != limit-queued {
		t.Fatalf("SendBufferAvailable %d with %d of %d unsent", avail, queued, limit)
	}
	for range 200 {
		p.step()
		for {
			m, err := p.b.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if m.Data == nil {
				break
			}
		}
	}
	if p.a.unsentBytes != 0 || p.a.SendBufferAvailable() < limit {
		t.Fatalf("after the exchange: %d bytes unsent, %d available", p.a.unsentBytes, p.a.SendBufferAvailable())
	}
	if err := p.a.Send(Delivery, make([]byte, 1<<20)); err != nil {
		t.Fatalf("a 1 MiB message with nothing waiting: %v", err)
	}
	if err := p.a.Send(Delivery, msg); !errors.Is(err, ErrSendBufferFull) {
		t.Fatalf("a message behind 1 MiB unsent: %v", err)
	}
}
