package sshchat

import (
	"cmp"
	"slices"
	"strings"
	"time"
)

// room is the chat room, in the gopl.io ch8 design: one broadcaster
// goroutine owns the set of clients, and sessions talk to it only through
// enter, leave and say. The set lives in a state value that broadcaster
// creates and never shares, so nothing else can touch it: the rare
// server-side operations (kick, revoke, names, close) run as functions the
// broadcaster calls with its state.
type room struct {
	entering chan *client
	leaving  chan *client
	messages chan message
	peer     chan PeerEvent // what other nodes tell this one
	control  chan func(*state)
	logged   chan []publication // public messages the history logger has stored
	done     chan struct{}      // closed when the broadcaster has stopped

	// The room's worker runs what must not hold up the broadcaster (file
	// writes for moderation), one job at a time, in order.
	jobs       chan func()
	workerDone chan struct{}
	loggerDone chan struct{} // closed when the history logger has stopped; nil without a store
}

// maxPendingJobs bounds the moderation changes waiting to be written.
const maxPendingJobs = 64

// message is one line a client typed, already sanitised, or a notice the
// session handler needs shown to its own client (only the broadcaster sends
// on a client's queue).
type message struct {
	from   *client
	text   string
	notice string
	paced  bool // a pasted line that waited for its turn (room.reserve)
}

func newRoom(opts roomOptions, now func() time.Time) *room {
	r := &room{
		entering: make(chan *client),
		leaving:  make(chan *client),
		// Unbuffered, like entering and leaving: a sender's line is taken
		// before its leave can be, so "echo hi | ssh ..." delivers hi.
		messages:   make(chan message),
		logged:     make(chan []publication),
		peer:       make(chan PeerEvent),
		control:    make(chan func(*state)),
		done:       make(chan struct{}),
		jobs:       make(chan func(), maxPendingJobs),
		workerDone: make(chan struct{}),
	}
	if opts.stored != nil {
		r.loggerDone = make(chan struct{})
	}
	go r.broadcaster(opts, now)
	go r.worker()
	return r
}

func (r *room) worker() {
	defer close(r.workerDone)
	for job := range r.jobs {
		job()
	}
}

// offload queues job for the worker, reporting false if too many are
// waiting. Only the broadcaster calls it, so it never races close.
func (r *room) offload(job func()) bool {
	select {
	case r.jobs <- job:
		return true
	default:
		return false
	}
}

// broadcaster creates the room's state and is the only one to hold it.
func (r *room) broadcaster(opts roomOptions, now func() time.Time) {
	defer close(r.done)
	st := newState(opts, now)
	st.do, st.offload = r.do, r.offload
	if opts.stored != nil {
		logger := newHistoryLogger(opts.stored, st.log, opts.metrics)
		st.toLog = logger.add
		go func() {
			defer close(r.loggerDone)
			logger.run(r.logged, r.done)
		}()
	}
	tick := time.NewTicker(housekeepingEvery)
	defer tick.Stop()
	for !st.closed {
		select {
		case cli := <-r.entering:
			st.join(cli)
		case cli := <-r.leaving:
			if st.has(cli) { // else already dropped
				st.drop(cli, hangup{})
			}
		case msg := <-r.messages:
			if st.has(msg.from) {
				st.handle(msg)
			}
		case ps := <-r.logged:
			st.deliver(ps)
		case ev := <-r.peer:
			st.fromPeer(ev)
		case fn := <-r.control:
			fn(st)
		case <-tick.C:
			st.housekeeping()
		}
		// Publishing first: its fan-out may overflow queues, whose
		// clients flushDropped then drops, and it counts as queued.
		st.flushPublished()
		st.flushDropped()
		st.countQueued()
	}
}

// enter adds cli to the room, reporting false if the room has stopped. The
// room closes cli.out when cli leaves or is let go.
func (r *room) enter(cli *client) bool {
	select {
	case r.entering <- cli:
		return true
	case <-r.done:
		return false
	}
}

// leave takes cli out of the room, if it is still in.
func (r *room) leave(cli *client) {
	select {
	case r.leaving <- cli:
	case <-r.done:
	}
}

