package sshchat

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// command is a slash command. run executes on the broadcaster goroutine.
type command struct {
	usage string
	help  string
	run   func(r *Room, cli *client, u *user, arg string)
}

// commands maps "/name" to its command. /quit is also handled by the session
// handler, which ends the session; it is listed here for /help.
var commands map[string]command

func init() {
	commands = map[string]command{
		"/help":  {"/help", "show this help", cmdHelp},
		"/names": {"/names", "who is online, with idle time", cmdNames},
		"/me":    {"/me ACTION", "say what you are doing: * alice waves", cmdMe},
		"/msg":   {"/msg NAME TEXT", "private message to all of NAME's sessions", cmdMsg},
		"/reply": {"/reply TEXT", "private message to whoever last messaged you", cmdReply},
		"/away":  {"/away [REASON]", "mark yourself away", cmdAway},
		"/back":  {"/back", "you are back", cmdBack},
		"/quit":  {"/quit", "leave the chat", func(*Room, *client, *user, string) {}},
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

func cmdHelp(r *Room, cli *client, _ *user, _ string) {
	var b strings.Builder
	b.WriteString("Commands (start a message with // to send a literal /):")
	for _, name := range commandNames() {
		c := commands[name]
		fmt.Fprintf(&b, "\n  %-16s %s", c.usage, c.help)
	}
	r.notify(cli, b.String())
}

func cmdNames(r *Room, cli *client, _ *user, _ string) {
	names := make([]string, 0, len(r.users))
	for name := range r.users {
		names = append(names, name)
	}
	slices.Sort(names)
	now := r.now()
	var b strings.Builder
	fmt.Fprintf(&b, "%d online:", len(names))
	for i, name := range names {
		u := r.users[name]
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, " %s", name)
		var notes []string
		if u.away != "" {
			notes = append(notes, "away: "+u.away)
		}
		if idle := now.Sub(u.lastActive); idle >= time.Minute {
			notes = append(notes, "idle "+idle.Truncate(time.Minute).String())
		}
		if len(notes) > 0 {
			fmt.Fprintf(&b, " (%s)", strings.Join(notes, ", "))
		}
	}
	r.notify(cli, b.String())
}

func cmdMe(r *Room, cli *client, _ *user, arg string) {
	if arg == "" {
		r.notify(cli, "Usage: /me ACTION")
		return
	}
	r.publish(r.newEvent(eventAction, cli.name, arg), cli)
}

func cmdMsg(r *Room, cli *client, u *user, arg string) {
	to, text, _ := strings.Cut(arg, " ")
	to = strings.TrimPrefix(to, "@")
	text = strings.TrimSpace(text)
	if to == "" || text == "" {
		r.notify(cli, "Usage: /msg NAME TEXT")
		return
	}
	r.private(cli, to, text)
}

func cmdReply(r *Room, cli *client, u *user, arg string) {
	switch {
	case u.replyTo == "":
		r.notify(cli, "Nobody has sent you a private message yet.")
	case arg == "":
		r.notify(cli, "Usage: /reply TEXT")
	default:
		r.private(cli, u.replyTo, arg)
	}
}

// private delivers text to every session of the user named to (matched
// case-insensitively) and confirms to the sender.
func (r *Room) private(cli *client, to, text string) {
	var target *user
	for name, u := range r.users {
		if strings.EqualFold(name, to) {
			to, target = name, u
			break
		}
	}
	if target == nil {
		r.notify(cli, fmt.Sprintf("No one called %s is online.", to))
		return
	}
	r.sendUser(to, r.newEvent(eventPrivate, cli.name, text))
	target.replyTo = cli.name
	r.notify(cli, fmt.Sprintf("[PM to %s] %s", to, text))
	if target.away != "" {
		r.notify(cli, fmt.Sprintf("%s is away: %s", to, target.away))
	}
}

func cmdAway(r *Room, cli *client, u *user, arg string) {
	if arg == "" {
		arg = "away"
	}
	u.away = arg
	r.notify(cli, "You are marked away: "+arg)
}

func cmdBack(r *Room, cli *client, u *user, _ string) {
	u.away = ""
	r.notify(cli, "Welcome back.")
}
