package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// frames returns the log frames of ms.
func frames(ms ...Message) []byte {
	var b []byte
	for _, m := range ms {
		b = appendFrame(b, m)
	}
	return b
}

// walSizes returns how many bytes of frames each of the two log files in
// dir holds: they end at the first zero header, or at the end of the file.
func walSizes(t *testing.T, dir string) [2]int64 {
	t.Helper()
	var sizes [2]int64
	for i, name := range WALNames {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		for off := 0; off+frameHeader <= len(b); {
			length := int(binary.BigEndian.Uint32(b[off:]))
			if length == 0 {
				break
			}
			off += frameHeader + length
			sizes[i] = int64(off)
		}
	}
	return sizes
}

// TestReplay writes log files as a crash could leave them and checks what
// Open makes of them.
func TestReplay(t *testing.T) {
	hostile := msgs(2, 2)[0]
	hostile.Text = "\x1b]0;pwned\x07"
	whole := frames(msgs(1, 3)...)
	flipped := bytes.Clone(whole)
	flipped[len(frames(msgs(1, 1)...))+frameHeader+3] ^= 1 // in message 2's payload
	huge := frames(msgs(1, 1)...)
	huge = append(huge, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0)
	tests := []struct {
		name   string
		stored []Message // in the database already
		wal    [2][]byte
		want   []uint64
		warn   string // a warning Open must log
	}{
		{name: "empty", want: []uint64{}},
		{name: "one file", wal: [2][]byte{whole}, want: []uint64{1, 2, 3}},
		{name: "files interleave", wal: [2][]byte{frames(msgs(1, 2)...), frames(msgs(3, 4)...)}, want: []uint64{1, 2, 3, 4}},
		{name: "files in turn", wal: [2][]byte{frames(append(msgs(1, 2), msgs(5, 6)...)...), frames(msgs(3, 4)...)}, want: []uint64{1, 2, 3, 4, 5, 6}},
		{name: "stored ones skipped", stored: msgs(1, 3), wal: [2][]byte{frames(msgs(2, 5)...)}, want: []uint64{1, 2, 3, 4, 5}},
		{name: "torn header", wal: [2][]byte{whole[:len(whole)-len(frames(msgs(3, 3)...))+5]}, want: []uint64{1, 2}, warn: "header is cut short"},
		{name: "torn payload", wal: [2][]byte{whole[:len(whole)-1]}, want: []uint64{1, 2}, warn: "last frame is cut short"},
		{name: "checksum", wal: [2][]byte{flipped}, want: []uint64{1}, warn: "checksum mismatch"},
		{name: "length out of range", wal: [2][]byte{huge}, want: []uint64{1}, warn: "frame length 4294967295 is out of range"},
		{name: "garbage", wal: [2][]byte{bytes.Repeat([]byte("garbage!"), 100)}, want: []uint64{}, warn: "dropping the end"},
		{name: "hostile record", wal: [2][]byte{frames(msgs(1, 1)[0], hostile, msgs(3, 3)[0])}, want: []uint64{1, 3}, warn: "write-ahead log records are unreadable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := dataDir(t)
			db, _ := openTest(t, dir)
			if len(tt.stored) > 0 {
				if err := db.Write(Batch{Messages: tt.stored}); err != nil {
					t.Fatal(err)
				}
			}
			db.Close()
			for i, b := range tt.wal {
				if err := os.WriteFile(filepath.Join(dir, WALNames[i]), b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			db, rec := openTest(t, dir)
			got, err := db.Recent(100)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(seqs(got), tt.want) {
				t.Errorf("stored %v, want %v", seqs(got), tt.want)
			}
			for _, m := range got {
				if m.Text != msgs(m.Seq, m.Seq)[0].Text {
					t.Errorf("message %d: text %q", m.Seq, m.Text)
				}
			}
			if tt.warn != "" && !rec.has(tt.warn) {
				t.Errorf("no warning containing %q: %q", tt.warn, rec.lines)
			}
			if sizes := walSizes(t, dir); sizes != [2]int64{} {
				t.Errorf("log files hold %v bytes after Open, want none", sizes)
			}
		})
	}
}

func TestWALUnreadable(t *testing.T) {
	dir := dataDir(t)
	db, _ := openTest(t, dir)
	db.Close()
	path := filepath.Join(dir, WALNames[1])
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	log, _ := newLogger()
	if db, err := Open(dir, log); err == nil {
		db.Close()
		t.Fatal("Open succeeded with a directory for a log file")
	} else if !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name %s", err, path)
	}
	// The database was let go: once the log is fixed, it opens.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	openTest(t, dir)
}

