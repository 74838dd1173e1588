package sshchat

import (
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/sshchat-dev/sshchat/store"
)

// The room's history: the last public messages in memory, for replay,
// catch-up and /history, and, with a store, every public message and when
// each user last left on disk. The messages published in one broadcaster
// wake-up go to the store's write-ahead log in one write before they are
// fanned out, so after a crash every message anyone received is in the
// history; the broadcaster never waits for a disk sync, which the store does
// later.

// storedHistory keeps what it is given without making the caller wait for
// the disk: store.Writer.
type storedHistory interface {
	// Log makes msgs survive a crash of the process before it returns.
	Log(msgs []store.Message) error
	Submit(b store.Batch, done func(error)) bool
}

// Limits of what is replayed and shown.
const (
	// maxHistoryShown is the most /history shows, and so the number of
	// public messages kept in memory at least.
	maxHistoryShown = 200
	// defaultHistoryShown is what /history shows without a number.
	defaultHistoryShown = 50
	// maxNamesInWelcome bounds the "K online" line of a big room.
	maxNamesInWelcome = 30
)

// history is the broadcaster's share of the room's memory.
type history struct {
	recent   []*event // public messages, oldest first
	keep     int      // len(recent) at most
	seq      uint64   // of the last public message
	shown    uint64   // of the last one fanned out: behind seq by those published in this wake-up
	lastSeen map[string]store.Seen
	// published is what this broadcaster wake-up has published, to be
	// stored and fanned out at its end.
	published []publication
	// held is what was sent while public messages were on their way to
	// the store, to follow them: "alice has left" after alice's last line.
	held       []heldEvent
	heldFull   bool // a client held all it may: said once until held empties
	behindSaid bool // storeBehind was logged, and has not caught up since
	// toLog hands published messages to the history logger; nil without a
	// store.
	toLog func([]publication)
	log   *slog.Logger
}

// publication is a public message waiting to be stored and fanned out.
type publication struct {
	ev   *event
	from *client // who is not sent it; nil: everyone is
}

// savedHistory is what the store held when the server started.
type savedHistory struct {
	recent   []store.Message
	lastSeen map[string]store.Seen
	lastSeq  uint64
}

// loadHistory fills the history from what was saved, sanitising it again:
// nothing read from disk is trusted more than a user's line.
func (st *state) loadHistory(saved savedHistory) {
	h := &st.history
	h.keep = max(st.opts.history, st.opts.catchup, maxHistoryShown)
	h.seq, h.shown = saved.lastSeq, saved.lastSeq
	h.lastSeen = saved.lastSeen
	if h.lastSeen == nil {
		h.lastSeen = make(map[string]store.Seen)
	}
	for _, m := range saved.recent[max(len(saved.recent)-h.keep, 0):] {
		kind := eventChat
		if m.Kind == store.Action {
			kind = eventAction
		}
		ev := newEvent(kind, Sanitize(m.From), Sanitize(m.Text), m.At)
		ev.seq = m.Seq
		h.remember(ev)
	}
}

// remember keeps ev among the recent public messages.
func (h *history) remember(ev *event) {
	if len(h.recent) == h.keep {
		copy(h.recent, h.recent[1:])
		h.recent = h.recent[:len(h.recent)-1]
	}
	h.recent = append(h.recent, ev)
}

// forgetExpired forgets the recent messages older than the room keeps
// them, as the store prunes them: a server that runs for weeks must not
// show in /history what the store no longer holds.
func (h *history) forgetExpired(keep time.Duration, now time.Time) {
	if keep == 0 {
		return
	}
	cutoff := now.Add(-keep)
	i := 0
	for i < len(h.recent) && h.recent[i].at.Before(cutoff) {
		i++
	}
	clear(h.recent[:i])
	h.recent = h.recent[i:]
}

// last returns the newest n recent messages, and those after seq.
func (h *history) last(n int) []*event { return h.recent[max(len(h.recent)-n, 0):] }

func (h *history) after(seq uint64, n int) []*event {
	i := len(h.recent)
	for i > 0 && h.recent[i-1].seq > seq {
		i--
	}
	return h.recent[max(i, len(h.recent)-n):]
}

// publish numbers a public event, to be stored and fanned out at the end of
// the broadcaster's wake-up (flushPublished).
func (st *state) publish(ev *event, from *client) {
	st.seq++
	ev.seq = st.seq
	ev.sampled = ev.seq%lagSampleEvery == 0
	st.opts.metrics.message()
	st.published = append(st.published, publication{ev, from})
}

// flushPublished hands what this wake-up published to the history logger,
// which stores it and hands it back to deliver; without a store it is
// delivered at once.
func (st *state) flushPublished() {
	if len(st.published) == 0 {
		return
	}
	if st.toLog != nil {
		st.toLog(st.published)
		st.published = nil // the logger owns it now
		return
	}
	st.deliver(st.published)
	clear(st.published)
	st.published = st.published[:0]
}

