package store

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// logRecorder is a slog handler that keeps what was logged, so tests can
// check that nothing was lost silently.
type logRecorder struct {
	mu      sync.Mutex
	lines   []string
	changed chan struct{} // closed and replaced on every record
}

func newLogger() (*slog.Logger, *logRecorder) {
	r := &logRecorder{changed: make(chan struct{})}
	return slog.New(r), r
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *logRecorder) WithGroup(string) slog.Handler            { return r }

func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", rec.Level, rec.Message)
	rec.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	r.mu.Lock()
	r.lines = append(r.lines, b.String())
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
	return nil
}

// find returns the first line containing want, and a channel closed when
// the next line is logged.
func (r *logRecorder) find(want string) (string, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range r.lines {
		if strings.Contains(l, want) {
			return l, nil
		}
	}
	return "", r.changed
}

// has reports whether a line containing want was logged.
func (r *logRecorder) has(want string) bool {
	l, _ := r.find(want)
	return l != ""
}

// wait waits for a line containing want.
func (r *logRecorder) wait(t *testing.T, want string) string {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		l, changed := r.find(want)
		if l != "" {
			return l
		}
		select {
		case <-changed:
		case <-timeout:
			t.Fatalf("no log line containing %q", want)
		}
	}
}

func openTest(t testing.TB, dir string) (*DB, *logRecorder) {
	t.Helper()
	log, rec := newLogger()
	db, err := Open(dir, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, rec
}

// dataDir returns a data directory for a test, which Open will create.
func dataDir(t testing.TB) string {
	return filepath.Join(t.TempDir(), "data")
}

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// msgs returns messages with Seqs first..last, one minute apart.
func msgs(first, last uint64) []Message {
	var out []Message
	for s := first; s <= last; s++ {
		out = append(out, Message{
			Seq:  s,
			At:   t0.Add(time.Duration(s) * time.Minute),
			From: "alice",
			Kind: Chat,
			Text: fmt.Sprintf("line %d", s),
		})
	}
	return out
}

func seqs(ms []Message) []uint64 {
	out := []uint64{}
	for _, m := range ms {
		out = append(out, m.Seq)
	}
	return out
}
