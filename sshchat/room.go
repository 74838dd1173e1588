package sshchat

import (
	"fmt"
	"slices"
	"strings"
	"time"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/time/rate"
)

// Room is the chat room: the gopl.io ch8 design. One broadcaster goroutine
// (run) owns the set of clients and every per-user record; session handlers
// talk to it only through the entering, leaving and messages channels (and
// control, for the rare server-side operations). Nothing else touches the
// client set, so it needs no mutex.
type Room struct {
	entering chan *client
	leaving  chan *client
	messages chan message
	control  chan func()
	done     chan struct{} // closed when the broadcaster has stopped

	// Owned by the broadcaster goroutine.
	clients map[*client]struct{}
	users   map[string]*user // by name, for everyone with a session
	history []*event         // last public events, oldest first
	dropped []dropRequest    // clients to drop once the current fan-out ends
	closed  bool

	opts roomOptions
	now  func() time.Time
}

type roomOptions struct {
	history    int        // public events replayed to a joiner
	rate       rate.Limit // lines per second per user; 0 = unlimited
	burst      int
	maxPerUser int // sessions per user; 0 = unlimited
}

// user is what the room knows about one name, across all its sessions.
type user struct {
	sessions   int
	limiter    *rate.Limiter
	throttled  bool // told about the rate limit since its last accepted line
	away       string
	lastActive time.Time
	replyTo    string // last user who sent this one a private message
}

// message is one line a client typed, already sanitised, or a notice the
// session handler needs shown to its own client (only the broadcaster sends
// on a client's queue).
type message struct {
	from   *client
	text   string
	notice string
}

type dropRequest struct {
	cli    *client
	reason hangup
}

func newRoom(opts roomOptions, now func() time.Time) *Room {
	r := &Room{
		entering: make(chan *client),
		leaving:  make(chan *client),
		// Unbuffered, like entering and leaving: a sender's line is taken
		// before its leave can be, so "echo hi | ssh ..." delivers hi.
		messages: make(chan message),
		control:  make(chan func()),
		done:     make(chan struct{}),
		clients:  make(map[*client]struct{}),
		users:    make(map[string]*user),
		opts:     opts,
		now:      now,
	}
	go r.run()
	return r
}

func (r *Room) run() {
	defer close(r.done)
	for !r.closed {
		select {
		case cli := <-r.entering:
			r.join(cli)
		case cli := <-r.leaving:
			if r.has(cli) { // else already dropped
				r.drop(cli, hangup{})
			}
		case msg := <-r.messages:
			if r.has(msg.from) {
				r.handle(msg)
			}
		case fn := <-r.control:
			fn()
		}
		r.flushDropped()
	}
}

// has reports whether cli is in the room.
func (r *Room) has(cli *client) bool {
	_, ok := r.clients[cli]
	return ok
}

// do runs fn on the broadcaster goroutine and waits for it; if the room has
// stopped, fn does not run.
func (r *Room) do(fn func()) {
	finished := make(chan struct{})
	select {
	case r.control <- func() { fn(); close(finished) }:
		<-finished
	case <-r.done:
	}
}

// Close tells every client why the room is closing, disconnects them all
// (without announcing each departure to the others) and stops the
// broadcaster.
func (r *Room) Close(reason string) {
	r.do(func() {
		for cli := range r.clients {
			r.remove(cli, hangup{notice: reason, closeConn: true})
		}
		r.closed = true
	})
	<-r.done
}

// Revoke disconnects every client for which stillAllowed reports false,
// telling it why.
func (r *Room) Revoke(stillAllowed func(name string, key gossh.PublicKey) bool, why string) {
	r.do(func() {
		for cli := range r.clients {
			if !stillAllowed(cli.name, cli.key) {
				r.drop(cli, hangup{notice: why, closeConn: true})
			}
		}
	})
}

// kick disconnects cli, if it is still in the room, telling it why.
func (r *Room) kick(cli *client, why hangup) {
	r.do(func() {
		if r.has(cli) {
			r.drop(cli, why)
		}
	})
}

// Names returns the names of everyone online, sorted, or nil if the room has
// stopped.
func (r *Room) Names() []string {
	var names []string
	r.do(func() {
		for name := range r.users {
			names = append(names, name)
		}
	})
	slices.Sort(names)
	return names
}

