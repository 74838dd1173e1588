package cluster

import (
	"testing"

	"github.com/sshchat-dev/sshchat/sshchat"
)

// -max-sessions-per-user counts a user's sessions on every node.
func TestSessionLimitAcrossNodes(t *testing.T) {
	c := newCluster(t)
	twoSessions := func(cfg *sshchat.Config) { cfg.MaxSessionsPerUser = 2 }
	n1, n2 := c.start("n1", twoSessions), c.start("n2", twoSessions)
	aliceKey := c.user("alice")
	bob := n2.join(c.user("bob"))
	first := n1.join(aliceKey)
	bob.expect("alice has arrived")
	second := n1.join(aliceKey)
	// n1 tells the others in order: once carol's arrival has reached n2,
	// so has alice's second session.
	n1.join(c.user("carol"))
	bob.expect("carol has arrived")

	const full = "-!- Too many sessions for alice (at most 2)."
	if told := n2.refused(aliceKey); len(told) != 1 || told[0] != full {
		t.Errorf("alice's third session, on n2, was told %q, want %q", told, full)
	}

	second.quit()
	n1.join(c.user("dave"))
	bob.expect("dave has arrived")
	n2.join(aliceKey) // her second session again, on another node
	first.say("both of us")
	bob.skipUntil("alice: both of us")
}
