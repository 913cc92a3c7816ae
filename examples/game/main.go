// Command game is a game server and its clients through a lossy relay: it
// measures how late the server's state updates arrive while chat and an
// asset download share the connection, with and without streams.
//
// Every client has one rudp connection to the server, through a UDP relay
// (impair's Proxy) that loses -loss of the datagrams each way and
// delays them by half of -rtt each way. On each connection the server sends
//
//   - state updates at -hz (60 by default), each carrying its sequence
//     number and the time it was sent, with the Order guarantee: a late
//     update is useless once a newer one arrived;
//   - chat lines at -chat lines a second (10 by default; the room's chat
//     as the server relays it) with the Delivery guarantee: every line,
//     once, in order;
//   - an asset download of -download-kib KiB (8 MiB by default), Delivery.
//
// The program runs three times, -duration each (longer if a download
// takes longer), and prints for the state updates their age on arrival
// (p50, p90, p99, max) and the gaps between arrivals (p99):
//
//  1. state alone;
//  2. state, chat and download on one ordering domain, as one would write
//     it without streams: SendMessage(Order) and SendMessage(Delivery) on
//     the connection itself (stream 0), every message tagged with its
//     kind. An Order message waits for every Delivery message sent before
//     it (docs/PROTOCOL.md §6), so one lost chat or download datagram
//     holds the state updates behind it for a retransmission;
//  3. state, chat and download on streams of their own (Conn.OpenStream):
//     state on an Order stream, chat on a Delivery stream read as lines,
//     the download on a Delivery stream of lower priority (Priority 1:
//     its fragments go only when the state and chat streams have none
//     waiting, so the download's queue delays a state update by at most
//     the datagram already on its way).
//
// -runs picks the runs; chat-one and chat-streams are state and chat only
// (the head-of-line blocking a lost chat datagram causes on one domain,
// without the download's queue). Updates arriving in a client's first
// -warmup after its connection and streams opened are checked but not
// timed.
//
// Each run checks what it promises: every client received state updates in
// increasing order, every chat line exactly once and in order, and the
// download byte for byte. Everything runs in this one process over real
// UDP on loopback.
//
//	go run ./examples/game
//	go run ./examples/game -clients 8 -loss 0.1 -rtt 100ms -duration 10s
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rudp-go/rudp"
	"github.com/rudp-go/rudp/impair"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "game:", err)
		os.Exit(1)
	}
}

// options are the command line's settings.
type options struct {
	clients     int
	loss        float64
	rtt         time.Duration
	duration    time.Duration
	warmup      time.Duration
	hz          int
	chatRate    int
	downloadKiB int
	stateBytes  int
	seed        uint64
}

// mode is what the server sends on a connection, and how.
type mode struct {
	name           string
	chat, download bool
	streams        bool // each kind on its own stream; else all on stream 0, tagged
}

// modes are the runs -runs can name.
var modes = []mode{
	{name: "alone"},
	{name: "one", chat: true, download: true},
	{name: "streams", chat: true, download: true, streams: true},
	{name: "chat-one", chat: true},
	{name: "chat-streams", chat: true, streams: true},
}

func (m mode) String() string {
	s := "state"
	if m.chat {
		s += " + chat"
	}
	if m.download {
		s += " + download"
	}
	switch {
	case !m.chat && !m.download:
		return "state alone"
	case m.streams:
		return s + ", streams"
	}
	return s + ", one domain"
}

