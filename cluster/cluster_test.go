package cluster

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sshchat-dev/sshchat/keys"
	"github.com/sshchat-dev/sshchat/sshchat"
)

// threeNodes starts nodes n1, n2 and n3 with alice on n1, bob on n2 and
// carol on n3, each having seen the others arrive.
func threeNodes(t *testing.T) (c *cluster, nodes []*node, alice, bob, carol *chatter) {
	c = newCluster(t)
	nodes = []*node{c.start("n1", nil), c.start("n2", nil), c.start("n3", nil)}
	alice = nodes[0].join(c.user("alice"))
	bob = nodes[1].join(c.user("bob"))
	alice.expect("bob has arrived")
	carol = nodes[2].join(c.user("carol"))
	alice.expect("carol has arrived")
	bob.expect("carol has arrived")
	return c, nodes, alice, bob, carol
}

func TestCrossNodeChat(t *testing.T) {
	_, _, alice, bob, carol := threeNodes(t)
	alice.say("hello from n1")
	bob.expect("alice: hello from n1")
	carol.expect("alice: hello from n1")
	bob.say("/me waves")
	alice.expect("* bob waves")
	carol.expect("* bob waves")
	carol.say("\x1b[31mred\x1b[0m and plain")
	alice.expect("carol: red and plain")
}

func TestWelcomeAndNamesListEveryNode(t *testing.T) {
	c, nodes, alice, bob, _ := threeNodes(t)
	nodes[1].join(c.user("dave"))
	alice.expect("dave has arrived")
	bob.expect("dave has arrived")

	bob.say("/away lunch")
	bob.expect("-!- You are marked away: lunch")
	bob.say("sync") // after the away, in the order bob's node sent them
	alice.expect("bob: sync")
	alice.say("/names")
	alice.expect("-!- 4 online: alice (op), bob (on n2, away: lunch), carol (on n3), dave (on n2)")
}

func TestWelcomeShowsTheWholeRoom(t *testing.T) {
	c, nodes, alice, _, _ := threeNodes(t)
	dave := nodes[1].join(c.user("dave"))
	alice.expect("dave has arrived")
	if want := "-!- 4 online: alice, bob, carol, dave"; !slices.Contains(dave.greeting, want) {
		t.Errorf("dave's greeting %q lacks %q", dave.greeting, want)
	}
}

func TestSecondSessionOnAnotherNodeIsNotAnnounced(t *testing.T) {
	c, nodes, alice, bob, carol := threeNodes(t)
	bobOnN3 := nodes[2].join(c.user("bob")) // bob, already on n2, on n3 too
	bobOnN3.say("sync")
	// Not "bob has arrived" first: bob was there already.
	for _, u := range []*chatter{alice, bob, carol} {
		u.expect("bob: sync")
	}
	bob.say("/names")
	bob.expect("-!- 3 online: alice (op, on n1), bob (on n3), carol (on n3)")
	bobOnN3.quit()
	carol.say("after")
	bob.expect("carol: after")
	bob.say("/names")
	bob.expect("-!- 3 online: alice (op, on n1), bob, carol (on n3)")
	alice.expect("carol: after") // not "bob has left" first
}

func TestPrivateMessagesCrossNodes(t *testing.T) {
	_, _, alice, bob, carol := threeNodes(t)
	alice.say("/msg bob psst")
	alice.expect("-!- [PM to bob] psst")
	bob.expect("[PM from alice] psst")
	bob.say("/reply heard you")
	bob.expect("-!- [PM to alice] heard you")
	alice.expect("[PM from bob] heard you")
	carol.say("/away out")
	carol.expect("-!- You are marked away: out")
	carol.say("sync")
	alice.expect("carol: sync")
	alice.say("/msg CAROL are you there")
	alice.expect("-!- [PM to carol] are you there", "-!- carol is away: out")
	carol.expect("[PM from alice] are you there")
	alice.say("/msg nobody hello")
	alice.expect("-!- No one called nobody is online.")
}

