package sshchat

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sshchat-dev/sshchat/store"
)

// Durable history, catch-up and the welcome over real SSH, with a real
// store in a temporary directory.

// historyFile is an open store and the way to close it, once, whether the test
// does it to reopen the file or its cleanup does.
type historyFile struct {
	*store.DB
	close func()
}

// openHistory opens the store in dir. It is closed after the servers the
// test starts later have shut down (cleanups run last-in first-out), or
// earlier by close.
func openHistory(t *testing.T, dir string) historyFile {
	t.Helper()
	db, err := store.Open(dir, slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	h := historyFile{db, func() {
		once.Do(func() {
			if err := db.Close(); err != nil {
				t.Error(err)
			}
		})
	}}
	t.Cleanup(h.close)
	return h
}

// startWithHistory starts a server that keeps its history in db.
func startWithHistory(t *testing.T, db *store.DB, tweak func(*Config)) *testServer {
	t.Helper()
	return startServer(t, func(c *Config) {
		c.Store = db
		if tweak != nil {
			tweak(c)
		}
	})
}

// shutdown shuts ts down now, rather than in the test's cleanup.
func (ts *testServer) shutdown() {
	ts.t.Helper()
	ctx, cancel := contextWithTimeout(waitLimit)
	defer cancel()
	if err := ts.Shutdown(ctx); err != nil {
		ts.t.Fatal(err)
	}
}

// clock matches the HH:MM of a catch-up header.
const clock = `\d\d:\d\d`

// replayed matches line replayed in line mode, where it has the shape of a
// live line.
func replayed(line string) string { return "^" + regexp.QuoteMeta(line) + "$" }

// expectReplay fails unless the next lines are lines, replayed from
// today.
func (c *chatter) expectReplay(lines ...string) {
	c.t.Helper()
	for _, l := range lines {
		c.expectMatch(replayed(l))
	}
}

// leaving closes c's session, the last of name's, waits for others to see
// it, and returns the stamps that the time it left may be shown with
// ("since you left at HH:MM").
func (c *chatter) leaving(name string, others ...*chatter) []string {
	c.t.Helper()
	before := time.Now().UTC().Format(timeLayout)
	c.leave()
	for _, o := range others {
		o.expect(name + " has left")
	}
	return []string{before, time.Now().UTC().Format(timeLayout)}
}

// expectCatchUp fails unless the next line is a catch-up header for n
// messages, showing shown of them, since a time among stamps.
func (c *chatter) expectCatchUp(n, shown int, stamps []string) {
	c.t.Helper()
	header := fmt.Sprintf(`^-!- %d messages? since you left at (%s):$`, n, clock)
	if shown < n {
		header = fmt.Sprintf(`^-!- %d messages? since you left at (%s) \(showing the last %d\):$`, n, clock, shown)
	}
	if n == 0 {
		header = `^-!- No new messages since you left at (` + clock + `)\.$`
	}
	if m := c.expectMatch(header); !slices.Contains(stamps, m[1]) {
		c.t.Fatalf("left at %s, want one of %q", m[1], stamps)
	}
}

// A restart keeps the public history and when each user left: a new server
// on the same file replays it to a newcomer and catches a returning user
// up.
func TestHistorySurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	ps := people(t, "alice", "bob", "carol", "dave")
	db := openHistory(t, dir)
	first := startWithHistory(t, db.DB, nil)
	cs := first.enter(ps[0], ps[1], ps[3])
	alice, bob, dave := cs[0], cs[1], cs[2]
	alice.say("before the restart")
	alice.say("/me waves")
	bob.expect("alice: before the restart", "* alice waves")
	dave.expect("alice: before the restart", "* alice waves")
	left := alice.leaving("alice", bob, dave)
	bob.say("said while alice was away")
	dave.expect("bob: said while alice was away")
	first.shutdown()
	db.close()

	db = openHistory(t, dir)
	second := startWithHistory(t, db.DB, nil)
	second.allowPeople(ps...)
	carol := second.connectAs(ps[2]) // never here before: the last lines
	carol.expectReplay("alice: before the restart", "* alice waves", "bob: said while alice was away")
	carol.expectWelcome("carol", "carol")
	alice = second.connectAs(ps[0]) // left before bob's line
	alice.expectCatchUp(1, 1, left)
	alice.expectReplay("bob: said while alice was away")
	alice.expectWelcome("alice", "alice", "carol")
	bob = second.connectAs(ps[1]) // was online at the shutdown
	bob.expectCatchUp(0, 0, []string{time.Now().UTC().Format(timeLayout), time.Now().Add(-time.Minute).UTC().Format(timeLayout)})
	bob.expectWelcome("bob", "alice", "bob", "carol")
}

