package keys

import (
	"log/slog"

	"golang.org/x/crypto/ssh"
)

// Store holds the current [Set] of an allowed keys file and replaces it
// atomically on reload. It is safe for concurrent use. Its Run method
// keeps it current as the file changes.
type Store struct {
	*live[Set]
}

// NewStore returns a Store for the allowed keys file at path that logs to
// log (nowhere if nil). It starts empty: call Reload to read the file.
// Reload returns an error wrapping [fs.ErrNotExist] for a missing file.
func NewStore(path string, log *slog.Logger) *Store {
	return &Store{newLive(fileKind[Set]{
		what:  "allowed keys",
		unit:  "keys",
		load:  Load,
		same:  (*Set).sameAccess,
		count: (*Set).Len,
	}, path, log, newSet())}
}

// Lookup returns the name of the user the key belongs to in the current Set.
func (st *Store) Lookup(key ssh.PublicKey) (string, bool) { return st.Set().Lookup(key) }

// Set returns the current Set.
func (st *Store) Set() *Set { return st.current() }

// User returns name as the allowed keys spell it, if the user has a key
// (names compare case-insensitively).
func (st *Store) User(name string) (string, bool) {
	e, ok := st.Set().user(name)
	return e.Name, ok
}