// waitCommitted waits until everything handed to w before it is committed.
func waitCommitted(t *testing.T, w *Writer) {
	t.Helper()
	done := make(chan error, 1)
	if !w.Submit(Batch{}, func(err error) { done <- err }) {
		t.Fatal("Submit refused")
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestLogThenCommit checks that logged messages are in a log file until
// their commit, which empties it.
func TestLogThenCommit(t *testing.T) {
	dir := dataDir(t)
	db, _ := openTest(t, dir)
	w, release := blockedWriter(t, db, WriterOptions{})
	for _, m := range msgs(2, 5) {
		if err := w.Log([]Message{m}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Log(msgs(6, 9)); err != nil {
		t.Fatal(err)
	}
	if sizes, want := walSizes(t, dir), int64(len(frames(msgs(2, 9)...))); sizes[0]+sizes[1] != want || sizes[0] != 0 && sizes[1] != 0 {
		t.Errorf("log files hold %v bytes, want %d in one of them", sizes, want)
	}
	if got := db.LastSeq(); got != 1 {
		t.Errorf("LastSeq = %d before the commit, want 1", got)
	}
	release()
	waitCommitted(t, w)
	if sizes := walSizes(t, dir); sizes != [2]int64{} {
		t.Errorf("log files hold %v bytes after the commit, want none", sizes)
	}
	if got, _ := db.Recent(100); !slices.Equal(seqs(got), seqs(msgs(1, 9))) {
		t.Errorf("stored %v, want 1..9", seqs(got))
	}
	if s := w.Stats(); s.Failed != 0 {
		t.Errorf("Stats = %+v, want no failures", s)
	}
}

func TestLogRefuses(t *testing.T) {
	db, _ := openTest(t, dataDir(t))
	w, release := blockedWriter(t, db, WriterOptions{MaxPending: 4})
	bad := msgs(2, 2)
	bad[0].Text = "\x1b[2J"
	tests := []struct {
		name string
		msgs []Message
		want string
	}{
		{"invalid", bad, "control character"},
		{"out of order", []Message{msgs(3, 3)[0], msgs(2, 2)[0]}, "message 2: sequence number is not above 3"},
		{"already stored", msgs(1, 1), "message 1: sequence number is not above 1"},
		{"accepted", msgs(2, 4), ""},
		{"already logged", msgs(4, 4), "message 4: sequence number is not above 4"},
		{"full", msgs(5, 6), ErrBusy.Error()},
	}
	for _, tt := range tests {
		err := w.Log(tt.msgs)
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%s: Log = %v, want %q", tt.name, err, tt.want)
		}
	}
	release()
	w.Close()
	if err := w.Log(msgs(5, 5)); !errors.Is(err, ErrClosed) {
		t.Errorf("Log after Close = %v, want ErrClosed", err)
	}
	if got, _ := db.Recent(100); !slices.Equal(seqs(got), []uint64{1, 2, 3, 4}) {
		t.Errorf("stored %v, want 1..4", seqs(got))
	}
}

// TestLogDuringCommits logs from one goroutine, as the broadcaster does,
// while another submits and the Writer commits and switches log files as
// fast as it may; under -race.
func TestLogDuringCommits(t *testing.T) {
	dir := dataDir(t)
	db, _ := openTest(t, dir)
	log, _ := newLogger()
	w := NewWriter(db, WriterOptions{CommitEvery: time.Microsecond, MaxBatch: 7}, log)
	const n = 3000
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range 200 {
			w.Submit(Batch{Seen: map[string]Seen{"bob": {At: t0, Seq: uint64(i)}}}, nil)
		}
	})
	all := msgs(1, n)
	for len(all) > 0 {
		k := min(len(all), 1+len(all)%3)
		if err := w.Log(all[:k]); err != nil {
			t.Fatal(err)
		}
		all = all[k:]
	}
	wg.Wait()
	w.Close()
	if got, _ := db.Recent(2 * n); !slices.Equal(seqs(got), seqs(msgs(1, n))) {
		t.Errorf("stored %d messages, want 1..%d", len(got), n)
	}
	if sizes := walSizes(t, dir); sizes != [2]int64{} {
		t.Errorf("log files hold %v bytes after Close, want none", sizes)
	}
	if s := w.Stats(); s.Commits < 2 || s.Failed != 0 || s.Refused != 0 {
		t.Errorf("Stats = %+v, want many commits and no failures", s)
	}
}

// TestLogCommitFails checks that a failed commit keeps its log file, so
// that a restart replays what it failed to write.
func TestLogCommitFails(t *testing.T) {
	dir := dataDir(t)
	db, _ := openTest(t, dir)
	log, rec := newLogger()
	w := NewWriter(db, WriterOptions{}, log)
	db.bolt.Close() // every commit now fails; the log files stay open
	if err := w.Log(msgs(1, 3)); err != nil {
		t.Fatal(err)
	}
	w.Close()
	rec.wait(t, "store: commit failed")
	db.wal.close()
	db, _ = openTest(t, dir)
	if got, _ := db.Recent(100); !slices.Equal(seqs(got), []uint64{1, 2, 3}) {
		t.Errorf("stored %v after a restart, want 1..3", seqs(got))
	}
}

func FuzzReadWAL(f *testing.F) {
	whole := frames(msgs(1, 3)...)
	f.Add(whole)
	f.Add(whole[:len(whole)-3])
	f.Add(whole[:5])
	f.Add([]byte{})
	f.Add(append(bytes.Clone(whole), 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := readWAL(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range c.messages {
			if err := m.check(); err != nil {
				t.Errorf("returned an invalid message: %v", err)
			}
		}
		if c.torn != nil && (c.tornAt < 0 || c.tornAt >= int64(len(b))) {
			t.Errorf("torn at %d of %d bytes", c.tornAt, len(b))
		}
		if c.torn == nil && len(c.bad) == 0 && !bytes.Equal(frames(c.messages...), b) {
			t.Error("whole frames do not encode back to the input")
		}
	})
}
