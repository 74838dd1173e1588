package sshchat

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// command is a slash command. run executes on the broadcaster goroutine.
type command struct {
	usage        string
	help         string
	run          func(st *state, cli *client, u *user, arg string)
	forOperators bool // checked by state.handle, the one place that does
}

// commands maps "/name" to its command. /quit is also handled by the session
// handler, which ends the session; it is listed here for /help.
var commands map[string]command

// init fills commands because /help lists commands: a map literal whose
// values refer back to it would be an initialisation cycle.
func init() {
	commands = map[string]command{
		"/help":    {"/help", "show this help", cmdHelp, false},
		"/names":   {"/names", "who is online, with idle time", cmdNames, false},
		"/me":      {"/me ACTION", "say what you are doing: * alice waves", cmdMe, false},
		"/msg":     {"/msg NAME TEXT", "private message to all of NAME's sessions", cmdMsg, false},
		"/reply":   {"/reply TEXT", "private message to whoever last messaged you", cmdReply, false},
		"/away":    {"/away [REASON]", "mark yourself away", cmdAway, false},
		"/back":    {"/back", "you are back", cmdBack, false},
		"/quit":    {"/quit", "leave the chat", func(*state, *client, *user, string) {}, false},
		"/history": {"/history [N]", fmt.Sprintf("the last N public messages (default %d, at most %d)", defaultHistoryShown, maxHistoryShown), cmdHistory, false},

		"/kick":   {"/kick NAME [REASON]", "disconnect all of NAME's sessions", cmdKick, true},
		"/mute":   {"/mute NAME [DURATION] [REASON]", "refuse NAME's lines (default 1h; DURATION like 10m, 2h30m)", cmdMute, true},
		"/unmute": {"/unmute NAME", "lift NAME's mute", cmdUnmute, true},
		"/ban":    {"/ban NAME [DURATION] [REASON]", "disconnect NAME and refuse their logins (default: until /unban)", cmdBan, true},
		"/unban":  {"/unban NAME", "lift NAME's ban", cmdUnban, true},
		"/banned": {"/banned", "list bans and mutes: who, by whom, when, why, until", cmdBanned, true},
		"/op":     {"/op NAME", "make NAME an operator", cmdOp, true},
		"/deop":   {"/deop NAME", "make NAME an ordinary user again", cmdDeop, true},
		"/motd":   {"/motd TEXT|off", "set or remove the message of the day shown on joining", cmdMOTD, true},
	}
}

// commandNames is sorted, for help and completion.
func commandNames() []string {
	names := make([]string, 0, len(commands))
	for name := range commands {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

func cmdHelp(st *state, cli *client, _ *user, _ string) {
	var b strings.Builder
	b.WriteString("Commands (start a message with // to send a literal /):")
	op := st.isOperator(cli.name)
	for _, forOperators := range []bool{false, true} {
		if forOperators {
			if !op {
				break
			}
			b.WriteString("\nOperator commands:")
		}
		for _, name := range commandNames() {
			if c := commands[name]; c.forOperators == forOperators {
				fmt.Fprintf(&b, "\n  %-32s %s", c.usage, c.help)
			}
		}
	}
	st.notify(cli, b.String())
}

func cmdNames(st *state, cli *client, _ *user, _ string) {
	names := st.onlineNames()
	now := st.now()
	var b strings.Builder
	fmt.Fprintf(&b, "%d online:", len(names))
	for i, name := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, " %s", name)
		var notes []string
		if st.isOperator(name) {
			notes = append(notes, "op")
		}
		if nodes := st.nodesOf(name); len(nodes) > 0 {
			notes = append(notes, "on "+strings.Join(nodes, ", "))
		}
		u := st.users[name]
		if u == nil || u.sessions == 0 {
			if _, away, _ := st.remoteUser(name); away != "" {
				notes = append(notes, "away: "+away)
			}
		} else {
			if u.away != "" {
				notes = append(notes, "away: "+u.away)
			}
			if idle := now.Sub(u.lastActive); idle >= time.Minute {
				notes = append(notes, "idle "+idle.Truncate(time.Minute).String())
			}
		}
		if len(notes) > 0 {
			fmt.Fprintf(&b, " (%s)", strings.Join(notes, ", "))
		}
	}
	st.notify(cli, b.String())
}

func cmdMe(st *state, cli *client, _ *user, arg string) {
	if arg == "" {
		st.notify(cli, "Usage: /me ACTION")
		return
	}
	st.say(cli, eventAction, arg)
}

func cmdMsg(st *state, cli *client, u *user, arg string) {
	to, text, _ := strings.Cut(arg, " ")
	to = strings.TrimPrefix(to, "@")
	text = strings.TrimSpace(text)
	if to == "" || text == "" {
		st.notify(cli, "Usage: /msg NAME TEXT")
		return
	}
	st.private(cli, to, text)
}

func cmdReply(st *state, cli *client, u *user, arg string) {
	switch {
	case u.replyTo == "":
		st.notify(cli, "Nobody has sent you a private message yet.")
	case arg == "":
		st.notify(cli, "Usage: /reply TEXT")
	default:
		st.private(cli, u.replyTo, arg)
	}
}

// private delivers text to every session of the user named to (matched
// case-insensitively), here and on the other nodes, and confirms to the
// sender.
func (st *state) private(cli *client, to, text string) {
	var target *user
	for name, u := range st.users {
		if u.sessions > 0 && strings.EqualFold(name, to) {
			to, target = name, u
			break
		}
	}
	away := ""
	if target != nil {
		st.sendUser(to, st.newEvent(eventPrivate, cli.name, text))
		target.replyTo, away = cli.name, target.away
	}
	if name, remoteAway, ok := st.remoteUser(to); ok {
		to, away = name, cmp.Or(away, remoteAway)
		st.tellPeers(PeerEvent{Kind: PeerPrivate, From: cli.name, To: name, Text: text})
	} else if target == nil {
		st.notify(cli, fmt.Sprintf("No one called %s is online.", to))
		return
	}
	st.notify(cli, fmt.Sprintf("[PM to %s] %s", to, text))
	if away != "" {
		st.notify(cli, fmt.Sprintf("%s is away: %s", to, away))
	}
}

func cmdAway(st *state, cli *client, u *user, arg string) {
	if arg == "" {
		arg = "away"
	}
	u.away = arg
	st.tellPeers(PeerEvent{Kind: PeerAway, From: cli.name, Text: arg})
	st.notify(cli, "You are marked away: "+arg)
}

func cmdBack(st *state, cli *client, u *user, _ string) {
	u.away = ""
	st.tellPeers(PeerEvent{Kind: PeerAway, From: cli.name})
	st.notify(cli, "Welcome back.")
}
