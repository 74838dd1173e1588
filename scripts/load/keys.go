package main

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"

	"github.com/sshchat-dev/sshchat/keys"
)

// The keys directory holds clients.keys, one hex-encoded ed25519 seed per
// line (line i is client i), and allowed_keys, the matching authorized_keys
// lines named loadNNNN for the server's -keys flag. Seeds rather than
// OpenSSH PEM files keep a thousand keys one small file that loads in
// milliseconds.
const (
	clientKeysFile  = "clients.keys"
	allowedKeysFile = "allowed_keys"
)

// clientKey is one load client's identity.
type clientKey struct {
	name   string
	signer ssh.Signer
}

// clientName is the chat name of client i.
func clientName(i int) string { return fmt.Sprintf("load%04d", i) }

// keySet is what ensureKeys found and wrote.
type keySet struct {
	keys           []clientKey // every key in the file, at least as many as asked for
	generated      int         // keys added by this call
	allowedChanged bool        // allowed_keys was (re)written
	keysPath       string
	allowedPath    string
}

// ensureKeys makes sure dir holds at least n client keys, reusing those
// already there, and that dir/allowed_keys allows all of them. It rewrites
// allowed_keys only if its content changes, since a running server reloads
// it on every change.
func ensureKeys(dir string, n int) (*keySet, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	ks := &keySet{keysPath: filepath.Join(dir, clientKeysFile), allowedPath: filepath.Join(dir, allowedKeysFile)}
	seeds, err := readSeeds(ks.keysPath)
	if err != nil {
		return nil, err
	}
	if len(seeds) < n {
		fresh := make([][]byte, n-len(seeds))
		for i := range fresh {
			fresh[i] = make([]byte, ed25519.SeedSize)
			if _, err := rand.Read(fresh[i]); err != nil {
				return nil, fmt.Errorf("keys: %w", err)
			}
		}
		if err := appendSeeds(ks.keysPath, fresh); err != nil {
			return nil, fmt.Errorf("keys: %w", err)
		}
		seeds = append(seeds, fresh...)
		ks.generated = len(fresh)
	}

	for i, seed := range seeds {
		signer, err := ssh.NewSignerFromKey(ed25519.NewKeyFromSeed(seed))
		if err != nil {
			return nil, fmt.Errorf("keys: %s line %d: %w", ks.keysPath, i+1, err)
		}
		ks.keys = append(ks.keys, clientKey{name: clientName(i), signer: signer})
	}
	entries := make([]keys.Entry, len(ks.keys))
	for i, k := range ks.keys {
		entries[i] = keys.Entry{Name: k.name, Key: k.signer.PublicKey()}
	}
	// The server watches the file: keys.WriteFile replaces it atomically,
	// and only when it changes.
	if ks.allowedChanged, err = keys.WriteFile(ks.allowedPath, entries); err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	return ks, nil
}

// appendSeeds appends seeds to a clients.keys file, creating it. Seeds are
// only ever added, so those already there are never rewritten: a run cut
// short leaves at worst a partial last line, which readSeeds reports.
func appendSeeds(path string, seeds [][]byte) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	// A hand-edited file may lack its last newline.
	if st, err := f.Stat(); err == nil && st.Size() > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, st.Size()-1); err == nil && last[0] != '\n' {
			buf.WriteByte('\n')
		}
	}
	for _, s := range seeds {
		buf.WriteString(hex.EncodeToString(s))
		buf.WriteByte('\n')
	}
	if _, err := f.Write(buf.Bytes()); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// readSeeds reads a clients.keys file; a missing file holds no seeds.
func readSeeds(path string) ([][]byte, error) {
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	var seeds [][]byte
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		seed := make([]byte, ed25519.SeedSize)
		if len(line) != hex.EncodedLen(ed25519.SeedSize) {
			return nil, fmt.Errorf("keys: %s line %d: want %d hex digits (an ed25519 seed), got %d characters", path, n, hex.EncodedLen(ed25519.SeedSize), len(line))
		}
		if _, err := hex.Decode(seed, line); err != nil {
			return nil, fmt.Errorf("keys: %s line %d: %w", path, n, err)
		}
		seeds = append(seeds, seed)
	}
	return seeds, sc.Err()
}
