package rudp

import (
	"net"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestReadOwnerTransitions walks readOwner through its state diagram: a
// caller gets the socket only while it carries one connection and is free;
// asking the reader goroutine for it interrupts the reader's read; the
// reader takes it back at once when told to reclaim it.
func TestReadOwnerTransitions(t *testing.T) {
	sock, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer sock.Close()
	var closed atomic.Bool
	o := newReadOwner(sock, true, &closed)
	defer o.stop()
	c := &Conn{closing: make(chan struct{}), done: make(chan struct{})}

	// The reader goroutine holds the socket at first.
	require.True(t, o.readerTake())
	require.False(t, o.callerTake(), "no connection yet")
	require.False(t, o.want.Load())

	o.conns.Store(1)
	require.False(t, o.callerTake(), "the reader holds it")
	require.True(t, o.want.Load(), "the caller asked")
	require.False(t, o.holder.deadlineSet.Load(), "the reader's read was interrupted")

	require.True(t, o.yieldIfAsked())
	require.False(t, o.yieldIfAsked(), "asked once")
	require.EqualValues(t, rxFree, o.role.Load())

	require.True(t, o.callerTake())
	require.EqualValues(t, rxByCaller, o.role.Load())
	require.EqualValues(t, 1, o.reads.Load())
	require.False(t, o.callerTake(), "one caller at a time")
	o.callerRelease(c)
	require.EqualValues(t, rxFree, o.role.Load())
	require.False(t, o.reclaim.Load(), "the socket stays free for the next Read")

	// A second connection: the reader takes the socket back at once.
	require.True(t, o.callerTake())
	o.conns.Store(2)
	o.callerRelease(c)
	require.True(t, o.reclaim.Load())
	require.True(t, o.readerTake())
	require.EqualValues(t, rxByReader, o.role.Load())
	require.False(t, o.reclaim.Load())

	// The caller's connection closing: likewise.
	o.conns.Store(1)
	require.False(t, o.callerTake())
	require.True(t, o.yieldIfAsked())
	require.True(t, o.callerTake())
	close(c.closing)
	o.callerRelease(c)
	require.True(t, o.readerTake())
	require.EqualValues(t, rxByReader, o.role.Load())

	// Free and nobody reads: the reader takes it back after rxPoll.
	require.False(t, o.callerTake())
	require.True(t, o.yieldIfAsked())
	require.True(t, o.readerTake())
	require.EqualValues(t, rxByReader, o.role.Load())

	// The socket closed while callers hold it: the reader ends.
	require.False(t, o.callerTake())
	require.True(t, o.yieldIfAsked())
	require.True(t, o.callerTake())
	closed.Store(true)
	o.socketClosed()
	require.False(t, o.readerTake())
}