// deliver fans public messages out, in order, and remembers them; what
// was held back behind each (send) follows it, before the next.
func (st *state) deliver(ps []publication) {
	for _, p := range ps {
		st.remember(p.ev)
		st.shown = p.ev.seq
		for cli := range st.clients {
			if cli != p.from {
				st.enqueue(cli, p.ev)
			}
		}
		st.releaseHeld()
	}
}

// heldEvent is an event for cli that waits for the public messages up to
// after to be delivered first.
type heldEvent struct {
	cli   *client
	ev    *event
	after uint64
}

// storeBehind reports whether so many public messages are on their way to
// the store (a stalled disk) that, with what they hold back, they would
// fill the clients' queues when they come: users' new lines are then
// refused, and said so, rather than left to pile up and have every client
// dropped as too slow once the disk is back. Logged once per stall.
func (st *state) storeBehind() bool {
	behind := st.opts.stored != nil && st.opts.queue > 0 && st.seq-st.shown >= uint64(max(st.opts.queue/2, 1))
	if behind && !st.behindSaid {
		st.behindSaid = true
		st.log.Warn("history: the store is behind; users' new lines are refused until it catches up", "on_their_way", st.seq-st.shown)
	} else if !behind {
		st.behindSaid = false
	}
	return behind
}

// hold keeps ev for cli until the public messages published so far have
// been delivered. A client holds at most half what its queue does, so that
// the lines and what they held fit in it when they come. Past that the
// store is far behind, and the event is queued at once, out of order,
// rather than held without bound.
func (st *state) hold(cli *client, ev *event) {
	if cli.held >= cap(cli.out)/2 {
		if !st.heldFull {
			st.heldFull = true
			st.log.Warn("history: the store is behind; events are no longer held behind the public messages being stored", "held", len(st.held))
		}
		st.enqueue(cli, ev)
		return
	}
	cli.held++
	st.held = append(st.held, heldEvent{cli, ev, st.seq})
}

// releaseHeld queues the held events whose public messages have been
// delivered, in order, for the clients still in the room.
func (st *state) releaseHeld() {
	i := 0
	for ; i < len(st.held) && st.held[i].after <= st.shown; i++ {
		if h := st.held[i]; h.cli != nil {
			h.cli.held--
			st.enqueue(h.cli, h.ev)
		}
	}
	clear(st.held[:i])
	st.held = st.held[i:]
	if len(st.held) == 0 {
		st.heldFull = false
	}
}

// releaseHeldFor queues what is held for cli, which is leaving: it will not
// see the public messages those events wait for, and must not miss them.
func (st *state) releaseHeldFor(cli *client) {
	for i := 0; cli.held > 0 && i < len(st.held); i++ {
		if h := st.held[i]; h.cli == cli {
			cli.held--
			st.enqueue(cli, h.ev)
			st.held[i].cli = nil // released
		}
	}
}

// historyLogger writes public messages to the store's log, off the
// broadcaster: a write to the log costs a system call, which would hold up
// everything the broadcaster does. What the broadcaster hands it while a
// write is under way goes in the next one, so a busy room costs a write per
// batch, not per message. Logged messages go back to the broadcaster, in
// order, to be delivered: after a crash every message anyone received is
// in the log.
type historyLogger struct {
	stored storedHistory
	log    *slog.Logger
	m      *metrics

	mu      sync.Mutex
	pending []publication
	wake    chan struct{} // something is pending
}

func newHistoryLogger(stored storedHistory, log *slog.Logger, m *metrics) *historyLogger {
	return &historyLogger{stored: stored, log: log, m: m, wake: make(chan struct{}, 1)}
}

