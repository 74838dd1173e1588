package store

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestRoundTrip(t *testing.T) {
	dir := dataDir(t)
	db, _ := openTest(t, dir)
	if got := db.LastSeq(); got != 0 {
		t.Fatalf("new file: LastSeq = %d, want 0", got)
	}
	want := []Message{
		{Seq: 1, At: t0, From: "alice", Kind: Chat, Text: "hi"},
		{Seq: 2, At: t0.Add(time.Second), From: "bob", Kind: Action, Text: "waves ✋"},
		{Seq: 5, At: t0.Add(time.Minute), From: "carol", Kind: Chat, Text: ""},
	}
	seen := map[string]Seen{"dave": {At: t0.Add(time.Hour), Seq: 2}}
	if err := db.Write(Batch{Messages: want, Seen: seen}); err != nil {
		t.Fatal(err)
	}
	db.Close()

	db, rec := openTest(t, dir)
	if got := db.LastSeq(); got != 5 {
		t.Errorf("LastSeq = %d, want 5", got)
	}
	got, err := db.Recent(10)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(got, want, equalMessage) {
		t.Errorf("Recent = %+v, want %+v", got, want)
	}
	gotSeen, err := db.LastSeen()
	if err != nil {
		t.Fatal(err)
	}
	if len(gotSeen) != 1 || !gotSeen["dave"].At.Equal(seen["dave"].At) || gotSeen["dave"].Seq != 2 {
		t.Errorf("LastSeen = %+v, want %+v", gotSeen, seen)
	}
	if len(rec.lines) != 0 {
		t.Errorf("logged %q", rec.lines)
	}
}

func equalMessage(a, b Message) bool {
	return a.Seq == b.Seq && a.At.Equal(b.At) && a.From == b.From && a.Kind == b.Kind && a.Text == b.Text
}

func TestWriteRefusesInvalid(t *testing.T) {
	ok := Message{Seq: 11, At: t0, From: "alice", Kind: Chat, Text: "fine"}
	with := func(edit func(*Message)) []Message {
		m := ok
		edit(&m)
		return []Message{ok, m}
	}
	tests := []struct {
		name  string
		batch Batch
		want  string
	}{
		{"seq 0", Batch{Messages: []Message{{At: t0, From: "a", Kind: Chat}}}, "message 0: sequence number is not above 10"},
		{"seq not above stored", Batch{Messages: msgs(10, 10)}, "not above 10"},
		{"seq repeated in batch", Batch{Messages: with(func(m *Message) {})}, "not above 11"},
		{"seq going down", Batch{Messages: []Message{msgs(13, 13)[0], msgs(12, 12)[0]}}, "not above 13"},
		{"kind unset", Batch{Messages: with(func(m *Message) { m.Seq, m.Kind = 12, 0 })}, "unknown kind"},
		{"zero time", Batch{Messages: with(func(m *Message) { m.Seq, m.At = 12, time.Time{} })}, "out of range"},
		{"no name", Batch{Messages: with(func(m *Message) { m.Seq, m.From = 12, "" })}, "name is 0 bytes"},
		{"long name", Batch{Messages: with(func(m *Message) { m.Seq, m.From = 12, strings.Repeat("a", MaxName+1) })}, "name is 65 bytes"},
		{"long text", Batch{Messages: with(func(m *Message) { m.Seq, m.Text = 12, strings.Repeat("a", MaxText+1) })}, "at most 65536"},
		{"escape in text", Batch{Messages: with(func(m *Message) { m.Seq, m.Text = 12, "\x1b[2J" })}, "control character"},
		{"C1 in name", Batch{Messages: with(func(m *Message) { m.Seq, m.From = 12, "a\u009bb" })}, "control character"},
		{"bad UTF-8", Batch{Messages: with(func(m *Message) { m.Seq, m.Text = 12, "a\xffb" })}, "invalid UTF-8"},
		{"seen bad name", Batch{Messages: []Message{ok}, Seen: map[string]Seen{"a\nb": {At: t0}}}, "control character"},
		{"seen zero time", Batch{Messages: []Message{ok}, Seen: map[string]Seen{"bob": {}}}, "out of range"},
		{"rename to nothing", Batch{Messages: []Message{ok}, Renames: []Rename{{"bob", ""}}}, "renaming"},
		{"position without a name", Batch{Messages: []Message{ok}, Positions: map[string]uint64{"": 1}}, "log name is 0 bytes"},
		{"position long name", Batch{Messages: []Message{ok}, Positions: map[string]uint64{strings.Repeat("s", 256): 1}}, "log name is 256 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, _ := openTest(t, dataDir(t))
			if err := db.Write(Batch{Messages: msgs(1, 10), Seen: map[string]Seen{"bob": {At: t0, Seq: 3}}}); err != nil {
				t.Fatal(err)
			}
			err := db.Write(tt.batch)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Write = %v, want an error containing %q", err, tt.want)
			}
			// Nothing of a refused batch is written.
			if got := db.LastSeq(); got != 10 {
				t.Errorf("LastSeq = %d, want 10", got)
			}
			if got, _ := db.Recent(100); len(got) != 10 {
				t.Errorf("Recent returned %d messages, want 10", len(got))
			}
			if got, _ := db.LastSeen(); len(got) != 1 || got["bob"].Seq != 3 {
				t.Errorf("LastSeen = %+v", got)
			}
		})
	}
}

