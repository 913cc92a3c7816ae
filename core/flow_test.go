package core

import (
	"errors"
	"testing"
	"time"
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

// TestReceiveWindowTuning: the window grows while the application reads as
// fast as the path delivers, never past MaxReceiveWindow, and stays put
// for an application that reads slowly; the credit advertised never goes
// back and the peer never oversteps it.
func TestReceiveWindowTuning(t *testing.T) {
	for _, slow := range []bool{false, true} {
		t.Run(map[bool]string{false: "fast reader", true: "slow reader"}[slow], func(t *testing.T) {
			const initial, maxWindow = 64 << 10, 1 << 20
			p := newSmokePair(t, &Config{MaxMessageSize: 16 << 10, ReceiveWindow: initial, MaxReceiveWindow: maxWindow})
			msg := make([]byte, 1000)
			var lastCredit uint64
			read := 0
			start := p.now
			steps := 20000
			if !slow {
				steps = 1000
			}
			for i := 0; i < steps; i++ {
				for p.a.Send(Delivery, msg) == nil {
				}
				p.step()
				// The slow reader takes one message per millisecond.
				for !slow || p.now.Sub(start) > time.Duration(read)*time.Millisecond {
					m, err := p.b.Recv()
					if err != nil {
						t.Fatal(err)
					}
					if m.Data == nil {
						break
					}
					read++
				}
				if credit := p.b.advertisedMaxData(); credit < lastCredit {
					t.Fatalf("advertised credit went back from %d to %d", lastCredit, credit)
				} else {
					lastCredit = credit
				}
				if w := p.b.recvWindow; w > maxWindow || p.b.pendingDelivery > w {
					t.Fatalf("window %d, %d bytes held", w, p.b.pendingDelivery)
				}
			}
			st := p.b.Stats()
			t.Logf("read %d messages in %v; window %d KiB; flow violations %d", read, p.now.Sub(start), st.ReceiveWindow>>10, st.ProtocolViolations)
			if st.ProtocolViolations != 0 {
				t.Fatalf("%d protocol violations", st.ProtocolViolations)
			}
			if slow && st.ReceiveWindow != initial {
				t.Fatalf("a slow reader's window grew to %d", st.ReceiveWindow)
			}
			if !slow && st.ReceiveWindow != maxWindow {
				t.Fatalf("a fast reader's window is %d, want %d", st.ReceiveWindow, maxWindow)
			}
		})
	}
}

// TestAckRepeatedForBatch: an ACK-only packet that answers a batch of
// ackRepeatBatch packets or more goes out twice, the copy one byte longer;
// one answering fewer goes out once.
func TestAckRepeatedForBatch(t *testing.T) {
	for _, batch := range []int{ackRepeatBatch - 1, ackRepeatBatch + 1} {
		// NewReno: its initial window sends the whole batch at once. No
		// path MTU search: its probes would be acknowledged with the batch.
		p := newSmokePair(t, &Config{DisablePacing: true, NewCongestionController: NewNewReno, MaxDatagramSize: BaseDatagramSize})
		for i := 0; i < 100 && !(p.a.Established() && p.b.Established()); i++ {
			p.step()
		}
		for p.exchange() { // settle the handshake's acknowledgements, no timer fired
		}
		for range batch {
			if err := p.a.Send(Delivery, make([]byte, 1000)); err != nil {
				t.Fatal(err)
			}
		}
		var sent [][]byte
		for n := p.a.PollTransmit(p.now, p.buf); n > 0; n = p.a.PollTransmit(p.now, p.buf) {
			sent = append(sent, append([]byte(nil), p.buf[:n]...))
		}
		if len(sent) != batch {
			t.Fatalf("a sent %d packets, want %d (stats %+v)", len(sent), batch, p.a.Stats())
		}
		for _, d := range sent {
			p.b.HandleDatagram(p.now, d)
		}
		var acks []int
		for n := p.b.PollTransmit(p.now, p.buf); n > 0; n = p.b.PollTransmit(p.now, p.buf) {
			acks = append(acks, n)
		}
		switch {
		case batch < ackRepeatBatch && len(acks) != 1:
			t.Fatalf("batch %d: %d ACK packets (sizes %v), want 1", batch, len(acks), acks)
		case batch >= ackRepeatBatch && (len(acks) != 2 || acks[1] != acks[0]+1):
			t.Fatalf("batch %d: ACK packets of sizes %v, want two, the second one byte longer", batch, acks)
		}
	}
}
