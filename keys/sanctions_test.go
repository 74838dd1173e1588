package keys

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// modTime is a fixed time, whole seconds in UTC as the file stores them.
var modTime = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

const validModeration = `{
  "bans": [
    {"target": "Bob", "by": "alice", "reason": "spam <again> & again", "at": "2030-01-02T03:04:05Z", "until": "2030-01-02T04:04:05Z"},
    {"target": "carol", "by": "alice", "at": "2030-01-02T04:04:05+01:00"}
  ],
  "mutes": [
    {"target": "dave", "by": "erin", "reason": "caps lock ✓", "at": "2030-01-02T03:04:05Z"}
  ],
  "motd": {"text": "welcome", "by": "alice", "at": "2030-01-02T03:04:05Z"}
}
`

// modFile returns the path of a moderation file in a new directory.
func modFile(t testing.TB) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "data", "moderation.json")
}

func writeModeration(t testing.TB, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func readModFile(t testing.TB, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func modPerm(t testing.TB, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// moderationJSON returns a moderation file with the given bans.
func moderationJSON(bans string) string {
	return `{"bans": [` + bans + `], "mutes": []}`
}

func TestLoadModeration(t *testing.T) {
	m, err := LoadModeration(writeTemp(t, validModeration))
	if err != nil {
		t.Fatal(err)
	}
	want := &Moderation{
		Bans: map[string]Sanction{
			"bob":   {Target: "Bob", By: "alice", Reason: "spam <again> & again", At: modTime, Until: modTime.Add(time.Hour)},
			"carol": {Target: "carol", By: "alice", At: modTime},
		},
		Mutes: map[string]Sanction{
			"dave": {Target: "dave", By: "erin", Reason: "caps lock ✓", At: modTime},
		},
		MOTD: MOTD{Text: "welcome", By: "alice", At: modTime},
	}
	assertModeration(t, m, want)
}

func TestLoadModerationMissingFile(t *testing.T) {
	m, err := LoadModeration(modFile(t))
	if err != nil {
		t.Fatal(err)
	}
	assertModeration(t, m, newModeration())
}

func TestLoadModerationErrors(t *testing.T) {
	ban := func(fields string) string {
		return moderationJSON(`{"target": "bob", "by": "alice", "at": "2030-01-02T03:04:05Z"` + fields + `}`)
	}
	tests := []struct {
		name    string
		content string
		want    []string // each must appear in the error, in order
	}{
		{"empty", "", []string{"file is empty"}},
		{"blank", " \n\t\n", []string{"file is empty"}},
		{"null", "null", []string{`want a JSON object, found "null"`}},
		{"array", "[]", []string{"want a JSON object"}},
		{"syntax", "{\n  \"bans\": [,]\n}", []string{":2:12: invalid character ','"}},
		{"type", "{\n\"bans\": \"bob\"}", []string{":2:13: json: cannot unmarshal string"}},
		{"unknown field", `{"bans": [], "kicks": []}`, []string{`unknown field "kicks"`}},
		{"unknown sanction field", ban(`, "ip": "10.0.0.1"`), []string{`unknown field "ip"`}},
		{"trailing data", "{}\n{}", []string{":2:1: unexpected data after the JSON object"}},
		{"bad target", moderationJSON(`{"target": "bob smith", "by": "alice", "at": "2030-01-02T03:04:05Z"}`), []string{`bans[0] (target "bob smith"): target: names may not contain spaces`}},
		{"missing target", moderationJSON(`{"by": "alice", "at": "2030-01-02T03:04:05Z"}`), []string{"bans[0]", "target: missing"}},
		{"bad by", moderationJSON(`{"target": "bob", "by": "-x", "at": "2030-01-02T03:04:05Z"}`), []string{"by: name \"-x\" must start with a letter"}},
		{"missing at", moderationJSON(`{"target": "bob", "by": "alice"}`), []string{"at: missing time"}},
		{"until before at", ban(`, "until": "2030-01-02T03:04:05Z"`), []string{"until 2030-01-02T03:04:05Z is not after at"}},
		{"year out of range", ban(`, "until": "0000-01-01T00:00:00+01:00"`), []string{"until: year -1 is out of range"}},
		{"bell in reason", ban(`, "reason": "ding\u0007"`), []string{"reason contains the control character U+0007 at byte 4"}},
		{"escape in reason", ban(`, "reason": "\u001b[2J"`), []string{"U+001B at byte 0"}},
		{"newline in reason", ban(`, "reason": "a\nb"`), []string{"U+000A"}},
		{"C1 in reason", ban(`, "reason": "\u009b2J"`), []string{"U+009B"}},
		{"bidi in reason", ban(`, "reason": "abc\u202edef"`), []string{"U+202E at byte 3"}},
		{"long reason", ban(`, "reason": "` + strings.Repeat("x", MaxReasonLen+1) + `"`), []string{"reason is 201 bytes long; at most 200"}},
		{
			"duplicate target",
			moderationJSON(`{"target": "bob", "by": "alice", "at": "2030-01-02T03:04:05Z"}, {"target": "BOB", "by": "alice", "at": "2030-01-02T03:04:05Z"}`),
			[]string{`bans[1] (target "BOB"): "BOB" is listed again; first as bans[0] ("bob")`},
		},
		{
			"bad mute",
			`{"mutes": [{"target": "bob", "by": "", "at": "2030-01-02T03:04:05Z"}]}`,
			[]string{`mutes[0] (target "bob"): by: missing`},
		},
		{"long motd", `{"motd": {"text": "` + strings.Repeat("é", MaxMOTDLen/2+1) + `", "by": "a", "at": "2030-01-02T03:04:05Z"}}`, []string{"motd: text is 1026 bytes long; at most 1024"}},
		{"motd without author", `{"motd": {"text": "hi", "at": "2030-01-02T03:04:05Z"}}`, []string{"motd: by: missing"}},
		{"motd without text", `{"motd": {"by": "alice", "at": "2030-01-02T03:04:05Z"}}`, []string{"motd: text: missing"}},
		{"tab in motd", `{"motd": {"text": "a\tb", "by": "alice", "at": "2030-01-02T03:04:05Z"}}`, []string{"U+0009"}},
		{"oversize", "{" + strings.Repeat(" ", MaxModerationFileSize) + "}", []string{"file is larger than 1048576 bytes"}},
		{
			"every problem",
			`{"bans": [{"target": "a b", "by": "x", "at": "2030-01-02T03:04:05Z"}], "mutes": [{"target": "c", "by": "", "at": "2030-01-02T03:04:05Z"}]}`,
			[]string{"bans[0]", "\n", "mutes[0]"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeTemp(t, tt.content)
			m, err := LoadModeration(path)
			if err == nil {
				t.Fatalf("no error; got %+v", m)
			}
			if m != nil {
				t.Errorf("returned both a Moderation and an error")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, path+":") {
				t.Errorf("error does not start with the path %s:\n%s", path, msg)
			}
			rest := msg
			for _, want := range tt.want {
				i := strings.Index(rest, want)
				if i < 0 {
					t.Fatalf("error\n%s\ndoes not contain %q (in order)", msg, want)
				}
				rest = rest[i+len(want):]
			}
		})
	}
}

// writeTemp writes content to a new moderation file and returns its path.
func writeTemp(t testing.TB, content string) string {
	t.Helper()
	path := modFile(t)
	writeModeration(t, path, content)
	return path
}

func assertModeration(t testing.TB, got, want *Moderation) {
	t.Helper()
	if got == nil {
		t.Fatal("got a nil Moderation")
	}
	if got.Bans == nil || got.Mutes == nil {
		t.Errorf("nil map in %+v", got)
	}
	assertSanctions(t, "bans", got.Bans, want.Bans)
	assertSanctions(t, "mutes", got.Mutes, want.Mutes)
	if got.MOTD.Text != want.MOTD.Text || got.MOTD.By != want.MOTD.By || !got.MOTD.At.Equal(want.MOTD.At) {
		t.Errorf("motd = %+v, want %+v", got.MOTD, want.MOTD)
	}
}

func assertSanctions(t testing.TB, field string, got, want map[string]Sanction) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s = %+v, want %+v", field, got, want)
	}
	for key, w := range want {
		g, ok := got[key]
		if !ok || !sameSanction(g, w) {
			t.Errorf("%s[%q] = %+v, %v; want %+v", field, key, g, ok, w)
		}
	}
}

func sameSanction(a, b Sanction) bool {
	return a.Target == b.Target && a.By == b.By && a.Reason == b.Reason && a.At.Equal(b.At) && a.Until.Equal(b.Until)
}

// futureBan returns a ban of target by alice that is in force now.
func futureBan(target string) Sanction {
	now := time.Now().UTC().Truncate(time.Second)
	return Sanction{Target: target, By: "alice", Reason: "because", At: now, Until: now.Add(time.Hour)}
}

func TestModerationEdits(t *testing.T) {
	path := modFile(t)
	bob, carol := futureBan("Bob"), futureBan("carol")
	carol.Until = time.Time{}
	motd := MOTD{Text: "be nice", By: "alice", At: bob.At}

	steps := []struct {
		name string
		edit func() (*Moderation, error)
		want *Moderation
	}{
		{"ban", func() (*Moderation, error) { return Ban(path, bob) },
			&Moderation{Bans: map[string]Sanction{"bob": bob}}},
		{"mute", func() (*Moderation, error) { return Mute(path, carol) },
			&Moderation{Bans: map[string]Sanction{"bob": bob}, Mutes: map[string]Sanction{"carol": carol}}},
		{"motd", func() (*Moderation, error) { return SetMOTD(path, motd) },
			&Moderation{Bans: map[string]Sanction{"bob": bob}, Mutes: map[string]Sanction{"carol": carol}, MOTD: motd}},
		{"ban again replaces", func() (*Moderation, error) { return Ban(path, carol) },
			&Moderation{Bans: map[string]Sanction{"bob": bob, "carol": carol}, Mutes: map[string]Sanction{"carol": carol}, MOTD: motd}},
		{"unban", func() (*Moderation, error) { return Unban(path, "BOB") },
			&Moderation{Bans: map[string]Sanction{"carol": carol}, Mutes: map[string]Sanction{"carol": carol}, MOTD: motd}},
		{"unmute", func() (*Moderation, error) { return Unmute(path, "carol") },
			&Moderation{Bans: map[string]Sanction{"carol": carol}, MOTD: motd}},
		{"clear motd", func() (*Moderation, error) { return SetMOTD(path, MOTD{By: "alice"}) },
			&Moderation{Bans: map[string]Sanction{"carol": carol}}},
	}
	for _, step := range steps {
		got, err := step.edit()
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		assertModeration(t, got, step.want)
		loaded, err := LoadModeration(path)
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		assertModeration(t, loaded, step.want)
	}
	if _, err := Unban(path, "bob"); !errors.Is(err, ErrNotBanned) {
		t.Errorf("Unban of a user not banned: %v, want ErrNotBanned", err)
	}
	if _, err := Unmute(path, "carol"); !errors.Is(err, ErrNotMuted) {
		t.Errorf("Unmute of a user not muted: %v, want ErrNotMuted", err)
	}
	if got := modPerm(t, path); got != 0o600 {
		t.Errorf("file mode %v, want 0600", got)
	}
	if got := modPerm(t, filepath.Dir(path)); got != 0o700 {
		t.Errorf("directory mode %v, want 0700", got)
	}
	assertOnlyModerationFiles(t, filepath.Dir(path))
}

// assertOnlyModerationFiles checks that dir holds nothing but the
// moderation file and its lock: no temporary file is left behind.
func assertOnlyModerationFiles(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, ent := range ents {
		if ent.Name() != "moderation.json" && ent.Name() != "moderation.json.lock" {
			t.Errorf("unexpected file %s", ent.Name())
		}
	}
}

func TestModerationFileIsReadable(t *testing.T) {
	path := modFile(t)
	ban := Sanction{Target: "bob", By: "alice", Reason: "<spam> & more", At: time.Now().Add(-time.Minute)}
	if _, err := Ban(path, ban); err != nil {
		t.Fatal(err)
	}
	at := ban.At.UTC().Truncate(time.Second).Format(time.RFC3339)
	want := `{
  "bans": [
    {
      "target": "bob",
      "by": "alice",
      "reason": "<spam> & more",
      "at": "` + at + `"
    }
  ],
  "mutes": []
}
`
	if got := readModFile(t, path); got != want {
		t.Errorf("file is\n%s\nwant\n%s", got, want)
	}
}

func TestImposeRefuses(t *testing.T) {
	valid := futureBan("bob")
	tests := []struct {
		name   string
		change func(s *Sanction)
		want   string
	}{
		{"bad target", func(s *Sanction) { s.Target = "bob\x1b" }, "target: name \"bob\\x1b\" contains"},
		{"no operator", func(s *Sanction) { s.By = "" }, "by: missing"},
		{"long reason", func(s *Sanction) { s.Reason = strings.Repeat("r", 201) }, "reason is 201 bytes long"},
		{"control in reason", func(s *Sanction) { s.Reason = "\r" }, "U+000D"},
		{"no time", func(s *Sanction) { s.At = time.Time{} }, "at: missing time"},
		{"until before at", func(s *Sanction) { s.Until = s.At.Add(-time.Second) }, "is not after at"},
		{"expired", func(s *Sanction) { s.At, s.Until = s.At.Add(-2*time.Hour), s.At.Add(-time.Hour) }, "has already passed"},
	}
	for _, tt := range tests {
		for _, impose := range []func(string, Sanction) (*Moderation, error){Ban, Mute} {
			path := modFile(t)
			s := valid
			tt.change(&s)
			if _, err := impose(path, s); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("%s: error %v, want one containing %q", tt.name, err, tt.want)
			}
			if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s: file written after a refusal (Stat: %v)", tt.name, err)
			}
		}
	}
}