func TestRecentAndSince(t *testing.T) {
	db, _ := openTest(t, dataDir(t))
	if err := db.Write(Batch{Messages: msgs(1, 10)}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		after uint64
		n     int
		want  []uint64
	}{
		{0, 0, []uint64{}},
		{0, -1, []uint64{}},
		{0, 1, []uint64{10}},
		{0, 3, []uint64{8, 9, 10}},
		{0, 10, []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
		{0, 50, []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
		{7, 50, []uint64{8, 9, 10}},
		{7, 2, []uint64{9, 10}},
		{10, 5, []uint64{}},
		{99, 5, []uint64{}},
	}
	for _, tt := range tests {
		got, err := db.Since(tt.after, tt.n)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(seqs(got), tt.want) {
			t.Errorf("Since(%d, %d) = %v, want %v", tt.after, tt.n, seqs(got), tt.want)
		}
		if tt.after == 0 {
			got, _ := db.Recent(tt.n)
			if !slices.Equal(seqs(got), tt.want) {
				t.Errorf("Recent(%d) = %v, want %v", tt.n, seqs(got), tt.want)
			}
		}
	}
}

func TestLastSeen(t *testing.T) {
	dir := dataDir(t)
	db, _ := openTest(t, dir)
	writes := []Batch{
		{Seen: map[string]Seen{"alice": {At: t0, Seq: 1}, "bob": {At: t0, Seq: 2}}},
		{Seen: map[string]Seen{"alice": {At: t0.Add(time.Hour), Seq: 7}}},
	}
	for _, b := range writes {
		if err := db.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	db, _ = openTest(t, dir)
	got, err := db.LastSeen()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Seen{"alice": {At: t0.Add(time.Hour), Seq: 7}, "bob": {At: t0, Seq: 2}}
	if !equalSeen(got, want) {
		t.Errorf("LastSeen = %v, want %v", got, want)
	}
}

func equalSeen(a, b map[string]Seen) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || !w.At.Equal(v.At) || w.Seq != v.Seq {
			return false
		}
	}
	return true
}

func TestPositions(t *testing.T) {
	dir := dataDir(t)
	db, _ := openTest(t, dir)
	if pos, err := db.Position("sshchat_history"); err != nil || pos != 0 {
		t.Fatalf("Position of a new file = %d, %v; want 0", pos, err)
	}
	// With the messages it covers, in one transaction.
	if err := db.Write(Batch{Messages: msgs(1, 2), Positions: map[string]uint64{"sshchat_history": 7, "other_history": 3}}); err != nil {
		t.Fatal(err)
	}
	if err := db.Write(Batch{Positions: map[string]uint64{"sshchat_history": 9}}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db, rec := openTest(t, dir)
	for name, want := range map[string]uint64{"sshchat_history": 9, "other_history": 3, "unknown": 0} {
		if pos, err := db.Position(name); err != nil || pos != want {
			t.Errorf("Position(%q) = %d, %v; want %d", name, pos, err, want)
		}
	}
	if len(rec.lines) != 0 {
		t.Errorf("logged %q", rec.lines)
	}
}

func TestRenameUser(t *testing.T) {
	alice, bob := Seen{At: t0, Seq: 1}, Seen{At: t0.Add(time.Hour), Seq: 2}
	tests := []struct {
		name     string
		old, new string
		want     map[string]Seen
	}{
		{"moves", "alice", "alicia", map[string]Seen{"alicia": alice, "bob": bob}},
		{"replaces", "alice", "bob", map[string]Seen{"bob": alice}},
		{"missing", "carol", "caroline", map[string]Seen{"alice": alice, "bob": bob}},
		{"same name", "alice", "alice", map[string]Seen{"alice": alice, "bob": bob}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, _ := openTest(t, dataDir(t))
			if err := db.Write(Batch{Seen: map[string]Seen{"alice": alice, "bob": bob}}); err != nil {
				t.Fatal(err)
			}
			if err := db.RenameUser(tt.old, tt.new); err != nil {
				t.Fatal(err)
			}
			if got, _ := db.LastSeen(); !equalSeen(got, tt.want) {
				t.Errorf("LastSeen = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRenameOrderInBatch(t *testing.T) {
	// A batch renames before it records last-seen times, so a user who is
	// renamed and then leaves ends up with one record, under the new name.
	db, _ := openTest(t, dataDir(t))
	b := Batch{
		Renames: []Rename{{"alice", "alicia"}},
		Seen:    map[string]Seen{"alicia": {At: t0.Add(time.Hour), Seq: 9}},
	}
	if err := db.Write(Batch{Seen: map[string]Seen{"alice": {At: t0, Seq: 1}}}); err != nil {
		t.Fatal(err)
	}
	if err := db.Write(b); err != nil {
		t.Fatal(err)
	}
	want := map[string]Seen{"alicia": {At: t0.Add(time.Hour), Seq: 9}}
	if got, _ := db.LastSeen(); !equalSeen(got, want) {
		t.Errorf("LastSeen = %v, want %v", got, want)
	}
}

func TestPrune(t *testing.T) {
	const n = 2*pruneChunk + 500 // several transactions
	tests := []struct {
		name    string
		before  time.Time
		deleted int
	}{
		{"nothing old", t0, 0},
		{"some", t0.Add(1501 * time.Minute), 1500},
		{"all", t0.Add(100 * n * time.Minute), n},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := dataDir(t)
			db, _ := openTest(t, dir)
			if err := db.Write(Batch{Messages: msgs(1, n)}); err != nil {
				t.Fatal(err)
			}
			got, err := db.Prune(tt.before)
			if err != nil || got != tt.deleted {
				t.Fatalf("Prune = %d, %v; want %d", got, err, tt.deleted)
			}
			left, _ := db.Recent(2 * n)
			if len(left) != n-tt.deleted {
				t.Errorf("%d messages left, want %d", len(left), n-tt.deleted)
			}
			for _, m := range left {
				if m.At.Before(tt.before) {
					t.Fatalf("message %d from %v was not pruned", m.Seq, m.At)
				}
			}
			// Seq numbers are never reused, even when everything is pruned.
			db.Close()
			db, _ = openTest(t, dir)
			if got := db.LastSeq(); got != n {
				t.Errorf("after pruning and reopening, LastSeq = %d, want %d", got, n)
			}
		})
	}
}

func TestOpenCreatesPrivateDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "data")
	openTest(t, dir)
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("data directory mode %v, want 0700", fi.Mode().Perm())
	}
	fi, err = os.Stat(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("database mode %v, want 0600", fi.Mode().Perm())
	}
}

func TestOpenWarnsAboutOpenDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	_, rec := openTest(t, dir)
	if !rec.has("chmod 700 " + dir) {
		t.Errorf("no warning about mode 0755; logged %q", rec.lines)
	}
}

