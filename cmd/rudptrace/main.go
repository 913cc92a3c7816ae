// Command rudptrace reads a connection's qlog trace (written by
// qlog.DirTracer, rudp.Config.Tracer or rudpbench -trace) and draws it as
// a self-contained SVG: goodput, congestion window and bytes in flight,
// and RTT over time, with lost packets and retransmissions marked.
//
//	rudptrace [-o out.svg] [-bins N] [-title T] trace.sqlog
//
// Without -o the SVG goes next to the trace (trace.svg). It prints a
// summary line: packets sent, lost and retransmitted, data and duration.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/rudp-go/rudp/internal/traceplot"
	"github.com/rudp-go/rudp/qlog"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "rudptrace:", err)
		}
		os.Exit(2)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("rudptrace", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("o", "", "the SVG to write (default: the trace's name with .svg)")
	bins := fs.Int("bins", 100, "goodput intervals over the trace")
	title := fs.String("title", "", "the picture's title (default: the trace's)")
	width := fs.Int("width", 960, "the picture's width in pixels")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: rudptrace [flags] trace.sqlog\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errors.New("want one trace file")
	}
	if *bins < 1 {
		return fmt.Errorf("-bins %d: must be at least 1", *bins)
	}
	if *width < 200 {
		return fmt.Errorf("-width %d: must be at least 200", *width)
	}
	in := fs.Arg(0)
	if *out == "" {
		*out = strings.TrimSuffix(in, qlog.FileExt) + ".svg"
	}
	s, err := traceplot.PlotFile(in, *out, *bins, traceplot.Options{Width: *width, Title: *title})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: %d packets sent, %d lost, %d retransmitted; %.1f MB of data in %.2f s -> %s\n",
		in, s.PacketsSent, s.PacketsLost, s.Retransmitted, float64(s.DataBytes)/1e6, s.Duration/1e3, *out)
	return nil
}