func run(ctx context.Context, args []string, out io.Writer) (err error) {
	defer func() {
		// After a timeout or ^C, the I/O error it caused (net.ErrClosed)
		// says less than why. (ctx is the timeout's context below.)
		if err != nil && ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", context.Cause(ctx), err)
		}
	}()
	fs := flag.NewFlagSet("game", flag.ContinueOnError)
	var o options
	fs.IntVar(&o.clients, "clients", 4, "number of `clients`")
	fs.Float64Var(&o.loss, "loss", 0.05, "`probability` that the relay loses a datagram, each way")
	fs.DurationVar(&o.rtt, "rtt", 50*time.Millisecond, "round trip `time` the relay adds")
	fs.DurationVar(&o.duration, "duration", 3*time.Second, "how long each run sends state updates, at least")
	fs.DurationVar(&o.warmup, "warmup", 500*time.Millisecond, "updates arriving in a client's first `time` (from when its connection and streams are open) are not timed")
	fs.IntVar(&o.hz, "hz", 60, "state updates a second to each client")
	fs.IntVar(&o.chatRate, "chat", 10, "chat `lines` a second to each client")
	fs.IntVar(&o.downloadKiB, "download-kib", 8<<10, "`KiB` of the asset each client downloads")
	fs.IntVar(&o.stateBytes, "state-bytes", 200, "`bytes` in one state update (at least 16)")
	fs.Uint64Var(&o.seed, "seed", 1, "the relay's random `seed`")
	runs := fs.String("runs", "alone,one,streams", "the `runs`, in order: alone (state only), one (state, chat and download on stream 0), streams (each on a stream of its own), chat-one, chat-streams (state and chat only)")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case o.clients < 1:
		return fmt.Errorf("-clients %d: want at least 1", o.clients)
	case !(o.loss >= 0 && o.loss < 1):
		return fmt.Errorf("-loss %v: want a probability in [0, 1)", o.loss)
	case o.rtt < 0:
		return fmt.Errorf("-rtt %v: want >= 0", o.rtt)
	case o.duration <= 0:
		return fmt.Errorf("-duration %v: want > 0", o.duration)
	case o.warmup < 0 || o.warmup >= o.duration:
		return fmt.Errorf("-warmup %v: want >= 0 and below -duration", o.warmup)
	case o.hz < 1:
		return fmt.Errorf("-hz %d: want at least 1", o.hz)
	case o.chatRate < 1:
		return fmt.Errorf("-chat %d: want at least 1", o.chatRate)
	case o.downloadKiB < 1:
		return fmt.Errorf("-download-kib %d: want at least 1", o.downloadKiB)
	case o.stateBytes < stateHeader:
		return fmt.Errorf("-state-bytes %d: want at least %d", o.stateBytes, stateHeader)
	}
	var todo []mode
	for name := range strings.SplitSeq(*runs, ",") {
		i := slices.IndexFunc(modes, func(m mode) bool { return m.name == name })
		if i < 0 {
			return fmt.Errorf("-runs: unknown run %q (want alone, one, streams, chat-one or chat-streams)", name)
		}
		todo = append(todo, modes[i])
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	fmt.Fprintf(out, "%d clients through a relay losing %.3g%% of datagrams each way, %v round trip; state %d bytes at %d Hz, chat %d lines/s, download %d KiB\n",
		o.clients, 100*o.loss, o.rtt, o.stateBytes, o.hz, o.chatRate, o.downloadKiB)
	var results []runResult
	for _, m := range todo {
		res, err := runOnce(ctx, m, o)
		if err != nil {
			return fmt.Errorf("%v: %w", m, err)
		}
		res.print(out, len(results)+1)
		results = append(results, res)
	}
	fmt.Fprintf(out, "\nstate updates (age on arrival; gap between arrivals):\n")
	fmt.Fprintf(out, "%-36s %8s %8s %8s %8s %9s\n", "run", "age p50", "p90", "p99", "max", "gap p99")
	for _, r := range results {
		a := r.ages
		fmt.Fprintf(out, "%-36s %8v %8v %8v %8v %9v\n", r.mode,
			ms(pct(a, 0.50)), ms(pct(a, 0.90)), ms(pct(a, 0.99)), ms(pct(a, 1)), ms(pct(r.gaps, 0.99)))
	}
	return nil
}

// Message layout. A state update is its sequence number, the time it was
// sent (nanoseconds since the run's epoch, the process's monotonic clock),
// and padding. On one domain every message starts with its kind.
const (
	stateHeader = 16
	chunkSize   = 32 << 10 // the download is written in chunks of this size
)

// The kinds of message on one domain, in its first byte.
const (
	kindState byte = iota + 1
	kindChat
	kindDownload
	kindEnd // the last message on one domain: nothing follows
)

