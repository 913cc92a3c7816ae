package rudp_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rudp-go/rudp"
	"github.com/rudp-go/rudp/core"
)

// TestConfigErrors: every bad Config is refused with a
// *ConfigError naming a field the caller set (never one left to its
// default) and saying what would be valid, by Validate and by every call
// that takes a Config. Before, IdleTimeout 1s was reported as a bad
// HeartbeatPeriod nobody set, and MaxMessageSize 100 MiB as a bad
// SendBufferSize.
func TestConfigErrors(t *testing.T) {
	const (
		KiB = 1 << 10
		MiB = 1 << 20
		GiB = 1 << 30
	)
	for _, tt := range []struct {
		name   string
		cfg    rudp.Config
		field  string
		reason string // a part of the reason: what would be valid
	}{
		{"guarantee", rudp.Config{Guarantee: 9}, "Guarantee", "None, Order or Delivery"},
		{"negative handshake timeout", rudp.Config{HandshakeTimeout: -1}, "HandshakeTimeout", "negative"},
		{"negative backlog", rudp.Config{AcceptBacklog: -1}, "AcceptBacklog", "between 1 and 1048576"},
		{"huge backlog", rudp.Config{AcceptBacklog: 1 << 40}, "AcceptBacklog", "between 1 and 1048576"},
		{"negative max peers", rudp.Config{MaxPeers: -1}, "MaxPeers", "negative"},
		{"short stateless reset key", rudp.Config{StatelessResetKey: make([]byte, 16)}, "StatelessResetKey", "32 bytes"},
		{"host share over the default max peers", rudp.Config{MaxPeersPerHost: 5000}, "MaxPeersPerHost", "MaxPeers (4096)"},
		{"host share over max peers", rudp.Config{MaxPeers: 10, MaxPeersPerHost: 11}, "MaxPeersPerHost", "MaxPeers (10)"},
		{"tiny datagrams", rudp.Config{MaxDatagramSize: 100}, "MaxDatagramSize", "between 1200"},
		{"datagrams over UDP's largest", rudp.Config{MaxDatagramSize: 70000}, "MaxDatagramSize", "and 65507"},
		{"negative idle timeout", rudp.Config{IdleTimeout: -time.Second}, "IdleTimeout", "at least 1ms"},
		{"idle timeout under 1ms", rudp.Config{IdleTimeout: 500 * time.Microsecond}, "IdleTimeout", "at least 1ms"},
		{"negative heartbeat", rudp.Config{HeartbeatPeriod: -time.Second}, "HeartbeatPeriod", "negative"},
		{"heartbeat over the idle timeout", rudp.Config{IdleTimeout: time.Second, HeartbeatPeriod: 2 * time.Second}, "HeartbeatPeriod", "shorter than IdleTimeout (1s)"},
		{"heartbeat equal to the idle timeout", rudp.Config{IdleTimeout: time.Minute, HeartbeatPeriod: time.Minute}, "HeartbeatPeriod", "shorter than IdleTimeout (1m0s)"},
		{"negative message size", rudp.Config{MaxMessageSize: -1}, "MaxMessageSize", "between 1 and 1057222467"},
		{"message over 1 GiB", rudp.Config{MaxMessageSize: GiB}, "MaxMessageSize", "between 1 and 1057222467"},
		{"send buffer under the message size", rudp.Config{MaxMessageSize: MiB, SendBufferSize: 1000}, "SendBufferSize", "at least MaxMessageSize (1048576)"},
		{"negative send buffer", rudp.Config{SendBufferSize: -1}, "SendBufferSize", "negative"},
		{"window under one byte's message", rudp.Config{ReceiveWindow: 10}, "ReceiveWindow", "(257)"},
		{"window under the message size", rudp.Config{MaxMessageSize: 2 * MiB, ReceiveWindow: MiB}, "ReceiveWindow", "MaxMessageSize+256+MaxMessageSize/64 (2130176)"},
		{"window over 1 GiB", rudp.Config{ReceiveWindow: 2 * GiB}, "ReceiveWindow", "1 GiB"},
		{"max window under the message size", rudp.Config{MaxMessageSize: 2 * MiB, MaxReceiveWindow: MiB}, "MaxReceiveWindow", "MaxMessageSize+256+MaxMessageSize/64 (2130176)"},
		{"max window under one byte's message", rudp.Config{MaxReceiveWindow: 10}, "MaxReceiveWindow", "(257)"},
		{"max window under the window", rudp.Config{ReceiveWindow: 8 * MiB, MaxReceiveWindow: 4 * MiB}, "MaxReceiveWindow", "at least ReceiveWindow (8388608)"},
		{"max window over 1 GiB", rudp.Config{MaxReceiveWindow: 2 * GiB}, "MaxReceiveWindow", "1 GiB"},
		{"server ID over 3 bytes", rudp.Config{ServerID: []byte{1, 2, 3, 4}}, "ServerID", "at most 3 bytes"},
		{"negative sockets", rudp.Config{Sockets: -1}, "Sockets", "between 0 and 256"},
		{"sockets over 256", rudp.Config{Sockets: 257}, "Sockets", "between 0 and 256"},
		{"core clock", rudp.Config{Core: &core.Config{Clock: core.SystemClock{}}}, "Core.Clock", "nil"},
		{"core heartbeat over the root's idle timeout", rudp.Config{IdleTimeout: time.Second, Core: &core.Config{HeartbeatPeriod: 5 * time.Second}}, "Core.HeartbeatPeriod", "shorter than IdleTimeout (1s)"},
		{"root send buffer under the core's message size", rudp.Config{SendBufferSize: MiB, Core: &core.Config{MaxMessageSize: 4 * MiB}}, "SendBufferSize", "MaxMessageSize (4194304)"},
		{"core reassembly timeout", rudp.Config{Core: &core.Config{ReassemblyTimeout: -1}}, "Core.ReassemblyTimeout", "negative"},
		{"core ack delay", rudp.Config{Core: &core.Config{MaxAckDelay: 2 * time.Second}}, "Core.MaxAckDelay", "between 0 and 1s"},
		{"core initial RTT", rudp.Config{Core: &core.Config{InitialRTT: 2 * time.Minute}}, "Core.InitialRTT", "between 0 and 1m"},
		{"core arena", rudp.Config{Core: &core.Config{ReceiveArenaSize: -1}}, "Core.ReceiveArenaSize", "negative"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			check := func(what string, err error) {
				t.Helper()
				var ce *rudp.ConfigError
				require.ErrorAs(t, err, &ce, what)
				require.Equal(t, tt.field, ce.Field, "%s: %v", what, err)
				require.Contains(t, ce.Reason, tt.reason, what)
				require.Contains(t, err.Error(), "Config."+tt.field+" (", what)
			}
			check("Validate", tt.cfg.Validate())
			_, err := rudp.Listen("udp", "127.0.0.1:0", &tt.cfg)
			check("Listen", err)
			_, err = rudp.ListenPacket("udp", "127.0.0.1:0", &tt.cfg)
			check("ListenPacket", err)
			_, err = rudp.Dial("udp", "127.0.0.1:9", &tt.cfg) // refused before any datagram
			check("Dial", err)
		})
	}
}

