package cluster

import (
	"context"
	"os"
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

// A ban made on n2 while n1's file was invalid reaches n1 once its
// operator repairs the file: nothing else would bring that revision again.
func TestModerationRefusedWhileTheFileWasInvalid(t *testing.T) {
	c := newCluster(t)
	logged := make(chan string, 1<<12)
	n1 := c.startWith("n1", nodeOptions{logged: logged})
	n2 := c.start("n2", nil)
	malloryKey := c.user("mallory")
	alice := n2.join(c.user("alice")) // an operator
	alice.say("/motd welcome")
	n1.waitModeration(func(m *keys.Moderation) bool { return m.MOTD.Text == "welcome" })
	good, err := os.ReadFile(n1.moderationPath)
	if err != nil {
		t.Fatal(err)
	}

	if err := os.WriteFile(n1.moderationPath, []byte(`{"bans": [`), 0o600); err != nil { // a hand edit gone wrong
		t.Fatal(err)
	}
	alice.say("/ban mallory spam")
	alice.skipUntil("-!- mallory was banned by alice")
	waitLogged(t, logged, "moderation from another node refused")

	if err := os.WriteFile(n1.moderationPath, good, 0o600); err != nil { // repaired
		t.Fatal(err)
	}
	if err := n1.moderation.Reload(); err != nil {
		t.Fatal(err)
	}
	n1.shared.Share() // as main does after the watcher reloads it
	if _, banned := n1.moderation.Current().Bans["mallory"]; !banned {
		t.Errorf("n1's file does not hold the ban made on n2: %+v", n1.moderation.Current())
	}
	if told := n1.refused(malloryKey); len(told) != 1 || !strings.HasPrefix(told[0], "-!- You are banned by alice") {
		t.Errorf("mallory logging in to n1 was told %q, want the ban", told)
	}
}

// An edit of n1's file that another node's change overwrites before n1
// reloads it is logged as lost, and nothing is shared for it.
func TestModerationFileEditOverwrittenBeforeItIsShared(t *testing.T) {
	c := newCluster(t)
	logged := make(chan string, 1<<12)
	n1 := c.startWith("n1", nodeOptions{logged: logged})
	n2 := c.start("n2", nil)
	alice := n2.join(c.user("alice")) // an operator
	c.user("dave")
	c.user("carol")

	if _, err := keys.Ban(n1.moderationPath, keys.Sanction{Target: "dave", By: "root", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	alice.say("/mute carol 1h")
	alice.skipUntil("-!- carol was muted by alice")
	waitLogged(t, logged, "overwritten by another node's change")
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	before, err := n1.shared.kv.Get(ctx, moderationKey)
	if err != nil {
		t.Fatal(err)
	}

	if err := n1.moderation.Reload(); err != nil {
		t.Fatal(err)
	}
	n1.shared.Share()
	after, err := n1.shared.kv.Get(ctx, moderationKey)
	if err != nil {
		t.Fatal(err)
	}
	if after.Revision() != before.Revision() {
		t.Errorf("sharing a file that holds the shared moderation wrote revision %d after %d, want nothing written", after.Revision(), before.Revision())
	}
	for len(logged) > 0 { // Share logs before it returns
		if line := <-logged; strings.Contains(line, "shared with the other nodes") {
			t.Errorf("n1 logged the lost edit as shared: %s", line)
		}
	}
	m := n1.moderation.Current()
	if _, banned := m.Bans["dave"]; banned {
		t.Errorf("n1's file holds the overwritten ban: %+v", m)
	}
	if _, muted := m.Mutes["carol"]; !muted {
		t.Errorf("n1's file lacks n2's mute: %+v", m)
	}
}
