package sshchat

import (
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/sshchat-dev/sshchat/keys"
	"github.com/sshchat-dev/sshchat/store"
)

// Several nodes can share one room (package cluster links them over NATS).
// Each node's broadcaster still serves only its own users: it tells the
// other nodes, through Peers, what its users do (one PeerEvent per line,
// never one per delivery), and the events of the other nodes come back in
// through Server.FromPeer and are handled on the broadcaster like a local
// user's line, after the same sanitising and size checks. Every node
// announces its users once a housekeeping tick (a roster); a node not
// heard from for Config.PeerTTL is taken as gone, and its users as left.

// Peers carries what this node tells the other nodes of its cluster:
// cluster.Link. Publish must never block: it queues or drops (and counts
// and logs the drop itself).
type Peers interface {
	Publish(ev PeerEvent)
}

// PeerKind is what a PeerEvent tells.
type PeerKind string

// The kinds of PeerEvent.
const (
	PeerSay     PeerKind = "say"     // a public line: From, Text
	PeerAction  PeerKind = "action"  // a /me: From, Text
	PeerJoin    PeerKind = "join"    // From's first session on the node; Announce
	PeerLeave   PeerKind = "leave"   // From's last session on the node left; Announce
	PeerAway    PeerKind = "away"    // From is away (Text, the reason) or back (Text empty)
	PeerCount   PeerKind = "count"   // From has Count chat sessions on the node, one or more: a session more or less
	PeerPrivate PeerKind = "private" // a private message From to To: Text
	PeerRoster  PeerKind = "roster"  // everyone on the node: Users; also the node's heartbeat
	PeerBye     PeerKind = "bye"     // the node is shutting down: its users are gone
	PeerSeen    PeerKind = "seen"    // From left the room, on every node: where their catch-up starts
)

// PeerEvent is one thing a node tells the others. Node and Boot name the
// node that sent it, and its run (a restarted node has a new Boot); the
// link fills them in on the way out.
type PeerEvent struct {
	Kind     PeerKind
	Node     string
	Boot     string
	From     string
	To       string
	Text     string
	Announce bool // a join or leave the sending node announced, so the others do too
	Count    int  // PeerCount: From's chat sessions on the node
	Users    []PeerUser
	// Stream is the event's position in the cluster's shared history and
	// At when it was put there (see SharedHistory); 0 and zero for what
	// did not come through it.
	Stream uint64
	At     time.Time
}

// PeerUser is one user on a node, in a roster.
type PeerUser struct {
	Name     string
	Away     string
	Sessions int // chat sessions on the node; 0 from a node that does not say
}

// DefaultPeerTTL is how long a node may stay silent before the other
// nodes take its users as gone. Nodes send their roster every second.
const DefaultPeerTTL = 10 * time.Second

// maxRosterUsers bounds the users one roster may bring in.
const maxRosterUsers = 100_000

// maxPeerSessions bounds the sessions a node may say a user has there, so
// that a hostile count cannot overflow a sum.
const maxPeerSessions = 1 << 16

// peerNode is what this node knows of another node of the cluster.
type peerNode struct {
	boot  string
	heard time.Time
	shown uint64            // the room's last public message fanned out when the node was last heard
	users map[string]string // user name -> away reason
	// sessions counts each user's chat sessions on the node, from its
	// joins, leaves, counts and rosters: -max-sessions-per-user holds
	// across the cluster.
	sessions map[string]int
}

// FromPeer hands the room an event from another node, once the broadcaster
// takes it; it returns at once if the server has stopped. Nothing in ev is
// trusted: names are checked, text sanitised and size-checked, and what
// fails is logged and dropped.
func (s *Server) FromPeer(ev PeerEvent) {
	select {
	case s.room.peer <- ev:
	case <-s.room.done:
	}
}

// PeerLink tells the users that the link to the other nodes was lost (up
// false) or is back.
func (s *Server) PeerLink(up bool) {
	s.room.do(func(st *state) {
		if up {
			st.log.Info("cluster: link to the other nodes is back")
			st.announce("The link to the other nodes is back; messages reach the whole room again.")
			st.publishRoster()
			return
		}
		st.log.Warn("cluster: link to the other nodes lost")
		st.announce("The link to the other nodes was lost; messages stay on this node.")
	})
}

// tellPeers publishes ev to the other nodes, if there are any.
func (st *state) tellPeers(ev PeerEvent) {
	if st.opts.peers != nil {
		st.opts.peers.Publish(ev)
	}
}

