package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rudp-go/rudp/core"
	"github.com/rudp-go/rudp/qlog"
)

func TestRun(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "conn"+qlog.FileExt)
	f, err := os.Create(in)
	require.NoError(t, err)
	start := time.Unix(1700000000, 0)
	tr := qlog.NewTracer(f, core.TraceInfo{LocalCID: 1, Start: start})
	tr.PacketSent(core.PacketEvent{Time: start, Number: 1, Size: 1100,
		Frames: []core.Frame{{Type: core.FrameMsg, Guarantee: core.Delivery, DataLen: 1000, Total: 1000}}})
	tr.PacketLost(core.LostEvent{Time: start.Add(time.Millisecond), Number: 1})
	tr.StateChanged(core.StateEvent{Time: start.Add(2 * time.Millisecond), Old: core.StateEstablished, New: core.StateClosed})

	var stdout, stderr bytes.Buffer
	require.NoError(t, run([]string{in}, &stdout, &stderr))
	require.Contains(t, stdout.String(), "1 packets sent, 1 lost, 0 retransmitted")
	svg, err := os.ReadFile(filepath.Join(dir, "conn.svg"))
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(string(svg), "<svg "))

	out := filepath.Join(dir, "other.svg")
	require.NoError(t, run([]string{"-o", out, "-title", "T", "-bins", "3", in}, &stdout, &stderr))
	svg, err = os.ReadFile(out)
	require.NoError(t, err)
	require.Contains(t, string(svg), ">T</text>")

	for name, args := range map[string][]string{
		"no file":      {},
		"two files":    {in, in},
		"bins":         {"-bins", "0", in},
		"width":        {"-width", "10", in},
		"missing file": {filepath.Join(dir, "nope.sqlog")},
		"not a trace":  {out},
	} {
		require.Error(t, run(args, &stdout, &stderr), name)
	}
}
