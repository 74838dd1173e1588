package sshchat

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// Broadcaster tests: clients are bare queues, no SSH.

var testTime = time.Date(2026, 11, 25, 15, 4, 0, 0, time.UTC)

func newTestRoom(t *testing.T, opts roomOptions) *room {
	t.Helper()
	r := newRoom(opts, func() time.Time { return testTime })
	t.Cleanup(func() { r.close("bye") })
	return r
}

func enter(t *testing.T, r *room, name string, queue int) *client {
	t.Helper()
	cli := &client{name: name, out: make(chan *event, queue)}
	r.enter(cli)
	return cli
}

// recv returns the line-mode text of cli's next event (a group's lines
// joined by newlines).
func recv(t *testing.T, cli *client) string {
	t.Helper()
	select {
	case ev, ok := <-cli.out:
		if !ok {
			t.Fatalf("%s: queue closed (hangup %q)", cli.name, cli.hangup.notice)
		}
		return strings.TrimSuffix(string(ev.line), "\n")
	case <-time.After(waitLimit):
		t.Fatalf("%s: no event within %v", cli.name, waitLimit)
	}
	return ""
}

// welcome is the greeting event a session gets on joining, after any
// replayed lines, with everyone online.
func welcome(name string, online ...string) string {
	return strings.Join([]string{
		fmt.Sprintf("-!- %d online: %s", len(online), strings.Join(online, ", ")),
		"-!- Type /help for commands.",
		"-!- You are " + name,
	}, "\n")
}

func expectEvents(t *testing.T, cli *client, want ...string) {
	t.Helper()
	for _, w := range want {
		if got := recv(t, cli); got != w {
			t.Fatalf("%s got %q, want %q", cli.name, got, w)
		}
	}
}

// expectQueueClosed waits for the broadcaster to close cli's queue, discarding
// what is left in it.
func expectQueueClosed(t *testing.T, cli *client) {
	t.Helper()
	timeout := time.After(waitLimit)
	for {
		select {
		case _, ok := <-cli.out:
			if !ok {
				return
			}
		case <-timeout:
			t.Fatalf("%s: queue still open", cli.name)
		}
	}
}

func TestRoomFanOut(t *testing.T) {
	r := newTestRoom(t, roomOptions{})
	a := enter(t, r, "alice", 16)
	expectEvents(t, a, welcome("alice", "alice"))
	b := enter(t, r, "bob", 16)
	expectEvents(t, b, welcome("bob", "alice", "bob"))
	expectEvents(t, a, "bob has arrived")
	c := enter(t, r, "carol", 16)
	expectEvents(t, c, welcome("carol", "alice", "bob", "carol"))
	expectEvents(t, a, "carol has arrived")
	expectEvents(t, b, "carol has arrived")

	r.say(message{from: a, text: "hi"})
	r.say(message{from: b, text: "yo"})
	expectEvents(t, a, "bob: yo") // no echo of alice's own line
	expectEvents(t, b, "alice: hi")
	expectEvents(t, c, "alice: hi", "bob: yo")

	r.leave(c)
	expectQueueClosed(t, c)
	expectEvents(t, a, "carol has left")
	expectEvents(t, b, "carol has left")
	if got := r.names(); strings.Join(got, ",") != "alice,bob" {
		t.Fatalf("Names() = %v", got)
	}
}

// A client that stops reading is dropped when its queue fills; the others
// get every message.
func TestRoomDropsSlowClient(t *testing.T) {
	r := newTestRoom(t, roomOptions{})
	slow := enter(t, r, "slow", 4)
	fast := enter(t, r, "fast", 64)
	sender := enter(t, r, "sender", 64)
	expectEvents(t, fast, welcome("fast", "fast", "slow"), "sender has arrived")
	expectEvents(t, sender, welcome("sender", "fast", "sender", "slow"))

	const n = 40
	for i := range n {
		r.say(message{from: sender, text: strings.Repeat("x", i)})
		expectEvents(t, fast, "sender: "+strings.Repeat("x", i))
		if i == 1 { // 3 greetings + 1 message filled its queue of 4
			expectEvents(t, fast, "slow has left")
		}
	}
	expectQueueClosed(t, slow)
	if !strings.Contains(slow.hangup.notice, "not reading fast enough") || !slow.hangup.closeConn {
		t.Fatalf("slow client hangup = %+v", slow.hangup)
	}
}

func TestRoomScrollback(t *testing.T) {
	r := newTestRoom(t, roomOptions{history: 2})
	a := enter(t, r, "alice", 16)
	expectEvents(t, a, welcome("alice", "alice"))
	for _, text := range []string{"one", "two", "three"} {
		r.say(message{from: a, text: text})
	}
	r.say(message{from: a, text: "/msg alice private"}) // never replayed
	b := enter(t, r, "bob", 16)
	expectEvents(t, b, "alice: two\nalice: three\n"+welcome("bob", "alice", "bob"))
}

func TestRoomSessionsPerUser(t *testing.T) {
	r := newTestRoom(t, roomOptions{maxPerUser: 2})
	a1 := enter(t, r, "alice", 16)
	a2 := enter(t, r, "alice", 16)
	a3 := enter(t, r, "alice", 16)
	expectQueueClosed(t, a3)
	if a3.hangup.notice != "Too many sessions for alice (at most 2)." || a3.hangup.closeConn {
		t.Fatalf("third session hangup = %+v", a3.hangup)
	}
	expectEvents(t, a1, welcome("alice", "alice"))
	expectEvents(t, a2, welcome("alice", "alice"))
	// Neither a second session nor a refused one is announced.
	r.say(message{from: a2, text: "still here"})
	expectEvents(t, a1, "alice: still here")
}

func TestRoomRateLimit(t *testing.T) {
	r := newTestRoom(t, roomOptions{rate: rate.Every(time.Hour), burst: 2})
	a := enter(t, r, "alice", 16)
	b := enter(t, r, "bob", 16)
	expectEvents(t, a, welcome("alice", "alice"), "bob has arrived")
	expectEvents(t, b, welcome("bob", "alice", "bob"))
	for _, text := range []string{"1", "2", "3", "4"} {
		r.say(message{from: a, text: text})
	}
	r.say(message{from: b, text: "sync"})
	expectEvents(t, b, "alice: 1", "alice: 2")
	// Told once, not once per dropped line.
	if got := recv(t, a); !strings.HasPrefix(got, "-!- Slow down: at most") {
		t.Fatalf("alice got %q, want the rate limit notice", got)
	}
	expectEvents(t, a, "bob: sync")
}

func TestRoomCloseHangsUpEveryone(t *testing.T) {
	r := newRoom(roomOptions{}, time.Now)
	a := enter(t, r, "alice", 16)
	b := enter(t, r, "bob", 16)
	expectEvents(t, a, welcome("alice", "alice"), "bob has arrived")
	expectEvents(t, b, welcome("bob", "alice", "bob"))
	r.close("going down")
	for _, cli := range []*client{a, b} {
		// No departures announced: the queue just closes.
		if ev, ok := <-cli.out; ok {
			t.Fatalf("%s got %q after Close", cli.name, ev.line)
		}
		if cli.hangup.notice != "going down" || !cli.hangup.closeConn {
			t.Fatalf("%s hangup = %+v", cli.name, cli.hangup)
		}
	}
	if r.names() != nil {
		t.Fatal("Names on a closed room")
	}
}
