package rudp_test

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rudp-go/rudp"
	"github.com/rudp-go/rudp/qlog"
)

// TestConfigTracer runs a transfer with Config.Tracer writing qlog files:
// one per connection, the dialer's as a client and the accepted one's as
// a server, each decoding and ending with the connection's close.
func TestConfigTracer(t *testing.T) {
	dir := t.TempDir()
	cfg := &rudp.Config{Tracer: qlog.DirTracer(dir, func(err error) { t.Error(err) })}
	ln, err := rudp.Listen("udp", "127.0.0.1:0", cfg)
	require.NoError(t, err)
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			_, err = io.Copy(io.Discard, c)
			c.Close()
		}
		done <- err
	}()
	c, err := rudp.Dial("udp", ln.Addr().String(), cfg)
	require.NoError(t, err)
	_, err = c.Write(make([]byte, 256<<10))
	require.NoError(t, err)
	require.NoError(t, c.Close())
	require.NoError(t, <-done)

	// The accepted connection's end (its CLOSE acknowledged, or its
	// linger) may come after its Close returned: wait for both files to
	// be complete.
	var files []string
	require.Eventually(t, func() bool {
		files, _ = filepath.Glob(filepath.Join(dir, "*"+qlog.FileExt))
		if len(files) != 2 {
			return false
		}
		for _, f := range files {
			b, _ := os.ReadFile(f)
			if !strings.Contains(string(b), "connectivity:connection_closed") {
				return false
			}
		}
		return true
	}, 30*time.Second, 10*time.Millisecond, "two complete traces in %s", dir)
	sides := map[string]bool{}
	for _, name := range files {
		f, err := os.Open(name)
		require.NoError(t, err)
		tr, err := qlog.Decode(f)
		f.Close()
		require.NoError(t, err)
		sides[tr.Header.Trace.VantagePoint.Type] = true
		require.True(t, strings.HasSuffix(name, "_"+tr.Header.Trace.VantagePoint.Type+qlog.FileExt), name)
		require.Equal(t, "connectivity:connection_closed", tr.Events[len(tr.Events)-1].Name)
	}
	require.Equal(t, map[string]bool{"client": true, "server": true}, sides)
}
