package cluster

import (
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/sshchat-dev/sshchat/sshchat"
)

// A node's lines come through the shared history, its presence and
// private messages straight over NATS: the nodes receiving them must still
// show them in the order the node sent them.

func TestArrivalLineDepartureKeepTheirOrder(t *testing.T) {
	c := newCluster(t)
	n1, n2 := c.start("n1", nil), c.start("n2", nil)
	bob := n2.join(c.user("bob"))
	// Past stormAnnouncements arrivals and departures a second, n2 would
	// summarise them once a second: at most two visits (four
	// announcements) start within any such second, so none is summarised.
	// This paces the visits; what each shows is waited for on its own.
	pace := time.NewTicker(1100 * time.Millisecond)
	defer pace.Stop()
	for i := range 10 {
		if i > 0 && i%2 == 0 {
			<-pace.C
		}
		// A user's arrivals are announced a few times only: a new bot
		// each time.
		bot := fmt.Sprintf("bot%d", i)
		n1.pipe(c.user(bot), "hi") // echo hi | ssh -T n1
		bob.expect(bot+" has arrived", bot+": hi", bot+" has left")
	}
}

func TestLineThenPrivateMessageKeepTheirOrder(t *testing.T) {
	c := newCluster(t)
	n1, n2 := c.start("n1", nil), c.start("n2", nil)
	bob := n2.join(c.user("bob"))
	carol := n1.join(c.user("carol"))
	bob.expect("carol has arrived")
	const rounds = 50
	for i := range rounds {
		carol.say(fmt.Sprintf("line %d", i))
		carol.say(fmt.Sprintf("/msg bob pm %d", i))
	}
	for i := range rounds {
		bob.expect(fmt.Sprintf("carol: line %d", i), fmt.Sprintf("[PM from carol] pm %d", i))
	}
}

func TestLineThenAwayKeepTheirOrder(t *testing.T) {
	c := newCluster(t)
	n1 := c.start("n1", nil)
	n2 := c.startWith("n2", nodeOptions{watch: true})
	bob := n2.join(c.user("bob"))
	carol := n1.join(c.user("carol"))
	bob.expect("carol has arrived")
	const rounds = 50
	for i := range rounds {
		carol.say(fmt.Sprintf("line %d", i))
		carol.say(fmt.Sprintf("/away reason %d", i))
	}
	fromCarol := func(ev sshchat.PeerEvent) bool {
		return ev.From == "carol" && (ev.Kind == sshchat.PeerSay || ev.Kind == sshchat.PeerAway)
	}
	for i := range rounds {
		for _, want := range []sshchat.PeerEvent{
			{Kind: sshchat.PeerSay, Text: fmt.Sprintf("line %d", i)},
			{Kind: sshchat.PeerAway, Text: fmt.Sprintf("reason %d", i)},
		} {
			if ev := n2.nextHanded(fromCarol); ev.Kind != want.Kind || ev.Text != want.Text {
				t.Fatalf("n2 was handed carol's %s %q, want %s %q", ev.Kind, ev.Text, want.Kind, want.Text)
			}
		}
	}
}

// recordingRoom is a Room that keeps what it is handed.
type recordingRoom struct{ handed chan string }

func (r recordingRoom) FromPeer(ev sshchat.PeerEvent) { r.handed <- ev.Boot + " " + ev.Text }
func (recordingRoom) PeerLink(bool)                   {}
func (recordingRoom) SharedHistory(string) (uint64, error) {
	return 0, nil
}

func (r recordingRoom) expect(t *testing.T, want ...string) {
	t.Helper()
	var got []string
	for range want {
		select {
		case h := <-r.handed:
			got = append(got, h)
		case <-time.After(waitLimit):
			t.Fatalf("handed %q, then nothing within %v; want %q", got, waitLimit, want)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("handed %q, want %q", got, want)
	}
	select {
	case h := <-r.handed:
		t.Fatalf("handed %q, then %q too", got, h)
	default:
	}
}

func TestOrderer(t *testing.T) {
	presence := func(boot, text string) sshchat.PeerEvent {
		return sshchat.PeerEvent{Kind: sshchat.PeerLeave, Node: "n1", Boot: boot, Text: text}
	}
	for _, tc := range []struct {
		name    string
		wait    time.Duration
		maxHeld int
		steps   func(t *testing.T, o *orderer, r recordingRoom)
	}{
		{"waits for the lines sent before", time.Hour, 10, func(t *testing.T, o *orderer, r recordingRoom) {
			o.received(presence("b1", "first"), 0)
			r.expect(t, "b1 first")
			o.received(presence("b1", "after one line"), 1)
			o.received(presence("b1", "behind it"), 0)
			r.expect(t)
			o.streamed("n1", "b1", 0)
			r.expect(t, "b1 after one line", "b1 behind it")
		}},
		{"first message of a run is its starting point", time.Hour, 10, func(t *testing.T, o *orderer, r recordingRoom) {
			o.received(presence("b1", "after lines never seen"), 7)
			r.expect(t, "b1 after lines never seen")
			o.received(presence("b1", "after one more"), 8)
			r.expect(t)
			o.streamed("n1", "b1", 7)
			r.expect(t, "b1 after one more")
		}},
		{"lines of the next run may come first", time.Hour, 10, func(t *testing.T, o *orderer, r recordingRoom) {
			o.received(presence("b1", "old run"), 0)
			o.streamed("n1", "b2", 0)
			o.received(presence("b2", "new run"), 0)
			o.received(presence("b2", "after its line"), 1)
			r.expect(t, "b1 old run", "b2 new run", "b2 after its line")
		}},
		{"a new run lets the old one's go", time.Hour, 10, func(t *testing.T, o *orderer, r recordingRoom) {
			o.received(presence("b1", "start"), 0)
			o.received(presence("b1", "held"), 1)
			o.received(presence("b2", "restarted"), 0)
			r.expect(t, "b1 start", "b1 held", "b2 restarted")
			o.streamed("n1", "b1", 0) // the old run's line, late
			r.expect(t)
		}},
		{"waits no longer than its bound", time.Millisecond, 10, func(t *testing.T, o *orderer, r recordingRoom) {
			o.received(presence("b1", "start"), 0)
			o.received(presence("b1", "line lost"), 1)
			r.expect(t, "b1 start", "b1 line lost")
		}},
		{"a full buffer lets the oldest go", time.Hour, 1, func(t *testing.T, o *orderer, r recordingRoom) {
			o.received(presence("b1", "start"), 0)
			o.received(presence("b1", "held"), 1)
			o.received(presence("b1", "pushes it out"), 1)
			r.expect(t, "b1 start", "b1 held")
			o.streamed("n1", "b1", 0)
			r.expect(t, "b1 pushes it out")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := recordingRoom{handed: make(chan string, 16)}
			o := newOrderer(r, tc.wait, tc.maxHeld, slog.New(slog.DiscardHandler))
			defer o.close()
			tc.steps(t, o, r)
		})
	}
}
