package rudp

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestStreamWakesOnDemand: a connection carries the wake channels of
// AcceptStream and OpenStream only once one of them waited (each is 96
// bytes, on both ends of every connection, most of which never open a
// stream), and both calls still work.
func TestStreamWakesOnDemand(t *testing.T) {
	ln, err := Listen("udp", "127.0.0.1:0", nil)
	require.NoError(t, err)
	defer ln.Close()
	c, err := Dial("udp", ln.Addr().String(), nil)
	require.NoError(t, err)
	defer c.Close()
	s, err := ln.AcceptRUDP()
	require.NoError(t, err)
	defer s.Close()
	for name, conn := range map[string]*Conn{"dialed": c, "accepted": s} {
		conn.mu.Lock()
		acceptWake, openWake := conn.acceptWake, conn.openWake
		conn.mu.Unlock()
		require.Nil(t, acceptWake, "%s: AcceptStream's wake channel made before any AcceptStream", name)
		require.Nil(t, openWake, "%s: OpenStream's wake channel made before any OpenStream", name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	accepted := make(chan error, 1)
	go func() {
		st, err := s.AcceptStream(ctx)
		if err == nil {
			st.Close()
		}
		accepted <- err
	}()
	st, err := c.OpenStream(ctx, nil)
	require.NoError(t, err)
	defer st.Close()
	require.NoError(t, <-accepted)
}

// TestWriteWakeOnDemand: a connection carries the channel a blocked Write
// waits on only once a Write waited (112 bytes on both ends of every
// connection, whose writes mostly never wait), and a Write that blocks on
// backpressure still wakes when the peer reads and frees the window.
func TestWriteWakeOnDemand(t *testing.T) {
	ln, err := Listen("udp", "127.0.0.1:0", &Config{ReceiveWindow: 64 << 10})
	require.NoError(t, err)
	defer ln.Close()
	c, err := Dial("udp", ln.Addr().String(), &Config{SendBufferSize: 64 << 10})
	require.NoError(t, err)
	defer c.Close()
	s, err := ln.AcceptRUDP()
	require.NoError(t, err)
	defer s.Close()
	writeWake := func(conn *Conn) chan struct{} {
		conn.mu.Lock()
		defer conn.mu.Unlock()
		return conn.writeWake
	}
	_, err = c.Write([]byte("hello"))
	require.NoError(t, err)
	for name, conn := range map[string]*Conn{"dialed": c, "accepted": s} {
		require.Nil(t, writeWake(conn), "%s: a Write's wake channel made before any Write waited", name)
	}
	// The server reads nothing until the client's writes have filled its
	// window and the send buffer: the next Write waits.
	const total = 1 << 20
	wrote := make(chan error, 1)
	go func() {
		_, err := c.Write(make([]byte, total))
		wrote <- err
	}()
	for writeWake(c) == nil {
		select {
		case err := <-wrote:
			t.Fatalf("a %d-byte Write returned (%v) without waiting, through a 64 KiB window and send buffer", total, err)
		case <-time.After(time.Millisecond):
		}
	}
	buf := make([]byte, 64<<10)
	for got := 0; got < total+5; {
		n, err := s.Read(buf)
		require.NoError(t, err)
		got += n
	}
	require.NoError(t, <-wrote)
}

// TestConnWrapperSize keeps the root Conn, which every connection end has
// beside its core.Conn, in the allocator's 512-byte size class (it was 552
// bytes, in the 576 class): its two times are monoTimes, not time.Times, and
// its small fields share words.
func TestConnWrapperSize(t *testing.T) {
	if per := heapPerObject(func() any { return new(Conn) }); per > 512 {
		t.Errorf("a Conn takes %d bytes of heap, over 512", per)
	}
}

// heapPerObject returns the heap one object made by alloc takes, as the
// allocator rounds it: the least of a few tries of many objects, as other
// goroutines (connections of earlier tests closing) may allocate meanwhile.
func heapPerObject(alloc func() any) uint64 {
	const n = 1000
	objs := make([]any, n)
	least := ^uint64(0)
	for range 3 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for i := range objs {
			objs[i] = alloc()
		}
		runtime.ReadMemStats(&after)
		least = min(least, (after.TotalAlloc-before.TotalAlloc)/n)
	}
	runtime.KeepAlive(objs)
	return least
}

// TestMonoTime: a time survives the trip through monoTime, and the zero
// time is 0.
func TestMonoTime(t *testing.T) {
	require.Equal(t, monoTime(0), toMono(time.Time{}))
	require.True(t, monoTime(0).time().IsZero())
	now := monoNow()
	for _, at := range []time.Time{now, now.Add(time.Nanosecond), now.Add(time.Hour), clockBase} {
		m := toMono(at)
		require.NotZero(t, m)
		require.True(t, m.time().Equal(at) || at.Equal(clockBase), "%v came back as %v", at, m.time())
	}
}