// runResult is what one run measured, over all clients.
type runResult struct {
	mode            mode
	elapsed         time.Duration
	sent, received  int             // state updates
	ages, gaps      []time.Duration // of the state updates received
	chatLines       int             // all clients
	downloadSlowest time.Duration   // from the connection's start to the last byte
	packetsLost     uint64          // the server's, all connections
	retransmissions uint64
	download        int64 // bytes each client downloads
}

func (r *runResult) print(out io.Writer, n int) {
	fmt.Fprintf(out, "\nrun %d: %v (%v)\n", n, r.mode, r.elapsed.Round(time.Microsecond))
	fmt.Fprintf(out, "  state: %d of %d updates received in increasing order after the warm-up (%.1f%%); age p50 %v p90 %v p99 %v max %v; gap p99 %v max %v\n",
		r.received, r.sent, 100*float64(r.received)/float64(max(r.sent, 1)),
		ms(pct(r.ages, 0.5)), ms(pct(r.ages, 0.9)), ms(pct(r.ages, 0.99)), ms(pct(r.ages, 1)),
		ms(pct(r.gaps, 0.99)), ms(pct(r.gaps, 1)))
	if r.mode.chat {
		fmt.Fprintf(out, "  chat: the clients received all %d lines exactly once, in order\n", r.chatLines)
	}
	if r.mode.download {
		fmt.Fprintf(out, "  download: every client received %d KiB byte-exact, the slowest in %v\n",
			r.download>>10, r.downloadSlowest.Round(time.Microsecond))
	}
	fmt.Fprintf(out, "  server: %d packets lost, %d fragments retransmitted\n", r.packetsLost, r.retransmissions)
}

// runOnce runs the server and o.clients clients through a fresh relay in
// mode m.
func runOnce(ctx context.Context, m mode, o options) (runResult, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ln, err := rudp.Listen("udp", "127.0.0.1:0", nil)
	if err != nil {
		return runResult{}, err
	}
	defer ln.Close()
	link := impair.Config{Loss: o.loss, Delay: o.rtt / 2}
	up, down := link, link
	up.Seed, down.Seed = o.seed, o.seed+1
	relay, err := impair.NewProxy("127.0.0.1:0", ln.Addr().String(), up, down)
	if err != nil {
		return runResult{}, err
	}
	defer relay.Close()

	// A failure anywhere ends the run: closing every connection unblocks
	// every goroutine.
	var (
		mu    sync.Mutex
		conns []*rudp.Conn
	)
	track := func(c *rudp.Conn) {
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
		if ctx.Err() != nil { // the AfterFunc below may have run already
			c.SetLinger(0)
			c.Close()
		}
	}
	stop := context.AfterFunc(ctx, func() {
		ln.Close()
		relay.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.SetLinger(0)
			c.Close()
		}
	})
	defer stop()

	epoch := time.Now()
	var wg sync.WaitGroup
	servers := make([]serverResult, o.clients)
	clients := make([]clientResult, o.clients)
	wg.Go(func() {
		var each sync.WaitGroup
		for i := range o.clients {
			c, err := ln.AcceptRUDP()
			if err != nil {
				servers[i].err = fmt.Errorf("server: accept: %w", err)
				cancel()
				break
			}
			track(c)
			each.Go(func() {
				servers[i] = serve(ctx, c, m, o, epoch)
				if servers[i].err != nil {
					cancel()
				}
			})
		}
		each.Wait()
	})
	for i := range o.clients {
		wg.Go(func() {
			c, err := rudp.DialContext(ctx, "udp", relay.Addr().String(), nil)
			if err != nil {
				clients[i].err = fmt.Errorf("client %d: dial: %w", i, err)
				cancel()
				return
			}
			track(c)
			clients[i] = play(ctx, c, m, o, epoch)
			if clients[i].err != nil {
				clients[i].err = fmt.Errorf("client %d: %w", i, clients[i].err)
				cancel()
			}
		})
	}
	wg.Wait()

	res := runResult{mode: m, elapsed: time.Since(epoch), download: int64(o.downloadKiB) << 10}
	digest := assetDigest(o.downloadKiB << 10)
	// Servers are in the order accepted, clients in the order dialed: the
	// totals are compared.
	var errs []error
	serverChat, clientChat := 0, 0
	for i := range o.clients {
		s, c := servers[i], clients[i]
		errs = append(errs, s.err, c.err)
		serverChat += s.chatLines
		res.packetsLost += s.stats.PacketsLost
		res.retransmissions += s.stats.FragmentsRetransmitted
		if c.err != nil {
			continue
		}
		if c.stateReceived == 0 {
			errs = append(errs, fmt.Errorf("client %d: no state update arrived", i))
		}
		if m.download && (c.downloaded != int64(o.downloadKiB)<<10 || !bytes.Equal(c.digest, digest)) {
			errs = append(errs, fmt.Errorf("client %d: the download's %d bytes differ from the asset's %d", i, c.downloaded, o.downloadKiB<<10))
		}
		clientChat += c.chatLines
		res.received += len(c.ages)
		res.sent += c.timedSent
		res.ages = append(res.ages, c.ages...)
		res.gaps = append(res.gaps, c.gaps...)
		res.downloadSlowest = max(res.downloadSlowest, c.downloadDone)
	}
	if clientChat != serverChat {
		errs = append(errs, fmt.Errorf("clients received %d chat lines, the server sent %d", clientChat, serverChat))
	}
	res.chatLines = serverChat
	if err := errors.Join(errs...); err != nil {
		return res, err
	}
	slices.Sort(res.ages)
	slices.Sort(res.gaps)
	return res, nil
}

