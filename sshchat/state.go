package sshchat

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"golang.org/x/time/rate"
)

// state is everything the broadcaster owns. Only the broadcaster goroutine
// holds a *state, so none of it needs a lock.
type state struct {
	clients map[*client]struct{}
	users   map[string]*user // by name: everyone online, and who left lately
	online  onlineSet        // everyone in the room, here or on another node
	dropped []dropRequest    // clients to drop once the current fan-out ends
	closed  bool
	queued  int // events queued since the last count, for metrics

	history // public messages, and when users last left
	news    presenceNews
	peers   map[string]*peerNode // the other nodes of the cluster, by name
	shared  sharedHistory        // how far the cluster's shared history is copied

	opts roomOptions
	now  func() time.Time
	// do runs a function on the broadcaster later, from another goroutine;
	// offload hands work to the room's worker goroutine.
	do      func(func(*state))
	offload func(job func()) bool
}

type roomOptions struct {
	history     int        // public events replayed to a first-time joiner
	catchup     int        // public events replayed to a returning user, at most
	rate        rate.Limit // lines per second per user; 0 = unlimited
	burst       int
	maxPerUser  int        // sessions per user; 0 = unlimited
	sessionRate rate.Limit // session starts per second per user; 0 = unlimited
	announceMax int        // users in the room above which arrivals and departures are summarised; 0 = no limit
	// refuse says why a user may not be in the room, or returns "". Nil
	// admits everyone.
	refuse func(name string, key identityKey) string

	directory  UserDirectory // nil: only users online can be found
	metrics    *metrics
	stored     storedHistory // nil: history is kept in memory only
	saved      savedHistory  // what the store held at start-up
	log        *slog.Logger
	moderation Moderation
	peers      Peers         // nil: this node is alone
	peerTTL    time.Duration // how long another node may stay silent
	maxLine    int           // bytes in a line from another node, at most
	queue      int           // events a client's queue holds
	keep       time.Duration // how long public messages are shown; 0 = for ever
}

// housekeepingEvery is how often the broadcaster does its housekeeping.
const housekeepingEvery = time.Second

// userLinger is how long the room remembers a user after their last session
// ends: long enough for every per-user limiter to refill, so that
// reconnecting does not reset them.
const userLinger = time.Minute

// Arrivals and departures announced per user: a burst, then one every
// announceEvery, so a reconnect loop cannot flood the room with them.
const (
	announceBurst = 3
	announceEvery = 20 * time.Second
)

// user is what the room knows about one name, across all its sessions.
type user struct {
	sessions  int           // in the chat
	quiet     int           // quiet clients
	lines     *rate.Limiter // nil: unlimited
	starts    *rate.Limiter // session starts; nil: unlimited
	announces *rate.Limiter
	announced bool // the arrival was announced, so the departure will be
	throttled bool // told about the rate limit since its last accepted line
	// Lines refused by the rate limit and not yet told, the session to
	// tell, and when it was last told.
	refused   int
	refusedBy *client
	toldAt    time.Time
	away      string
	replyTo   string // last user who sent this one a private message
	lastActive,
	leftAt time.Time
}

type dropRequest struct {
	cli    *client
	reason hangup
}

func newState(opts roomOptions, now func() time.Time) *state {
	st := &state{
		clients: make(map[*client]struct{}),
		users:   make(map[string]*user),
		peers:   make(map[string]*peerNode),
		opts:    opts,
		now:     now,
	}
	st.history.log = opts.log
	if st.history.log == nil {
		st.history.log = slog.New(slog.DiscardHandler)
	}
	st.loadHistory(opts.saved)
	return st
}

// has reports whether cli is in the room.
func (st *state) has(cli *client) bool {
	_, ok := st.clients[cli]
	return ok
}

// user returns the record for name, creating it if the room has none.
func (st *state) user(name string) *user {
	u := st.users[name]
	if u == nil {
		u = &user{announces: rate.NewLimiter(rate.Every(announceEvery), announceBurst)}
		if st.opts.rate > 0 {
			u.lines = rate.NewLimiter(st.opts.rate, st.opts.burst)
		}
		if st.opts.sessionRate > 0 {
			u.starts = rate.NewLimiter(st.opts.sessionRate, max(st.opts.maxPerUser, 1))
		}
		st.users[name] = u
	}
	return u
}

// admit says why cli may not join, if it may not.
func (st *state) admit(cli *client, u *user) (why hangup, ok bool) {
	name := cli.name
	if st.opts.refuse != nil {
		if why := st.opts.refuse(name, cli.key); why != "" {
			return hangup{notice: why, closeConn: true}, false
		}
	}
	switch {
	case st.opts.maxPerUser > 0 && u.sessions+u.quiet+st.sessionsElsewhere(name) >= st.opts.maxPerUser:
		return hangup{notice: fmt.Sprintf("Too many sessions for %s (at most %d).", name, st.opts.maxPerUser)}, false
	case u.starts != nil && !u.starts.Allow():
		return hangup{notice: fmt.Sprintf("Too many new sessions for %s; wait a few seconds and try again.", name)}, false
	}
	return hangup{}, true
}