// TestConfigDerivedDefaults: a default that depends on another field
// follows the caller's setting of that field instead of failing, and the
// values documented as valid are accepted.
func TestConfigDerivedDefaults(t *testing.T) {
	const (
		MiB = 1 << 20
		GiB = 1 << 30
	)
	for _, tt := range []struct {
		name string
		cfg  rudp.Config
		want func(t *testing.T, c core.Config)
	}{
		{"defaults", rudp.Config{}, func(t *testing.T, c core.Config) {
			require.Equal(t, 15*time.Second, c.HeartbeatPeriod)
			require.Equal(t, 30*time.Second, c.IdleTimeout)
			require.Equal(t, MiB, c.MaxMessageSize)
			require.Equal(t, 16*MiB, c.SendBufferSize)
			require.Equal(t, 4*MiB, c.ReceiveWindow)
			require.Equal(t, 16*MiB, c.MaxReceiveWindow)
			// The socket's ceiling: where it follows the route, the largest
			// (each dial lowers its own to its route's).
			require.Equal(t, rudp.DefaultDatagramCeiling, c.MaxDatagramSize)
		}},
		{"short idle timeout: the heartbeat follows", rudp.Config{IdleTimeout: time.Second}, func(t *testing.T, c core.Config) {
			require.Equal(t, 500*time.Millisecond, c.HeartbeatPeriod)
		}},
		{"long idle timeout: the heartbeat stays", rudp.Config{IdleTimeout: 2 * time.Minute}, func(t *testing.T, c core.Config) {
			require.Equal(t, 15*time.Second, c.HeartbeatPeriod)
		}},
		{"long heartbeat: the idle timeout follows", rudp.Config{HeartbeatPeriod: 40 * time.Second}, func(t *testing.T, c core.Config) {
			require.Equal(t, 80*time.Second, c.IdleTimeout)
		}},
		{"100 MiB messages: the buffers follow", rudp.Config{MaxMessageSize: 100 * MiB}, func(t *testing.T, c core.Config) {
			require.Equal(t, 100*MiB, c.SendBufferSize)
			require.Equal(t, 100*MiB+256+100*MiB/64, c.ReceiveWindow)
			require.Equal(t, 100*MiB+256+100*MiB/64, c.MaxReceiveWindow)
		}},
		{"the largest message", rudp.Config{MaxMessageSize: core.MaxMessageSizeLimit}, func(t *testing.T, c core.Config) {
			require.Equal(t, GiB, c.ReceiveWindow)
		}},
		{"small send buffer: the message size follows", rudp.Config{SendBufferSize: 64 << 10}, func(t *testing.T, c core.Config) {
			require.Equal(t, 64<<10, c.MaxMessageSize)
		}},
		{"small window: the message size follows", rudp.Config{ReceiveWindow: 256 << 10}, func(t *testing.T, c core.Config) {
			require.Equal(t, 257859, c.MaxMessageSize) // the largest charged (msgCredit) at most 256 KiB
			require.Equal(t, 16*MiB, c.MaxReceiveWindow)
		}},
		{"small max window: the window and message size follow", rudp.Config{MaxReceiveWindow: MiB}, func(t *testing.T, c core.Config) {
			require.Equal(t, MiB, c.ReceiveWindow)
			require.Equal(t, 1032192, c.MaxMessageSize) // charged 1032192+256+1032192/64 = 1 MiB
		}},
		{"jumbo datagrams", rudp.Config{MaxDatagramSize: 9000}, func(t *testing.T, c core.Config) {
			require.Equal(t, 9000, c.MaxDatagramSize)
		}},
		{"UDP's largest datagram", rudp.Config{MaxDatagramSize: 65507}, func(t *testing.T, c core.Config) {
			require.Equal(t, 65507, c.MaxDatagramSize)
		}},
		{"root fields override the core's", rudp.Config{IdleTimeout: 4 * time.Second, Core: &core.Config{IdleTimeout: time.Hour, MaxMessageSize: 2 * MiB}}, func(t *testing.T, c core.Config) {
			require.Equal(t, 4*time.Second, c.IdleTimeout)
			require.Equal(t, 2*time.Second, c.HeartbeatPeriod)
			require.Equal(t, 2*MiB, c.MaxMessageSize)
		}},
		{"the largest backlog, a negative linger", rudp.Config{AcceptBacklog: 1 << 20, Linger: -1}, func(t *testing.T, c core.Config) {}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			require.NoError(t, tt.cfg.Validate())
			c, err := rudp.ResolvedCore(&tt.cfg)
			require.NoError(t, err)
			require.Less(t, c.HeartbeatPeriod, c.IdleTimeout)
			require.GreaterOrEqual(t, c.SendBufferSize, c.MaxMessageSize)
			require.GreaterOrEqual(t, c.ReceiveWindow, c.MaxMessageSize+256+c.MaxMessageSize/64)
			require.GreaterOrEqual(t, c.MaxReceiveWindow, c.ReceiveWindow)
			tt.want(t, c)
		})
	}
	require.NoError(t, (*rudp.Config)(nil).Validate())
	require.Equal(t, rudp.Delivery, rudp.DefaultConfig().Guarantee)
	d := rudp.DefaultConfig()
	require.NoError(t, d.Validate())
	require.Equal(t, 10*time.Second, d.Linger)
	require.Equal(t, 15*time.Second, d.HeartbeatPeriod)
}

// TestConfigShortIdleTimeoutWorks: a configuration once refused
// (an IdleTimeout below the 15 s default HeartbeatPeriod, reported as a bad
// HeartbeatPeriod nobody set) makes working connections, kept alive by the
// heartbeat that follows it: they outlive several idle timeouts. (2 s, not
// 1 s: a loaded machine that stalls a process for half a second, a 1 s
// timeout's heartbeat period, failed it.)
func TestConfigShortIdleTimeoutWorks(t *testing.T) {
	if testing.Short() {
		t.Skip("waits 3 idle timeouts")
	}
	c1, c2, stop := pair(t, &rudp.Config{IdleTimeout: 2 * time.Second})
	defer stop()
	time.Sleep(3 * 2 * time.Second)
	_, err := c1.Write([]byte("still here\n"))
	require.NoError(t, err)
	buf := make([]byte, 32)
	require.NoError(t, c2.SetReadDeadline(time.Now().Add(5*time.Second)))
	n, err := c2.Read(buf)
	require.NoError(t, err, "the connection ended: %v", errors.Unwrap(err))
	require.True(t, strings.HasPrefix(string(buf[:n]), "still here"))
}
