// Command pump drives rudp from a game loop: both ends run with
// Config{Manual: true}, so the library starts no goroutine of its own, and a
// single loop ticking at -hz (60 by default) calls Pump on every frame to
// read what arrived, fire timers and send.
//
// Each frame the server sends the game state tagged with the frame number as
// an Order message: it is never retransmitted and never delivered after a
// newer one, so a lost update is simply replaced by the next. Every
// -chat-every frames both sides also send a chat line as a Delivery message:
// those arrive exactly once and in order, lost packets or not. To make that
// visible the client talks to the server through a UDP relay that loses
// -loss of the datagrams in each direction (impair, seeded).
//
//	go run ./examples/pump
//	go run ./examples/pump -seconds 10 -loss 0.2
package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/signal"
	"time"

	"github.com/rudp-go/rudp"
	"github.com/rudp-go/rudp/impair"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "pump:", err)
		os.Exit(1)
	}
}

// Message kinds, the first byte of every message.
const (
	kindState = 'S' // frame uint32, then entity positions
	kindChat  = 'C' // chat sequence number uint32, then text
)

const entities = 8

// options are the parsed flags.
type options struct {
	seconds   float64
	hz        int
	chatEvery int
	loss      float64
	seed      uint64
}

func run(ctx context.Context, args []string, out io.Writer) error {
	var o options
	fs := flag.NewFlagSet("pump", flag.ContinueOnError)
	fs.Float64Var(&o.seconds, "seconds", 2, "game `seconds` to play")
	fs.IntVar(&o.hz, "hz", 60, "frames per second")
	fs.IntVar(&o.chatEvery, "chat-every", 12, "send a chat line every this many `frames`")
	fs.Float64Var(&o.loss, "loss", 0.05, "`probability` that the relay drops a datagram, each direction")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the relay's losses")
	timeout := fs.Duration("timeout", time.Minute, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.seconds <= 0 || o.hz < 1 || o.hz > 1000 || o.chatEvery < 1 || o.loss < 0 || o.loss >= 1 {
		return errors.New("want -seconds > 0, 1 <= -hz <= 1000, -chat-every >= 1, 0 <= -loss < 1")
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	// Order as the connection's guarantee makes it message-oriented; each
	// message below names its own guarantee anyway. A negative Linger makes
	// Close return at once, as a game loop needs: the loop goes on pumping
	// until the close is complete (by default Close would wait, pumping
	// only its own socket, for the peer's acknowledgement).
	cfg := &rudp.Config{Manual: true, Guarantee: rudp.Order, Linger: -1}
	ln, err := rudp.Listen("udp", "127.0.0.1:0", cfg)
	if err != nil {
		return err
	}
	defer ln.Close()
	up, down := impair.Config{Loss: o.loss, Seed: o.seed}, impair.Config{Loss: o.loss, Seed: o.seed + 1}
	relay, err := impair.NewProxy("127.0.0.1:0", ln.Addr().String(), up, down)
	if err != nil {
		return err
	}
	defer relay.Close()
	fmt.Fprintf(out, "server: listening on %s (udp, Manual mode); the client connects through a relay at %s that drops %.0f%% of datagrams each way\n",
		ln.Addr(), relay.Addr(), 100*o.loss)

	// The handshake is the one moment two calls block at once: Accept and
	// Dial each drive their own socket while they wait, so they must run side
	// by side. From then on a single goroutine does everything.
	type acceptResult struct {
		c   *rudp.Conn
		err error
	}
	accepted := make(chan acceptResult, 1)
	go func() {
		c, err := ln.AcceptRUDP()
		accepted <- acceptResult{c, err}
	}()
	client, dialErr := rudp.DialContext(ctx, "udp", relay.Addr().String(), cfg)
	if dialErr != nil {
		ln.Close() // ends Accept
	}
	a := <-accepted
	if err := errors.Join(dialErr, a.err); err != nil {
		if a.c != nil {
			a.c.Close()
		}
		if client != nil {
			client.Close()
		}
		return fmt.Errorf("handshake: %w", err)
	}
	server := a.c
	defer server.Close()
	defer client.Close()
	fmt.Fprintf(out, "client: connected to the server through the relay (%s)\n", client.RemoteAddr())

	g := &game{opts: o, ln: ln, server: newPeer("server", server), client: newPeer("client", client)}
	if err := g.loop(ctx, out); err != nil {
		return err
	}
	g.report(out, relay.Stats())
	return g.close(ctx, out)
}

// peer is one end of the game's connection and what it has seen.
type peer struct {
	name string
	conn *rudp.Conn
	buf  []byte

	chatSent, chatReceived int
	updatesReceived        int
	lastFrame              uint32
}

func newPeer(name string, c *rudp.Conn) *peer {
	return &peer{name: name, conn: c, buf: make([]byte, 64<<10)}
}

// poll returns the next message p has ready, or nil once nothing more is
// ready this frame: TryReadMessage never waits, as a game loop needs.
func (p *peer) poll() (msg []byte, g rudp.Guarantee, err error) {
	n, g, err := p.conn.TryReadMessage(p.buf)
	if err != nil || g == 0 {
		return nil, 0, err
	}
	return p.buf[:n], g, nil
}

type game struct {
	opts           options
	ln             *rudp.Listener
	server, client *peer
	frames         int // frames played
	updatesSent    int
}

// loop plays the game for opts.seconds at opts.hz, then keeps pumping
// (without new messages) until every chat line has arrived.
func (g *game) loop(ctx context.Context, out io.Writer) error {
	frames := int(math.Round(g.opts.seconds * float64(g.opts.hz)))
	tick := time.NewTicker(time.Second / time.Duration(g.opts.hz))
	defer tick.Stop()
	start := time.Now()
	settling := 0
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("frame %d: %w", g.frames, context.Cause(ctx))
		case <-tick.C:
		}
		// 1. Network in: read ready datagrams, fire due timers.
		if err := g.pumpAll(); err != nil {
			return err
		}
		// 2. Handle what arrived.
		for _, p := range []*peer{g.server, g.client} {
			if err := g.receive(p); err != nil {
				return err
			}
		}
		// 3. Simulate and send.
		if g.frames < frames {
			g.frames++
			if err := g.sendState(); err != nil {
				return err
			}
			if g.frames%g.opts.chatEvery == 0 {
				for _, p := range []*peer{g.client, g.server} {
					if err := g.sendChat(p); err != nil {
						return err
					}
				}
			}
			if g.frames == frames {
				fmt.Fprintf(out, "game: played %d frames at %d Hz in %v, one goroutine calling Pump each frame\n",
					frames, g.opts.hz, time.Since(start).Round(time.Millisecond))
			}
		} else if g.server.chatReceived == g.client.chatSent && g.client.chatReceived == g.server.chatSent {
			return nil
		} else if settling++; settling > 10*g.opts.hz {
			return fmt.Errorf("chat lines still missing after %d more frames: server got %d/%d, client %d/%d",
				settling, g.server.chatReceived, g.client.chatSent, g.client.chatReceived, g.server.chatSent)
		}
		// 4. Network out: flush what this frame queued.
		if err := g.pumpAll(); err != nil {
			return err
		}
	}
}