// A returning user is told how many public messages and actions they
// missed, not counting arrivals, departures and private messages, and sees
// them, up to Catchup.
func TestCatchUp(t *testing.T) {
	tests := []struct {
		name    string
		catchup int
		missed  []string // said by bob while alice is away
	}{
		{"none", 100, nil},
		{"one", 100, []string{"one"}},
		{"all shown", 100, []string{"one", "/me two", "three"}},
		{"over the cap", 2, []string{"one", "two", "three", "four"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := openHistory(t, t.TempDir())
			ts := startWithHistory(t, db.DB, func(c *Config) { c.Catchup = tt.catchup })
			ps := people(t, "alice", "bob", "carol")
			cs := ts.enter(ps[:2]...)
			alice, bob := cs[0], cs[1]
			alice.say("before you go")
			bob.expect("alice: before you go")
			left := alice.leaving("alice", bob)

			carol := ts.enter(ps[2])[0] // an arrival: not counted
			bob.expect("carol has arrived")
			var shown []string
			for _, line := range tt.missed {
				bob.say(line)
				if text, ok := strings.CutPrefix(line, "/me "); ok {
					line = "* bob " + text
				} else {
					line = "bob: " + line
				}
				carol.expect(line)
				shown = append(shown, line)
			}
			bob.say("/msg carol private: not counted")
			carol.expect("[PM from bob] private: not counted")
			bob.expect("-!- [PM to carol] private: not counted")
			carol.leave()
			bob.expect("carol has left") // a departure: not counted

			alice = ts.connectAs(ps[0])
			shown = shown[max(len(shown)-tt.catchup, 0):]
			alice.expectCatchUp(len(tt.missed), len(shown), left)
			alice.expectReplay(shown...)
			alice.expectWelcome("alice", "alice", "bob")
			bob.expect("alice has arrived")
		})
	}
}

// A user who has never been here gets the last History public lines and
// no catch-up header.
func TestFirstTimerGetsRecentHistory(t *testing.T) {
	db := openHistory(t, t.TempDir())
	ts := startWithHistory(t, db.DB, func(c *Config) { c.History = 2 })
	ps := people(t, "alice", "bob")
	alice := ts.enter(ps[0])[0]
	for _, line := range []string{"one", "two", "three"} {
		alice.say(line)
	}
	// Every line is handled once /history shows the last: a message is
	// fanned out, and so remembered, once stored.
	for deadline := time.Now().Add(waitLimit); !slices.Contains(alice.reply("/history 1"), "alice: three"); {
		if time.Now().After(deadline) {
			t.Fatal("alice's lines never stored")
		}
	}
	ts.allowPeople(ps[1])
	bob := ts.connectAs(ps[1])
	bob.expectReplay("alice: two", "alice: three")
	bob.expectWelcome("bob", "alice", "bob")
}

// Only a user's first session arriving and last leaving are announced; a
// second session gets the recent lines, not a catch-up.
func TestExtraSessionsAreSilent(t *testing.T) {
	db := openHistory(t, t.TempDir())
	ts := startWithHistory(t, db.DB, func(c *Config) { c.History = 1 })
	ps := people(t, "alice", "bob", "carol", "dave")
	cs := ts.enter(ps[:3]...)
	alice, bob, carol := cs[0], cs[1], cs[2]
	left := alice.leaving("alice", bob, carol)
	bob.say("while you were out")
	bob.say("and another")
	carol.expect("bob: while you were out", "bob: and another")

	alice = ts.connectAs(ps[0])
	alice.expectCatchUp(2, 2, left)
	alice.expectReplay("bob: while you were out", "bob: and another")
	alice.expectWelcome("alice", "alice", "bob", "carol")
	bob.expect("alice has arrived")

	alice2 := ts.connectAs(ps[0])
	alice2.expectReplay("bob: and another")
	alice2.expectWelcome("alice", "alice", "bob", "carol")
	alice.leave() // alice2 is still here
	alice2.say("from the second session")
	bob.expect("alice: from the second session") // nothing announced before it
	ts.enter(ps[3])
	bob.expect("dave has arrived")
	alice2.leave()
	bob.expect("alice has left") // the last session
}

