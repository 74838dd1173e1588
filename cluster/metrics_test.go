package cluster

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// The link's metrics follow a NATS outage: the link is down while it lasts,
// and what was said meanwhile is counted as not sent to the other nodes.
func TestLinkMetrics(t *testing.T) {
	c := newCluster(t)
	n1, n2 := c.start("n1", nil), c.start("n2", nil)
	registry := prometheus.NewPedanticRegistry()
	if err := n1.link.RegisterMetrics(registry); err != nil {
		t.Fatal(err)
	}
	value := func(name string) float64 {
		t.Helper()
		families, err := registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range families {
			if f.GetName() == name {
				m := f.GetMetric()[0]
				return m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
		t.Fatalf("no metric %s", name)
		return 0
	}
	alice := n1.join(c.user("alice"))
	bob := n2.join(c.user("bob"))
	alice.expect("bob has arrived")
	if up, dropped := value("sshchat_cluster_link_up"), value("sshchat_cluster_events_dropped_total"); up != 1 || dropped != 0 {
		t.Errorf("linked: link_up %v, events_dropped_total %v; want 1, 0", up, dropped)
	}

	c.nats.stop()
	alice.skipUntil("-!- The link to the other nodes was lost")
	if up := value("sshchat_cluster_link_up"); up != 0 {
		t.Errorf("during the outage: link_up %v, want 0", up)
	}
	alice.say("only on n1")
	c.nats.start()
	alice.skipUntil("-!- The link to the other nodes is back")
	// One publisher sends in order: once this line has crossed, the one
	// said during the outage has been counted.
	alice.say("after the outage")
	bob.skipUntil("alice: after the outage")
	if up, dropped := value("sshchat_cluster_link_up"), value("sshchat_cluster_events_dropped_total"); up != 1 || dropped < 1 {
		t.Errorf("after the outage: link_up %v, events_dropped_total %v; want 1, at least 1", up, dropped)
	}
}