func (g *game) pumpAll() error {
	return errors.Join(g.ln.Pump(), g.server.conn.Pump(), g.client.conn.Pump())
}

// sendState sends the world as of this frame; a lost update is not resent,
// the next frame's replaces it.
func (g *game) sendState() error {
	msg := make([]byte, 5, 5+entities*8)
	msg[0] = kindState
	binary.BigEndian.PutUint32(msg[1:], uint32(g.frames))
	for e := range entities {
		angle := float64(g.frames)/float64(g.opts.hz) + float64(e)
		msg = binary.BigEndian.AppendUint32(msg, math.Float32bits(float32(100*math.Cos(angle))))
		msg = binary.BigEndian.AppendUint32(msg, math.Float32bits(float32(100*math.Sin(angle))))
	}
	if err := g.server.conn.SendMessage(rudp.Order, msg); err != nil {
		return fmt.Errorf("server: state update %d: %w", g.frames, err)
	}
	g.updatesSent++
	return nil
}

func (g *game) sendChat(p *peer) error {
	p.chatSent++
	msg := []byte{kindChat, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(msg[1:], uint32(p.chatSent))
	msg = fmt.Appendf(msg, "%s says hello at frame %d", p.name, g.frames)
	if err := p.conn.SendMessage(rudp.Delivery, msg); err != nil {
		return fmt.Errorf("%s: chat %d: %w", p.name, p.chatSent, err)
	}
	return nil
}

// receive handles every message p has ready, without blocking.
func (g *game) receive(p *peer) error {
	for {
		msg, guarantee, err := p.poll()
		if err != nil {
			return fmt.Errorf("%s: read: %w", p.name, err)
		}
		if msg == nil {
			return nil // nothing more this frame
		}
		if len(msg) < 5 {
			return fmt.Errorf("%s: short message %q", p.name, msg)
		}
		number := binary.BigEndian.Uint32(msg[1:])
		switch {
		case msg[0] == kindState && guarantee == rudp.Order && p == g.client:
			if number <= p.lastFrame {
				return fmt.Errorf("client: state update for frame %d arrived after frame %d", number, p.lastFrame)
			}
			p.lastFrame = number
			p.updatesReceived++
		case msg[0] == kindChat && guarantee == rudp.Delivery:
			if int(number) != p.chatReceived+1 {
				return fmt.Errorf("%s: chat line %d arrived, want %d", p.name, number, p.chatReceived+1)
			}
			p.chatReceived++
		default:
			return fmt.Errorf("%s: unexpected %v message %q", p.name, guarantee, msg)
		}
	}
}

func (g *game) report(out io.Writer, relay impair.ProxyStats) {
	c := g.client
	fmt.Fprintf(out, "state (Order): server sent %d updates, client received %d with frame numbers strictly increasing, %d dropped (lost, never retransmitted: the next frame replaced them)\n",
		g.updatesSent, c.updatesReceived, g.updatesSent-c.updatesReceived)
	fmt.Fprintf(out, "chat (Delivery): client -> server %d/%d lines, server -> client %d/%d lines, all in order\n",
		g.server.chatReceived, c.chatSent, c.chatReceived, g.server.chatSent)
	ss, cs := g.server.conn.Stats(), c.conn.Stats()
	fmt.Fprintf(out, "link: the relay dropped %d datagrams up and %d down; rudp retransmitted %d chat fragments, RTT %v\n",
		relay.Up.DroppedLoss, relay.Down.DroppedLoss, ss.FragmentsRetransmitted+cs.FragmentsRetransmitted,
		cs.RTT.Smoothed.Round(time.Microsecond))
}

// close closes both ends gracefully, still from the one goroutine: Close
// returns at once, and the loop keeps pumping until the client's close has
// reached the server (its read returns io.EOF), the server has closed too,
// and both Pump calls report net.ErrClosed: the closes are complete.
func (g *game) close(ctx context.Context, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := g.client.conn.Close(); err != nil {
		return fmt.Errorf("client: close: %w", err)
	}
	tick := time.NewTicker(time.Second / time.Duration(g.opts.hz))
	defer tick.Stop()
	serverClosed := false
	for {
		lnErr := g.ln.Pump()
		clientDone := errors.Is(g.client.conn.Pump(), net.ErrClosed)
		serverDone := errors.Is(g.server.conn.Pump(), net.ErrClosed)
		if lnErr != nil {
			return fmt.Errorf("listener: %w", lnErr)
		}
		if clientDone && serverDone {
			break
		}
		if !serverClosed {
			msg, _, err := g.server.poll()
			switch {
			case errors.Is(err, io.EOF):
				if err := g.server.conn.Close(); err != nil {
					return fmt.Errorf("server: close: %w", err)
				}
				serverClosed = true
			case err != nil:
				return fmt.Errorf("server: waiting for the client's close: %w", err)
			case msg != nil:
				return fmt.Errorf("server: unexpected message after the game: %q", msg)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("closing (server read io.EOF: %v, client done: %v, server done: %v): %w",
				serverClosed, clientDone, serverDone, context.Cause(ctx))
		case <-tick.C:
		}
	}
	fmt.Fprintln(out, "closed: the client closed, the server read io.EOF and closed, both closes complete")
	return g.ln.Close()
}
