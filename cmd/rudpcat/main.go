// Command rudpcat is netcat over rudp: it connects standard input and
// standard output to a rudp connection.
//
//	rudpcat [-g guarantee] [-d] [-v] host:port       dial host:port
//	rudpcat -l [-k] [-g guarantee] [-d] [-v] [host]:port   listen and accept
//
// With -g delivery (the default) the connection is a reliable ordered byte
// stream: bytes in, the same bytes out, as with nc over TCP. With -g order
// or -g none it is message-oriented: each line of input (without its
// newline) is one message, and each message received is written out as one
// line. Order messages may be lost but never arrive after a newer one; None
// messages may be lost or reordered.
//
// As nc over TCP, rudpcat half-closes: when standard input ends it ends its
// sending direction (Conn.CloseWrite: all it sent is delivered, then the
// peer reads end of file) and keeps writing out what the peer sends until
// the peer ends its own, then closes the connection gracefully and exits.
// So a request answered by the peer works (printf 'GET /x\n' | rudpcat
// host:port prints the reply), and so does a one-way transfer whose
// receiver has no input (rudpcat -l :port > file < /dev/null). When the
// peer ends its direction first, rudpcat goes on sending its input until
// it ends (a peer that closed the connection makes the next write fail).
// With -d standard input is not read, nor the direction ended: rudpcat
// only receives, and closes once the peer ended its direction.
//
// Exit status: 0 when the connection ended gracefully, 1 on an error, 2 on
// bad usage.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rudp-go/rudp"
)

const usage = `usage: rudpcat [-g none|order|delivery] [-d] [-v] host:port
       rudpcat -l [-k] [-g none|order|delivery] [-d] [-v] [host]:port

rudpcat connects standard input and output to a rudp connection (reliable
UDP): it dials host:port, or with -l listens there and accepts a connection.
Standard input goes to the peer, what the peer sends goes to standard output.

  -g delivery  a reliable ordered byte stream, like nc over TCP (the default)
  -g order     one message per line; a lost line is skipped, never reordered
  -g none      one message per line; lines may be lost or reordered

When standard input ends, rudpcat half-closes, as nc over TCP: the peer
reads end of file after everything sent, and rudpcat keeps printing what
the peer sends until the peer ends its side too, then closes and exits.

flags:
`

// Exit statuses.
const (
	exitError = 1
	exitUsage = 2
)

// errUsage marks errors that come from the command line.
var errUsage = errors.New("usage")

func main() {
	// Without this, writing to a closed pipe (rudpcat … | head) kills the
	// process before it can tell the peer; ignored, the write fails with
	// EPIPE and the connection is closed.
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		fmt.Fprintln(os.Stderr, "rudpcat:", err)
		fmt.Fprintln(os.Stderr, "run rudpcat -h for help")
		os.Exit(exitUsage)
	default:
		fmt.Fprintln(os.Stderr, "rudpcat:", err)
		os.Exit(exitError)
	}
}

// options are the parsed command line.
type options struct {
	listen, keep, noStdin, verbose bool
	guarantee                      rudp.Guarantee
	timeout                        time.Duration
	address                        string
}

func parse(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("rudpcat", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	fs.BoolVar(&o.listen, "l", false, "listen on [host]:port and accept a connection instead of dialing")
	fs.BoolVar(&o.keep, "k", false, "with -l, keep accepting: serve connections one after another")
	fs.BoolVar(&o.noStdin, "d", false, "do not read standard input (only receive)")
	fs.BoolVar(&o.verbose, "v", false, "report connections and statistics on standard error")
	g := fs.String("g", "delivery", "`guarantee`: none, order or delivery")
	fs.DurationVar(&o.timeout, "w", 10*time.Second, "give up dialing after this `duration`")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, err
		}
		return o, fmt.Errorf("%w: %v", errUsage, err) // the flag package printed the usage already
	}
	switch strings.ToLower(*g) {
	case "none":
		o.guarantee = rudp.None
	case "order":
		o.guarantee = rudp.Order
	case "delivery":
		o.guarantee = rudp.Delivery
	default:
		return o, fmt.Errorf("%w: -g %q: want none, order or delivery", errUsage, *g)
	}
	if fs.NArg() != 1 {
		return o, fmt.Errorf("%w: want exactly one host:port argument, got %d", errUsage, fs.NArg())
	}
	o.address = fs.Arg(0)
	if _, _, err := net.SplitHostPort(o.address); err != nil {
		return o, fmt.Errorf("%w: %v", errUsage, err)
	}
	if o.keep && !o.listen {
		return o, fmt.Errorf("%w: -k needs -l", errUsage)
	}
	if o.timeout <= 0 {
		return o, fmt.Errorf("%w: -w must be positive", errUsage)
	}
	return o, nil
}