func (st *state) join(cli *client) {
	u := st.user(cli.name)
	if why, ok := st.admit(cli, u); !ok {
		cli.hangup = why
		close(cli.out)
		return
	}
	if cli.quiet {
		u.quiet++
		st.clients[cli] = struct{}{}
		return
	}
	if u.sessions++; u.sessions == 1 {
		st.online.add(cli.name)
		st.opts.metrics.userOnline(1)
		u.lastActive = st.now()
		u.announced = u.announces.Allow()
		if u.announced && !st.elsewhere(cli.name, nil) {
			st.announcePresence(eventJoin, cli.name)
		}
		st.tellPeers(PeerEvent{Kind: PeerJoin, From: cli.name, Announce: u.announced})
	} else {
		st.tellPeers(PeerEvent{Kind: PeerCount, From: cli.name, Count: u.sessions})
	}
	st.clients[cli] = struct{}{}
	st.welcome(cli)
}

// drop removes cli from the room and, if it was the user's last session,
// announces the departure.
func (st *state) drop(cli *client, why hangup) {
	st.remove(cli, why)
	if u := st.users[cli.name]; !cli.quiet && u.sessions == 0 && u.announced {
		u.announced = false
		if !st.elsewhere(cli.name, nil) {
			st.announcePresence(eventLeave, cli.name)
		}
	}
}

// remove takes cli out of the room and closes its queue; its writer then
// says why and hangs up.
func (st *state) remove(cli *client, why hangup) {
	st.releaseHeldFor(cli)
	delete(st.clients, cli)
	cli.hangup = why
	close(cli.out)
	u := st.users[cli.name]
	if cli.quiet {
		u.quiet--
		return
	}
	if u.sessions--; u.sessions == 0 {
		st.online.remove(cli.name)
		st.opts.metrics.userOnline(-1)
		u.leftAt, u.away, u.replyTo = st.now(), "", ""
		st.left(cli.name, u.leftAt)
		st.tellPeers(PeerEvent{Kind: PeerLeave, From: cli.name, Announce: u.announced})
		st.tellLeft(cli.name)
	} else {
		st.tellPeers(PeerEvent{Kind: PeerCount, From: cli.name, Count: u.sessions})
	}
}

// countQueued hands the number of events queued to the metrics, once per
// broadcaster wake-up rather than once per delivery.
func (st *state) countQueued() {
	st.opts.metrics.delivered(st.queued)
	st.queued = 0
}

// housekeeping runs every housekeepingEvery: it announces the arrivals and
// departures collected, tells users how many lines the rate limit refused
// lately and forgets users gone for longer than userLinger.
func (st *state) housekeeping() {
	st.expirePeers()
	st.publishRoster()
	st.saveSharedPosition(false)
	st.announceSummaries()
	now := st.now()
	st.forgetExpired(st.opts.keep, now)
	for name, u := range st.users {
		switch {
		case u.refused > 0 && now.Sub(u.toldAt) >= time.Second:
			st.tellRefused(u)
		case u.sessions == 0 && u.quiet == 0 && now.Sub(u.leftAt) > userLinger:
			delete(st.users, name)
		}
	}
}

// flushDropped drops the clients whose queues overflowed during fan-out.
// Dropping announces a departure, which is itself a fan-out, so it is done
// here rather than in the middle of another.
func (st *state) flushDropped() {
	// Each drop may overflow more queues and so append to st.dropped.
	for i := 0; i < len(st.dropped); i++ {
		if d := st.dropped[i]; st.has(d.cli) {
			st.drop(d.cli, d.reason)
		}
	}
	clear(st.dropped)
	st.dropped = st.dropped[:0]
}

// broadcast sends ev to every client but except.
func (st *state) broadcast(ev *event, except *client) {
	for cli := range st.clients {
		if cli != except {
			st.send(cli, ev)
		}
	}
}

// send queues ev for cli without ever blocking: a client whose queue is full
// is not keeping up and is disconnected, so one stalled reader cannot hold up
// the room.
func (st *state) send(cli *client, ev *event) {
	if st.seq > st.shown {
		// Public messages are on their way to the store: what is sent
		// now follows them.
		st.hold(cli, ev)
		return
	}
	st.enqueue(cli, ev)
}