// say hands the room a line from msg.from, reporting false if the room has
// stopped.
func (r *room) say(msg message) bool {
	select {
	case r.messages <- msg:
		return true
	case <-r.done:
		return false
	}
}

// do runs fn on the broadcaster goroutine and waits for it; if the room has
// stopped, fn does not run.
func (r *room) do(fn func(*state)) {
	finished := make(chan struct{})
	select {
	case r.control <- func(st *state) { fn(st); close(finished) }:
		<-finished
	case <-r.done:
	}
}

// close tells every client why the room is closing, disconnects them all
// (without announcing each departure to the others), stops the broadcaster
// and waits for the worker to finish what it was given.
func (r *room) close(reason string) {
	r.do(func(st *state) {
		for cli := range st.clients {
			st.remove(cli, hangup{notice: reason, closeConn: true})
		}
		st.closed = true
		st.tellPeers(PeerEvent{Kind: PeerBye})
		st.saveSharedPosition(true)
	})
	<-r.done
	if r.loggerDone != nil {
		<-r.loggerDone // it stores what was published last
	}
	select {
	case <-r.workerDone:
	default:
		close(r.jobs)
		<-r.workerDone
	}
}

// revoke disconnects every client for which verdict returns a reason,
// telling it that reason.
func (r *room) revoke(verdict func(name string, key identityKey) (reason string)) {
	r.do(func(st *state) {
		for cli := range st.clients {
			if why := verdict(cli.name, cli.key); why != "" {
				st.drop(cli, hangup{notice: why, closeConn: true})
			}
		}
	})
}

// maxPasteWait is the longest a pasted line waits for its turn under the
// rate limit; the rest of a longer paste is not sent.
const maxPasteWait = 30 * time.Second

// reserve books one line of the rate limit of cli's user for a pasted line
// and returns how long to wait before saying it (with message.paced set),
// or false if that would be longer than maxPasteWait.
func (r *room) reserve(cli *client) (wait time.Duration, ok bool) {
	r.do(func(st *state) {
		u := st.users[cli.name]
		if !st.has(cli) || u.lines == nil {
			ok = st.has(cli)
			return
		}
		now := st.now()
		res := u.lines.ReserveN(now, 1)
		if wait = res.DelayFrom(now); res.OK() && wait <= maxPasteWait {
			ok = true
			return
		}
		res.CancelAt(now)
	})
	return wait, ok
}

// kick disconnects cli, if it is still in the room, telling it why.
func (r *room) kick(cli *client, why hangup) {
	r.do(func(st *state) {
		if st.has(cli) {
			st.drop(cli, why)
		}
	})
}

// names returns the names of everyone online, sorted, or nil if the room has
// stopped.
func (r *room) names() []string {
	var names []string
	r.do(func(st *state) { names = slices.Clone(st.onlineNames()) })
	return names
}

// admitted reports whether the room let cli in after enter, and if not,
// why.
func (r *room) admitted(cli *client) (why string, refused bool) {
	in := false
	r.do(func(st *state) { in = st.has(cli) })
	if in {
		return "", false
	}
	return cmp.Or(cli.hangup.notice, "the server is shutting down"), true
}

// post publishes text from the quiet client cli, or says why not.
func (r *room) post(cli *client, text string) (why string) {
	why = "the server is shutting down"
	r.do(func(st *state) { why = st.post(cli, text) })
	return why
}

// presence lists the users online.
func (r *room) presence() []presence {
	var list []presence
	r.do(func(st *state) {
		now := st.now()
		for _, name := range st.onlineNames() {
			p := presence{Name: name, Nodes: strings.Join(st.nodesOf(name), ", ")}
			if u := st.users[name]; u != nil && u.sessions > 0 {
				p.Sessions, p.Idle, p.Away = u.sessions, int64(now.Sub(u.lastActive)/time.Second), u.away
			} else {
				_, p.Away, _ = st.remoteUser(name)
			}
			list = append(list, p)
		}
	})
	return list
}

// recent returns the last n public messages.
func (r *room) recent(n int) []*event {
	var evs []*event
	r.do(func(st *state) { evs = slices.Clone(st.last(n)) })
	return evs
}