// run is main with its inputs and outputs as arguments: it returns when the
// connection (with -k: the listener) is done or ctx ends.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	o, err := parse(args, stderr)
	if err != nil {
		return err
	}
	// Manual mode, because Close returns at once and the graceful close
	// (delivering what is still buffered, then telling the peer) goes on
	// after it: rudpcat must not exit before it is complete, and in Manual
	// mode Pump reports when it is. The blocking Read, Write, Accept and Dial
	// calls drive the socket themselves while they wait.
	cfg := &rudp.Config{Guarantee: o.guarantee, HandshakeTimeout: o.timeout, Manual: true}
	logf := func(format string, a ...any) {
		if o.verbose {
			fmt.Fprintf(stderr, "rudpcat: "+format+"\n", a...)
		}
	}
	var in *input
	if !o.noStdin {
		in = readInput(stdin, o.guarantee, rudp.DefaultConfig().MaxMessageSize)
		defer in.stop()
	}
	s := &session{guarantee: o.guarantee, in: in, out: stdout, logf: logf}

	if !o.listen {
		conn, err := rudp.DialContext(ctx, "udp", o.address, cfg)
		if err != nil {
			return err
		}
		logf("connected to %s from %s (%v)", conn.RemoteAddr(), conn.LocalAddr(), o.guarantee)
		return s.run(ctx, conn)
	}

	ln, err := rudp.Listen("udp", o.address, cfg)
	if err != nil {
		return err
	}
	defer ln.Close()
	stopOnCancel := context.AfterFunc(ctx, func() { ln.Close() })
	defer stopOnCancel()
	logf("listening on %s (%v)", ln.Addr(), o.guarantee)
	for {
		conn, err := ln.AcceptRUDP()
		if err != nil {
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			return err
		}
		logf("connection from %s", conn.RemoteAddr())
		err = s.run(ctx, conn)
		if !o.keep {
			return err
		}
		// Interrupted: during the session, or as it ended (after the
		// session's own look at ctx), the listener ends with the cause.
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if err != nil {
			fmt.Fprintf(stderr, "rudpcat: connection from %s: %v\n", conn.RemoteAddr(), err)
		}
	}
}

// session copies between one connection and standard input and output.
type session struct {
	guarantee rudp.Guarantee
	in        *input // nil with -d
	out       io.Writer
	logf      func(string, ...any)
}

// run copies until the peer closes, the input ends or ctx ends, and closes
// conn.
func (s *session) run(ctx context.Context, conn *rudp.Conn) error {
	var (
		mu       sync.Mutex
		closedBy string // why we closed the connection ourselves
		closeErr error
	)
	closeConn := func(why string, err error) {
		mu.Lock()
		if closedBy == "" {
			closedBy, closeErr = why, err
		}
		mu.Unlock()
		conn.Close() // graceful: what was written is delivered first
	}
	stopOnCancel := context.AfterFunc(ctx, func() { closeConn("interrupted", context.Cause(ctx)) })
	defer stopOnCancel()

	// Standard input to the connection, until the input ends (then end our
	// direction, as nc over TCP: the peer reads end of file, and may still
	// answer) or the session does.
	done := make(chan struct{})
	sent := make(chan int64, 1)
	go func() {
		n, eof, err := s.in.sendTo(conn, done)
		select {
		case <-done:
			// The session ended first (and its Close may have failed a
			// pending Write): how it ended says why.
		default:
			switch {
			case errors.Is(err, rudp.ErrPeerClosed):
				// The peer closed first; copyOut sees its end of file.
			case err != nil:
				closeConn("sending failed", err)
			case eof:
				if err := conn.CloseWrite(); err != nil && !errors.Is(err, net.ErrClosed) {
					closeConn("half-close failed", err)
				}
			}
		}
		sent <- n
	}()

	// The connection to standard output, until the peer ends its direction.
	received, recvErr := s.copyOut(conn)
	var n int64
	gotSent := false
	if recvErr == nil && s.in != nil && !s.in.isExhausted() {
		// The peer's end of file: our input goes on to its own end, as nc's
		// does (a write fails if the peer closed the connection).
		n, gotSent = <-sent, true
	}
	close(done)
	// Unless we closed already: after the peer's close this only releases
	// the connection (the peer reads nothing more); after a failed read or
	// write to standard output it ends the connection. Either way it fails a
	// Write still pending.
	recvErr = errors.Join(recvErr, ignoreClosed(conn.Close()))
	if !gotSent {
		n = <-sent
	}
	mu.Lock()
	why, err := closedBy, closeErr
	mu.Unlock()
	if why != "" && errors.Is(recvErr, net.ErrClosed) {
		recvErr = nil // our own Close ended the read
	}
	if why == "" {
		why = "peer closed" // (or ended its direction after we ended ours)
	}
	// After our own close, wait until what we sent is delivered.
	if why != "peer closed" && ctx.Err() == nil && !waitClosed(ctx, conn) {
		s.logf("the peer did not acknowledge the close")
	}
	st := conn.Stats()
	s.logf("%s: sent %d bytes, received %d; RTT %v, %d packets lost, %d fragments retransmitted",
		why, n, received, st.RTT.Smoothed.Round(time.Microsecond), st.PacketsLost, st.FragmentsRetransmitted)
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return errors.Join(err, recvErr)
}

