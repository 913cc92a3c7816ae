package demo

import (
	"flag"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/rudp-go/rudp/impair"
)

// Link is a lossy relay an example may put between its client and server
// (impair's Proxy), set by the -loss and -rtt flags.
type Link struct {
	Loss float64       // probability of losing a datagram, each way
	RTT  time.Duration // round trip added: half of it each way
	Seed uint64
}

// Flags registers -loss, -rtt and -seed on fs.
func (l *Link) Flags(fs *flag.FlagSet) {
	fs.Float64Var(&l.Loss, "loss", 0, "`probability` that a relay between client and server loses a datagram, each way (0 and -rtt 0: no relay)")
	fs.DurationVar(&l.RTT, "rtt", 0, "round trip `time` the relay adds")
	fs.Uint64Var(&l.Seed, "seed", 1, "the relay's random `seed`")
}

// Check names the flag whose value is out of range.
func (l *Link) Check() error {
	switch {
	case !(l.Loss >= 0 && l.Loss < 1):
		return fmt.Errorf("-loss %v: want a probability in [0, 1)", l.Loss)
	case l.RTT < 0:
		return fmt.Errorf("-rtt %v: want >= 0", l.RTT)
	}
	return nil
}

// Relay starts the relay to target and returns the address to dial instead
// and the function that stops it; with no loss and no delay it returns
// target itself.
func (l *Link) Relay(target string, out io.Writer) (addr string, stop func() error, err error) {
	if l.Loss == 0 && l.RTT == 0 {
		return target, func() error { return nil }, nil
	}
	c := impair.Config{Loss: l.Loss, Delay: l.RTT / 2}
	up, down := c, c
	up.Seed, down.Seed = l.Seed, l.Seed+1
	p, err := impair.NewProxy("127.0.0.1:0", target, up, down)
	if err != nil {
		return "", nil, err
	}
	fmt.Fprintf(out, "relay: %s losing %.3g%% of datagrams each way, %v round trip\n", p.Addr(), 100*l.Loss, l.RTT)
	return p.Addr().String(), p.Close, nil
}

// Completions describes when concurrent tasks finished, each measured from
// their common start: the first, the median and the slowest.
func Completions(took []time.Duration) string {
	s := slices.Sorted(slices.Values(took))
	return fmt.Sprintf("streams completed: first after %v, median %v, slowest %v",
		Round(s[0]), Round(s[len(s)/2]), Round(s[len(s)-1]))
}

// Size formats n bytes in the largest binary unit that divides it.
func Size(n int64) string {
	switch {
	case n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
