package rudp_test

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rudp-go/rudp"
	"github.com/stretchr/testify/require"
)

// TestStressOneShotReaders: as many goroutines as messages each Read once
// and return; the peer sends the messages in one burst. Every Read must
// return: a message ready while a Read waits wakes it, also when another
// Read holds the socket (direct reads) and took the batch the message came
// in. Both ReadMessage and the byte stream's Read.
func TestStressOneShotReaders(t *testing.T) {
	for _, tc := range []struct {
		name string
		read func(c *rudp.Conn) error
	}{
		{"ReadMessage", func(c *rudp.Conn) error {
			_, _, err := c.ReadMessage(make([]byte, 16))
			return err
		}},
		{"Read", func(c *rudp.Conn) error {
			_, err := c.Read(make([]byte, 1)) // one message's byte
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c1, c2, stop := pair(t, nil)
			defer stop()
			const n = 8
			for round := range stressIters(30, 10) {
				var wg sync.WaitGroup
				var got atomic.Int32
				for range n {
					wg.Add(1)
					go func() {
						defer wg.Done()
						if tc.read(c1) == nil {
							got.Add(1)
						}
					}()
				}
				time.Sleep(5 * time.Millisecond) // all blocked
				for i := range n {
					require.NoError(t, c2.SendMessage(rudp.Delivery, []byte{byte(i)}))
				}
				done := make(chan struct{})
				go func() { wg.Wait(); close(done) }()
				select {
				case <-done:
				case <-time.After(3 * time.Second):
					t.Errorf("round %d: %d of %d one-shot Reads returned after 3s", round, got.Load(), n)
					_ = c1.SetReadDeadline(time.Now())
					<-done
					return
				}
			}
		})
	}
}
