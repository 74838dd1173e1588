package sshchat

import (
	"cmp"
	"fmt"
	"strings"
	"time"

	"github.com/sshchat-dev/sshchat/keys"
)

// Moderation: operators (named in the ops file) kick, mute and ban users
// and set the message of the day. Bans, mutes and the message of the day
// live in the moderation file (keys.Moderation), which the CLI edits too and
// the server reloads; every operator action is audited. Files are written
// by the room's worker goroutine, never the broadcaster; an action takes
// effect in the room once its file is written, so a ban survives a crash
// the moment it is announced.

// Moderation is what the operators' commands act on. Nil fields disable the
// part they serve.
type Moderation struct {
	Operators Operators
	Sanctions Sanctions
	Audit     Auditor
}

// Operators is the live list of operators, and the way to change it: the
// ops file.
type Operators interface {
	IsOp(name string) bool
	SetOp(name string, op bool) error
}

// Sanctions is the moderation file: keys.ModerationStore.
type Sanctions interface {
	Current() *keys.Moderation
	Edit(fn func(*keys.Moderation) error) (*keys.Moderation, error)
}

// Auditor records operator actions: keys.AuditLog.
type Auditor interface {
	Record(r keys.AuditRecord) error
}

// UserDirectory says whether a user name is in the allowed keys, and how it
// is spelt there. An Authorizer that implements it lets operators act on
// users who are not online.
type UserDirectory interface {
	User(name string) (canonical string, ok bool)
}

// defaultMute is how long /mute lasts without a duration.
const defaultMute = time.Hour

func (st *state) isOperator(name string) bool {
	ops := st.opts.moderation.Operators
	return ops != nil && ops.IsOp(name)
}

func (st *state) sanctions() *keys.Moderation {
	if s := st.opts.moderation.Sanctions; s != nil {
		return s.Current()
	}
	return nil
}

// muted returns the mute in force on name, if any.
func (st *state) muted(name string) (keys.Sanction, bool) {
	if m := st.sanctions(); m != nil {
		return m.Muted(name, st.now())
	}
	return keys.Sanction{}, false
}

func (st *state) motd() string {
	if m := st.sanctions(); m != nil {
		return m.MOTD.Text
	}
	return ""
}

// sanctionDetails describes a sanction after its verb: " by alice until
// 15:04 (spam)".
func sanctionDetails(s keys.Sanction) string {
	var b strings.Builder
	if s.By != "" {
		b.WriteString(" by " + s.By)
	}
	if !s.Until.IsZero() {
		b.WriteString(" until " + s.Until.UTC().Format(dateTimeLayout) + " UTC")
	}
	if s.Reason != "" {
		b.WriteString(" (" + s.Reason + ")")
	}
	return b.String()
}

// bannedNotice is what a banned user is told.
func bannedNotice(b keys.Sanction) string {
	return "You are banned" + sanctionDetails(b) + "."
}

// target is the user an operator command acts on.
type target struct {
	name   string
	online bool
}

// findTarget resolves the NAME of an operator command: a user online or in
// the allowed keys, never an operator (they are /deop-ed first). It tells
// cli why not, if not.
func (st *state) findTarget(cli *client, name, verb string) (target, bool) {
	name = strings.TrimPrefix(name, "@")
	t, ok := st.lookupUser(name)
	switch {
	case !ok:
		st.notify(cli, fmt.Sprintf("There is no user called %s.", name))
	case verb != "" && st.isOperator(t.name):
		st.notify(cli, fmt.Sprintf("%s is an operator: /deop %s first to %s them.", t.name, t.name, verb))
		ok = false
	}
	return t, ok
}

func (st *state) lookupUser(name string) (target, bool) {
	for n, u := range st.users {
		if u.sessions > 0 && strings.EqualFold(n, name) {
			return target{n, true}, true
		}
	}
	if n, _, ok := st.remoteUser(name); ok {
		return target{n, true}, true
	}
	if dir := st.opts.directory; dir != nil {
		if canonical, ok := dir.User(name); ok {
			return target{canonical, false}, true
		}
	}
	return target{}, false
}

