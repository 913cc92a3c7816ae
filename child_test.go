package rudp_test

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// startTestChild runs this test binary again as a child process that runs
// only the tests matching run, with env added to its environment, and
// returns the child's stdin (children read it until it closes), the lines
// it prints, and stop, which closes its stdin and waits for it to exit
// (killing it after 5s: a child still waiting for a failed test's peer).
func startTestChild(t *testing.T, run string, env ...string) (stdin io.WriteCloser, lines *bufio.Scanner, stop func()) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run", run, "-test.count=1")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	return stdin, bufio.NewScanner(stdout), func() {
		stdin.Close() // tells the child to close its connections and exit
		kill := time.AfterFunc(5*time.Second, func() { _ = cmd.Process.Kill() })
		defer kill.Stop()
		_ = cmd.Wait()
	}
}