// Messages older than HistoryKeep are pruned from the store when the
// server starts, and are not shown.
func TestHistoryPruned(t *testing.T) {
	db := openHistory(t, t.TempDir())
	now := time.Now()
	writeHistory(t, db.DB,
		store.Message{At: now.Add(-72 * time.Hour), From: "alice", Kind: store.Chat, Text: "three days ago"},
		store.Message{At: now.Add(-25 * time.Hour), From: "bob", Kind: store.Action, Text: "yawns"},
		store.Message{At: now.Add(-time.Hour), From: "carol", Kind: store.Chat, Text: "an hour ago"},
	)
	ts := startWithHistory(t, db.DB, func(c *Config) { c.HistoryKeep = 24 * time.Hour })
	ps := people(t, "dave")
	ts.allowPeople(ps...)
	dave := ts.connectAs(ps[0])
	dave.expectReplay("carol: an hour ago")
	dave.expectWelcome("dave", "dave")
	if got := dave.reply("/history"); len(got) != 1 || !regexp.MustCompile(replayed("carol: an hour ago")).MatchString(got[0]) {
		t.Errorf("/history: %q", got)
	}
	// The store's writer prunes in the background: wait for it, for a
	// bounded time.
	deadline := time.Now().Add(waitLimit)
	for {
		msgs, err := db.Recent(10)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) == 1 && msgs[0].Text == "an hour ago" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still stored after %v: %+v", waitLimit, msgs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// writeHistory writes msgs into db, numbered after what it holds, as an
// earlier server would have.
func writeHistory(t *testing.T, db *store.DB, msgs ...store.Message) {
	t.Helper()
	for i := range msgs {
		msgs[i].Seq = db.LastSeq() + uint64(i) + 1
	}
	if err := db.Write(store.Batch{Messages: msgs}); err != nil {
		t.Fatal(err)
	}
}

// /history N shows the last N stored messages, dated when they are not from
// today.
func TestHistoryCommand(t *testing.T) {
	db := openHistory(t, t.TempDir())
	old := time.Date(2024, 2, 29, 13, 5, 0, 0, time.UTC)
	writeHistory(t, db.DB,
		store.Message{At: old, From: "alice", Kind: store.Chat, Text: "a leap day"},
		store.Message{At: old.Add(time.Minute), From: "bob", Kind: store.Action, Text: "jumps"},
	)
	ts := startWithHistory(t, db.DB, func(c *Config) { c.HistoryKeep = 0 })
	cs := ts.enter(people(t, "carol", "dave")...)
	carol := cs[0]
	carol.say("today")
	carol.say("/me is here")
	cs[1].expect("carol: today", "* carol is here") // stored and fanned out

	// In line mode replayed lines have the shape of live ones (a terminal
	// shows their dates: TestHistoryDatesInTerminal).
	dated := []string{"^alice: a leap day$", `^\* bob jumps$`}
	tests := []struct {
		cmd  string
		want []string // patterns
	}{
		{"/history", []string{dated[0], dated[1], replayed("carol: today"), replayed("* carol is here")}},
		{"/history 3", []string{dated[1], replayed("carol: today"), replayed("* carol is here")}},
		{"/history 1", []string{replayed("* carol is here")}},
		{"/history 1000", []string{dated[0], dated[1], replayed("carol: today"), replayed("* carol is here")}},
		{"/history 0", []string{`^-!- Usage: /history \[N\]$`}},
		{"/history ten", []string{`^-!- Usage: /history \[N\]$`}},
	}
	for _, tt := range tests {
		got := carol.reply(tt.cmd)
		if len(got) != len(tt.want) {
			t.Errorf("%s: %q, want %d lines", tt.cmd, got, len(tt.want))
			continue
		}
		for i, w := range tt.want {
			if !regexp.MustCompile(w).MatchString(got[i]) {
				t.Errorf("%s line %d: %q, want %q", tt.cmd, i, got[i], w)
			}
		}
	}
}

// Private messages reach their recipient and are never stored or shown in
// the history.
func TestPrivateMessagesNotStored(t *testing.T) {
	db := openHistory(t, t.TempDir())
	ts := startWithHistory(t, db.DB, nil)
	cs := ts.enter(people(t, "alice", "bob")...)
	alice, bob := cs[0], cs[1]
	alice.say("/msg bob the password is swordfish")
	alice.expect("-!- [PM to bob] the password is swordfish")
	bob.expect("[PM from alice] the password is swordfish")
	bob.say("/reply got it")
	alice.expect("[PM from bob] got it")
	bob.expect("-!- [PM to alice] got it")
	alice.say("public")
	bob.expect("alice: public")
	for _, c := range cs {
		if got := c.reply("/history"); len(got) != 1 || !regexp.MustCompile(replayed("alice: public")).MatchString(got[0]) {
			t.Errorf("/history: %q", got)
		}
	}
	ts.shutdown()
	msgs, err := db.Recent(100)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 || msgs[0].Text != "public" {
		t.Errorf("stored: %+v", msgs)
	}
}

// recordingStore is a storedHistory that keeps what it is asked to log in
// memory, and fails every Log while failing is set.
type recordingStore struct {
	mu      sync.Mutex
	logs    [][]store.Message // one per Log call
	failing error
}

func (s *recordingStore) Log(msgs []store.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failing != nil {
		return s.failing
	}
	s.logs = append(s.logs, msgs)
	return nil
}

func (s *recordingStore) Submit(store.Batch, func(error)) bool { return true }

// logged returns the Seq and text of every message logged, by Log call.
func (s *recordingStore) logged() [][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out [][]string
	for _, msgs := range s.logs {
		var call []string
		for _, m := range msgs {
			call = append(call, fmt.Sprintf("%d %s: %s", m.Seq, m.From, m.Text))
		}
		out = append(out, call)
	}
	return out
}

// A public message is in the store's log before anyone receives it, one Log
// call per broadcaster wake-up; private ones are never logged.
func TestMessagesLoggedBeforeDelivery(t *testing.T) {
	rec := &recordingStore{}
	r := newTestRoom(t, roomOptions{history: 20, catchup: 100, stored: rec})
	alice := enter(t, r, "alice", 16)
	expectEvents(t, alice, welcome("alice", "alice"))
	bob := enter(t, r, "bob", 16)
	expectEvents(t, bob, welcome("bob", "alice", "bob"))
	expectEvents(t, alice, "bob has arrived")

	r.say(message{from: bob, text: "first"})
	expectEvents(t, alice, "bob: first")
	if got, want := rec.logged(), [][]string{{"1 bob: first"}}; !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("logged %q when alice received the message, want %q", got, want)
	}
	r.say(message{from: alice, text: "/msg bob secret"})
	expectEvents(t, bob, "[PM from alice] secret")
	r.say(message{from: alice, text: "/me waves"})
	expectEvents(t, bob, "* alice waves")
	if got, want := rec.logged(), [][]string{{"1 bob: first"}, {"2 alice: waves"}}; !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("logged %q, want %q", got, want)
	}
}

