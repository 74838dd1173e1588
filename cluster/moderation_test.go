package cluster

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sshchat-dev/sshchat/keys"
)

// An operator bans dave from the command line of n1's machine: the CLI
// edits n1's file, n1's watcher reloads it (as main wires it) and shares
// it, and n2, where dave is, disconnects him and refuses him.
func TestModerationFileEditIsShared(t *testing.T) {
	c := newCluster(t)
	n1, n2 := c.start("n1", nil), c.start("n2", nil)
	daveKey := c.user("dave")
	dave := n2.join(daveKey)

	if _, err := keys.Ban(n1.moderationPath, keys.Sanction{Target: "dave", By: "root", Reason: "spam", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := n1.moderation.Reload(); err != nil {
		t.Fatal(err)
	}
	n1.shared.Share()

	told := dave.ended()
	if !slices.ContainsFunc(told, func(l string) bool { return strings.HasPrefix(l, "-!- You are banned by root") }) {
		t.Errorf("dave on n2 was told %q, want the ban", told)
	}
	if told := n2.refused(daveKey); len(told) != 1 || !strings.HasPrefix(told[0], "-!- You are banned by root") {
		t.Errorf("dave logging in to n2 was told %q, want the ban", told)
	}
	if _, banned := n2.moderation.Current().Bans["dave"]; !banned {
		t.Errorf("n2's file does not hold the ban: %+v", n2.moderation.Current())
	}
}
