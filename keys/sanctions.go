package keys

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

const (
	// MaxModerationFileSize is the largest moderation file, in bytes, that
	// is read or written.
	MaxModerationFileSize = 1 << 20
	// MaxReasonLen is the longest reason for a sanction, in bytes.
	MaxReasonLen = 200
	// MaxMOTDLen is the longest message of the day, in bytes.
	MaxMOTDLen = 1 << 10
)

var (
	// ErrNotBanned means a user has no ban in force.
	ErrNotBanned = errors.New("not banned")
	// ErrNotMuted means a user has no mute in force.
	ErrNotMuted = errors.New("not muted")
)

// Sanction is a ban or a mute of one user.
type Sanction struct {
	Target string    `json:"target"`          // the user sanctioned
	By     string    `json:"by"`              // the operator who imposed it
	Reason string    `json:"reason,omitzero"` // optional; see [ValidReason]
	At     time.Time `json:"at"`              // when it was imposed
	Until  time.Time `json:"until,omitzero"`  // when it expires; zero: when lifted
}

// Expired reports whether the sanction has run out at now.
func (s Sanction) Expired(now time.Time) bool {
	return !s.Until.IsZero() && !now.Before(s.Until)
}

// MOTD is the message of the day, shown to every user who joins. Its zero
// value means there is none.
type MOTD struct {
	Text string    `json:"text"` // one line; see [MaxMOTDLen]
	By   string    `json:"by"`   // the operator who set it
	At   time.Time `json:"at"`   // when it was set
}

// Moderation is the content of a moderation file: the bans, the mutes and
// the message of the day.
//
// The file is an access file like the allowed keys: the running server
// edits it (on /ban, /mute, /motd, ...) and so does the keys CLI (a rename
// renames a user's bans and mutes too). So it is one small JSON file that
// every edit rewrites atomically under the same kind of lock as the allowed
// keys file, and that the server reloads when it changes. It survives a
// restart and kill -9 (the rename that replaces it is atomic and fsynced),
// can be read and repaired by hand, and needs no store shared with anything
// else. Its format:
//
//	{
//	  "bans": [
//	    {"target": "bob", "by": "alice", "reason": "spam", "at": "2025-01-02T03:04:05Z", "until": "2025-01-02T04:04:05Z"}
//	  ],
//	  "mutes": [],
//	  "motd": {"text": "welcome", "by": "alice", "at": "2025-01-02T03:04:05Z"}
//	}
//
// A sanction without "until" lasts until it is lifted. Reading is strict,
// since a broken or tampered file must be noticed rather than half applied:
// unknown fields, invalid names, text with control characters, a name listed
// twice, an empty file and a file larger than [MaxModerationFileSize] are
// all errors.
//
// Bans and Mutes are keyed by the target's name in lower case, since names
// are case-insensitive; neither map is nil. Times are in UTC, to the second
// once written.
//
// A Moderation returned by this package may be shared with other
// goroutines and must not be modified, except by the function passed to
// [EditModeration], which gets its own copy.
type Moderation struct {
	Bans  map[string]Sanction
	Mutes map[string]Sanction
	MOTD  MOTD
}

func newModeration() *Moderation {
	return &Moderation{Bans: make(map[string]Sanction), Mutes: make(map[string]Sanction)}
}

// Banned returns the ban of the user name, if one is in force at now.
func (m *Moderation) Banned(name string, now time.Time) (Sanction, bool) {
	return inForce(m.Bans, name, now)
}

// Muted returns the mute of the user name, if one is in force at now.
func (m *Moderation) Muted(name string, now time.Time) (Sanction, bool) {
	return inForce(m.Mutes, name, now)
}

// ActiveBans returns the bans in force at now, ordered by target name.
func (m *Moderation) ActiveBans(now time.Time) []Sanction { return allInForce(m.Bans, now) }

// ActiveMutes returns the mutes in force at now, ordered by target name.
func (m *Moderation) ActiveMutes(now time.Time) []Sanction { return allInForce(m.Mutes, now) }