// add queues ps; it never blocks.
func (l *historyLogger) add(ps []publication) {
	l.mu.Lock()
	l.pending = append(l.pending, ps...)
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// run logs what is queued and hands it to logged, until done is closed;
// then it logs what is left, so that no accepted message goes unstored.
func (l *historyLogger) run(logged chan<- []publication, done <-chan struct{}) {
	for {
		select {
		case <-l.wake:
		case <-done:
			l.write(l.take())
			return
		}
		ps := l.take()
		l.write(ps)
		select {
		case logged <- ps:
		case <-done:
			return
		}
	}
}

func (l *historyLogger) take() []publication {
	l.mu.Lock()
	defer l.mu.Unlock()
	ps := l.pending
	l.pending = nil
	return ps
}

// write stores ps with one write to the store's log. Messages that could
// not be stored are delivered anyway, and said so.
func (l *historyLogger) write(ps []publication) {
	if len(ps) == 0 {
		return
	}
	msgs := make([]store.Message, len(ps))
	for i, p := range ps {
		kind := store.Chat
		if p.ev.kind == eventAction {
			kind = store.Action
		}
		msgs[i] = store.Message{Seq: p.ev.seq, At: p.ev.at, From: p.ev.from, Kind: kind, Text: p.ev.text}
	}
	if err := l.stored.Log(msgs); err != nil {
		l.log.Error("history: messages not stored; delivered anyway", "count", len(msgs), "first", msgs[0].Seq, "err", err)
		for range msgs {
			l.m.notStored()
		}
	}
}

// left records when a user's last session left, for their catch-up.
func (st *state) left(name string, at time.Time) {
	st.rememberSeen(map[string]store.Seen{name: {At: at, Seq: st.shown}})
}

// rememberSeen records where users' catch-up starts, in one write.
func (st *state) rememberSeen(seen map[string]store.Seen) {
	maps.Copy(st.lastSeen, seen)
	if st.opts.stored == nil || len(seen) == 0 {
		return
	}
	log := st.log
	if !st.opts.stored.Submit(store.Batch{Seen: seen}, func(err error) {
		if err != nil {
			log.Error("history: when users left was not stored", "users", len(seen), "err", err)
		}
	}) {
		log.Error("history: the store is not keeping up; when users left was not stored", "users", len(seen))
	}
}

// welcome queues what a joining session sees, as one event: a user's first
// session since they left catches up on what they missed, others see the
// last few messages; then the message of the day, who is online and a hint.
func (st *state) welcome(cli *client) {
	now := st.now()
	var lines []*event
	seen, returning := st.lastSeen[cli.name]
	// A departure from the shared history comes after lines this node may
	// not have stored yet: the user saw those.
	seen.Seq = min(seen.Seq, st.shown)
	if returning && st.users[cli.name].sessions == 1 {
		missed := st.shown - seen.Seq
		replay := st.after(seen.Seq, st.opts.catchup)
		switch {
		case missed == 0:
			lines = append(lines, noticeEvent(fmt.Sprintf("No new messages since you left at %s.", stamp(seen.At, now))))
		case uint64(len(replay)) == missed:
			lines = append(lines, noticeEvent(fmt.Sprintf("%d %s since you left at %s:", missed, plural(missed, "message"), stamp(seen.At, now))))
		default:
			lines = append(lines, noticeEvent(fmt.Sprintf("%d %s since you left at %s (showing the last %d):", missed, plural(missed, "message"), stamp(seen.At, now), len(replay))))
		}
		lines = appendReplay(lines, replay, now)
	} else {
		lines = appendReplay(lines, st.last(st.opts.history), now)
	}
	if motd := st.motd(); motd != "" {
		lines = append(lines, noticeEvent("Message of the day: "+motd))
	}
	lines = append(lines, noticeEvent(st.onlineLine()), noticeEvent("Type /help for commands."), noticeEvent("You are "+cli.name))
	cli.out <- groupEvent(lines) // the queue is empty: this cannot block
}

func appendReplay(lines, replay []*event, now time.Time) []*event {
	for _, ev := range replay {
		lines = append(lines, ev.replay(now))
	}
	return lines
}

// onlineLine is "K online: alice, bob, …".
func (st *state) onlineLine() string {
	names := st.onlineNames()
	shown := names[:min(len(names), maxNamesInWelcome)]
	line := fmt.Sprintf("%d online: %s", len(names), strings.Join(shown, ", "))
	if more := len(names) - len(shown); more > 0 {
		line += fmt.Sprintf(" and %d more", more)
	}
	return line
}

// stamp formats when a user left: the time if it was today, else the date
// and time.
func stamp(at, now time.Time) string {
	if at.UTC().Format(time.DateOnly) == now.UTC().Format(time.DateOnly) {
		return at.UTC().Format(timeLayout)
	}
	return at.UTC().Format(dateTimeLayout)
}

// plural returns one if n is 1, else many (word+"s" if many is not given).
func plural(n uint64, one string, many ...string) string {
	switch {
	case n == 1:
		return one
	case len(many) > 0:
		return many[0]
	}
	return one + "s"
}

func cmdHistory(st *state, cli *client, _ *user, arg string) {
	n := defaultHistoryShown
	if arg != "" {
		if _, err := fmt.Sscan(arg, &n); err != nil || n <= 0 {
			st.notify(cli, "Usage: /history [N]")
			return
		}
	}
	n = min(n, maxHistoryShown)
	shown := st.last(n)
	if len(shown) == 0 {
		st.notify(cli, "No messages yet.")
		return
	}
	st.send(cli, groupEvent(appendReplay(nil, shown, st.now())))
}