// publishRoster tells the other nodes who is on this one; it is the node's
// heartbeat too.
func (st *state) publishRoster() {
	if st.opts.peers == nil {
		return
	}
	users := make([]PeerUser, 0, len(st.users))
	for name, u := range st.users {
		if u.sessions > 0 {
			users = append(users, PeerUser{Name: name, Away: u.away, Sessions: u.sessions})
		}
	}
	st.opts.peers.Publish(PeerEvent{Kind: PeerRoster, Users: users})
}

// peerText sanitises text from another node, reporting false if it is
// empty or longer than a local user may send.
func (st *state) peerText(text string) (string, bool) {
	text = strings.TrimSpace(Sanitize(text))
	return text, text != "" && len(text) <= st.opts.maxLine
}

// fromPeer handles an event from another node on the broadcaster.
func (st *state) fromPeer(ev PeerEvent) {
	drop := func(why string) {
		st.log.Warn("cluster: event from another node dropped", "why", why, "node", ev.Node, "kind", string(ev.Kind))
	}
	if ev.Node == "" || ev.Node != Sanitize(ev.Node) || ev.Boot == "" {
		drop("no valid node name and boot id")
		return
	}
	if ev.From != "" && keys.CheckName(ev.From) != nil || ev.To != "" && keys.CheckName(ev.To) != nil {
		drop("invalid user name")
		return
	}
	if ev.Stream != 0 {
		st.fromSharedHistory(ev)
		return
	}
	n := st.peerNode(ev.Node, ev.Boot)
	n.heard, n.shown = st.now(), st.shown
	switch ev.Kind {
	case PeerSay, PeerAction:
		st.peerLine(ev, st.now())
	case PeerJoin:
		if ev.From != "" {
			st.peerArrived(n, ev.From, "", ev.Announce)
		}
	case PeerLeave:
		if ev.From != "" {
			st.peerLeft(n, ev.From, ev.Announce)
		}
	case PeerCount:
		if _, ok := n.users[ev.From]; ok {
			n.sessions[ev.From] = min(max(ev.Count, 1), maxPeerSessions)
		}
	case PeerAway:
		if _, ok := n.users[ev.From]; ok {
			away := strings.TrimSpace(Sanitize(ev.Text))
			n.users[ev.From] = away[:min(len(away), st.opts.maxLine)]
		}
	case PeerPrivate:
		st.privateFromPeer(ev)
	case PeerRoster:
		st.applyRoster(n, ev.Users)
	case PeerBye:
		st.forgetNode(ev.Node, n, false)
	case PeerSeen:
		drop("a departure outside the shared history")
	default:
		drop("unknown kind")
	}
}

// peerLine publishes a public line from another node, said at the given
// time.
func (st *state) peerLine(ev PeerEvent, at time.Time) {
	text, ok := st.peerText(ev.Text)
	if _, muted := st.muted(ev.From); !ok || ev.From == "" || muted {
		st.log.Warn("cluster: event from another node dropped", "why", "empty, too long or muted line", "node", ev.Node, "kind", string(ev.Kind))
		return
	}
	kind := eventChat
	if ev.Kind == PeerAction {
		kind = eventAction
	}
	st.publish(newEvent(kind, ev.From, text, at), nil)
}

// peerNode returns the record of the node called name in its run boot. A
// new run replaces the old one, whose users are gone: a restarted node
// leaves no ghosts.
func (st *state) peerNode(name, boot string) *peerNode {
	n := st.peers[name]
	if n != nil && n.boot != boot {
		st.log.Info("cluster: node restarted", "node", name)
		st.forgetNode(name, n, true)
		n = nil
	}
	if n == nil {
		n = &peerNode{boot: boot, users: make(map[string]string), sessions: make(map[string]int)}
		st.peers[name] = n
	}
	return n
}

// present reports whether name has a session on this node or, but for
// except, on another.
func (st *state) present(name string, except *peerNode) bool {
	if u := st.users[name]; u != nil && u.sessions > 0 {
		return true
	}
	return st.elsewhere(name, except)
}

// elsewhere reports whether name is on another node than except.
func (st *state) elsewhere(name string, except *peerNode) bool {
	for _, n := range st.peers {
		if _, ok := n.users[name]; ok && n != except {
			return true
		}
	}
	return false
}

