package sshchat

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/sshchat-dev/sshchat/keys"
)

// Operators and moderation over real SSH, with the real ops file,
// moderation file and audit log in a temporary directory, wired as serve
// wires them.

// directory is the tests' allowList with the UserDirectory the real allowed
// keys (keys.Store) have, so that operators can act on users who are not
// online.
type directory struct{ *allowList }

func (d directory) User(name string) (string, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, n := range d.names {
		if strings.EqualFold(n, name) {
			return n, true
		}
	}
	return "", false
}

// moderated is a server whose moderation files live in dir.
type moderated struct {
	*testServer
	dir       string
	ops       *keys.OpStore
	sanctions *keys.ModerationStore
}

func opsPath(dir string) string        { return filepath.Join(dir, "ops") }
func moderationPath(dir string) string { return filepath.Join(dir, "moderation.json") }
func auditPath(dir string) string      { return filepath.Join(dir, "audit.log") }

// startModerated starts a server on the moderation files in dir, after
// making each of operators an operator in its ops file.
func startModerated(t *testing.T, dir string, operators ...string) *moderated {
	t.Helper()
	for _, name := range operators {
		if err := keys.AddOp(opsPath(dir), name); err != nil {
			t.Fatal(err)
		}
	}
	ops := keys.NewOpStore(opsPath(dir), nil)
	sanctions := keys.NewModerationStore(moderationPath(dir), nil)
	for _, reload := range []func() error{ops.Reload, sanctions.Reload} {
		if err := reload(); err != nil {
			t.Fatal(err)
		}
	}
	audit, err := keys.OpenAuditLog(auditPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { audit.Close() }) // after the server's cleanup
	ts := startServer(t, func(c *Config) {
		c.Auth = directory{c.Auth.(*allowList)}
		c.Moderation = Moderation{Operators: ops, Sanctions: sanctions, Audit: audit}
	})
	return &moderated{testServer: ts, dir: dir, ops: ops, sanctions: sanctions}
}

// person is a user's name and key, which outlive any one server.
type person struct {
	name   string
	signer gossh.Signer
}

func people(t *testing.T, names ...string) []person {
	ps := make([]person, len(names))
	for i, name := range names {
		ps[i] = person{name, newSigner(t)}
	}
	return ps
}

// allow lets each of ps log in to ts.
func (ts *testServer) allowPeople(ps ...person) {
	for _, p := range ps {
		ts.allow.set(p.signer.PublicKey(), p.name)
	}
}

// enter allows ps and joins them in order, reading each arrival, like
// joinAll.
func (ts *testServer) enter(ps ...person) []*chatter {
	ts.t.Helper()
	ts.allowPeople(ps...)
	var cs []*chatter
	for _, p := range ps {
		c := ts.join(p.signer)
		for _, earlier := range cs {
			earlier.expect(p.name + " has arrived")
		}
		cs = append(cs, c)
	}
	return cs
}

// connectAs starts a line-mode chat session as p, without reading
// anything.
func (ts *testServer) connectAs(p person) *chatter {
	ts.t.Helper()
	return startLineChat(ts.t, ts.connect(p.signer))
}

// expectMatch fails unless the next line matches pattern, and returns its
// submatches.
func (c *chatter) expectMatch(pattern string) []string {
	c.t.Helper()
	line := c.next()
	m := regexp.MustCompile(pattern).FindStringSubmatch(line)
	if m == nil {
		c.t.Fatalf("got line %q, want one matching %q", line, pattern)
	}
	return m
}

// expectEndMatching fails unless the next line matches pattern and the
// session then ends.
func (c *chatter) expectEndMatching(pattern string) {
	c.t.Helper()
	c.expectMatch(pattern)
	c.expectEnd()
}

// reply sends cmd and returns every line the server answers with, up to a
// marker: the answer of /back, which every user may send and which only
// the sender sees.
func (c *chatter) reply(cmd string) []string {
	c.t.Helper()
	c.say(cmd)
	c.say("/back")
	var lines []string
	for line := c.next(); line != "-!- Welcome back."; line = c.next() {
		lines = append(lines, line)
	}
	return lines
}

// untilPattern matches a sanction's expiry as chat shows it.
const untilPattern = `\d{4}-\d\d-\d\d \d\d:\d\d UTC`