func TestOpenInUse(t *testing.T) {
	dir := t.TempDir()
	openTest(t, dir)
	log, _ := newLogger()
	db, err := Open(dir, log)
	if err == nil {
		db.Close()
		t.Fatal("opened a database that is already open")
	}
	if want := filepath.Join(dir, FileName) + " is in use by another sshchat process"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not contain %q", err, want)
	}
}

// realDB returns the bytes of a database holding a few thousand messages.
func realDB(t *testing.T) []byte {
	dir := dataDir(t)
	db, _ := openTest(t, dir)
	if err := db.Write(Batch{Messages: msgs(1, 5000)}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	b, err := os.ReadFile(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestOpenDamaged(t *testing.T) {
	real := realDB(t)
	if len(real) < 64<<10 {
		t.Fatalf("test database is only %d bytes", len(real))
	}
	scribbled := bytes.Clone(real)
	for i := 4 << 12; i < len(scribbled)-4096; i += 4096 {
		copy(scribbled[i:], bytes.Repeat([]byte{0xa5, 0x17, 0xff, 0x00}, 64))
	}
	tests := []struct {
		name string
		file []byte
	}{
		{"garbage", bytes.Repeat([]byte("not a database\n"), 1000)},
		{"short garbage", []byte("x")},
		{"truncated to a quarter", real[:len(real)/4]},
		{"truncated by a page", real[:len(real)/2-4096]},
		{"truncated to one page", real[:4096]},
		{"truncated to two pages", real[:8192]},
		{"scribbled pages", scribbled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, FileName)
			if err := os.WriteFile(path, tt.file, 0o600); err != nil {
				t.Fatal(err)
			}
			log, _ := newLogger()
			db, err := Open(dir, log)
			if err == nil {
				db.Close()
				t.Fatal("Open succeeded")
			}
			for _, want := range []string{path, "damaged", "move it aside", "restore it from a backup"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
			// The file is left as it was, for the operator to look at.
			if got, _ := os.ReadFile(path); !bytes.Equal(got, tt.file) {
				t.Error("Open changed the damaged file")
			}
		})
	}
}

// TestHostileRecords writes bad records straight into the file: Open,
// Recent and LastSeen skip them and say so.
func TestHostileRecords(t *testing.T) {
	dir := dataDir(t)
	db, _ := openTest(t, dir)
	if err := db.Write(Batch{Messages: msgs(1, 3), Seen: map[string]Seen{"alice": {At: t0, Seq: 3}}}); err != nil {
		t.Fatal(err)
	}
	db.Close()

	good, err := encodeMessage(msgs(4, 4)[0])
	if err != nil {
		t.Fatal(err)
	}
	edit := func(f func([]byte)) []byte {
		b := bytes.Clone(good)
		f(b)
		return b
	}
	badMessages := []struct{ key, val []byte }{
		{[]byte("short"), good},
		{seqKey(0), good},
		{seqKey(4), nil},
		{seqKey(5), good[:5]},
		{seqKey(6), edit(func(b []byte) { b[0] = 9 })},                      // version
		{seqKey(7), edit(func(b []byte) { b[1] = 7 })},                      // kind
		{seqKey(8), edit(func(b []byte) { b[10] = 200 })},                   // name past the end
		{seqKey(9), edit(func(b []byte) { b[10] = 0 })},                     // no name
		{seqKey(10), edit(func(b []byte) { b[len(b)-1] = 0x1b })},           // escape
		{seqKey(11), edit(func(b []byte) { b[len(b)-1] = 0xff })},           // invalid UTF-8
		{seqKey(12), edit(func(b []byte) { clear(b[2:10]) })},               // time 0
		{seqKey(13), append(bytes.Clone(good), make([]byte, MaxText+1)...)}, // too long
	}
	badSeen := []struct{ key, val []byte }{
		{[]byte("bob"), []byte{1, 2, 3}},
		{[]byte("\x1b[31mcarol"), bytes.Repeat([]byte{1}, seenLen)},
		{bytes.Repeat([]byte("d"), MaxName+1), bytes.Repeat([]byte{1}, seenLen)},
	}
	bdb, err := bolt.Open(filepath.Join(dir, FileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = bdb.Update(func(tx *bolt.Tx) error {
		for _, r := range badMessages {
			if err := tx.Bucket(messagesBucket).Put(r.key, r.val); err != nil {
				return err
			}
		}
		for _, r := range badSeen {
			if err := tx.Bucket(seenBucket).Put(r.key, r.val); err != nil {
				return err
			}
		}
		return tx.Bucket(positionBucket).Put([]byte("sshchat_history"), []byte{1, 2, 3})
	})
	bdb.Close()
	if err != nil {
		t.Fatal(err)
	}

	db, rec := openTest(t, dir)
	if !rec.has("count=16") {
		t.Errorf("Open did not log 16 unreadable records: %q", rec.lines)
	}
	if _, err := db.Position("sshchat_history"); err == nil || !strings.Contains(err.Error(), "is 3 bytes, want 8") {
		t.Errorf("Position of a damaged record: %v, want an error", err)
	}
	if got := db.LastSeq(); got != 13 {
		t.Errorf("LastSeq = %d, want 13 so that no stored key is reused", got)
	}
	got, err := db.Recent(100)
	if err != nil {
		t.Fatal(err)
	}
	if want := []uint64{1, 2, 3}; !slices.Equal(seqs(got), want) {
		t.Errorf("Recent = %v, want %v", seqs(got), want)
	}
	if !rec.has("skipped unreadable messages") {
		t.Errorf("Recent did not log what it skipped: %q", rec.lines)
	}
	seen, err := db.LastSeen()
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 1 || seen["alice"].Seq != 3 {
		t.Errorf("LastSeen = %v", seen)
	}
	if !rec.has("skipped unreadable last-seen records") {
		t.Errorf("LastSeen did not log what it skipped: %q", rec.lines)
	}
	// Pruning clears unreadable records out of the way.
	if n, err := db.Prune(t0.Add(time.Hour)); err != nil || n != 3+len(badMessages) {
		t.Errorf("Prune = %d, %v; want %d", n, err, 3+len(badMessages))
	}
}