func TestOrderPerSender(t *testing.T) {
	_, _, alice, bob, carol := threeNodes(t)
	const lines = 200
	var wg sync.WaitGroup
	for _, who := range []*chatter{alice, bob} {
		wg.Go(func() {
			for i := range lines {
				who.say(fmt.Sprintf("%s %d", who.name, i))
			}
		})
	}
	wg.Wait()
	next := map[string]int{}
	for next["alice"]+next["bob"] < 2*lines {
		line := carol.nextWithin(waitLimit)
		from, rest, _ := strings.Cut(line, ": ")
		want := fmt.Sprintf("%s %d", from, next[from])
		if rest != want {
			t.Fatalf("carol got %q, want %q", line, from+": "+want)
		}
		next[from]++
	}
}

func TestDeadNodesUsersLeaveWithinTTL(t *testing.T) {
	c := newCluster(t)
	n1, n2 := c.start("n1", nil), c.start("n2", nil)
	alice := n1.join(c.user("alice"))
	bob := n2.join(c.user("bob"))
	alice.expect("bob has arrived")
	_ = bob

	// n2 vanishes from NATS without a word, as a SIGKILLed node does.
	killed := time.Now()
	n2.link.nc.Close()
	alice.expect("bob has left")
	took := time.Since(killed)
	t.Logf("bob left %v after n2 died (TTL %v)", took, testTTL)
	if took < testTTL-time.Second {
		t.Errorf("bob left after %v, before the TTL %v could pass", took, testTTL)
	}
	alice.say("/names")
	alice.expect("-!- 1 online: alice (op)")
}

func TestRestartedNodeLeavesNoGhosts(t *testing.T) {
	c := newCluster(t)
	n1, n2 := c.start("n1", nil), c.start("n2", nil)
	alice := n1.join(c.user("alice"))
	n2.join(c.user("bob"))
	alice.expect("bob has arrived")

	// n2 dies and comes back at once, well within the TTL, without bob.
	n2.link.nc.Close()
	n2.stop()
	n2again := c.start("n2", nil)
	start := time.Now()
	alice.expect("bob has left")
	if took := time.Since(start); took >= testTTL {
		t.Errorf("bob left %v after n2 came back: it should not take the TTL (%v)", took, testTTL)
	}
	n2again.join(c.user("dave"))
	alice.expect("dave has arrived")
	alice.say("/names")
	alice.expect("-!- 2 online: alice (op), dave (on n2)")
}

func TestGracefulShutdownSaysBye(t *testing.T) {
	c := newCluster(t)
	n1, n2 := c.start("n1", nil), c.start("n2", nil)
	alice := n1.join(c.user("alice"))
	n2.join(c.user("bob"))
	alice.expect("bob has arrived")
	start := time.Now()
	n2.stop()
	alice.expect("bob has left")
	if took := time.Since(start); took >= testTTL {
		t.Errorf("bob left %v after n2 shut down: it should not take the TTL (%v)", took, testTTL)
	}
}

func TestNATSOutage(t *testing.T) {
	c := newCluster(t)
	n1, n2 := c.start("n1", nil), c.start("n2", nil)
	alice := n1.join(c.user("alice"))
	bob := n2.join(c.user("bob"))
	alice.expect("bob has arrived")
	carol := n1.join(c.user("carol"))
	alice.expect("carol has arrived")
	bob.expect("carol has arrived")

	c.nats.stop()
	lost := "-!- The link to the other nodes was lost; messages stay on this node."
	for _, u := range []*chatter{alice, bob, carol} {
		u.skipUntil(lost)
	}
	alice.say("only on n1")
	carol.skipUntil("alice: only on n1")

	c.nats.start()
	back := "-!- The link to the other nodes is back; messages reach the whole room again."
	for _, u := range []*chatter{alice, bob, carol} {
		before, _ := u.collectUntil(back, 3*waitLimit)
		if slices.Contains(before, lost) {
			t.Errorf("%s was told twice that the link was lost: %q", u.name, before)
		}
	}
	alice.say("after the outage")
	before, _ := bob.collectUntil("alice: after the outage", waitLimit)
	if slices.Contains(before, "alice: only on n1") {
		t.Errorf("a line said during the outage reached bob after it: %q", before)
	}
	bob.say("bob is back too")
	alice.skipUntil("bob: bob is back too")
}