// enqueue puts ev on cli's queue or, if it is full, marks cli to be
// dropped.
func (st *state) enqueue(cli *client, ev *event) {
	select {
	case cli.out <- ev:
		st.queued++
	default:
		if !cli.overflowed {
			cli.overflowed = true
			st.opts.metrics.slowDrop()
			st.dropped = append(st.dropped, dropRequest{cli, hangup{
				notice:    fmt.Sprintf("Disconnected: you were not reading fast enough (%d messages queued).", cap(cli.out)),
				closeConn: true,
			}})
		}
	}
}

// sendUser sends ev to every session of name.
func (st *state) sendUser(name string, ev *event) {
	for cli := range st.clients {
		if cli.name == name && !cli.quiet {
			st.send(cli, ev)
		}
	}
}

func (st *state) notify(cli *client, text string) {
	st.send(cli, noticeEvent(text))
}

func (st *state) handle(msg message) {
	cli, u := msg.from, st.users[msg.from.name]
	if msg.notice != "" {
		st.notify(cli, msg.notice)
		return
	}
	if !msg.paced && u.lines != nil && !u.lines.Allow() {
		st.opts.metrics.rateLimit()
		st.refuse(cli, u)
		return
	}
	st.tellRefused(u)
	u.throttled = false
	u.lastActive = st.now()

	text := msg.text
	if !strings.HasPrefix(text, "/") || strings.HasPrefix(text, "//") {
		st.say(cli, eventChat, strings.TrimPrefix(text, "/"))
		return
	}
	cmd, arg, _ := strings.Cut(text, " ")
	arg = strings.TrimSpace(arg)
	c, ok := commands[cmd]
	switch {
	case !ok:
		st.notify(cli, fmt.Sprintf("Unknown command %s; try /help.", cmd))
	case c.forOperators && !st.isOperator(cli.name):
		st.notify(cli, fmt.Sprintf("Only operators can use %s.", cmd))
	default:
		c.run(st, cli, u, arg)
	}
}

// refuse tells cli that its line was refused by the rate limit: the first
// at once, the next ones as a count at most once a second (the housekeeping
// tick or the next accepted line tells the rest), so that refusing a flood
// is not a flood itself.
func (st *state) refuse(cli *client, u *user) {
	now := st.now()
	if !u.throttled {
		u.throttled, u.toldAt = true, now
		st.notify(cli, fmt.Sprintf("Slow down: at most %g messages per second; that line was not sent.", float64(st.opts.rate)))
		return
	}
	u.refused++
	u.refusedBy = cli
	if now.Sub(u.toldAt) >= time.Second {
		st.tellRefused(u)
	}
}

// tellRefused tells u how many lines the rate limit refused since it was
// last told.
func (st *state) tellRefused(u *user) {
	if u.refused == 0 {
		return
	}
	if st.has(u.refusedBy) {
		st.notify(u.refusedBy, fmt.Sprintf("Slow down: %d more %s not sent.", u.refused, plural(uint64(u.refused), "line was", "lines were")))
	}
	u.refused, u.refusedBy, u.toldAt = 0, nil, st.now()
}

// say publishes a public line from cli, unless cli's user is muted.
func (st *state) say(cli *client, kind eventKind, text string) {
	if m, ok := st.muted(cli.name); ok {
		st.notify(cli, "You are muted"+sanctionDetails(m)+"; that line was not sent. You can still read.")
		return
	}
	if st.storeBehind() {
		// Answered at once, not held behind the lines being stored.
		st.enqueue(cli, noticeEvent("The server is busy saving messages; that line was not sent. Try again in a moment."))
		return
	}
	st.publish(st.newEvent(kind, cli.name, text), cli)
	peerKind := PeerSay
	if kind == eventAction {
		peerKind = PeerAction
	}
	st.tellPeers(PeerEvent{Kind: peerKind, From: cli.name, Text: text})
}

func (st *state) newEvent(kind eventKind, from, text string) *event {
	return newEvent(kind, from, text, st.now())
}

// onlineNames returns the names of users with a session, here or on
// another node, sorted. The slice changes as they come and go: copy it to
// keep it.
func (st *state) onlineNames() []string { return st.online.names() }

// post publishes text from a quiet client, saying why not if it may not.
func (st *state) post(cli *client, text string) (why string) {
	u := st.users[cli.name]
	switch _, muted := st.muted(cli.name); {
	case !st.has(cli):
		return "disconnected"
	case muted:
		return "muted"
	case u.lines != nil && !u.lines.Allow():
		st.opts.metrics.rateLimit()
		return "over the rate limit"
	case st.storeBehind():
		return "the server is busy saving messages; try again in a moment"
	}
	u.lastActive = st.now()
	st.publish(st.newEvent(eventChat, cli.name, text), nil)
	st.tellPeers(PeerEvent{Kind: PeerSay, From: cli.name, Text: text})
	return ""
}
