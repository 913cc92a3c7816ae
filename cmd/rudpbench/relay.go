package main

import (
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/rudp-go/rudp/impair"
)

// relay is a TCP proxy that gives TCP the same delay, jitter and bottleneck
// rate as the impair proxy gives UDP. It cannot lose, duplicate or reorder:
// what it reads from a byte stream it must deliver, in order.
//
// Each direction of each connection has a reader and a writer goroutine. The
// reader stamps every chunk it reads with the time it leaves the bottleneck
// (behind the chunks before it, at Rate) plus Delay and Jitter, kept in order;
// the writer writes each chunk at that time. The bottleneck's queue is bounded
// like the proxy's (QueueBytes of backlog): when it is full the reader stops
// reading, so the sender feels it through TCP flow control instead of loss.
type relay struct {
	ln     net.Listener
	target string
	up     impair.Config
	down   impair.Config

	mu    sync.Mutex
	conns []net.Conn
	done  bool
	wg    sync.WaitGroup
}

func newRelay(target string, up, down impair.Config) (*relay, error) {
	ln, err := net.Listen("tcp", loopback)
	if err != nil {
		return nil, err
	}
	r := &relay{ln: ln, target: target, up: up, down: down}
	r.wg.Add(1)
	go r.accept()
	return r, nil
}

func (r *relay) Addr() net.Addr { return r.ln.Addr() }

func (r *relay) Close() error {
	err := r.ln.Close()
	r.mu.Lock()
	r.done = true
	conns := r.conns
	r.conns = nil
	r.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	r.wg.Wait()
	return err
}

func (r *relay) track(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done {
		c.Close()
		return false
	}
	r.conns = append(r.conns, c)
	return true
}

func (r *relay) accept() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		t, err := net.Dial("tcp", r.target)
		if err != nil {
			c.Close()
			continue
		}
		if !r.track(c) || !r.track(t) {
			c.Close()
			t.Close()
			return
		}
		r.wg.Add(2)
		go func() { defer r.wg.Done(); pipe(c, t, r.up) }()
		go func() { defer r.wg.Done(); pipe(t, c, r.down) }()
	}
}

type chunk struct {
	due  time.Time
	data []byte
}

// pipe copies src to dst through one impaired direction until src ends, then
// half-closes dst.
func pipe(src, dst net.Conn, cfg impair.Config) {
	queue := cfg.QueueBytes
	if queue == 0 {
		queue = impair.DefaultQueueBytes
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))
	ch := make(chan chunk, 1024)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		broken := false
		for c := range ch {
			if broken {
				continue
			}
			if d := time.Until(c.due); d > 0 {
				time.Sleep(d)
			}
			if _, err := dst.Write(c.data); err != nil {
				broken = true
				src.Close()
			}
		}
		if tc, ok := dst.(*net.TCPConn); ok && !broken {
			_ = tc.CloseWrite()
		}
	}()
	var busyUntil, lastDue time.Time
	for {
		// Reads are capped so the bottleneck is filled in datagram-sized
		// steps, not one 64 KiB burst.
		size := 64 << 10
		if cfg.Rate > 0 {
			size = 16 << 10
		}
		buf := make([]byte, size)
		n, err := src.Read(buf)
		if n > 0 {
			now := time.Now()
			if cfg.Rate > 0 {
				// Wait while the backlog ahead of the bottleneck exceeds the queue.
				maxBacklog := time.Duration(float64(queue) / float64(cfg.Rate) * float64(time.Second))
				if backlog := busyUntil.Sub(now); backlog > maxBacklog {
					time.Sleep(backlog - maxBacklog)
					now = time.Now()
				}
				if busyUntil.Before(now) {
					busyUntil = now
				}
				busyUntil = busyUntil.Add(time.Duration(float64(n) / float64(cfg.Rate) * float64(time.Second)))
			} else {
				busyUntil = now
			}
			due := busyUntil.Add(cfg.Delay)
			if cfg.Jitter > 0 {
				due = due.Add(time.Duration(rng.Int64N(int64(cfg.Jitter) + 1)))
			}
			if due.Before(lastDue) {
				due = lastDue // a byte stream stays in order
			}
			lastDue = due
			ch <- chunk{due: due, data: buf[:n]}
		}
		if err != nil {
			break
		}
	}
	close(ch)
	wg.Wait()
}