func inForce(sanctions map[string]Sanction, name string, now time.Time) (Sanction, bool) {
	s, ok := sanctions[strings.ToLower(name)]
	if !ok || s.Expired(now) {
		return Sanction{}, false
	}
	return s, true
}

func allInForce(sanctions map[string]Sanction, now time.Time) []Sanction {
	var list []Sanction
	for _, s := range sanctions {
		if !s.Expired(now) {
			list = append(list, s)
		}
	}
	sortSanctions(list)
	return list
}

func sortSanctions(list []Sanction) {
	slices.SortFunc(list, func(a, b Sanction) int {
		return cmp.Compare(strings.ToLower(a.Target), strings.ToLower(b.Target))
	})
}

// moderationFile is the JSON form of a Moderation. Lists rather than maps
// keep a name's key and its target from disagreeing.
type moderationFile struct {
	Bans  []Sanction `json:"bans"`
	Mutes []Sanction `json:"mutes"`
	MOTD  MOTD       `json:"motd,omitzero"`
}

// LoadModeration reads and checks the moderation file at path. A missing
// file holds no sanctions and no message of the day. Every problem found is
// reported, each error beginning with path.
func LoadModeration(path string) (*Moderation, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return newModeration(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("load moderation: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxModerationFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("load moderation: %w", err)
	}
	return parseModeration(path, data)
}

// parseModeration parses and checks the content of the moderation file at
// path.
func parseModeration(path string, data []byte) (*Moderation, error) {
	if len(data) > MaxModerationFileSize {
		return nil, fmt.Errorf("%s: file is larger than %d bytes", path, MaxModerationFileSize)
	}
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		// A truncated file must not read as "no bans".
		return nil, fmt.Errorf("%s: file is empty; want a JSON object (remove the file to lift every sanction)", path)
	}
	if trimmed[0] != '{' {
		return nil, fmt.Errorf("%s: want a JSON object, found %q", path, trimmed[:min(len(trimmed), 10)])
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var mf moderationFile
	if err := dec.Decode(&mf); err != nil {
		return nil, jsonError(path, data, err)
	}
	end := dec.InputOffset()
	if rest := bytes.TrimLeft(data[end:], " \t\r\n"); len(rest) > 0 {
		return nil, fmt.Errorf("%s:%s: unexpected data after the JSON object", path, position(data, len(data)-len(rest)))
	}
	m, errs := mf.check()
	for i, err := range errs {
		errs[i] = fmt.Errorf("%s: %w", path, err)
	}
	return m, errors.Join(errs...)
}

// jsonError adds the path and, if known, the line and column to a JSON
// decoding error.
func jsonError(path string, data []byte, err error) error {
	// Both offsets count the bytes read up to and including the culprit.
	var offset int64
	if se, ok := errors.AsType[*json.SyntaxError](err); ok {
		offset = se.Offset
	} else if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		offset = te.Offset
	}
	if offset <= 0 || offset > int64(len(data)) {
		return fmt.Errorf("%s: %w", path, err)
	}
	return fmt.Errorf("%s:%s: %w", path, position(data, int(offset-1)), err)
}

// position formats the place of data[i] as "line:column", both 1-based.
func position(data []byte, i int) string {
	before := data[:i]
	line := bytes.Count(before, []byte("\n")) + 1
	col := i - bytes.LastIndexByte(before, '\n')
	return fmt.Sprintf("%d:%d", line, col)
}

// check validates mf and returns it as a Moderation, or every reason it is
// invalid.
func (mf *moderationFile) check() (*Moderation, []error) {
	m := newModeration()
	errs := checkSanctions("bans", mf.Bans, m.Bans)
	errs = append(errs, checkSanctions("mutes", mf.Mutes, m.Mutes)...)
	if err := checkMOTD(mf.MOTD); err != nil {
		errs = append(errs, fmt.Errorf("motd: %w", err))
	}
	m.MOTD = mf.MOTD
	m.MOTD.At = m.MOTD.At.UTC()
	if len(errs) > 0 {
		return nil, errs
	}
	return m, nil
}

