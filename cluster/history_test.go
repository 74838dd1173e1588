package cluster

import (
	"context"
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// chatLines keeps the users' lines and actions of what a session was
// shown: no notices, arrivals or departures.
func chatLines(lines []string) []string {
	return slices.DeleteFunc(slices.Clone(lines), func(l string) bool {
		return strings.HasPrefix(l, "-!- ") || !strings.Contains(l, ": ") && !strings.HasPrefix(l, "* ")
	})
}

// history returns what /history shows u, up to and including its line
// last, which must be the newest.
func (u *chatter) history(last string) []string {
	u.t.Helper()
	u.say("/history")
	before, line := u.collectUntil(last, waitLimit)
	return append(chatLines(before), line)
}

func TestHistoryOfANodeThatWasDown(t *testing.T) {
	c := newCluster(t)
	data := t.TempDir()
	n1, n3 := c.start("n1", nil), c.start("n3", nil)
	n2 := c.startWith("n2", nodeOptions{data: data})
	alice := n1.join(c.user("alice"))
	carol := n3.join(c.user("carol")) // sees every line once it is in the shared history
	alice.expect("carol has arrived")
	daveKey := c.user("dave")
	dave := n2.join(daveKey)
	alice.expect("dave has arrived")
	carol.expect("dave has arrived")
	alice.say("before")
	dave.expect("alice: before")
	carol.expect("alice: before")

	n2.stop()
	alice.expect("dave has left")
	alice.say("while n2 was down")
	alice.say("/me waits")
	carol.expect("dave has left", "alice: while n2 was down", "* alice waits")

	n2 = c.startWith("n2", nodeOptions{data: data})
	want := []string{"alice: before", "alice: while n2 was down", "* alice waits"}
	bob := n2.join(c.user("bob"))
	if got := chatLines(bob.greeting); !slices.Equal(got, want) {
		t.Errorf("a first-time joiner of the restarted n2 was shown %q, want %q once each", got, want)
	}
	if got := bob.history("* alice waits"); !slices.Equal(got, want) {
		t.Errorf("/history on the restarted n2 shows %q, want %q once each", got, want)
	}
	// dave left n2 as it stopped: he catches up on what n2 copied.
	dave = n2.join(daveKey)
	if len(dave.greeting) < 3 || !regexp.MustCompile(`^-!- 2 messages since you left at [0-9 :-]+:$`).MatchString(dave.greeting[0]) ||
		!slices.Equal(dave.greeting[1:3], want[1:]) {
		t.Errorf("dave's catch-up on the restarted n2: %q, want 2 messages: %q", dave.greeting, want[1:])
	}
}

func TestHistoryAfterALinkOutage(t *testing.T) {
	c := newCluster(t)
	proxy := c.proxy()
	n1 := c.start("n1", nil)
	n2 := c.startWith("n2", nodeOptions{nats: proxy.url()})
	alice := n1.join(c.user("alice"))
	bob := n2.join(c.user("bob"))
	alice.expect("bob has arrived")
	carol := n2.join(c.user("carol"))
	alice.expect("carol has arrived")
	bob.expect("carol has arrived")
	alice.say("before")
	bob.expect("alice: before")

	// Only n2 is cut off: n1 and the NATS server go on.
	proxy.cut()
	lost := "-!- The link to the other nodes was lost; messages stay on this node."
	bob.skipUntil(lost)
	carol.skipUntil(lost)
	alice.say("during the outage")
	bob.say("only on n2")
	carol.expect("bob: only on n2")

	proxy.restore()
	back := "-!- The link to the other nodes is back; messages reach the whole room again."
	seen, _ := bob.collectUntil(back, 3*waitLimit)
	alice.say("after")
	more, _ := bob.collectUntil("alice: after", waitLimit)
	if got := chatLines(append(seen, more...)); !slices.Equal(got, []string{"alice: during the outage"}) {
		t.Errorf("after the outage bob was shown %q, want what alice said meanwhile, once", got)
	}
	if got, want := bob.history("alice: after"), []string{"alice: before", "bob: only on n2", "alice: during the outage", "alice: after"}; !slices.Equal(got, want) {
		t.Errorf("/history on n2 shows %q, want %q", got, want)
	}
	// What n2 said while cut off stayed there, and nothing came twice.
	alice.say("/history")
	got, _ := alice.collectUntil("alice: after", waitLimit)
	if got, want := chatLines(got), []string{"alice: before", "alice: during the outage"}; !slices.Equal(got, want) {
		t.Errorf("/history on n1 shows %q, then alice: after; want %q", got, want)
	}
}

func TestCatchUpAcrossNodes(t *testing.T) {
	c := newCluster(t)
	n1, n2 := c.start("n1", nil), c.start("n2", nil)
	aliceKey := c.user("alice")
	alice := n1.join(aliceKey)
	bob := n1.join(c.user("bob"))
	alice.expect("bob has arrived")
	dave := n2.join(c.user("dave"))
	alice.expect("dave has arrived")
	bob.expect("dave has arrived")
	bob.say("seen by alice")
	alice.expect("bob: seen by alice")
	dave.expect("bob: seen by alice")

	alice.quit()
	bob.expect("alice has left")
	bob.say("one")
	bob.say("two")
	bob.say("/me three")
	dave.skipUntil("* bob three")

	alice = n2.join(aliceKey) // never on n2 before
	if len(alice.greeting) < 4 || !regexp.MustCompile(`^-!- 3 messages since you left at [0-9 :-]+:$`).MatchString(alice.greeting[0]) ||
		!slices.Equal(alice.greeting[1:4], []string{"bob: one", "bob: two", "* bob three"}) {
		t.Errorf("alice's greeting on n2 after leaving n1: %q, want 3 messages since she left, then them", alice.greeting)
	}
}

func TestSharedHistoryKeepsWhatTheNodesKeep(t *testing.T) {
	c := newCluster(t)
	c.startWith("n1", nodeOptions{keep: 48 * time.Hour})
	nc := c.connect()
	cfg := historyStream(t, nc).Config
	if cfg.MaxAge != 48*time.Hour || !slices.Equal(cfg.Subjects, []string{"sshchat.room"}) || cfg.Discard != jetstream.DiscardOld {
		t.Errorf("stream keeps %v of %q, discarding %v; want 48h of sshchat.room, discarding the oldest", cfg.MaxAge, cfg.Subjects, cfg.Discard)
	}
}

// A node that dies cannot mark where its users left: the others take them
// as gone from when it was last heard, so they still catch up.
func TestCatchUpAfterANodeDied(t *testing.T) {
	c := newCluster(t)
	n1, n2, n3 := c.start("n1", nil), c.start("n2", nil), c.start("n3", nil)
	aliceKey := c.user("alice")
	bob := n2.join(c.user("bob"))
	carol := n3.join(c.user("carol"))
	bob.expect("carol has arrived")
	n1.join(aliceKey)
	bob.expect("alice has arrived")
	carol.expect("alice has arrived")

	n1.link.nc.Close() // as a SIGKILLed node vanishes
	bob.expect("alice has left")
	carol.expect("alice has left")
	bob.say("while alice was gone")
	carol.expect("bob: while alice was gone")

	alice := n3.join(aliceKey)
	if len(alice.greeting) < 2 || !regexp.MustCompile(`^-!- 1 message since you left at [0-9 :-]+:$`).MatchString(alice.greeting[0]) ||
		alice.greeting[1] != "bob: while alice was gone" {
		t.Errorf("alice's greeting on n3 after n1 died under her: %q, want 1 message since she left, then it", alice.greeting)
	}
}

// A NATS server that comes back without its store has lost the shared
// history: the nodes make it again, read it from its start, and the room
// is one again.
func TestSharedHistoryLostWithTheNATSStore(t *testing.T) {
	c := newCluster(t)
	n1, n2 := c.start("n1", nil), c.start("n2", nil)
	alice := n1.join(c.user("alice"))
	bob := n2.join(c.user("bob"))
	alice.expect("bob has arrived")
	for _, line := range []string{"one", "two", "three"} {
		alice.say(line)
		bob.expect("alice: " + line)
	}

	c.nats.stop()
	c.nats.dir = t.TempDir() // a restart without persistent storage
	c.nats.start()
	back := "-!- The link to the other nodes is back; messages reach the whole room again."
	for _, u := range []*chatter{alice, bob} {
		u.skipUntil(back)
	}
	waitForStream(t, c.nats.url(), "sshchat_history")
	alice.say("after the restart")
	bob.skipUntil("alice: after the restart")
	bob.say("heard")
	alice.skipUntil("bob: heard")
}

// waitForStream waits until the stream name exists on the NATS server at
// url.
func waitForStream(t *testing.T, url, name string) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	created := make(chan *nats.Msg, 16)
	sub, err := nc.ChanSubscribe("$JS.EVENT.ADVISORY.STREAM.CREATED."+name, created)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if _, err := js.Stream(ctx, name); err == nil {
		return
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatal(err)
	}
	select {
	case <-created:
	case <-ctx.Done():
		t.Fatalf("the stream %s was not made again within %v", name, waitLimit)
	}
}