func (st *state) peerArrived(n *peerNode, name, away string, announce bool) {
	if _, ok := n.users[name]; ok {
		n.users[name] = away
		return
	}
	if len(n.users) >= maxRosterUsers {
		return
	}
	newcomer := !st.present(name, nil)
	n.users[name] = away
	n.sessions[name] = 1
	st.online.add(name)
	if newcomer && announce {
		st.announcePresence(eventJoin, name)
	}
}

func (st *state) peerLeft(n *peerNode, name string, announce bool) {
	if _, ok := n.users[name]; !ok {
		return
	}
	delete(n.users, name)
	delete(n.sessions, name)
	st.online.remove(name)
	if announce && !st.present(name, nil) {
		st.announcePresence(eventLeave, name)
	}
}

// applyRoster makes n's users those of its roster, announcing who arrived
// and who left since it was last heard.
func (st *state) applyRoster(n *peerNode, users []PeerUser) {
	listed := make(map[string]string, len(users))
	sessions := make(map[string]int, len(users))
	for _, u := range users {
		if keys.CheckName(u.Name) == nil {
			away := strings.TrimSpace(Sanitize(u.Away))
			listed[u.Name] = away[:min(len(away), st.opts.maxLine)]
			sessions[u.Name] = min(max(u.Sessions, 1), maxPeerSessions)
		}
	}
	for name := range n.users {
		if _, ok := listed[name]; !ok {
			st.peerLeft(n, name, true)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(listed)) {
		st.peerArrived(n, name, listed[name], true)
		if _, ok := n.users[name]; ok {
			n.sessions[name] = sessions[name]
		}
	}
}

// sessionsElsewhere is how many chat sessions name has on the other nodes,
// as far as this node has heard.
func (st *state) sessionsElsewhere(name string) int {
	total := 0
	for _, n := range st.peers {
		total += n.sessions[name]
	}
	return total
}

// forgetNode takes the node called name out of the room, with its users.
// If it died, it could not mark where its users left: for their catch-up on
// this node, they left when it was last heard from.
func (st *state) forgetNode(name string, n *peerNode, died bool) {
	delete(st.peers, name)
	gone := make(map[string]store.Seen)
	for _, user := range slices.Sorted(maps.Keys(n.users)) {
		st.online.remove(user)
		if st.present(user, nil) {
			continue
		}
		st.announcePresence(eventLeave, user)
		if died {
			gone[user] = store.Seen{At: n.heard, Seq: n.shown}
		}
	}
	st.rememberSeen(gone)
}

// expirePeers forgets the nodes not heard from for the peer TTL: they
// died, or the link to them did.
func (st *state) expirePeers() {
	now := st.now()
	for name, n := range st.peers {
		if now.Sub(n.heard) > st.opts.peerTTL {
			st.log.Warn("cluster: node silent; its users are taken as gone", "node", name, "silent_for", now.Sub(n.heard).Round(time.Second).String(), "users", len(n.users))
			st.forgetNode(name, n, true)
		}
	}
}

// remoteUser finds the user called name (case-insensitively) on another
// node: their name as spelt there, and whether they are away.
func (st *state) remoteUser(name string) (canonical, away string, ok bool) {
	for _, node := range slices.Sorted(maps.Keys(st.peers)) {
		for user, a := range st.peers[node].users {
			if strings.EqualFold(user, name) {
				return user, a, true
			}
		}
	}
	return "", "", false
}

// nodesOf returns the other nodes name is on, sorted.
func (st *state) nodesOf(name string) []string {
	var nodes []string
	for node, n := range st.peers {
		if _, ok := n.users[name]; ok {
			nodes = append(nodes, node)
		}
	}
	slices.Sort(nodes)
	return nodes
}

// privateFromPeer delivers a private message from a user on another node
// to the sessions of its addressee here, if any.
func (st *state) privateFromPeer(ev PeerEvent) {
	text, ok := st.peerText(ev.Text)
	if !ok || ev.From == "" || ev.To == "" {
		st.log.Warn("cluster: private message from another node dropped", "node", ev.Node, "why", "empty, too long or unaddressed")
		return
	}
	u := st.users[ev.To]
	if u == nil || u.sessions == 0 {
		return // on another node, or gone: its sender was told who was online
	}
	st.sendUser(ev.To, st.newEvent(eventPrivate, ev.From, text))
	u.replyTo = ev.From
}
