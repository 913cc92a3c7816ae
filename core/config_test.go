package core

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestConfigValidate: a bad core.Config is refused naming a field it sets
// (a default follows the fields set, so it is never the one blamed) and
// saying what would be valid; a good one gets defaults that follow its
// settings. NewConn refuses what Validate does.
func TestConfigValidate(t *testing.T) {
	const MiB = 1 << 20
	bad := []struct {
		cfg    Config
		field  string
		reason string
	}{
		{Config{HeartbeatPeriod: -1}, "HeartbeatPeriod", "negative"},
		{Config{IdleTimeout: -1}, "IdleTimeout", "at least 1ms"},
		{Config{IdleTimeout: time.Microsecond}, "IdleTimeout", "at least 1ms"},
		{Config{IdleTimeout: time.Second, HeartbeatPeriod: time.Second}, "HeartbeatPeriod", "shorter than IdleTimeout (1s)"},
		{Config{HandshakeTimeout: -1}, "HandshakeTimeout", "negative"},
		{Config{MaxDatagramSize: MinHelloDatagram - 1}, "MaxDatagramSize", "between 1200"},
		{Config{MaxDatagramSize: MaxDatagramSizeLimit + 1}, "MaxDatagramSize", "65507"},
		{Config{MaxMessageSize: MaxMessageSizeLimit + 1}, "MaxMessageSize", "between 1 and 1057222467"},
		{Config{MaxMessageSize: -5}, "MaxMessageSize", "between 1"},
		{Config{MaxMessageSize: 2 * MiB, SendBufferSize: MiB}, "SendBufferSize", "at least MaxMessageSize (2097152)"},
		{Config{SendBufferSize: -1}, "SendBufferSize", "negative"},
		{Config{ReceiveWindow: 256}, "ReceiveWindow", "(257)"},
		{Config{MaxMessageSize: 2 * MiB, ReceiveWindow: 2 * MiB}, "ReceiveWindow", "(2130176)"},
		{Config{MaxMessageSize: 2 * MiB, MaxReceiveWindow: 2 * MiB}, "MaxReceiveWindow", "(2130176)"},
		{Config{ReceiveWindow: 2 * MiB, MaxReceiveWindow: MiB}, "MaxReceiveWindow", "at least ReceiveWindow (2097152)"},
		{Config{ReceiveWindow: 1<<30 + 1}, "ReceiveWindow", "1 GiB"},
		{Config{StreamReceiveWindow: -1}, "StreamReceiveWindow", "between 257 and 1 GiB"},
		{Config{StreamReceiveWindow: 1<<30 + 1}, "StreamReceiveWindow", "1 GiB"},
		{Config{MaxMessageSize: 2 * MiB, StreamReceiveWindow: 2 * MiB}, "StreamReceiveWindow", "(2130176)"},
		{Config{ReceiveArenaSize: -1}, "ReceiveArenaSize", "negative"},
		{Config{ReassemblyTimeout: -1}, "ReassemblyTimeout", "negative"},
		{Config{MaxAckDelay: 2 * time.Second}, "MaxAckDelay", "between 0 and 1s"},
		{Config{InitialRTT: -1}, "InitialRTT", "between 0 and 1m"},
	}
	for _, tt := range bad {
		for what, err := range map[string]error{"Validate": tt.cfg.Validate(), "NewConn": newConnErr(&tt.cfg)} {
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Field != tt.field || !strings.Contains(ce.Reason, tt.reason) {
				t.Errorf("%+v: %s: %v; want Config.%s ... %s", tt.cfg, what, err, tt.field, tt.reason)
			}
		}
	}
	good := []struct {
		cfg  Config
		want func(d *Config) bool
	}{
		{Config{}, func(d *Config) bool { return d.HeartbeatPeriod == 15*time.Second && d.IdleTimeout == 30*time.Second }},
		{Config{IdleTimeout: time.Second}, func(d *Config) bool { return d.HeartbeatPeriod == 500*time.Millisecond }},
		{Config{IdleTimeout: time.Millisecond}, func(d *Config) bool { return d.HeartbeatPeriod == 500*time.Microsecond }},
		{Config{HeartbeatPeriod: time.Minute}, func(d *Config) bool { return d.IdleTimeout == 2*time.Minute }},
		{Config{MaxMessageSize: 100 * MiB}, func(d *Config) bool {
			return d.SendBufferSize == 100*MiB && d.ReceiveWindow == msgCredit(100*MiB) && d.MaxReceiveWindow == d.ReceiveWindow
		}},
		{Config{SendBufferSize: 1000}, func(d *Config) bool { return d.MaxMessageSize == 1000 }},
		{Config{ReceiveWindow: 257}, func(d *Config) bool { return d.MaxMessageSize == 1 }},
		{Config{MaxReceiveWindow: MiB}, func(d *Config) bool {
			return d.ReceiveWindow == MiB && d.MaxMessageSize == maxMessageFor(MiB) && msgCredit(d.MaxMessageSize) <= MiB && msgCredit(d.MaxMessageSize+1) > MiB
		}},
		{Config{MaxDatagramSize: 9000}, func(d *Config) bool { return d.MaxDatagramSize == 9000 }},
		{Config{MaxMessageSize: MaxMessageSizeLimit}, func(d *Config) bool { return d.ReceiveWindow == maxWindow && d.StreamReceiveWindow == maxWindow }},
		{Config{}, func(d *Config) bool { return d.StreamReceiveWindow == defaultStreamReceiveWindow }},
		{Config{MaxMessageSize: 4 * MiB}, func(d *Config) bool { return d.StreamReceiveWindow == msgCredit(4*MiB) }},
		{Config{StreamReceiveWindow: 64 << 10}, func(d *Config) bool { return d.MaxMessageSize == maxMessageFor(64<<10) }},
	}
	if msgCredit(MaxMessageSizeLimit) != maxWindow || msgCredit(MaxMessageSizeLimit+1) <= maxWindow {
		t.Errorf("MaxMessageSizeLimit %d is charged %d: not the largest message a 1 GiB window takes", MaxMessageSizeLimit, msgCredit(MaxMessageSizeLimit))
	}
	for _, tt := range good {
		if err := tt.cfg.Validate(); err != nil {
			t.Errorf("%+v: %v", tt.cfg, err)
			continue
		}
		d := tt.cfg.WithDefaults()
		if !tt.want(d) || d.Validate() != nil {
			t.Errorf("%+v: defaults %+v", tt.cfg, d.connConfig())
		}
		if err := newConnErr(&tt.cfg); err != nil {
			t.Errorf("%+v: NewConn: %v", tt.cfg, err)
		}
	}
}

func newConnErr(cfg *Config) error {
	_, err := NewConn(cfg, 1, time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC))
	return err
}
