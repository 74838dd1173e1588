package keys

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// waitLimit bounds every wait for the watcher; nothing here sleeps.
const waitLimit = 5 * time.Second

// runner is what Store and OpStore share.
type runner interface {
	Run(ctx context.Context, reload <-chan struct{}, onChange func())
}

// startRun runs st.Run until the test ends and returns the channel on which
// each onChange call arrives and the reload request channel.
func startRun(t *testing.T, st runner) (changes <-chan struct{}, reload chan<- struct{}) {
	t.Helper()
	ch, req := make(chan struct{}, 100), make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		st.Run(ctx, req, func() { ch <- struct{}{} })
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(waitLimit):
			t.Error("Run did not return after cancel")
		}
	})
	return ch, req
}

// nextChange waits for the next onChange call.
func nextChange(t *testing.T, changes <-chan struct{}) {
	t.Helper()
	select {
	case <-changes:
	case <-time.After(waitLimit):
		t.Fatalf("no change seen within %v", waitLimit)
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

// relink points the symbolic link at path to target atomically, as
// Kubernetes swaps "..data": a new link renamed over the old one.
func relink(t *testing.T, target, path string) {
	t.Helper()
	tmp := path + "_tmp"
	if err := os.Symlink(target, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func has(s *Set, key ssh.PublicKey, name string) bool {
	got, ok := s.Lookup(key)
	return ok && got == name
}

// recordHandler sends every log record to a channel, dropping records the
// test is not reading so that logging never blocks the code under test.
type recordHandler chan<- slog.Record

func (h recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h recordHandler) Handle(_ context.Context, r slog.Record) error {
	select {
	case h <- r.Clone():
	default:
	}
	return nil
}
func (h recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h recordHandler) WithGroup(string) slog.Handler      { return h }

// testLogger returns a logger whose records arrive on the returned channel.
func testLogger() (*slog.Logger, <-chan slog.Record) {
	records := make(chan slog.Record, 1000)
	return slog.New(recordHandler(records)), records
}

// waitForLog waits for a record at level with message msg whose attribute
// key has the value want (as text).
func waitForLog(t *testing.T, records <-chan slog.Record, level slog.Level, msg, key, want string) {
	t.Helper()
	deadline := time.After(waitLimit)
	for {
		select {
		case r := <-records:
			found := false
			r.Attrs(func(a slog.Attr) bool {
				found = a.Key == key && a.Value.String() == want
				return !found
			})
			if found && r.Level == level && r.Message == msg {
				return
			}
		case <-deadline:
			t.Fatalf("no %v record %q with %s=%s logged within %v", level, msg, key, want, waitLimit)
		}
	}
}

const invalidLine = "keys: invalid line; keeping previous allowed keys"

func TestRun(t *testing.T) {
	log, records := testLogger()
	path := filepath.Join(t.TempDir(), "allowed_keys")
	st := NewStore(path, log)
	changes, _ := startRun(t, st)
	alice, bob, carol := ed25519Key(t), ed25519Key(t), ed25519Key(t)

	// Add, whether it lands before the watch begins or after.
	if _, err := Add(path, Entry{Name: "alice", Key: alice}); err != nil {
		t.Fatal(err)
	}
	nextChange(t, changes)
	if s := st.Set(); s.Len() != 1 || !has(s, alice, "alice") {
		t.Fatalf("after the first change: %v, want alice", s.Entries())
	}
	waitForLog(t, records, slog.LevelInfo, "keys: reloaded allowed keys file", "keys", "1")

	// An editor's rename-replace.
	withBob := lines(line(alice, "alice"), line(bob, "bob"))
	replace(t, path, withBob)
	nextChange(t, changes)
	good := st.Set()
	if !has(good, bob, "bob") || !has(good, alice, "alice") || good.Len() != 2 {
		t.Fatalf("after the second change: %v, want alice and bob", good.Entries())
	}

	// A broken file is logged, line by line, and kept out; the same keys
	// rewritten, or relabelled, are no change. So the next change seen is
	// carol's, from the last good set.
	replace(t, path, lines(line(alice, "alice"), "ssh-foo AAAA x", line(bob, "Alice")))
	waitForLog(t, records, slog.LevelWarn, invalidLine, "line", "2")
	waitForLog(t, records, slog.LevelWarn, invalidLine, "line", "3")
	if st.Set() != good {
		t.Error("a broken file replaced the set")
	}
	replace(t, path, "# moved around\n"+lines(line(alice, "alice laptop"), line(bob, "bob")))
	if _, err := Add(path, Entry{Name: "carol", Key: carol}); err != nil {
		t.Fatal(err)
	}
	nextChange(t, changes)
	if s := st.Set(); !has(s, carol, "carol") || s.Len() != 3 {
		t.Errorf("after the third change: %v, want carol added to alice and bob", s.Entries())
	}
}

// A value on the reload channel reloads at once, and says so even if
// nothing changed; a closed channel stops requests but not watching.
func TestRunReloadRequest(t *testing.T) {
	log, records := testLogger()
	path := filepath.Join(t.TempDir(), "allowed_keys")
	alice := ed25519Key(t)
	writeFile(t, path, lines(line(alice, "alice")), 0o600)
	st := NewStore(path, log)
	if err := st.Reload(); err != nil {
		t.Fatal(err)
	}
	changes, reload := startRun(t, st)
	reload <- struct{}{}
	waitForLog(t, records, slog.LevelInfo, "keys: reloaded allowed keys file", "changed", "false")

	close(reload)
	replace(t, path, lines(line(alice, "alice"), line(ed25519Key(t), "bob")))
	nextChange(t, changes)
	if st.Set().Len() != 2 {
		t.Errorf("set has %d keys after the change, want 2", st.Set().Len())
	}
}

// A directory that does not exist yet cannot be watched: Run says so, and
// reload requests still work and start the watching.
func TestRunMissingDirectory(t *testing.T) {
	log, records := testLogger()
	dir := filepath.Join(t.TempDir(), "missing")
	path := filepath.Join(dir, "allowed_keys")
	st := NewStore(path, log)
	changes, reload := startRun(t, st)
	waitForLog(t, records, slog.LevelWarn, "keys: cannot watch allowed keys file for changes; send SIGHUP to reload it", "dir", dir)

	alice := ed25519Key(t)
	if _, err := Add(path, Entry{Name: "alice", Key: alice}); err != nil {
		t.Fatal(err)
	}
	reload <- struct{}{}
	nextChange(t, changes)
	if !has(st.Set(), alice, "alice") {
		t.Fatalf("after a reload request: %v, want alice", st.Set().Entries())
	}

	replace(t, path, lines(line(alice, "alice"), line(ed25519Key(t), "bob")))
	nextChange(t, changes)
	if st.Set().Len() != 2 {
		t.Errorf("after an edit: %v, want alice and bob", st.Set().Entries())
	}
}

// -keys names a symbolic link to a file in another directory: edits of the
// target, and a retargeted link, are both seen.
func TestRunFollowsSymlink(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"conf", "real", "other"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	target, other := filepath.Join(root, "real", "allowed_keys"), filepath.Join(root, "other", "allowed_keys")
	link := filepath.Join(root, "conf", "allowed_keys")
	alice, bob, carol := ed25519Key(t), ed25519Key(t), ed25519Key(t)
	writeFile(t, target, lines(line(alice, "alice")), 0o600)
	writeFile(t, other, lines(line(carol, "carol")), 0o600)
	if err := os.Symlink("../real/allowed_keys", link); err != nil {
		t.Fatal(err)
	}
	st := NewStore(link, nil)
	if err := st.Reload(); err != nil {
		t.Fatal(err)
	}
	changes, _ := startRun(t, st)

	// The target replaced in its own directory, which -keys does not name.
	replace(t, target, lines(line(alice, "alice"), line(bob, "bob")))
	nextChange(t, changes)
	if s := st.Set(); !has(s, bob, "bob") || s.Len() != 2 {
		t.Fatalf("after editing the target: %v, want alice and bob", s.Entries())
	}

	// The link pointed elsewhere.
	relink(t, other, link)
	nextChange(t, changes)
	if s := st.Set(); !has(s, carol, "carol") || s.Len() != 1 {
		t.Fatalf("after retargeting the link: %v, want carol", s.Entries())
	}

	// The old target no longer matters; the new one does. The change seen
	// is the new target's, whichever event arrives first.
	replace(t, target, lines(line(alice, "alice")))
	replace(t, other, lines(line(carol, "carol"), line(bob, "bob")))
	nextChange(t, changes)
	if s := st.Set(); !has(s, carol, "carol") || !has(s, bob, "bob") || s.Len() != 2 {
		t.Fatalf("after editing the new target: %v, want carol and bob", s.Entries())
	}
}

// A Kubernetes secret or config map mounted as a directory: the file is
// a link through "..data", itself a link to a timestamped directory, and
// an update writes a new directory and swaps "..data" by a rename.
func TestRunFollowsDataSwap(t *testing.T) {
	mount := t.TempDir()
	path := filepath.Join(mount, "allowed_keys")
	alice, bob, carol := ed25519Key(t), ed25519Key(t), ed25519Key(t)
	generation := 0
	// publish writes data as a new generation and swaps ..data to it, then
	// removes the previous generation, as kubelet's atomic writer does.
	publish := func(data string) string {
		t.Helper()
		generation++
		dir := filepath.Join(mount, "..gen_"+string(rune('0'+generation)))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, "allowed_keys"), data, 0o644)
		prev, _ := os.Readlink(filepath.Join(mount, "..data"))
		relink(t, filepath.Base(dir), filepath.Join(mount, "..data"))
		if prev != "" {
			if err := os.RemoveAll(filepath.Join(mount, prev)); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	publish(lines(line(alice, "alice")))
	if err := os.Symlink("..data/allowed_keys", path); err != nil {
		t.Fatal(err)
	}
	st := NewStore(path, nil)
	if err := st.Reload(); err != nil {
		t.Fatal(err)
	}
	changes, _ := startRun(t, st)

	dir := publish(lines(line(alice, "alice"), line(bob, "bob")))
	nextChange(t, changes)
	if s := st.Set(); !has(s, bob, "bob") || s.Len() != 2 {
		t.Fatalf("after the first swap: %v, want alice and bob", s.Entries())
	}

	// The new generation's directory is watched too.
	replace(t, filepath.Join(dir, "allowed_keys"), lines(line(bob, "bob")))
	nextChange(t, changes)
	if s := st.Set(); !has(s, bob, "bob") || s.Len() != 1 {
		t.Fatalf("after editing inside the generation: %v, want bob", s.Entries())
	}

	publish(lines(line(carol, "carol")))
	nextChange(t, changes)
	if s := st.Set(); !has(s, carol, "carol") || s.Len() != 1 {
		t.Fatalf("after the second swap: %v, want carol", s.Entries())
	}
}
