package sshchat

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	gossh "golang.org/x/crypto/ssh"
)

// The metrics move with real SSH traffic, and no label names a user.
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	ts := startServer(t, func(c *Config) {
		c.Metrics = reg
		c.Rate, c.Burst = 0.001, 40
		c.MaxConnsPerIP = 3
	})
	m := ts.metrics
	cs := ts.joinAll("alice", "bob")
	a, b := cs[0], cs[1]
	for range 2 * lagSampleEvery {
		a.say("line")
		b.expect("alice: line")
	}
	// From another loopback address, so that this connection, which the
	// server closes in its own time, does not count against the per-IP
	// limit tested below.
	elsewhere := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: waitLimit}
	raw, err := elsewhere.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := gossh.NewClientConn(raw, ts.addr, &gossh.ClientConfig{
		User: "ignored", Auth: []gossh.AuthMethod{gossh.PublicKeys(newSigner(t))},
		HostKeyCallback: gossh.FixedHostKey(ts.cfg.HostKey.PublicKey()),
	}); err == nil {
		t.Fatal("unknown key logged in")
	}
	// Two connections are open: a third fits, a fourth is refused.
	held := ts.rawConn()
	defer held.Close()
	refused := ts.rawConn()
	refused.SetReadDeadline(time.Now().Add(waitLimit))
	refused.Read(make([]byte, 64))
	for range 40 {
		a.say("flood")
	}
	a.skipUntil("-!- Slow down")

	for _, tt := range []struct {
		name string
		got  float64
		min  float64
	}{
		{"sessions line", testutil.ToFloat64(m.sessions.WithLabelValues(kindLine)), 2},
		{"users online", testutil.ToFloat64(m.usersOnline), 2},
		{"connections", testutil.ToFloat64(m.connections), 3},
		{"messages", testutil.ToFloat64(m.messages), 2*lagSampleEvery + 1},
		{"deliveries", testutil.ToFloat64(m.deliveries), 2 * lagSampleEvery},
		{"auth failures, unknown key", testutil.ToFloat64(m.authFailures.WithLabelValues(reasonUnknownKey)), 1},
		{"refused, per IP", testutil.ToFloat64(m.refused.WithLabelValues(reasonPerIPCap)), 1},
		{"rate limited", testutil.ToFloat64(m.rateLimited), 1},
	} {
		if tt.got < tt.min {
			t.Errorf("%s = %v, want at least %v", tt.name, tt.got, tt.min)
		}
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]uint64{}
	for _, f := range families {
		for _, metric := range f.GetMetric() {
			for _, l := range metric.GetLabel() {
				if strings.Contains(l.GetValue(), "alice") || strings.Contains(l.GetValue(), "127.0.0.1") {
					t.Errorf("%s has label %s=%q", f.GetName(), l.GetName(), l.GetValue())
				}
			}
			if h := metric.GetHistogram(); h != nil {
				counts[f.GetName()] += h.GetSampleCount()
			}
		}
	}
	if counts["sshchat_handshake_seconds"] < 2 || counts["sshchat_delivery_lag_seconds"] < 1 {
		t.Errorf("histogram samples: %v", counts)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}