// checkSanctions validates list, the file's field called field, and adds
// each sanction to into.
func checkSanctions(field string, list []Sanction, into map[string]Sanction) []error {
	var errs []error
	index := make(map[string]int, len(list))
	for i, s := range list {
		err := checkSanction(s)
		key := strings.ToLower(s.Target)
		if j, dup := index[key]; dup && err == nil {
			err = fmt.Errorf("%q is listed again; first as %s[%d] (%q)", s.Target, field, j, list[j].Target)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s[%d] (target %q): %w", field, i, s.Target, err))
			continue
		}
		index[key] = i
		s.At, s.Until = s.At.UTC(), s.Until.UTC()
		into[key] = s
	}
	return errs
}

func checkSanction(s Sanction) error {
	if err := checkUserField("target", s.Target); err != nil {
		return err
	}
	if err := checkUserField("by", s.By); err != nil {
		return err
	}
	if err := ValidReason(s.Reason); err != nil {
		return err
	}
	if err := checkTime("at", s.At); err != nil {
		return err
	}
	if s.Until.IsZero() {
		return nil
	}
	if err := checkTime("until", s.Until); err != nil {
		return err
	}
	if !s.Until.After(s.At) {
		return fmt.Errorf("until %s is not after at %s", s.Until.Format(time.RFC3339), s.At.Format(time.RFC3339))
	}
	return nil
}

func checkMOTD(motd MOTD) error {
	if motd == (MOTD{}) {
		return nil
	}
	if err := checkText("text", motd.Text, MaxMOTDLen); err != nil {
		return err
	}
	if motd.Text == "" {
		return errors.New("text: missing; omit the motd to have none")
	}
	if err := checkUserField("by", motd.By); err != nil {
		return err
	}
	return checkTime("at", motd.At)
}

// checkUserField checks the user name in field.
func checkUserField(field, name string) error {
	if name == "" {
		return fmt.Errorf("%s: missing", field)
	}
	if err := CheckName(name); err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	return nil
}

// checkTime rejects a missing time, and one that cannot be written back.
func checkTime(field string, t time.Time) error {
	if t.IsZero() {
		return fmt.Errorf("%s: missing time", field)
	}
	if y := t.UTC().Year(); y < 1 || y > 9999 {
		return fmt.Errorf("%s: year %d is out of range", field, y)
	}
	return nil
}

// ValidReason reports whether reason may be given for a sanction: at most
// [MaxReasonLen] bytes of valid UTF-8 on one line, with no control
// characters. It may be empty.
func ValidReason(reason string) error { return checkText("reason", reason, MaxReasonLen) }

// checkText rejects the text of field if it is longer than limit bytes or
// could change how a terminal shows what follows it: invalid UTF-8, C0 and
// C1 controls (tab and newline included) and Unicode bidi controls.
func checkText(field, text string, limit int) error {
	if len(text) > limit {
		return fmt.Errorf("%s is %d bytes long; at most %d are allowed", field, len(text), limit)
	}
	if !utf8.ValidString(text) {
		return fmt.Errorf("%s is not valid UTF-8", field)
	}
	for i, r := range text {
		if r < 0x20 || 0x7f <= r && r <= 0x9f || isBidiControl(r) {
			return fmt.Errorf("%s contains the control character %U at byte %d", field, r, i)
		}
	}
	return nil
}

func isBidiControl(r rune) bool {
	return 0x202a <= r && r <= 0x202e || 0x2066 <= r && r <= 0x2069 ||
		r == 0x200e || r == 0x200f || r == 0x061c
}

