package core

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
	"time"
)

// smokePair drives two Conns over a lossless, instant link (or dropping
// every lossEvery-th datagram) with a virtual clock.
type smokePair struct {
	now  time.Time
	a, b *Conn
	buf  []byte
	n    int
	loss int
}

func newSmokePair(t *testing.T, cfg *Config) *smokePair {
	now := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	if cfg == nil {
		cfg = &Config{}
	}
	cfg.Rand = rand.NewPCG(1, 2)
	a, err := NewConn(cfg, 1111, now)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewConn(cfg, 2222, now)
	if err != nil {
		t.Fatal(err)
	}
	return &smokePair{now: now, a: a, b: b, buf: make([]byte, 65536)}
}

func (p *smokePair) exchange() bool {
	moved := false
	for _, d := range [][2]*Conn{{p.a, p.b}, {p.b, p.a}} {
		for {
			n := d[0].PollTransmit(p.now, p.buf)
			if n == 0 {
				break
			}
			moved = true
			p.n++
			if p.loss > 0 && p.n%p.loss == 0 {
				continue
			}
			d[1].HandleDatagram(p.now.Add(50*time.Microsecond), p.buf[:n])
		}
	}
	return moved
}

func (p *smokePair) step() {
	if p.exchange() {
		p.now = p.now.Add(50 * time.Microsecond)
		return
	}
	next := p.a.NextTimeout()
	if t := p.b.NextTimeout(); !t.IsZero() && (next.IsZero() || t.Before(next)) {
		next = t
	}
	if next.After(p.now) {
		p.now = next
	}
	p.a.HandleTimeout(p.now)
	p.b.HandleTimeout(p.now)
}

func TestSmokeDelivery(t *testing.T) {
	for _, loss := range []int{0, 7} {
		t.Run(fmt.Sprint("loss", loss), func(t *testing.T) {
			p := newSmokePair(t, &Config{InitialSequence: 0xFFFFFFF0})
			p.loss = loss
			const count = 3000
			sent := 0
			var got [][]byte
			for i := 0; i < 200000 && len(got) < count; i++ {
				for sent < count {
					size := 1 + (sent*37)%3000
					msg := bytes.Repeat([]byte{byte(sent)}, size)
					if err := p.a.Send(Delivery, msg); err != nil {
						break
					}
					sent++
				}
				p.step()
				for {
					m, err := p.b.Recv()
					if err != nil {
						t.Fatal(err)
					}
					if m.Data == nil {
						break
					}
					got = append(got, append([]byte(nil), m.Data...))
				}
			}
			if len(got) != count {
				t.Fatalf("got %d messages, want %d; stats a=%+v b=%+v", len(got), count, p.a.Stats(), p.b.Stats())
			}
			for i, m := range got {
				if len(m) != 1+(i*37)%3000 || m[0] != byte(i) {
					t.Fatalf("message %d wrong: len %d first %d", i, len(m), m[0])
				}
			}
			p.a.Close(p.now)
			for i := 0; i < 10000 && !p.a.Closed(); i++ {
				p.step()
			}
			if !p.a.Closed() || p.a.Err() != nil {
				t.Fatalf("a not closed gracefully: %v %v", p.a.Closed(), p.a.Err())
			}
			if _, err := p.b.Recv(); err != io.EOF {
				t.Fatalf("b.Recv after close: %v", err)
			}
			t.Logf("virtual time %v, datagrams %d, a=%+v", p.now.Sub(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)), p.n, p.a.Stats())
		})
	}
}