func TestSetMOTDRefuses(t *testing.T) {
	tests := []struct {
		name string
		motd MOTD
		want string
	}{
		{"no author", MOTD{Text: "hi", At: modTime}, "by: missing"},
		{"no time", MOTD{Text: "hi", By: "alice"}, "at: missing time"},
		{"too long", MOTD{Text: strings.Repeat("m", MaxMOTDLen+1), By: "alice", At: modTime}, "text is 1025 bytes long"},
		{"newline", MOTD{Text: "line\nline", By: "alice", At: modTime}, "U+000A"},
		{"invalid UTF-8", MOTD{Text: "\xff", By: "alice", At: modTime}, "text is not valid UTF-8"},
	}
	for _, tt := range tests {
		path := modFile(t)
		if _, err := SetMOTD(path, tt.motd); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want one containing %q", tt.name, err, tt.want)
		}
	}
}

func TestModerationExpiry(t *testing.T) {
	m, err := LoadModeration(writeTemp(t, validModeration))
	if err != nil {
		t.Fatal(err)
	}
	until := modTime.Add(time.Hour)
	tests := []struct {
		name      string
		now       time.Time
		wantBob   bool
		wantBans  []string
		wantMuted bool
	}{
		{"before expiry", until.Add(-time.Nanosecond), true, []string{"Bob", "carol"}, true},
		{"at expiry", until, false, []string{"carol"}, true},
		{"long after", until.AddDate(100, 0, 0), false, []string{"carol"}, true},
	}
	for _, tt := range tests {
		if _, ok := m.Banned("bOB", tt.now); ok != tt.wantBob {
			t.Errorf("%s: Banned(bOB) = %v, want %v", tt.name, ok, tt.wantBob)
		}
		var names []string
		for _, s := range m.ActiveBans(tt.now) {
			names = append(names, s.Target)
		}
		if !slices.Equal(names, tt.wantBans) {
			t.Errorf("%s: ActiveBans = %q, want %q", tt.name, names, tt.wantBans)
		}
		if s, ok := m.Muted("Dave", tt.now); ok != tt.wantMuted || s.By != "erin" {
			t.Errorf("%s: Muted(Dave) = %+v, %v", tt.name, s, ok)
		}
		if mutes := m.ActiveMutes(tt.now); len(mutes) != 1 || mutes[0].Target != "dave" {
			t.Errorf("%s: ActiveMutes = %+v", tt.name, mutes)
		}
	}
	if _, ok := m.Banned("nobody", modTime); ok {
		t.Error("Banned(nobody) = true")
	}
}