func (r *Room) join(cli *client) {
	u := r.users[cli.name]
	if u != nil && r.opts.maxPerUser > 0 && u.sessions >= r.opts.maxPerUser {
		cli.hangup = hangup{notice: fmt.Sprintf("Too many sessions for %s (at most %d).", cli.name, r.opts.maxPerUser)}
		close(cli.out)
		return
	}
	if u == nil {
		u = &user{lastActive: r.now()}
		if r.opts.rate > 0 {
			u.limiter = rate.NewLimiter(r.opts.rate, r.opts.burst)
		}
		r.users[cli.name] = u
	}
	u.sessions++
	r.clients[cli] = struct{}{}
	// The queue holds at least the replay (see Config.normalize), so these
	// sends cannot block.
	for _, ev := range r.history {
		cli.out <- ev.replay()
	}
	cli.out <- noticeEvent("You are " + cli.name)
	r.broadcast(r.newEvent(eventJoin, cli.name, ""), cli)
}

// drop removes cli from the room and announces the departure.
func (r *Room) drop(cli *client, why hangup) {
	r.remove(cli, why)
	r.broadcast(r.newEvent(eventLeave, cli.name, ""), nil)
}

// remove takes cli out of the room and closes its queue; its writer then
// says why and hangs up.
func (r *Room) remove(cli *client, why hangup) {
	delete(r.clients, cli)
	cli.hangup = why
	close(cli.out)
	u := r.users[cli.name]
	if u.sessions--; u.sessions == 0 {
		delete(r.users, cli.name)
	}
}

// flushDropped drops the clients whose queues overflowed during fan-out.
// Dropping announces a departure, which is itself a fan-out, so it is done
// here rather than in the middle of another.
func (r *Room) flushDropped() {
	// Each drop may overflow more queues and so append to r.dropped.
	for i := 0; i < len(r.dropped); i++ {
		if d := r.dropped[i]; r.has(d.cli) {
			r.drop(d.cli, d.reason)
		}
	}
	clear(r.dropped)
	r.dropped = r.dropped[:0]
}

// broadcast sends ev to every client but except.
func (r *Room) broadcast(ev *event, except *client) {
	for cli := range r.clients {
		if cli != except {
			r.send(cli, ev)
		}
	}
}

// send queues ev for cli without ever blocking: a client whose queue is full
// is not keeping up and is disconnected, so one stalled reader cannot hold up
// the room.
func (r *Room) send(cli *client, ev *event) {
	select {
	case cli.out <- ev:
	default:
		if !cli.overflowed {
			cli.overflowed = true
			r.dropped = append(r.dropped, dropRequest{cli, hangup{
				notice:    fmt.Sprintf("Disconnected: you were not reading fast enough (%d messages queued).", cap(cli.out)),
				closeConn: true,
			}})
		}
	}
}

// sendUser sends ev to every session of name and reports whether there was
// one.
func (r *Room) sendUser(name string, ev *event) bool {
	found := false
	for cli := range r.clients {
		if cli.name == name {
			r.send(cli, ev)
			found = true
		}
	}
	return found
}

func (r *Room) notify(cli *client, text string) {
	r.send(cli, noticeEvent(text))
}

func (r *Room) handle(msg message) {
	cli, u := msg.from, r.users[msg.from.name]
	if msg.notice != "" {
		r.notify(cli, msg.notice)
		return
	}
	if u.limiter != nil && !u.limiter.Allow() {
		if !u.throttled {
			u.throttled = true
			r.notify(cli, fmt.Sprintf("Slow down: at most %g messages per second; that line was not sent.", float64(r.opts.rate)))
		}
		return
	}
	u.throttled = false
	u.lastActive = r.now()

	text := msg.text
	if !strings.HasPrefix(text, "/") || strings.HasPrefix(text, "//") {
		text = strings.TrimPrefix(text, "/")
		r.publish(r.newEvent(eventChat, cli.name, text), cli)
		return
	}
	cmd, arg, _ := strings.Cut(text, " ")
	arg = strings.TrimSpace(arg)
	if c, ok := commands[cmd]; ok {
		c.run(r, cli, u, arg)
		return
	}
	r.notify(cli, fmt.Sprintf("Unknown command %s; try /help.", cmd))
}

// publish fans a public event out and keeps it for scrollback.
func (r *Room) publish(ev *event, from *client) {
	if r.opts.history > 0 {
		if len(r.history) == r.opts.history {
			copy(r.history, r.history[1:])
			r.history = r.history[:len(r.history)-1]
		}
		r.history = append(r.history, ev)
	}
	r.broadcast(ev, from)
}

func (r *Room) newEvent(kind eventKind, from, text string) *event {
	return newEvent(kind, from, text, r.now())
}