// moderate runs an operator's action: edit writes its file on the room's
// worker goroutine (nil for none), then the action is audited and apply
// runs on the broadcaster. cli is told if anything fails.
func (st *state) moderate(cli *client, record keys.AuditRecord, edit func() error, apply func(st *state)) {
	audit, do := st.opts.moderation.Audit, st.do
	job := func() {
		err := error(nil)
		if edit != nil {
			err = edit()
		}
		if err == nil && audit != nil {
			if aerr := audit.Record(record); aerr != nil {
				st.log.Error("audit log not written", "action", record.Action, "target", record.Target, "err", aerr)
			}
		}
		do(func(st *state) {
			if err != nil {
				st.log.Error("moderation failed", "action", record.Action, "target", record.Target, "err", err)
				if st.has(cli) {
					st.notify(cli, fmt.Sprintf("Could not %s %s: %v", record.Action, record.Target, err))
				}
				return
			}
			st.log.Info("moderation", "operator", record.Operator, "action", record.Action, "target", record.Target, "reason", record.Reason)
			apply(st)
		})
	}
	if !st.offload(job) {
		st.notify(cli, "Too many moderation changes are being written; try again in a moment.")
	}
}

// announce tells everyone in the room.
func (st *state) announce(text string) { st.broadcast(noticeEvent(text), nil) }

// dropUser disconnects every session of name.
func (st *state) dropUser(name string, why hangup) {
	for cli := range st.clients {
		if cli.name == name {
			st.drop(cli, why)
		}
	}
}

// moderationFile returns the moderation file, or tells cli there is none.
func (st *state) moderationFile(cli *client) (Sanctions, bool) {
	s := st.opts.moderation.Sanctions
	if s == nil {
		st.notify(cli, "This server keeps no moderation file.")
	}
	return s, s != nil
}

// parseSanction splits "NAME [DURATION] [REASON]".
func parseSanction(arg string, def time.Duration) (name string, d time.Duration, reason string) {
	name, rest, _ := strings.Cut(arg, " ")
	rest = strings.TrimSpace(rest)
	d = def
	first, after, _ := strings.Cut(rest, " ")
	if pd, err := time.ParseDuration(first); err == nil && pd > 0 {
		d, rest = pd, strings.TrimSpace(after)
	}
	return name, d, rest
}

// until is the expiry of a sanction lasting d from now; 0 lasts until lifted.
func until(now time.Time, d time.Duration) time.Time {
	if d == 0 {
		return time.Time{}
	}
	return now.Add(d)
}

func cmdKick(st *state, cli *client, _ *user, arg string) {
	name, reason, _ := strings.Cut(arg, " ")
	if name == "" {
		st.notify(cli, "Usage: /kick NAME [REASON]")
		return
	}
	t, ok := st.findTarget(cli, name, "kick")
	if !ok {
		return
	}
	if !t.online {
		st.notify(cli, fmt.Sprintf("%s is not online.", t.name))
		return
	}
	if u := st.users[t.name]; u == nil || u.sessions == 0 {
		st.notify(cli, fmt.Sprintf("%s is on another node (%s), which /kick does not reach; /ban %s 1m does.", t.name, strings.Join(st.nodesOf(t.name), ", "), t.name))
		return
	}
	reason = strings.TrimSpace(reason)
	why := "You were kicked by " + cli.name
	if reason != "" {
		why += ": " + reason
	}
	st.moderate(cli, keys.AuditRecord{Operator: cli.name, Action: keys.AuditKick, Target: t.name, Reason: reason}, nil, func(st *state) {
		st.dropUser(t.name, hangup{notice: why + ".", closeConn: true})
		st.announce(fmt.Sprintf("%s was kicked by %s%s.", t.name, cli.name, parenthesised(reason)))
	})
}