type serverResult struct {
	stateSent, chatLines int
	stats                rudp.Stats
	err                  error
}

// sender is where the server writes each kind of traffic: the connection
// itself, or a stream of its own.
type sender struct {
	state, chat, download func(p []byte) error
	end                   func() error // nothing follows
}

// serve is the server's side of one connection: it sends state updates and
// chat until o.duration passed and the download is written, then ends its
// direction and waits for the client to close.
func serve(ctx context.Context, c *rudp.Conn, m mode, o options, epoch time.Time) (res serverResult) {
	defer c.Close()
	defer func() { res.stats = c.Stats() }()
	snd, err := newSender(ctx, c, m)
	if err != nil {
		res.err = fmt.Errorf("server: %w", err)
		return res
	}
	done := make(chan struct{}) // closed when the updates may stop
	var errs [3]error
	var wg sync.WaitGroup
	downloaded := make(chan struct{})
	wg.Go(func() {
		defer close(downloaded)
		if m.download {
			errs[0] = writeAsset(snd.download, o.downloadKiB<<10)
		}
	})
	wg.Go(func() {
		select {
		case <-time.After(o.duration):
		case <-ctx.Done():
		}
		select {
		case <-downloaded:
		case <-ctx.Done():
		}
		close(done)
	})
	if m.chat {
		wg.Go(func() {
			errs[1] = every(time.Second/time.Duration(o.chatRate), done, func() error {
				line := fmt.Sprintf("%d player%d: gg, that was close\n", res.chatLines, res.chatLines%o.clients)
				if err := snd.chat([]byte(line)); err != nil {
					return err
				}
				res.chatLines++
				return nil
			})
		})
	}
	update := make([]byte, o.stateBytes)
	errs[2] = every(time.Second/time.Duration(o.hz), done, func() error {
		binary.BigEndian.PutUint64(update, uint64(res.stateSent))
		binary.BigEndian.PutUint64(update[8:], uint64(time.Since(epoch)))
		if err := snd.state(update); err != nil {
			return err
		}
		res.stateSent++
		return nil
	})
	wg.Wait()
	if err := errors.Join(errs[:]...); err != nil {
		res.err = fmt.Errorf("server: %w", err)
		return res
	}
	if err := snd.end(); err != nil {
		res.err = fmt.Errorf("server: end: %w", err)
		return res
	}
	// The client closes once it read everything; until then what we sent
	// may still be on its way.
	if _, err := io.Copy(io.Discard, c); err != nil {
		res.err = fmt.Errorf("server: waiting for the client's close: %w", err)
	}
	return res
}