// copyOut writes what conn receives to standard output until the peer
// closes (nil error) or the connection ends otherwise. Messages are written
// one per line.
func (s *session) copyOut(conn *rudp.Conn) (int64, error) {
	if s.guarantee == rudp.Delivery {
		return io.Copy(s.out, conn)
	}
	buf := make([]byte, rudp.DefaultConfig().MaxMessageSize+1)
	var total int64
	for {
		n, _, err := conn.ReadMessage(buf[:len(buf)-1])
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
		total += int64(n)
		buf[n] = '\n'
		if _, err := s.out.Write(buf[:n+1]); err != nil {
			return total, err
		}
	}
}

// closeWait bounds how long rudpcat waits for a close to complete.
const closeWait = 10 * time.Second

// waitClosed drives conn until its graceful close is complete (the peer
// acknowledged everything) and reports whether it completed.
func waitClosed(ctx context.Context, conn *rudp.Conn) bool {
	deadline := time.Now().Add(closeWait)
	for conn.Pump() == nil {
		if ctx.Err() != nil || time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

func ignoreClosed(err error) error {
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// errTooLong rejects an input line that does not fit in one message.
var errTooLong = errors.New("input line longer than the largest message")

// input reads standard input on its own goroutine, into chunks (a byte
// stream) or lines (messages). It outlives a session, so that with -k the
// next connection gets the input the last one did not.
type input struct {
	guarantee rudp.Guarantee
	chunks    chan []byte // closed at the end of the input
	quit      chan struct{}
	err       error // why chunks was closed; read after it is

	mu        sync.Mutex
	exhausted bool // a session has seen the end of the input
}

func readInput(r io.Reader, g rudp.Guarantee, maxMessage int) *input {
	in := &input{guarantee: g, chunks: make(chan []byte), quit: make(chan struct{})}
	go func() {
		defer close(in.chunks)
		if g == rudp.Delivery {
			in.err = in.readChunks(r)
		} else {
			in.err = in.readLines(r, maxMessage)
		}
	}()
	return in
}

func (in *input) readChunks(r io.Reader) error {
	for {
		buf := make([]byte, 64<<10)
		n, err := r.Read(buf)
		if n > 0 && !in.deliver(buf[:n]) {
			return nil
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading input: %w", err)
		}
	}
}

func (in *input) readLines(r io.Reader, maxMessage int) error {
	br := bufio.NewReaderSize(r, maxMessage+1)
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return fmt.Errorf("%w (%d bytes)", errTooLong, maxMessage)
		}
		if len(line) > 0 {
			msg := strings.TrimSuffix(string(line), "\n")
			if !in.deliver([]byte(msg)) {
				return nil
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading input: %w", err)
		}
	}
}

// deliver hands b to the session; false means rudpcat is stopping.
func (in *input) deliver(b []byte) bool {
	select {
	case in.chunks <- b:
		return true
	case <-in.quit:
		return false
	}
}

func (in *input) stop() { close(in.quit) }

// errSessionDone: the connection ended before the input did.
var errSessionDone = errors.New("session done")

// sendTo writes the input to conn until it ends (eof true), done is closed,
// or a write fails. An input that ended during an earlier session (or a nil
// input: -d) sends nothing and waits for done.
func (in *input) sendTo(conn *rudp.Conn, done <-chan struct{}) (sent int64, eof bool, err error) {
	if in == nil || in.isExhausted() {
		<-done
		return 0, false, nil
	}
	for {
		select {
		case <-done:
			return sent, false, nil
		case b, ok := <-in.chunks:
			if !ok {
				in.mu.Lock()
				in.exhausted = true
				in.mu.Unlock()
				return sent, true, in.err
			}
			if in.guarantee == rudp.Delivery {
				_, err = conn.Write(b)
			} else {
				err = conn.SendMessage(in.guarantee, b) // one line, one message (even an empty one)
			}
			if err != nil {
				return sent, false, err
			}
			sent += int64(len(b))
		}
	}
}

func (in *input) isExhausted() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.exhausted
}
