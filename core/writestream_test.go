package core

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
)

// establishedSmokePair is a smokePair whose handshake is done.
func establishedSmokePair(t *testing.T) *smokePair {
	t.Helper()
	p := newSmokePair(t, nil)
	for i := 0; !p.a.Established() || !p.b.Established(); i++ {
		require.Less(t, i, 1000, "no handshake")
		p.step()
	}
	return p
}

// TestWriteStreamJoins pins when WriteStream adds bytes to the last queued
// message (one message, one datagram) and when it starts a new one.
func TestWriteStreamJoins(t *testing.T) {
	write := func(t *testing.T, p *smokePair, b []byte) {
		t.Helper()
		for len(b) > 0 {
			n, err := p.a.WriteStream(0, b)
			require.NoError(t, err)
			require.Positive(t, n)
			b = b[n:]
		}
	}
	tests := []struct {
		name string
		run  func(t *testing.T, p *smokePair, data []byte)
		msgs func(limit int) int // messages the sender counts
	}{
		{"small writes join", func(t *testing.T, p *smokePair, data []byte) {
			write(t, p, data[:10])
			write(t, p, data[10:300]) // past smallChunk: the chunk grows
			write(t, p, data[300:])
		}, func(int) int { return 1 }},
		{"a sent message takes no more", func(t *testing.T, p *smokePair, data []byte) {
			write(t, p, data[:10])
			p.exchange()
			write(t, p, data[10:])
		}, func(int) int { return 2 }},
		{"a Send's message takes no bytes", func(t *testing.T, p *smokePair, data []byte) {
			require.NoError(t, p.a.Send(Delivery, data[:10]))
			write(t, p, data[10:])
		}, func(int) int { return 2 }},
		{"bytes after a Send's message join each other", func(t *testing.T, p *smokePair, data []byte) {
			require.NoError(t, p.a.Send(Delivery, data[:10]))
			write(t, p, data[10:20])
			write(t, p, data[20:])
		}, func(int) int { return 2 }},
		{"a set's message takes no bytes", func(t *testing.T, p *smokePair, data []byte) {
			require.NoError(t, p.a.BeginSet())
			write(t, p, data[:10])
			p.a.EndSet()
			write(t, p, data[10:])
		}, func(int) int { return 2 }},
		{"messages fill datagrams", func(t *testing.T, p *smokePair, data []byte) {
			// Three writes of a datagram's payload and a byte: four
			// messages, not six (a full one and one of a byte each).
			big := bigData(data, p.a.MaxFragmentPayload())
			k := len(big) / 3
			for i := range 3 {
				write(t, p, big[i*k:(i+1)*k])
			}
		}, func(int) int { return 4 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := establishedSmokePair(t)
			data := make([]byte, 500)
			for i := range data {
				data[i] = byte(i * 7)
			}
			sent0 := p.a.Stats().MessagesSent
			limit := p.a.MaxFragmentPayload()
			want := data
			if tt.name == "messages fill datagrams" {
				want = bigData(data, limit)
			}
			tt.run(t, p, data)
			require.NoError(t, CheckSendAccounting(p.a))
			require.EqualValues(t, tt.msgs(limit), p.a.Stats().MessagesSent-sent0)
			var got []byte
			for i := 0; len(got) < len(want); i++ {
				require.Less(t, i, 1000, "stalled with %d of %d bytes", len(got), len(want))
				p.step()
				for {
					m, err := p.b.Recv()
					if err != nil || m.Data == nil && m.Guarantee == 0 {
						break
					}
					require.LessOrEqual(t, len(m.Data), limit)
					got = append(got, m.Data...)
				}
			}
			require.Equal(t, want, got)
			require.NoError(t, CheckSendAccounting(p.a))
		})
	}
}

// bigData is three times limit+1 bytes of data repeated.
func bigData(data []byte, limit int) []byte {
	return bytes.Repeat(data, 3*(limit+1)/len(data)+1)[:3*(limit+1)]
}