// newSender opens the streams of mode m, or tags messages on stream 0.
func newSender(ctx context.Context, c *rudp.Conn, m mode) (sender, error) {
	if !m.streams {
		tagged := func(g rudp.Guarantee, kind byte) func([]byte) error {
			var buf []byte
			return func(p []byte) error {
				buf = append(append(buf[:0], kind), p...)
				return c.SendMessage(g, buf)
			}
		}
		return sender{
			state:    tagged(rudp.Order, kindState),
			chat:     tagged(rudp.Delivery, kindChat),
			download: tagged(rudp.Delivery, kindDownload),
			end:      func() error { return c.SendMessage(rudp.Delivery, []byte{kindEnd}) },
		}, nil
	}
	// The client accepts the streams in the order they are opened.
	state, err := c.OpenStream(ctx, &rudp.StreamOptions{Guarantee: rudp.Order})
	if err != nil {
		return sender{}, err
	}
	chat, err := c.OpenStream(ctx, &rudp.StreamOptions{Guarantee: rudp.Delivery})
	if err != nil {
		return sender{}, err
	}
	download, err := c.OpenStream(ctx, &rudp.StreamOptions{Guarantee: rudp.Delivery, Priority: 1})
	if err != nil {
		return sender{}, err
	}
	write := func(s *rudp.Stream) func([]byte) error {
		return func(p []byte) error { _, err := s.Write(p); return err }
	}
	return sender{
		state:    write(state),
		chat:     write(chat),
		download: write(download),
		end: func() error {
			return errors.Join(state.CloseWrite(), chat.CloseWrite(), download.CloseWrite())
		},
	}, nil
}

// every calls f every period until done is closed or f fails.
func every(period time.Duration, done <-chan struct{}, f func() error) error {
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return nil
		case <-tick.C:
			if err := f(); err != nil {
				return err
			}
		}
	}
}

// asset is the download's content: pseudo-random, so that a misplaced or
// lost chunk is caught.
func asset() *rand.ChaCha8 { return rand.NewChaCha8([32]byte{'a', 's', 's', 'e', 't'}) }

// writeAsset writes the asset's first n bytes in chunks.
func writeAsset(write func([]byte) error, n int) error {
	src := asset()
	chunk := make([]byte, chunkSize)
	for n > 0 {
		p := chunk[:min(n, len(chunk))]
		src.Read(p)
		if err := write(p); err != nil {
			return err
		}
		n -= len(p)
	}
	return nil
}

// assetDigest is the SHA-256 of the asset's first n bytes.
func assetDigest(n int) []byte {
	h := sha256.New()
	io.CopyN(h, asset(), int64(n))
	return h.Sum(nil)
}

type clientResult struct {
	ages, gaps    []time.Duration
	timedSent     int // updates the server sent from the first timed one to the last received
	stateReceived int // all of them, timed or not
	chatLines     int
	downloaded    int64
	digest        []byte
	downloadDone  time.Duration // since the connection's start
	err           error
}

// play is one client: it reads everything the server sends, checking the
// guarantees as it goes, then closes the connection.
func play(ctx context.Context, c *rudp.Conn, m mode, o options, epoch time.Time) clientResult {
	var res clientResult
	defer c.Close()
	start := time.Now()
	st := &stateReader{epoch: epoch, warmup: o.warmup}
	ch := &chatReader{}
	dl := &downloadReader{h: sha256.New(), start: start}
	if !m.streams {
		st.begin()
		res.err = readOneDomain(c, st, ch, dl)
	} else {
		res.err = readStreams(ctx, c, st, ch, dl)
	}
	res.ages, res.gaps, res.stateReceived = st.ages, st.gaps, st.received
	if len(st.ages) > 0 {
		res.timedSent = int(st.next - st.firstTimed)
	}
	res.chatLines = ch.next
	res.downloaded, res.digest, res.downloadDone = dl.n, dl.h.Sum(nil), dl.done
	return res
}

// stateReader checks and times the state updates.
type stateReader struct {
	epoch      time.Time
	warmup     time.Duration
	timeFrom   time.Time // updates arriving earlier are checked, not timed
	firstTimed uint64    // the first timed update's sequence number
	next       uint64    // the smallest sequence number still acceptable
	received   int       // all updates, timed or not
	last       time.Time
	ages, gaps []time.Duration
}

// begin starts the warm-up, once the connection and its streams are open.
func (r *stateReader) begin() { r.timeFrom = time.Now().Add(r.warmup) }