func TestEditDropsExpired(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	expired := Sanction{Target: "old", By: "alice", At: now.Add(-2 * time.Hour), Until: now.Add(-time.Hour)}
	current := futureBan("current")
	path := writeTemp(t, `{"bans": [`+sanctionJSON(t, expired)+`, `+sanctionJSON(t, current)+`], "mutes": [`+sanctionJSON(t, expired)+`]}`)
	fresh := futureBan("fresh")
	got, err := Ban(path, fresh)
	if err != nil {
		t.Fatal(err)
	}
	want := &Moderation{Bans: map[string]Sanction{"current": current, "fresh": fresh}}
	assertModeration(t, got, want)
	loaded, err := LoadModeration(path)
	if err != nil {
		t.Fatal(err)
	}
	assertModeration(t, loaded, want)
	if strings.Contains(readModFile(t, path), `"old"`) {
		t.Errorf("expired sanctions still in the file:\n%s", readModFile(t, path))
	}
}

func sanctionJSON(t testing.TB, s Sanction) string {
	t.Helper()
	data, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// writeModerationOf writes m to the file at path as it is, expired
// sanctions included.
func writeModerationOf(t testing.TB, path string, m *Moderation) {
	t.Helper()
	data, _, err := m.encode(time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	writeModeration(t, path, string(data))
}

func TestEditModerationCanonicalises(t *testing.T) {
	path := modFile(t)
	bob := futureBan("Bob")
	got, err := EditModeration(path, func(m *Moderation) error {
		m.Bans["not-the-key"] = bob
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	assertModeration(t, got, &Moderation{Bans: map[string]Sanction{"bob": bob}})

	before := readModFile(t, path)
	_, err = EditModeration(path, func(m *Moderation) error {
		m.Bans["other"] = futureBan("BOB")
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "is listed again") {
		t.Errorf("two bans of one user: error %v, want one saying it is listed again", err)
	}
	if readModFile(t, path) != before {
		t.Error("file changed after a refused edit")
	}
}

func TestEditModerationWritesNothing(t *testing.T) {
	fail := errors.New("changed my mind")
	tests := []struct {
		name    string
		content string // "" for no file
		fn      func(m *Moderation) error
		wantErr error
		errText string
	}{
		{"fn fails", validModeration, func(m *Moderation) error { m.MOTD = MOTD{}; return fail }, fail, ""},
		{"broken file", `{"bans": [{"target": "bob"}]}`, func(*Moderation) error { return nil }, nil, "refusing to edit a file with errors"},
		{"oversize file", "{" + strings.Repeat(" ", MaxModerationFileSize) + "}", func(*Moderation) error { return nil }, nil, "larger than"},
		{"nothing to write", "", func(*Moderation) error { return nil }, nil, ""},
		{"no change", validModeration, func(*Moderation) error { return nil }, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := modFile(t)
			if tt.content != "" {
				writeModeration(t, path, tt.content)
				if _, err := EditModeration(path, func(*Moderation) error { return nil }); err == nil {
					// Make an editable file canonical first, so that "no
					// change" means just that.
					tt.content = readModFile(t, path)
				}
			}
			fi, statErr := os.Stat(path)
			_, err := EditModeration(path, tt.fn)
			switch {
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
				t.Errorf("error %v, want %v", err, tt.wantErr)
			case tt.errText != "" && (err == nil || !strings.Contains(err.Error(), tt.errText)):
				t.Errorf("error %v, want one containing %q", err, tt.errText)
			case tt.wantErr == nil && tt.errText == "" && err != nil:
				t.Errorf("error %v", err)
			}
			if tt.content == "" {
				if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("file created (Stat: %v)", err)
				}
				return
			}
			if readModFile(t, path) != tt.content {
				t.Error("file content changed")
			}
			if after, err := os.Stat(path); statErr != nil || err != nil || !os.SameFile(fi, after) {
				t.Error("file replaced")
			}
		})
	}
}

func TestRenameModeration(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	ban := func(target, by string) Sanction {
		return Sanction{Target: target, By: by, At: now, Until: now.Add(time.Hour)}
	}
	expired := Sanction{Target: "newbob", By: "carol", At: now.Add(-2 * time.Hour), Until: now.Add(-time.Hour)}
	motd := MOTD{Text: "hi", By: "bob", At: now}
	start := &Moderation{
		Bans:  map[string]Sanction{"bob": ban("bob", "alice"), "dave": ban("dave", "Bob"), "newbob": expired},
		Mutes: map[string]Sanction{"bob": ban("bob", "carol"), "erin": ban("erin", "bob")},
		MOTD:  motd,
	}
	tests := []struct {
		name     string
		old, new string
		want     *Moderation
		wantErr  string
	}{
		{
			"everywhere", "BOB", "newbob",
			&Moderation{
				Bans:  map[string]Sanction{"newbob": ban("newbob", "alice"), "dave": ban("dave", "newbob")},
				Mutes: map[string]Sanction{"newbob": ban("newbob", "carol"), "erin": ban("erin", "newbob")},
				MOTD:  MOTD{Text: "hi", By: "newbob", At: now},
			},
			"",
		},
		{
			"case only", "bob", "Bob",
			&Moderation{
				Bans:  map[string]Sanction{"bob": ban("Bob", "alice"), "dave": ban("dave", "Bob")},
				Mutes: map[string]Sanction{"bob": ban("Bob", "carol"), "erin": ban("erin", "Bob")},
				MOTD:  MOTD{Text: "hi", By: "Bob", At: now},
			},
			"",
		},
		{
			"nothing to rename", "zed", "zack",
			&Moderation{
				Bans:  map[string]Sanction{"bob": ban("bob", "alice"), "dave": ban("dave", "Bob")},
				Mutes: map[string]Sanction{"bob": ban("bob", "carol"), "erin": ban("erin", "bob")},
				MOTD:  motd,
			},
			"",
		},
		{"new name banned", "bob", "Dave", nil, `duplicate name: "dave" is banned (by "Bob")`},
		{"new name muted", "alice", "erin", nil, `duplicate name: "erin" is muted (by "bob")`},
		{"invalid new name", "bob", "bob smith", nil, "names may not contain spaces"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := modFile(t)
			writeModerationOf(t, path, start)
			before := readModFile(t, path)
			got, err := RenameModeration(path, tt.old, tt.new)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error %v, want one containing %q", err, tt.wantErr)
				}
				if strings.HasPrefix(tt.name, "new name") && !errors.Is(err, ErrDuplicateName) {
					t.Errorf("error %v does not wrap ErrDuplicateName", err)
				}
				if readModFile(t, path) != before {
					t.Error("file changed after a refused rename")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			assertModeration(t, got, tt.want)
			loaded, err := LoadModeration(path)
			if err != nil {
				t.Fatal(err)
			}
			assertModeration(t, loaded, tt.want)
		})
	}
}

func TestRenameModerationWithoutFile(t *testing.T) {
	path := modFile(t)
	m, err := RenameModeration(path, "alice", "alicia")
	if err != nil {
		t.Fatal(err)
	}
	assertModeration(t, m, newModeration())
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("rename with nothing to rename created the file (Stat: %v)", err)
	}
}

func TestEditModerationConcurrently(t *testing.T) {
	const goroutines, each = 8, 10
	path := modFile(t)
	var wg sync.WaitGroup
	errs := make(chan error, goroutines*each)
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				s := futureBan(fmt.Sprintf("g%d-%d", g, i))
				edit := Ban
				if i%2 == 1 {
					edit = Mute
				}
				if _, err := edit(path, s); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	m, err := LoadModeration(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(m.Bans)+len(m.Mutes), goroutines*each; got != want {
		t.Errorf("file has %d sanctions, want %d", got, want)
	}
	for g := range goroutines {
		for i := range each {
			name := fmt.Sprintf("g%d-%d", g, i)
			_, banned := m.Banned(name, time.Now())
			_, muted := m.Muted(name, time.Now())
			if banned == (i%2 == 1) || muted == (i%2 == 0) {
				t.Errorf("%s: banned %v, muted %v", name, banned, muted)
			}
		}
	}
	assertOnlyModerationFiles(t, filepath.Dir(path))
}

// The moderation helper process bans helperCount users named
// helperPrefix0, helperPrefix1, ... in the moderation file helperPath,
// once its standard input is closed.
const (
	helperPath   = "SSHCHAT_TEST_MODERATION_PATH"
	helperPrefix = "SSHCHAT_TEST_MODERATION_PREFIX"
	helperCount  = "SSHCHAT_TEST_MODERATION_COUNT"
)

func TestModerationHelperProcess(t *testing.T) {
	path := os.Getenv(helperPath)
	if path == "" {
		t.Skip("run by TestEditModerationFromTwoProcesses")
	}
	n, err := strconv.Atoi(os.Getenv(helperCount))
	if err != nil {
		t.Fatal(err)
	}
	// Start together with the other process.
	if _, err := io.Copy(io.Discard, os.Stdin); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := Ban(path, futureBan(fmt.Sprintf("%s%d", os.Getenv(helperPrefix), i))); err != nil {
			t.Fatal(err)
		}
	}
}

func TestEditModerationFromTwoProcesses(t *testing.T) {
	const each = 40
	path := modFile(t)
	prefixes := []string{"p", "q"}
	cmds := make([]*exec.Cmd, len(prefixes))
	starts := make([]io.WriteCloser, len(prefixes))
	outputs := make([]*bytes.Buffer, len(prefixes))
	for i, prefix := range prefixes {
		cmd := exec.Command(os.Args[0], "-test.run=^TestModerationHelperProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), helperPath+"="+path, helperPrefix+"="+prefix, helperCount+"="+strconv.Itoa(each))
		outputs[i] = new(bytes.Buffer)
		cmd.Stdout, cmd.Stderr = outputs[i], outputs[i]
		var err error
		if starts[i], err = cmd.StdinPipe(); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds[i] = cmd
	}
	for _, start := range starts {
		start.Close()
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("helper %s: %v\n%s", prefixes[i], err, outputs[i])
		}
	}
	m, err := LoadModeration(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(m.Bans), each*len(prefixes); got != want {
		t.Errorf("file has %d bans, want %d", got, want)
	}
	for _, prefix := range prefixes {
		for i := range each {
			if _, ok := m.Banned(fmt.Sprintf("%s%d", prefix, i), time.Now()); !ok {
				t.Errorf("ban of %s%d lost", prefix, i)
			}
		}
	}
}

func TestModerationStore(t *testing.T) {
	path := modFile(t)
	st := NewModerationStore(path, nil)
	if st.Path() != path {
		t.Errorf("Path() = %q, want %q", st.Path(), path)
	}
	assertModeration(t, st.Current(), newModeration())
	if err := st.Reload(); err != nil {
		t.Fatalf("Reload of a missing file: %v", err)
	}
	assertModeration(t, st.Current(), newModeration())

	bob := futureBan("bob")
	if _, err := Ban(path, bob); err != nil {
		t.Fatal(err)
	}
	if err := st.Reload(); err != nil {
		t.Fatal(err)
	}
	good := st.Current()
	assertModeration(t, good, &Moderation{Bans: map[string]Sanction{"bob": bob}})

	writeModeration(t, path, `{"bans": [{"target": "bob", "by": "alice", "at": "2030-01-02T03:04:05Z", "reason": "\u0007"}]}`)
	if err := st.Reload(); err == nil || !strings.Contains(err.Error(), "U+0007") {
		t.Errorf("Reload of a broken file: %v", err)
	}
	if st.Current() != good {
		t.Error("Reload replaced the content after an error")
	}

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := st.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, ok := st.Current().Banned("bob", time.Now()); ok {
		t.Error("bob still banned after the file was removed")
	}
}

func FuzzParseModeration(f *testing.F) {
	f.Add([]byte(validModeration))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"bans": null, "mutes": [], "motd": {}}`))
	f.Add([]byte(moderationJSON(`{"target": "a", "by": "b", "at": "2030-01-02T03:04:05.5Z", "until": "2030-01-02T03:04:06Z"}`)))
	f.Add([]byte(moderationJSON(`{"target": "a", "by": "b", "reason": "\u2028<>&", "at": "2030-01-02T03:04:05-07:00"}`)))
	f.Add([]byte(`{"BANS": [], "Motd": {"TEXT": "x", "by": "y", "at": "9999-12-31T23:59:59-01:00"}}`))
	f.Add([]byte(`{"bans": [{"target": "a"}]} trailing`))

	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := parseModeration("f", data)
		if err != nil {
			if m != nil {
				t.Fatal("returned both a Moderation and an error")
			}
			if !strings.HasPrefix(err.Error(), "f:") {
				t.Fatalf("error does not start with the path: %v", err)
			}
			return
		}
		for _, sanctions := range []map[string]Sanction{m.Bans, m.Mutes} {
			for key, s := range sanctions {
				if key != strings.ToLower(s.Target) || CheckName(s.Target) != nil || CheckName(s.By) != nil || ValidReason(s.Reason) != nil {
					t.Fatalf("accepted invalid sanction %q: %+v", key, s)
				}
			}
		}
		out, again, err := m.encode(time.Time{})
		if err != nil {
			if wholeSeconds(m) && len(data) < MaxModerationFileSize/4 {
				t.Fatalf("cannot write back what was read: %v", err)
			}
			return
		}
		if wholeSeconds(m) {
			assertModeration(t, again, m)
		}
		reread, err := parseModeration("f", out)
		if err != nil {
			t.Fatalf("cannot read back what was written: %v\n%s", err, out)
		}
		assertModeration(t, reread, again)
	})
}

// wholeSeconds reports whether every time in m is a whole second, so that
// writing m changes nothing.
func wholeSeconds(m *Moderation) bool {
	whole := func(t time.Time) bool { return t.Equal(t.Truncate(time.Second)) }
	for _, sanctions := range []map[string]Sanction{m.Bans, m.Mutes} {
		for _, s := range sanctions {
			if !whole(s.At) || !whole(s.Until) {
				return false
			}
		}
	}
	return whole(m.MOTD.At)
}
