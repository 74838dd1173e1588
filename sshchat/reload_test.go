package sshchat

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/sshchat-dev/sshchat/keys"
)

// The allowed keys file, watched by a running server: keys added with
// keys.Add can log in, removed keys are disconnected, a broken file changes
// nothing. This is the wiring main.go does.
func TestAllowedKeysFileHotReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "allowed_keys")
	alice, bob := newSigner(t), newSigner(t)
	if _, err := keys.Add(path, keys.Entry{Name: "alice", Key: alice.PublicKey()}); err != nil {
		t.Fatal(err)
	}
	store := keys.NewStore(path, nil)
	if err := store.Reload(); err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, func(c *Config) { c.Auth = store })

	reloaded := make(chan struct{}, 16)
	ctx, cancel := context.WithCancel(context.Background())
	watching := make(chan struct{})
	go func() {
		defer close(watching)
		store.Run(ctx, nil, func() {
			ts.Revalidate()
			reloaded <- struct{}{}
		})
	}()
	t.Cleanup(func() {
		cancel()
		<-watching
	})
	waitReload := func() {
		t.Helper()
		select {
		case <-reloaded:
		case <-time.After(waitLimit):
			t.Fatal("file change not picked up")
		}
	}

	a := ts.join(alice)
	if c, err := ts.dial(gossh.PublicKeys(bob)); err == nil {
		c.Close()
		t.Fatal("bob logged in before being added")
	}

	if _, err := keys.Add(path, keys.Entry{Name: "bob", Key: bob.PublicKey()}); err != nil {
		t.Fatal(err)
	}
	waitReload()
	b := ts.join(bob)
	a.expect("bob has arrived")

	// A broken edit keeps the previous keys and drops no one.
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	replaceFile(t, path, append(good, "ssh-ed25519 garbage carol\n"...))
	if err := store.Reload(); err == nil {
		t.Fatal("broken file reloaded without error")
	}
	replaceFile(t, path, good)
	b.say("still here")
	a.expect("bob: still here")

	if _, err := keys.Remove(path, "bob"); err != nil {
		t.Fatal(err)
	}
	waitReload()
	b.expectEnd("-!- Your key was removed from the allowed keys; goodbye.")
	a.expect("bob has left")
	if c, err := ts.dial(gossh.PublicKeys(bob)); err == nil {
		c.Close()
		t.Fatal("removed key still logs in")
	}
}

// replaceFile replaces the file at path with data in one rename, as editors
// and keys.Add do: a watcher never sees it empty or half written.
func replaceFile(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
