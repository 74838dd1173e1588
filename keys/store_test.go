package keys

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func TestReloadKeepsPreviousSet(t *testing.T) {
	key := ed25519Key(t)
	tests := []struct {
		name  string
		spoil func(path string) error
		want  func(error) bool
	}{
		{
			"invalid line",
			func(path string) error {
				return os.WriteFile(path, []byte(lines(line(key, "alice"), "ssh-foo AAAA bob")), 0o600)
			},
			func(err error) bool { le, ok := errors.AsType[*LineError](err); return ok && le.Line == 2 },
		},
		{
			"missing file",
			os.Remove,
			func(err error) bool { return errors.Is(err, fs.ErrNotExist) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "allowed_keys")
			st := NewStore(path)
			if st.Path() != path {
				t.Errorf("Path() = %q, want %q", st.Path(), path)
			}
			writeFile(t, path, lines(line(key, "alice")), 0o600)
			if err := st.Reload(); err != nil {
				t.Fatal(err)
			}
			good := st.Set()
			if err := tt.spoil(path); err != nil {
				t.Fatal(err)
			}
			if err := st.Reload(); !tt.want(err) {
				t.Errorf("Reload error = %v", err)
			}
			if st.Set() != good {
				t.Error("Reload replaced the set after an error")
			}
			if name, ok := st.Lookup(key); !ok || name != "alice" {
				t.Errorf("Lookup = %q, %v; want alice, true", name, ok)
			}
		})
	}
}

func TestNewStoreIsEmpty(t *testing.T) {
	st := NewStore(filepath.Join(t.TempDir(), "missing"))
	if err := st.Reload(); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Reload error = %v, want fs.ErrNotExist", err)
	}
	if st.Set().Len() != 0 {
		t.Errorf("Set has %d keys", st.Set().Len())
	}
	if _, ok := st.Lookup(ed25519Key(t)); ok {
		t.Error("Lookup found a key in an empty store")
	}
}

type change struct{ old, new *Set }

// nextChange waits for the next onChange call, failing after 5s.
func nextChange(t *testing.T, changes <-chan change) change {
	t.Helper()
	select {
	case c := <-changes:
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("no change seen within 5s")
		return change{}
	}
}

// replace writes data to path the way editors do: a new file renamed over
// the old one.
func replace(t *testing.T, path, data string) {
	t.Helper()
	tmp := path + ".swp"
	writeFile(t, tmp, data, 0o600)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func has(s *Set, key ssh.PublicKey, name string) bool {
	got, ok := s.Lookup(key)
	return ok && got == name
}

// recordHandler sends every log record to a channel.
type recordHandler chan<- slog.Record

func (h recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h recordHandler) Handle(_ context.Context, r slog.Record) error {
	h <- r.Clone()
	return nil
}
func (h recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h recordHandler) WithGroup(string) slog.Handler      { return h }

// captureLogs sends the default logger's records to the returned channel
// for the rest of the test.
func captureLogs(t *testing.T) <-chan slog.Record {
	records := make(chan slog.Record, 100)
	prev := slog.Default()
	slog.SetDefault(slog.New(recordHandler(records)))
	t.Cleanup(func() { slog.SetDefault(prev) })
	return records
}

// waitForLog waits up to 5s for a warning that names the given line.
func waitForLog(t *testing.T, records <-chan slog.Record, line int64) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case r := <-records:
			found := false
			r.Attrs(func(a slog.Attr) bool {
				found = a.Key == "line" && a.Value.Int64() == line
				return !found
			})
			if found && r.Level == slog.LevelWarn {
				return
			}
		case <-deadline:
			t.Fatalf("no warning about line %d logged within 5s", line)
		}
	}
}

func TestWatch(t *testing.T) {
	records := captureLogs(t)
	path := filepath.Join(t.TempDir(), "allowed_keys")
	st := NewStore(path)
	changes := make(chan change, 10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- st.Watch(ctx, func(old, new *Set) { changes <- change{old, new} })
	}()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Watch returned %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Watch did not return after cancel")
		}
	}()

	alice, bob, carol := ed25519Key(t), ed25519Key(t), ed25519Key(t)

	// Add, whether it lands before the watch begins or after.
	if _, err := Add(path, "alice", alice); err != nil {
		t.Fatal(err)
	}
	c := nextChange(t, changes)
	if c.old.Len() != 0 || !has(c.new, alice, "alice") || st.Set() != c.new {
		t.Fatalf("first change: %d -> %v keys, want 0 -> alice", c.old.Len(), c.new.Entries())
	}

	// An editor's rename-replace.
	withBob := lines(line(alice, "alice"), line(bob, "bob"))
	replace(t, path, withBob)
	c = nextChange(t, changes)
	if !has(c.new, bob, "bob") || !has(c.new, alice, "alice") || c.new.Len() != 2 {
		t.Fatalf("second change: got %v, want alice and bob", c.new.Entries())
	}
	good := c.new

	// A broken file is logged, line by line, and kept out; the same keys
	// rewritten are no change. So the next change seen is carol's, from the
	// last good set.
	replace(t, path, lines(line(alice, "alice"), "ssh-foo AAAA x", line(bob, "Alice")))
	waitForLog(t, records, 2)
	waitForLog(t, records, 3)
	if st.Set() != good {
		t.Error("a broken file replaced the set")
	}
	replace(t, path, "# moved around\n"+withBob)
	if _, err := Add(path, "carol", carol); err != nil {
		t.Fatal(err)
	}
	c = nextChange(t, changes)
	if c.old != good || !has(c.new, carol, "carol") || c.new.Len() != 3 {
		t.Errorf("third change: %v -> %v, want carol added to the set with alice and bob", c.old.Entries(), c.new.Entries())
	}
}

func TestWatchMissingDirectory(t *testing.T) {
	st := NewStore(filepath.Join(t.TempDir(), "missing", "allowed_keys"))
	err := st.Watch(context.Background(), func(old, new *Set) { t.Error("onChange called") })
	if err == nil {
		t.Fatal("Watch of a missing directory returned nil")
	}
}