func TestHistoryAcrossNodes(t *testing.T) {
	c := newCluster(t)
	n1, n2 := c.start("n1", nil), c.start("n2", nil)
	alice := n1.join(c.user("alice"))
	dave := n2.join(c.user("dave"))
	alice.expect("dave has arrived")
	alice.say("remember this")
	dave.expect("alice: remember this")
	bob := n2.join(c.user("bob"))
	if !slices.ContainsFunc(bob.greeting, func(l string) bool { return l == "alice: remember this" }) {
		t.Errorf("bob's greeting on n2 %q lacks what alice said on n1", bob.greeting)
	}
	bob.say("/history")
	if line := bob.nextWithin(waitLimit); line != "alice: remember this" {
		t.Errorf("bob's /history on n2 shows %q, want what alice said on n1", line)
	}
}

func TestModerationIsShared(t *testing.T) {
	c := newCluster(t)
	n1, n2 := c.start("n1", nil), c.start("n2", nil)
	alice := n1.join(c.user("alice")) // an operator
	bobKey := c.user("bob")
	bob := n2.join(bobKey)
	alice.expect("bob has arrived")
	carol := n2.join(c.user("carol"))
	alice.expect("carol has arrived")
	bob.expect("carol has arrived")

	alice.say("/mute carol 1h noisy")
	alice.skipUntil("-!- carol was muted by alice")
	alice.say("/ban bob spamming")
	alice.skipUntil("-!- bob was banned by alice")
	// n2 applies the ban at once: bob is told and disconnected there ...
	told := bob.ended()
	if !slices.ContainsFunc(told, func(l string) bool { return strings.HasPrefix(l, "-!- You are banned by alice") }) {
		t.Errorf("bob on n2 was told %q, want the ban", told)
	}
	// ... refuses his logins ...
	told = n2.refused(bobKey)
	if len(told) != 1 || !strings.HasPrefix(told[0], "-!- You are banned by alice") || !strings.HasSuffix(told[0], "(spamming).") {
		t.Errorf("bob logging in to n2 was told %q, want the ban", told)
	}
	// ... and holds the mute, which came first.
	carol.say("can I speak?")
	carol.skipUntil("-!- You are muted by alice")

	alice.say("/unban bob")
	alice.skipUntil("-!- bob was unban")
	alice.say("/unmute carol")
	alice.skipUntil("-!- carol was unmute")
	n2.waitModeration(func(m *keys.Moderation) bool { return len(m.Bans)+len(m.Mutes) == 0 })
	carol.say("I can speak")
	alice.skipUntil("carol: I can speak")
	n2.join(bobKey)
	alice.expect("bob has arrived")
}

// unusedRoom is a Room for a link that must not get as far as handing it
// anything.
type unusedRoom struct{ t *testing.T }

func (r unusedRoom) FromPeer(ev sshchat.PeerEvent)      { r.t.Errorf("handed %+v", ev) }
func (r unusedRoom) PeerLink(up bool)                   { r.t.Errorf("told the link is up: %v", up) }
func (unusedRoom) SharedHistory(string) (uint64, error) { return 0, nil }

// A node needs NATS when it starts, and says so; outages after that are
// ridden out (TestNATSOutage).
func TestStartNeedsNATS(t *testing.T) {
	ns := startNATS(t)
	ns.stop()
	link, err := Dial(Options{URLs: ns.url(), Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	defer link.Close()
	const want = "must be, with JetStream, when a node starts"
	if _, err := link.ShareModeration(keys.NewModerationStore(filepath.Join(t.TempDir(), "moderation.json"), nil)); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("ShareModeration without NATS: %v, want an error saying %q", err, want)
	}
	if err := link.Start(unusedRoom{t}); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Start without NATS: %v, want an error saying %q", err, want)
	}
}