func (r *stateReader) update(p []byte) error {
	now := time.Now()
	if len(p) < stateHeader {
		return fmt.Errorf("state update of %d bytes", len(p))
	}
	seq := binary.BigEndian.Uint64(p)
	if seq < r.next {
		return fmt.Errorf("state update %d after %d: Order yields none older than one yielded", seq, r.next-1)
	}
	r.next = seq + 1
	r.received++
	sent := time.Duration(binary.BigEndian.Uint64(p[8:]))
	if now.Before(r.timeFrom) {
		return nil
	}
	if len(r.ages) == 0 {
		r.firstTimed = seq
	}
	r.ages = append(r.ages, now.Sub(r.epoch)-sent)
	if !r.last.IsZero() {
		r.gaps = append(r.gaps, now.Sub(r.last))
	}
	r.last = now
	return nil
}

// chatReader checks that the lines arrive exactly once, in order.
type chatReader struct{ next int }

func (r *chatReader) line(s string) error {
	n, _, _ := strings.Cut(s, " ")
	if n != strconv.Itoa(r.next) {
		return fmt.Errorf("chat line %q, want line %d", s, r.next)
	}
	r.next++
	return nil
}

// downloadReader hashes the asset as it arrives.
type downloadReader struct {
	h     hash.Hash
	n     int64
	start time.Time
	done  time.Duration
}

func (r *downloadReader) Write(p []byte) (int, error) {
	r.n += int64(len(p))
	r.done = time.Since(r.start)
	return r.h.Write(p)
}

// readOneDomain reads the tagged messages of stream 0 until the server's
// last one.
func readOneDomain(c *rudp.Conn, st *stateReader, ch *chatReader, dl *downloadReader) error {
	buf := make([]byte, 1+chunkSize)
	for {
		n, _, err := c.ReadMessage(buf)
		if err != nil {
			return err
		}
		if n == 0 {
			return errors.New("empty message")
		}
		p := buf[1:n]
		switch buf[0] {
		case kindState:
			err = st.update(p)
		case kindChat:
			err = ch.line(strings.TrimSuffix(string(p), "\n"))
		case kindDownload:
			_, err = dl.Write(p)
		case kindEnd:
			return nil
		default:
			err = fmt.Errorf("message of unknown kind %d", buf[0])
		}
		if err != nil {
			return err
		}
	}
}

// readStreams accepts the server's three streams and reads each to its end.
func readStreams(ctx context.Context, c *rudp.Conn, st *stateReader, ch *chatReader, dl *downloadReader) error {
	var streams [3]*rudp.Stream
	for i := range streams {
		s, err := c.AcceptStream(ctx)
		if err != nil {
			return fmt.Errorf("accept: %w", err)
		}
		defer s.Close()
		streams[i] = s
	}
	st.begin()
	if g := streams[0].Guarantee(); g != rudp.Order {
		return fmt.Errorf("state stream's guarantee is %v, want Order", g)
	}
	var errs [3]error
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := streams[0].Read(buf)
			if err == io.EOF {
				return
			}
			if err == nil {
				err = st.update(buf[:n])
			}
			if err != nil {
				errs[0] = fmt.Errorf("state: %w", err)
				streams[0].Conn().Close()
				return
			}
		}
	})
	wg.Go(func() {
		lines := bufio.NewScanner(streams[1])
		for lines.Scan() {
			if err := ch.line(lines.Text()); err != nil {
				errs[1] = err
				streams[1].Conn().Close()
				return
			}
		}
		if err := lines.Err(); err != nil {
			errs[1] = fmt.Errorf("chat: %w", err)
		}
	})
	wg.Go(func() {
		if _, err := io.Copy(dl, streams[2]); err != nil {
			errs[2] = fmt.Errorf("download: %w", err)
		}
	})
	wg.Wait()
	return errors.Join(errs[:]...)
}

// pct returns the q-quantile of sorted d (nearest rank); q = 1 is the
// maximum.
func pct(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[min(len(d)-1, int(q*float64(len(d))))]
}

// ms rounds d for the table: 26.4ms, 1.2s.
func ms(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(10 * time.Millisecond)
	}
	return d.Round(100 * time.Microsecond)
}