func parenthesised(reason string) string {
	if reason == "" {
		return ""
	}
	return " (" + reason + ")"
}

// sanction implements /ban and /mute.
func sanction(st *state, cli *client, arg, verb string, def time.Duration, action keys.AuditAction, impose func(keys.Sanction) func(*keys.Moderation) error, effect func(st *state, s keys.Sanction)) {
	name, d, reason := parseSanction(arg, def)
	if name == "" {
		st.notify(cli, fmt.Sprintf("Usage: /%s NAME [DURATION] [REASON]  (DURATION like 90s, 10m, 2h30m)", verb))
		return
	}
	if err := keys.ValidReason(reason); err != nil {
		st.notify(cli, fmt.Sprintf("That reason cannot be used: %v.", err))
		return
	}
	sanctions, ok := st.moderationFile(cli)
	if !ok {
		return
	}
	t, ok := st.findTarget(cli, name, verb)
	if !ok {
		return
	}
	now := st.now()
	s := keys.Sanction{Target: t.name, By: cli.name, Reason: reason, At: now, Until: until(now, d)}
	edit := func() error {
		_, err := sanctions.Edit(impose(s))
		return err
	}
	st.moderate(cli, keys.AuditRecord{Operator: cli.name, Action: action, Target: t.name, Reason: reason, Until: s.Until}, edit, func(st *state) {
		effect(st, s)
	})
}

func cmdBan(st *state, cli *client, _ *user, arg string) {
	sanction(st, cli, arg, "ban", 0, keys.AuditBan,
		func(s keys.Sanction) func(*keys.Moderation) error {
			return func(m *keys.Moderation) error { m.Bans[strings.ToLower(s.Target)] = s; return nil }
		},
		func(st *state, s keys.Sanction) {
			st.dropUser(s.Target, hangup{notice: bannedNotice(s), closeConn: true})
			st.announce(s.Target + " was banned" + sanctionDetails(s) + ".")
		})
}

func cmdMute(st *state, cli *client, _ *user, arg string) {
	sanction(st, cli, arg, "mute", defaultMute, keys.AuditMute,
		func(s keys.Sanction) func(*keys.Moderation) error {
			return func(m *keys.Moderation) error { m.Mutes[strings.ToLower(s.Target)] = s; return nil }
		},
		func(st *state, s keys.Sanction) {
			st.announce(s.Target + " was muted" + sanctionDetails(s) + ".")
		})
}

// lift implements /unban and /unmute; done is verb's past participle.
func lift(st *state, cli *client, arg, verb, done string, action keys.AuditAction, notFound error, entries func(*keys.Moderation) map[string]keys.Sanction) {
	name := strings.TrimSpace(arg)
	if name == "" || strings.Contains(name, " ") {
		st.notify(cli, fmt.Sprintf("Usage: /%s NAME", verb))
		return
	}
	sanctions, ok := st.moderationFile(cli)
	if !ok {
		return
	}
	t, ok := st.findTarget(cli, name, "")
	if !ok {
		return
	}
	edit := func() error {
		_, err := sanctions.Edit(func(m *keys.Moderation) error {
			key := strings.ToLower(t.name)
			if _, ok := entries(m)[key]; !ok {
				return fmt.Errorf("%s: %w", t.name, notFound)
			}
			delete(entries(m), key)
			return nil
		})
		return err
	}
	st.moderate(cli, keys.AuditRecord{Operator: cli.name, Action: action, Target: t.name}, edit, func(st *state) {
		st.announce(fmt.Sprintf("%s was %s by %s.", t.name, done, cli.name))
	})
}

func cmdUnban(st *state, cli *client, _ *user, arg string) {
	lift(st, cli, arg, "unban", "unbanned", keys.AuditUnban, keys.ErrNotBanned, func(m *keys.Moderation) map[string]keys.Sanction { return m.Bans })
}