// A node that read the shared history again (after a reconnect) leaves
// no reader of it behind when it closes.
func TestCloseLeavesNoReaderOfTheHistory(t *testing.T) {
	c := newCluster(t)
	n1 := c.start("n1", nil)
	nc := c.connect()
	created := make(chan *nats.Msg, 16)
	sub, err := nc.ChanSubscribe("$JS.EVENT.ADVISORY.CONSUMER.CREATED.sshchat_history.*", created)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	n1.link.readHistoryAgain() // as a reconnect does
	select {
	case <-created:
	case <-time.After(waitLimit):
		t.Fatalf("n1 made no new reader of the shared history within %v", waitLimit)
	}

	n1.stop()
	if n := historyStream(t, nc).State.Consumers; n != 0 {
		t.Errorf("the shared history has %d readers after its only node closed, want none", n)
	}
}

// A node whose data was wiped, but which keeps its name, copies what its
// former self said from the shared history: its history has no holes.
func TestWipedNodeCopiesItsFormerLines(t *testing.T) {
	c := newCluster(t)
	n1 := c.startWith("n1", nodeOptions{data: t.TempDir()})
	n2 := c.start("n2", nil)
	alice := n1.join(c.user("alice"))
	bob := n2.join(c.user("bob"))
	alice.expect("bob has arrived")
	alice.say("before the wipe")
	bob.expect("alice: before the wipe")

	n1.stop()
	n1 = c.startWith("n1", nodeOptions{data: t.TempDir()})
	bob.say("after")
	carol := n1.join(c.user("carol"))
	if got, want := carol.history("bob: after"), []string{"alice: before the wipe", "bob: after"}; !slices.Equal(got, want) {
		t.Errorf("/history on the wiped n1 shows %q, want %q", got, want)
	}
}

// A node that kept its data does not copy its own lines of earlier runs,
// though no other node ever spoke (its position in the shared history
// is 0).
func TestRestartedNodeCopiesNotItsOwnLines(t *testing.T) {
	c := newCluster(t)
	data := t.TempDir()
	n1 := c.startWith("n1", nodeOptions{data: data})
	c.start("n2", nil)
	alice := n1.join(c.user("alice"))
	alice.say("only once")
	alice.quit()

	n1.stop()
	n1 = c.startWith("n1", nodeOptions{data: data})
	bob := n1.join(c.user("bob"))
	if got, want := chatLines(bob.greeting), []string{"alice: only once"}; !slices.Equal(got, want) {
		t.Errorf("a joiner of the restarted n1 was shown %q, want %q", got, want)
	}
}

// historyStream returns what the NATS server says of the shared history.
func historyStream(t *testing.T, nc *nats.Conn) *jetstream.StreamInfo {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	stream, err := js.Stream(ctx, "sshchat_history")
	if err != nil {
		t.Fatal(err)
	}
	return stream.CachedInfo()
}