// encode returns the file content for m as of now, without the sanctions
// expired by then so that the file does not grow without bound, and the
// Moderation that content holds.
func (m *Moderation) encode(now time.Time) ([]byte, *Moderation, error) {
	mf := moderationFile{
		Bans:  unexpired(m.Bans, now),
		Mutes: unexpired(m.Mutes, now),
		MOTD:  m.MOTD,
	}
	mf.MOTD.At = toSecond(mf.MOTD.At)
	cur, errs := mf.check()
	if len(errs) > 0 {
		return nil, nil, errors.Join(errs...)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // the file is for people to read, not a web page
	enc.SetIndent("", "  ")
	if err := enc.Encode(mf); err != nil {
		return nil, nil, err
	}
	data := buf.Bytes()
	if len(data) > MaxModerationFileSize {
		return nil, nil, fmt.Errorf("the file would be %d bytes long; at most %d are allowed", len(data), MaxModerationFileSize)
	}
	return data, cur, nil
}

// unexpired lists the sanctions in force at now, times made UTC and whole
// seconds, in the order they are written.
func unexpired(sanctions map[string]Sanction, now time.Time) []Sanction {
	list := make([]Sanction, 0, len(sanctions))
	for _, s := range sanctions {
		if !s.Expired(now) {
			s.At, s.Until = toSecond(s.At), toSecond(s.Until)
			list = append(list, s)
		}
	}
	sortSanctions(list)
	return list
}

func toSecond(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC().Truncate(time.Second)
}

// EditModeration replaces the moderation file at path with what fn makes of
// its content, holding the file's lock throughout, so that edits by the
// server and by the keys CLI do not lose each other's changes. A missing
// file reads as empty and is created (mode 0600, directory 0700) only if
// there is something to write. Sanctions that have expired are dropped. It
// refuses a file with errors, and writes nothing if fn returns an error or
// the result is invalid. It returns the Moderation as written.
func EditModeration(path string, fn func(m *Moderation) error) (*Moderation, error) {
	// edit reads the whole file: refuse a huge one before it does.
	if fi, err := os.Stat(path); err == nil && fi.Size() > MaxModerationFileSize {
		return nil, fmt.Errorf("%s: file is larger than %d bytes", path, MaxModerationFileSize)
	}
	var cur *Moderation
	err := edit(path, func(data []byte, exists bool) ([]byte, error) {
		m := newModeration()
		if exists {
			var err error
			if m, err = parseModeration(path, data); err != nil {
				return nil, fmt.Errorf("refusing to edit a file with errors:\n%w", err)
			}
		}
		if err := fn(m); err != nil {
			return nil, err
		}
		out, written, err := m.encode(time.Now())
		if err != nil {
			return nil, err
		}
		cur = written
		if bytes.Equal(out, data) || !exists && written.empty() {
			return nil, nil
		}
		return out, nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cur, nil
}

func (m *Moderation) empty() bool {
	return len(m.Bans) == 0 && len(m.Mutes) == 0 && m.MOTD == MOTD{}
}

// Ban bans s.Target in the moderation file at path, replacing any ban the
// user already has. s must be valid and not yet expired.
func Ban(path string, s Sanction) (*Moderation, error) {
	return EditModeration(path, func(m *Moderation) error { return impose(m.Bans, s) })
}

// Mute mutes s.Target in the moderation file at path, replacing any mute the
// user already has. s must be valid and not yet expired.
func Mute(path string, s Sanction) (*Moderation, error) {
	return EditModeration(path, func(m *Moderation) error { return impose(m.Mutes, s) })
}

func impose(sanctions map[string]Sanction, s Sanction) error {
	if err := checkSanction(s); err != nil {
		return err
	}
	if s.Expired(time.Now()) {
		return fmt.Errorf("until %s has already passed", s.Until.Format(time.RFC3339))
	}
	sanctions[strings.ToLower(s.Target)] = s
	return nil
}

// Unban lifts the ban of the user name in the moderation file at path. It
// returns an error wrapping [ErrNotBanned] if the user has no ban in force.
func Unban(path, name string) (*Moderation, error) {
	return EditModeration(path, func(m *Moderation) error {
		if _, ok := m.Banned(name, time.Now()); !ok {
			return fmt.Errorf("%w: %q", ErrNotBanned, name)
		}
		delete(m.Bans, strings.ToLower(name))
		return nil
	})
}

// Unmute lifts the mute of the user name in the moderation file at path. It
// returns an error wrapping [ErrNotMuted] if the user has no mute in force.
func Unmute(path, name string) (*Moderation, error) {
	return EditModeration(path, func(m *Moderation) error {
		if _, ok := m.Muted(name, time.Now()); !ok {
			return fmt.Errorf("%w: %q", ErrNotMuted, name)
		}
		delete(m.Mutes, strings.ToLower(name))
		return nil
	})
}

// SetMOTD makes motd the message of the day in the moderation file at path.
// An empty motd.Text removes the message of the day.
func SetMOTD(path string, motd MOTD) (*Moderation, error) {
	if motd.Text == "" {
		motd = MOTD{}
	}
	if err := checkMOTD(motd); err != nil {
		return nil, fmt.Errorf("%s: motd: %w", path, err)
	}
	return EditModeration(path, func(m *Moderation) error {
		m.MOTD = motd
		return nil
	})
}

// RenameModeration renames the user old to new in the moderation file at
// path: as the target of a ban or mute, as the operator who imposed one and
// as the author of the message of the day. Having nothing there is not an
// error. It refuses, with an error wrapping [ErrDuplicateName], if new
// (compared case-insensitively, and unless it is old) has a ban or mute in
// force, since the renamed user would inherit it.
func RenameModeration(path, old, new string) (*Moderation, error) {
	if err := checkUserField("new name", new); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	oldKey, newKey := strings.ToLower(old), strings.ToLower(new)
	return EditModeration(path, func(m *Moderation) error {
		now := time.Now()
		if oldKey != newKey {
			if s, ok := m.Banned(new, now); ok {
				return fmt.Errorf("%w: %q is banned (by %q); lift the ban or choose another name", ErrDuplicateName, s.Target, s.By)
			}
			if s, ok := m.Muted(new, now); ok {
				return fmt.Errorf("%w: %q is muted (by %q); lift the mute or choose another name", ErrDuplicateName, s.Target, s.By)
			}
		}
		for _, sanctions := range []map[string]Sanction{m.Bans, m.Mutes} {
			for key, s := range sanctions {
				if strings.EqualFold(s.By, old) {
					s.By = new
					sanctions[key] = s
				}
			}
			if s, ok := sanctions[oldKey]; ok {
				delete(sanctions, oldKey)
				s.Target = new
				sanctions[newKey] = s
			}
		}
		if strings.EqualFold(m.MOTD.By, old) {
			m.MOTD.By = new
		}
		return nil
	})
}

// ModerationStore holds the current content of a moderation file and
// replaces it atomically on reload; its Run method keeps it current as the
// file changes, as a [Store]'s does. It is safe for concurrent use.
type ModerationStore struct {
	*live[Moderation]
}

// NewModerationStore returns a ModerationStore for the file at path that
// logs to log (nowhere if nil). It starts empty: call Reload to read the
// file.
func NewModerationStore(path string, log *slog.Logger) *ModerationStore {
	return &ModerationStore{newLive(fileKind[Moderation]{
		what:  "moderation",
		unit:  "sanctions",
		load:  LoadModeration,
		same:  (*Moderation).sameSanctions,
		count: func(m *Moderation) int { return len(m.Bans) + len(m.Mutes) },
	}, path, log, newModeration())}
}

// Current returns the content of the file as of the last successful
// reload or edit. It must not be modified.
func (st *ModerationStore) Current() *Moderation { return st.current() }

// Edit edits the file with [EditModeration] and makes the result current
// at once, so that what the edit did holds from the moment it returns.
func (st *ModerationStore) Edit(fn func(m *Moderation) error) (*Moderation, error) {
	m, err := EditModeration(st.path, fn)
	if err != nil {
		return nil, err
	}
	st.cur.Store(m)
	return m, nil
}

// sameSanctions reports whether m and n impose the same sanctions and
// message of the day.
func (m *Moderation) sameSanctions(n *Moderation) bool {
	return maps.Equal(m.Bans, n.Bans) && maps.Equal(m.Mutes, n.Mutes) && m.MOTD == n.MOTD
}