func cmdUnmute(st *state, cli *client, _ *user, arg string) {
	lift(st, cli, arg, "unmute", "unmuted", keys.AuditUnmute, keys.ErrNotMuted, func(m *keys.Moderation) map[string]keys.Sanction { return m.Mutes })
}

func cmdBanned(st *state, cli *client, _ *user, _ string) {
	sanctions, ok := st.moderationFile(cli)
	if !ok {
		return
	}
	m := sanctions.Current()
	now := st.now()
	var b strings.Builder
	list := func(what string, sanctions []keys.Sanction) {
		fmt.Fprintf(&b, "%d %s:", len(sanctions), what)
		for _, s := range sanctions {
			fmt.Fprintf(&b, "\n  %s by %s at %s, %s%s", s.Target, s.By, s.At.UTC().Format(dateTimeLayout), expiry(s), parenthesised(s.Reason))
		}
	}
	list("banned", m.ActiveBans(now))
	b.WriteByte('\n')
	list("muted", m.ActiveMutes(now))
	st.notify(cli, b.String())
}

func expiry(s keys.Sanction) string {
	if s.Until.IsZero() {
		return "until lifted"
	}
	return "until " + s.Until.UTC().Format(dateTimeLayout)
}

// setOperator implements /op and /deop.
func setOperator(st *state, cli *client, arg string, op bool) {
	verb, action := "deop", keys.AuditDeop
	if op {
		verb, action = "op", keys.AuditOp
	}
	name := strings.TrimSpace(arg)
	ops := st.opts.moderation.Operators
	switch {
	case name == "" || strings.Contains(name, " "):
		st.notify(cli, fmt.Sprintf("Usage: /%s NAME", verb))
		return
	case ops == nil:
		st.notify(cli, "This server keeps no ops file.")
		return
	}
	t, ok := st.findTarget(cli, name, "")
	if !ok {
		return
	}
	if st.isOperator(t.name) == op {
		st.notify(cli, fmt.Sprintf("%s is already %s.", t.name, map[bool]string{true: "an operator", false: "not an operator"}[op]))
		return
	}
	st.moderate(cli, keys.AuditRecord{Operator: cli.name, Action: action, Target: t.name},
		func() error { return ops.SetOp(t.name, op) },
		func(st *state) {
			if op {
				st.announce(fmt.Sprintf("%s is now an operator (by %s).", t.name, cli.name))
			} else {
				st.announce(fmt.Sprintf("%s is no longer an operator (by %s).", t.name, cli.name))
			}
		})
}

func cmdOp(st *state, cli *client, _ *user, arg string)   { setOperator(st, cli, arg, true) }
func cmdDeop(st *state, cli *client, _ *user, arg string) { setOperator(st, cli, arg, false) }

func cmdMOTD(st *state, cli *client, _ *user, arg string) {
	sanctions, ok := st.moderationFile(cli)
	switch {
	case !ok:
		return
	case arg == "":
		st.notify(cli, "Usage: /motd TEXT, or /motd off to remove it. Now: "+cmp.Or(st.motd(), "(none)"))
		return
	}
	text := arg
	if arg == "off" {
		text = ""
	}
	if len(text) > keys.MaxMOTDLen {
		st.notify(cli, fmt.Sprintf("The message of the day is at most %d bytes.", keys.MaxMOTDLen))
		return
	}
	motd := keys.MOTD{Text: text, By: cli.name, At: st.now()}
	edit := func() error {
		_, err := sanctions.Edit(func(m *keys.Moderation) error {
			if text == "" {
				motd = keys.MOTD{}
			}
			m.MOTD = motd
			return nil
		})
		return err
	}
	st.moderate(cli, keys.AuditRecord{Operator: cli.name, Action: keys.AuditMOTD, Target: cli.name, Reason: text}, edit, func(st *state) {
		if text == "" {
			st.announce(cli.name + " removed the message of the day.")
			return
		}
		st.announce(fmt.Sprintf("%s set the message of the day: %s", cli.name, text))
	})
}
