package capture

import "testing"

func TestRudpExpert(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{"Possible traceroute: hop #4, attempt #2", ""},
		{"bad checksum", "bad checksum"},
		{"Possible traceroute: hop #4, attempt #2,bad checksum", "bad checksum"},
		{"bad checksum,truncated frame", "bad checksum,truncated frame"},
		{"bad checksum,Possible traceroute: hop #12, attempt #1", "bad checksum"},
	} {
		if got := rudpExpert(c.in); got != c.want {
			t.Errorf("rudpExpert(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