// readAudit returns the records of the audit log in dir, checking that
// each line has exactly the documented fields.
func readAudit(t *testing.T, dir string) []keys.AuditRecord {
	t.Helper()
	f, err := os.Open(auditPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var records []keys.AuditRecord
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var fields map[string]any
		if err := json.Unmarshal(sc.Bytes(), &fields); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		for name := range fields {
			if !slices.Contains([]string{"time", "operator", "action", "target", "reason", "until"}, name) {
				t.Errorf("audit line %q has field %q", sc.Text(), name)
			}
		}
		var r keys.AuditRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		if r.Time.IsZero() || time.Since(r.Time) > time.Minute {
			t.Errorf("audit line %q: time %v is not now", sc.Text(), r.Time)
		}
		records = append(records, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return records
}

// auditSummary is an audit record without its times, which tests compare
// separately.
type auditSummary struct {
	operator string
	action   keys.AuditAction
	target   string
	reason   string
	expires  bool
}

func summarise(rs []keys.AuditRecord) []auditSummary {
	var out []auditSummary
	for _, r := range rs {
		out = append(out, auditSummary{r.Operator, r.Action, r.Target, r.Reason, !r.Until.IsZero()})
	}
	return out
}

func TestOperatorCommandsRefusedToOthers(t *testing.T) {
	dir := t.TempDir()
	ts := startModerated(t, dir, "alice")
	cs := ts.enter(people(t, "alice", "bob")...)
	bob := cs[1]
	for _, cmd := range []string{"/kick alice", "/mute alice 10m", "/unmute alice", "/ban alice", "/unban alice", "/banned", "/op bob", "/deop alice", "/motd hello"} {
		name, _, _ := strings.Cut(cmd, " ")
		bob.say(cmd)
		bob.expect("-!- Only operators can use " + name + ".")
	}
	// Nothing was written, and bob did not become an operator.
	if _, err := os.Stat(moderationPath(dir)); !os.IsNotExist(err) {
		t.Errorf("moderation file: %v; want none", err)
	}
	if fi, err := os.Stat(auditPath(dir)); err != nil || fi.Size() != 0 {
		t.Errorf("audit log: %v, %v; want it empty", fi, err)
	}
	if ops, err := keys.LoadOps(opsPath(dir)); err != nil || !slices.Equal(ops.Names(), []string{"alice"}) {
		t.Errorf("ops file: %v, %v; want alice only", ops, err)
	}
}

// Acting on a name nobody has is told so, for every command that takes
// one.
func TestOperatorCommandsOnUnknownNames(t *testing.T) {
	ts := startModerated(t, t.TempDir(), "alice")
	alice := ts.enter(people(t, "alice")...)[0]
	for _, cmd := range []string{"/kick nobody", "/mute nobody", "/unmute nobody", "/ban nobody 1h", "/unban nobody", "/op nobody", "/deop @nobody"} {
		alice.say(cmd)
		alice.expect("-!- There is no user called nobody.")
	}
}

func TestKick(t *testing.T) {
	dir := t.TempDir()
	ts := startModerated(t, dir, "alice")
	ps := people(t, "alice", "bob", "carol", "dave")
	ts.allowPeople(ps[3]) // dave exists but is not online
	cs := ts.enter(ps[:3]...)
	alice, bob, carol := cs[0], cs[1], cs[2]
	bob2 := ts.join(ps[1].signer) // a second session: silent

	alice.say("/kick bob spamming the room")
	bob.expectEnd("-!- You were kicked by alice: spamming the room.")
	bob2.expectEnd("-!- You were kicked by alice: spamming the room.")
	for _, c := range []*chatter{alice, carol} {
		c.expect("bob has left", "-!- bob was kicked by alice (spamming the room).")
	}

	// A kick is not a ban.
	bob = ts.join(ps[1].signer)
	alice.expect("bob has arrived")
	carol.expect("bob has arrived")
	alice.say("/kick bob")
	bob.expectEnd("-!- You were kicked by alice.")
	carol.expect("bob has left", "-!- bob was kicked by alice.")

	alice.say("/kick dave")
	alice.skipUntil("-!- bob was kicked by alice.")
	alice.expect("-!- dave is not online.")

	want := []auditSummary{
		{"alice", keys.AuditKick, "bob", "spamming the room", false},
		{"alice", keys.AuditKick, "bob", "", false},
	}
	if got := summarise(readAudit(t, dir)); !slices.Equal(got, want) {
		t.Errorf("audit: %+v, want %+v", got, want)
	}
}

func TestMute(t *testing.T) {
	dir := t.TempDir()
	ts := startModerated(t, dir, "alice")
	ps := people(t, "alice", "bob", "carol")
	cs := ts.enter(ps...)
	alice, bob, carol := cs[0], cs[1], cs[2]

	alice.say("/mute bob 10m flooding")
	muted := "^-!- bob was muted by alice until " + untilPattern + ` \(flooding\)\.$`
	for _, c := range cs {
		c.expectMatch(muted)
	}
	bob.say("can you hear me?")
	bob.expectMatch(`^-!- You are muted by alice until ` + untilPattern + ` \(flooding\); that line was not sent\. You can still read\.$`)
	bob.say("/me shouts")
	bob.expectMatch(`^-!- You are muted by alice`)
	if _, stderr, status := ts.run(t, ps[1].signer, "say from a script", ""); status != exitRefused || !strings.Contains(stderr, "muted") {
		t.Errorf("exec say while muted: status %d, stderr %q", status, stderr)
	}
	alice.say("bob is quiet now")
	bob.expect("alice: bob is quiet now")   // still reads
	carol.expect("alice: bob is quiet now") // and saw nothing of bob's

	alice.say("/unmute bob")
	for _, c := range cs {
		c.expect("-!- bob was unmuted by alice.")
	}
	bob.say("thanks")
	carol.expect("bob: thanks")
	alice.expect("bob: thanks")

	alice.say("/unmute bob")
	alice.expectMatch(`^-!- Could not unmute bob: .*not muted`)

	want := []auditSummary{
		{"alice", keys.AuditMute, "bob", "flooding", true},
		{"alice", keys.AuditUnmute, "bob", "", false},
	}
	if got := summarise(readAudit(t, dir)); !slices.Equal(got, want) {
		t.Errorf("audit: %+v, want %+v", got, want)
	}
}

// A mute with a short duration ends by itself.
func TestMuteExpires(t *testing.T) {
	ts := startModerated(t, t.TempDir(), "alice")
	cs := ts.enter(people(t, "alice", "bob")...)
	alice, bob := cs[0], cs[1]
	alice.say("/mute bob 1s")
	bob.expectMatch(`^-!- bob was muted by alice until `)
	alice.expectMatch(`^-!- bob was muted by alice until `)

	// The expiry is a moment on the clock: ask until the room lets bob
	// speak, for a bounded time.
	deadline := time.Now().Add(waitLimit)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if lines := bob.reply("am I back?"); len(lines) == 0 {
			break
		} else if !strings.HasPrefix(lines[0], "-!- You are muted by alice") {
			t.Fatalf("got %q while muted", lines)
		}
		if time.Now().After(deadline) {
			t.Fatal("a mute of 1s still holds after", waitLimit)
		}
		<-tick.C
	}
	alice.expect("bob: am I back?")
}

// DURATION is Go's syntax; without one a mute lasts an hour and a ban until
// lifted; anything else starts the reason.
func TestSanctionDurations(t *testing.T) {
	tests := []struct {
		cmd    string
		ban    bool
		length time.Duration // 0: until lifted
		reason string
	}{
		{"/mute bob 90s", false, 90 * time.Second, ""},
		{"/mute bob 10m spam, again", false, 10 * time.Minute, "spam, again"},
		{"/mute bob 2h30m", false, 150 * time.Minute, ""},
		{"/mute bob", false, time.Hour, ""},
		{"/mute bob soon please", false, time.Hour, "soon please"},
		{"/mute bob -5m", false, time.Hour, "-5m"},
		{"/ban bob 10m", true, 10 * time.Minute, ""},
		{"/ban bob 2h30m trolling", true, 150 * time.Minute, "trolling"},
		{"/ban bob trolling", true, 0, "trolling"},
	}
	for _, tt := range tests {
		t.Run(tt.cmd, func(t *testing.T) {
			dir := t.TempDir()
			ts := startModerated(t, dir, "alice")
			alice := ts.enter(people(t, "alice")...)[0]
			ts.allowPeople(people(t, "bob")...) // offline: bans and mutes still apply
			alice.say(tt.cmd)
			alice.skipUntil("-!- bob was ")

			m, err := keys.LoadModeration(moderationPath(dir))
			if err != nil {
				t.Fatal(err)
			}
			entries, other := m.Mutes, m.Bans
			if tt.ban {
				entries, other = m.Bans, m.Mutes
			}
			s, ok := entries["bob"]
			if !ok || len(entries) != 1 || len(other) != 0 {
				t.Fatalf("moderation file: %+v", m)
			}
			var length time.Duration
			if !s.Until.IsZero() {
				length = s.Until.Sub(s.At)
			}
			if length != tt.length || s.Reason != tt.reason || s.By != "alice" || time.Since(s.At) > time.Minute {
				t.Errorf("stored %+v (length %v); want length %v, reason %q, by alice, now", s, length, tt.length, tt.reason)
			}
			audit := readAudit(t, dir)
			if len(audit) != 1 || audit[0].Until.Sub(s.Until).Abs() >= time.Second || audit[0].Reason != tt.reason {
				t.Errorf("audit %+v, want until %v reason %q", audit, s.Until, tt.reason)
			}
		})
	}
}

func TestBanAndUnban(t *testing.T) {
	dir := t.TempDir()
	ts := startModerated(t, dir, "alice")
	ps := people(t, "alice", "bob", "carol", "dave")
	cs := ts.enter(ps[:3]...)
	alice, bob, carol := cs[0], cs[1], cs[2]
	ts.allowPeople(ps[3])

	alice.say("/ban bob 2h trolling")
	banned := ` by alice until ` + untilPattern + ` \(trolling\)\.$`
	bob.expectEndMatching("^-!- You are banned" + banned)
	for _, c := range []*chatter{alice, carol} {
		c.expect("bob has left")
		c.expectMatch("^-!- bob was banned" + banned)
	}
	// A new login is refused, saying why; the key is still allowed.
	ts.connectAs(ps[1]).expectEndMatching("^-!- You are banned" + banned)
	if _, ok := ts.allow.Lookup(ps[1].signer.PublicKey()); !ok {
		t.Fatal("the ban removed bob's key")
	}
	// So are one-shot commands.
	if _, stderr, status := ts.run(t, ps[1].signer, "names", ""); status != exitRefused || !strings.Contains(stderr, "You are banned") {
		t.Errorf("exec while banned: status %d, stderr %q", status, stderr)
	}

	// Someone offline can be banned too.
	alice.say("/ban dave")
	alice.expect("-!- dave was banned by alice.")
	ts.connectAs(ps[3]).expectEnd("-!- You are banned by alice.")

	alice.say("/unban bob")
	alice.expect("-!- bob was unbanned by alice.")
	carol.skipUntil("-!- bob was unbanned by alice.")
	bob = ts.join(ps[1].signer)
	carol.expect("bob has arrived")
	bob.say("I am back")
	carol.expect("bob: I am back")

	alice.skipUntil("bob: I am back")
	alice.say("/unban bob")
	alice.expectMatch(`^-!- Could not unban bob: .*not banned`)
}

// An operator cannot be kicked, banned or muted by another until /deop.
func TestOperatorsProtectEachOther(t *testing.T) {
	dir := t.TempDir()
	ts := startModerated(t, dir, "alice", "carol")
	cs := ts.enter(people(t, "alice", "carol")...)
	alice, carol := cs[0], cs[1]
	for _, verb := range []string{"kick", "ban", "mute"} {
		alice.say("/" + verb + " carol enough")
		alice.expect("-!- carol is an operator: /deop carol first to " + verb + " them.")
	}
	alice.say("/deop carol")
	for _, c := range cs {
		c.expect("-!- carol is no longer an operator (by alice).")
	}
	if ops, err := keys.LoadOps(opsPath(dir)); err != nil || !slices.Equal(ops.Names(), []string{"alice"}) {
		t.Fatalf("ops file after /deop: %v, %v", ops, err)
	}
	carol.say("/kick alice")
	carol.expect("-!- Only operators can use /kick.")
	alice.say("/kick carol enough")
	carol.expectEnd("-!- You were kicked by alice: enough.")
}

// /op and /deop edit the ops file, and /help and /names follow it.
func TestOpDeopHelpAndNames(t *testing.T) {
	dir := t.TempDir()
	ts := startModerated(t, dir, "alice")
	cs := ts.enter(people(t, "alice", "bob", "carol")...)
	alice, bob := cs[0], cs[1]

	help := func(c *chatter) (ordinary, operator bool) {
		t.Helper()
		lines := c.reply("/help")
		return slices.ContainsFunc(lines, func(l string) bool {
				return strings.HasPrefix(strings.TrimSpace(strings.TrimPrefix(l, "-!- ")), "/msg NAME TEXT")
			}),
			slices.ContainsFunc(lines, func(l string) bool {
				return l == "-!- Operator commands:" || strings.HasPrefix(strings.TrimSpace(strings.TrimPrefix(l, "-!- ")), "/kick ")
			})
	}
	if ordinary, operator := help(bob); !ordinary || operator {
		t.Errorf("bob's /help: ordinary commands %v, operator commands %v; want only ordinary ones", ordinary, operator)
	}
	if ordinary, operator := help(alice); !ordinary || !operator {
		t.Errorf("alice's /help: ordinary commands %v, operator commands %v; want both", ordinary, operator)
	}
	bob.say("/names")
	bob.expect("-!- 3 online: alice (op), bob, carol")

	alice.say("/op bob")
	for _, c := range cs {
		c.expect("-!- bob is now an operator (by alice).")
	}
	if ops, err := keys.LoadOps(opsPath(dir)); err != nil || !slices.Equal(ops.Names(), []string{"alice", "bob"}) {
		t.Fatalf("ops file after /op: %v, %v", ops, err)
	}
	if _, operator := help(bob); !operator {
		t.Error("bob's /help has no operator commands once he is one")
	}
	bob.say("/names")
	bob.expect("-!- 3 online: alice (op), bob (op), carol")
	alice.say("/op bob")
	alice.expect("-!- bob is already an operator.")

	bob.say("/deop alice")
	for _, c := range cs {
		c.expect("-!- alice is no longer an operator (by bob).")
	}
	alice.say("/deop bob")
	alice.expect("-!- Only operators can use /deop.")
	bob.say("/deop alice")
	bob.expect("-!- alice is already not an operator.")
	alice.say("/names")
	alice.expect("-!- 3 online: alice, bob (op), carol")

	want := []auditSummary{
		{"alice", keys.AuditOp, "bob", "", false},
		{"bob", keys.AuditDeop, "alice", "", false},
	}
	if got := summarise(readAudit(t, dir)); !slices.Equal(got, want) {
		t.Errorf("audit: %+v, want %+v", got, want)
	}
}

func TestMOTD(t *testing.T) {
	dir := t.TempDir()
	ts := startModerated(t, dir, "alice")
	ps := people(t, "alice", "bob", "carol")
	alice := ts.enter(ps[0])[0]
	ts.allowPeople(ps[1:]...)

	alice.say("/motd Be kind; no spoilers.")
	alice.expect("-!- alice set the message of the day: Be kind; no spoilers.")
	bob := ts.connectAs(ps[1])
	bob.expect("-!- Message of the day: Be kind; no spoilers.")
	bob.expectWelcome("bob", "alice", "bob")
	alice.expect("bob has arrived")

	alice.say("/motd off")
	alice.expect("-!- alice removed the message of the day.")
	bob.expect("-!- alice removed the message of the day.")
	ts.connectAs(ps[2]).expectWelcome("carol", "alice", "bob", "carol")

	want := []auditSummary{
		{"alice", keys.AuditMOTD, "alice", "Be kind; no spoilers.", false},
		{"alice", keys.AuditMOTD, "alice", "", false},
	}
	if got := summarise(readAudit(t, dir)); !slices.Equal(got, want) {
		t.Errorf("audit: %+v, want %+v", got, want)
	}
}

// /banned lists each ban and mute in force with its target, operator,
// time, expiry and reason.
func TestBannedList(t *testing.T) {
	ts := startModerated(t, t.TempDir(), "alice")
	alice := ts.enter(people(t, "alice")...)[0]
	ts.allowPeople(people(t, "bob", "carol", "dave")...)
	if got := alice.reply("/banned"); !slices.Equal(got, []string{"-!- 0 banned:", "-!- 0 muted:"}) {
		t.Fatalf("/banned with none: %q", got)
	}
	for _, cmd := range []string{"/ban dave", "/ban bob 2h30m trolling", "/mute carol 10m caps lock"} {
		alice.say(cmd)
		alice.expectMatch(`^-!- \w+ was (banned|muted) by alice`)
	}
	got := alice.reply("/banned")
	const at = `\d{4}-\d\d-\d\d \d\d:\d\d`
	want := []string{
		`^-!- 2 banned:$`,
		`^-!-   bob by alice at ` + at + `, until ` + at + ` \(trolling\)$`,
		`^-!-   dave by alice at ` + at + `, until lifted$`,
		`^-!- 1 muted:$`,
		`^-!-   carol by alice at ` + at + `, until ` + at + ` \(caps lock\)$`,
	}
	if len(got) != len(want) {
		t.Fatalf("/banned:\n%s", strings.Join(got, "\n"))
	}
	for i, w := range want {
		if !regexp.MustCompile(w).MatchString(got[i]) {
			t.Errorf("/banned line %d: %q, want %q", i, got[i], w)
		}
	}
	// The times are the sanction's: bob's ban ends 2h30m after it began.
	m := regexp.MustCompile(`at (` + at + `), until (` + at + `)`).FindStringSubmatch(got[1])
	start, _ := time.Parse("2006-01-02 15:04", m[1])
	end, _ := time.Parse("2006-01-02 15:04", m[2])
	if d := end.Sub(start); d < 150*time.Minute-time.Minute || d > 150*time.Minute+time.Minute {
		t.Errorf("bob's ban is listed from %s until %s", m[1], m[2])
	}
}

// Bans, mutes and the message of the day outlive the server: a second
// server on the same files applies them; both servers append to one audit
// log.
func TestModerationSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	ps := people(t, "alice", "bob", "carol", "dave")
	first := startModerated(t, dir, "alice")
	cs := first.enter(ps[:3]...)
	alice := cs[0]
	alice.say("/ban bob no trolls")
	alice.skipUntil("-!- bob was banned by alice (no trolls).")
	alice.say("/mute carol 1h too loud")
	alice.skipUntil("-!- carol was muted by alice")
	alice.say("/motd Welcome back.")
	alice.expect("-!- alice set the message of the day: Welcome back.")
	ctx, cancel := contextWithTimeout(waitLimit)
	defer cancel()
	if err := first.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	second := startModerated(t, dir)
	second.allowPeople(ps...)
	second.connectAs(ps[1]).expectEnd("-!- You are banned by alice (no trolls).")
	carol := second.connectAs(ps[2])
	carol.expect("-!- Message of the day: Welcome back.")
	carol.expectWelcome("carol", "carol")
	carol.say("still muted?")
	carol.expectMatch(`^-!- You are muted by alice until ` + untilPattern + ` \(too loud\); that line was not sent`)
	alice = second.join(ps[0].signer)
	carol.expect("alice has arrived")
	alice.say("/unmute carol")
	carol.expect("-!- carol was unmuted by alice.")
	carol.say("free")
	alice.skipUntil("carol: free")

	want := []auditSummary{
		{"alice", keys.AuditBan, "bob", "no trolls", false},
		{"alice", keys.AuditMute, "carol", "too loud", true},
		{"alice", keys.AuditMOTD, "alice", "Welcome back.", false},
		{"alice", keys.AuditUnmute, "carol", "", false},
	}
	if got := summarise(readAudit(t, dir)); !slices.Equal(got, want) {
		t.Errorf("audit: %+v, want %+v", got, want)
	}
}

// A ban written into the moderation file from outside, as `sshchat` CLI
// edits would, disconnects the user once the watcher reloads the file:
// serve's wiring of ModerationStore.Run to Server.Revalidate.
func TestBanFromOutsideHotReload(t *testing.T) {
	dir := t.TempDir()
	ts := startModerated(t, dir, "alice")
	cs := ts.enter(people(t, "alice", "bob")...)
	alice, bob := cs[0], cs[1]

	ctx, cancel := context.WithCancel(context.Background())
	watching := make(chan struct{})
	go func() {
		defer close(watching)
		ts.sanctions.Run(ctx, nil, ts.Revalidate)
	}()
	t.Cleanup(func() {
		cancel()
		<-watching
	})

	if _, err := keys.Ban(moderationPath(dir), keys.Sanction{Target: "bob", By: "alice", Reason: "from the command line", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	bob.expectEnd("-!- You are banned by alice (from the command line).")
	alice.expect("bob has left")
}
