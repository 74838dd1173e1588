package sshchat

import (
	"sync"
	"testing"

	"github.com/sshchat-dev/sshchat/store"
)

// gatedStore is a history store whose log waits until the test opens its
// gate: the disk at its slowest.
type gatedStore struct {
	entered, gate chan struct{}
	once          sync.Once
}

// newGatedRoom returns a room that keeps its history in a gatedStore. The
// gate opens at the latest when the test ends, before the room closes.
func newGatedRoom(t *testing.T, opts roomOptions) (*room, *gatedStore) {
	gs := &gatedStore{entered: make(chan struct{}, 16), gate: make(chan struct{})}
	opts.stored = gs
	r := newTestRoom(t, opts)
	t.Cleanup(gs.open)
	return r, gs
}

func (s *gatedStore) open() { s.once.Do(func() { close(s.gate) }) }

func (s *gatedStore) Log([]store.Message) error {
	s.entered <- struct{}{}
	<-s.gate
	return nil
}

func (s *gatedStore) Submit(store.Batch, func(error)) bool { return true }

// What follows a line waits for it, and only for it: a later line stored
// in the same write comes after.
func TestHeldEventFollowsItsLine(t *testing.T) {
	r, gs := newGatedRoom(t, roomOptions{history: 20, catchup: 100})
	bob := enter(t, r, "bob", 64)
	expectEvents(t, bob, welcome("bob", "bob"))
	alice := enter(t, r, "alice", 64)
	expectEvents(t, bob, "alice has arrived")
	carol := enter(t, r, "carol", 64)
	expectEvents(t, bob, "carol has arrived")

	r.say(message{from: carol, text: "x"})
	<-gs.entered // x is being stored; what follows waits for the next write
	r.say(message{from: alice, text: "hi"})
	r.leave(alice)
	r.say(message{from: carol, text: "later"})
	r.do(func(*state) {}) // all of it taken by the broadcaster
	gs.open()
	expectEvents(t, bob, "carol: x", "alice: hi", "alice has left", "carol: later")
}

// A store that does not keep up does not make the room hold events for
// ever: a client holds half its queue at most, then events come at once.
func TestHeldEventsAreBounded(t *testing.T) {
	r, gs := newGatedRoom(t, roomOptions{history: 20, catchup: 100})
	bob := enter(t, r, "bob", 8)
	expectEvents(t, bob, welcome("bob", "bob"))
	carol := enter(t, r, "carol", 64)
	expectEvents(t, bob, "carol has arrived")

	r.say(message{from: carol, text: "x"})
	<-gs.entered
	for _, name := range []string{"d1", "d2", "d3", "d4", "d5", "d6"} {
		enter(t, r, name, 64)
	}
	// Four held, half bob's queue; the rest come while x is still stored.
	expectEvents(t, bob, "d5 has arrived", "d6 has arrived")
	gs.open()
	expectEvents(t, bob, "carol: x", "d1 has arrived", "d2 has arrived", "d3 has arrived", "d4 has arrived")
}

// A store that stalls makes the room refuse users' new lines, and say so,
// once as many are on their way as half a queue: when the store is back,
// the lines and what they held fit every queue, and nobody is dropped.
func TestStalledStoreRefusesNewLines(t *testing.T) {
	r, gs := newGatedRoom(t, roomOptions{history: 20, catchup: 100, queue: 8})
	bob := enter(t, r, "bob", 8)
	expectEvents(t, bob, welcome("bob", "bob"))
	carol := enter(t, r, "carol", 8)
	expectEvents(t, bob, "carol has arrived")
	expectEvents(t, carol, welcome("carol", "bob", "carol"))

	r.say(message{from: carol, text: "l1"})
	<-gs.entered
	for _, text := range []string{"l2", "l3", "l4", "l5"} {
		r.say(message{from: carol, text: text})
	}
	expectEvents(t, carol, "-!- The server is busy saving messages; that line was not sent. Try again in a moment.")
	gs.open()
	expectEvents(t, bob, "carol: l1", "carol: l2", "carol: l3", "carol: l4")
	r.say(message{from: carol, text: "l6"}) // the store has caught up
	expectEvents(t, bob, "carol: l6")
}