// A message the store cannot log is delivered anyway, and logged and
// counted as not stored.
func TestMessageDeliveredWhenLogFails(t *testing.T) {
	rec := &recordingStore{failing: errors.New("disk on fire")}
	reg := prometheus.NewRegistry()
	m := newMetrics(reg)
	var logged strings.Builder
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(lockedWriter{&mu, &logged}, nil))
	r := newTestRoom(t, roomOptions{history: 20, catchup: 100, stored: rec, metrics: m, log: log})
	alice := enter(t, r, "alice", 16)
	expectEvents(t, alice, welcome("alice", "alice"))
	bob := enter(t, r, "bob", 16)
	expectEvents(t, bob, welcome("bob", "alice", "bob"))
	expectEvents(t, alice, "bob has arrived")

	r.say(message{from: bob, text: "still here"})
	expectEvents(t, alice, "bob: still here")
	if got := testutil.ToFloat64(m.unstored); got != 1 {
		t.Errorf("unstored = %v, want 1", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logged.String(), "history: messages not stored; delivered anyway") || !strings.Contains(logged.String(), "disk on fire") {
		t.Errorf("failure not logged: %q", logged.String())
	}
}

// lockedWriter serialises writes to w.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// A server that runs longer than it keeps history forgets, in memory too,
// what the store prunes: /history and the replay show none of it.
func TestRecentMessagesExpire(t *testing.T) {
	var clock atomic.Int64
	clock.Store(testTime.UnixNano())
	r := newRoom(roomOptions{history: 20, catchup: 100, keep: 24 * time.Hour}, func() time.Time { return time.Unix(0, clock.Load()).UTC() })
	t.Cleanup(func() { r.close("bye") })
	carol := enter(t, r, "carol", 64)
	expectEvents(t, carol, welcome("carol", "carol"))
	r.say(message{from: carol, text: "yesterday's news"})
	r.do(func(*state) {}) // said

	clock.Add(int64(25 * time.Hour))
	r.do(func(st *state) { st.housekeeping() })
	bob := enter(t, r, "bob", 64)
	expectEvents(t, bob, welcome("bob", "bob", "carol"))
	r.say(message{from: bob, text: "/history"})
	expectEvents(t, bob, "-!- No messages yet.")
}
