// Package keys reads, validates, watches and edits the access files: the
// allowed keys file, the list of SSH public keys that may log in, each
// naming its user; and the operators file, the names of the users who may
// moderate. It knows nothing about chat or about serving SSH; the server
// asks a [Store] who a key belongs to and an [OpStore] who is an operator.
//
// The allowed keys file uses the OpenSSH authorized_keys format, restricted
// to what sshchat implements:
//
//   - One key per line: "keytype base64 name [label]". Blank lines and
//     lines whose first non-blank character is '#' are ignored. LF and CRLF
//     line endings are both accepted. A line may be at most [MaxLineLen]
//     bytes long.
//   - Accepted key types are ssh-ed25519, ecdsa-sha2-nistp256,
//     ecdsa-sha2-nistp384, ecdsa-sha2-nistp521, ssh-rsa of at least 2048
//     bits, sk-ssh-ed25519@openssh.com and sk-ecdsa-sha2-nistp256@openssh.com.
//     DSA keys, certificates, shorter RSA keys and other types are rejected.
//   - Options before the key type (from="...", command="...", no-pty, ...)
//     are rejected: sshchat does not implement them, and silently ignoring a
//     restriction such as from= would grant more access than the file says.
//   - The key's comment is required. Its first word is the user name: 1 to
//     32 characters from A-Z, a-z, 0-9, '_', '.' and '-', starting with a
//     letter or a digit (see [CheckName]). Anything after it is a free label
//     that tells the user's keys apart, such as "laptop" or the comment of
//     the .pub file the key came from. So "alice laptop" is alice's key
//     labelled laptop, while a line pasted from a .pub file with the
//     comment "alice@laptop" is an error, whose message shows the line to
//     write instead.
//   - A user may have several keys, one per line, all under the same name.
//     Names are compared case-insensitively, and a name must be spelled the
//     same way on every line: "Alice" and "alice" in one file is an error.
//   - A key may appear only once: the same key twice, under one name or
//     two, is an error.
//
// The operators file (see [ParseOps]) lists one user name per line.
//
// Every bad line is reported as a [*LineError]; [Parse] and [ParseOps]
// report all of them, not just the first.
//
// [Add], [Remove], [RemoveFingerprint], [Rename], [Seed], [WriteFile],
// [AddOp], [RemoveOp] and [RenameOp] edit the files atomically and under a
// lock, leaving every other line as it was, byte for byte, and refuse to
// edit a file that has errors. The lock is an flock(2) on the file's
// directory, not on a lock file, so no lock file is left behind. A [Store]
// and an [OpStore] hold their file's current content and reload it when the
// file changes, following symbolic links.
package keys

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"iter"
	"os"
	"slices"
	"strings"

	"golang.org/x/crypto/ssh"
)

// Entry is one allowed key.
type Entry struct {
	Name  string        // user name: the comment's first word, as written
	Label string        // the rest of the comment, which tells a user's keys apart; may be empty
	Key   ssh.PublicKey // the public key
	Line  int           // 1-based line in the file
}

// Set is an immutable, validated set of allowed keys.
type Set struct {
	entries []Entry
	byKey   map[string]int // key wire format -> index into entries
	byName  map[string]int // folded name -> index of the user's first entry
}

func newSet() *Set {
	return &Set{byKey: make(map[string]int), byName: make(map[string]int)}
}

// Lookup returns the name of the user the key belongs to.
func (s *Set) Lookup(key ssh.PublicKey) (name string, ok bool) {
	e, ok := s.entryFor(key)
	return e.Name, ok
}

// HasUser reports whether name (compared case-insensitively) has a key.
func (s *Set) HasUser(name string) bool {
	_, ok := s.user(name)
	return ok
}

// Entries returns the allowed keys in file order.
func (s *Set) Entries() []Entry { return slices.Clone(s.entries) }

// Len returns the number of allowed keys.
func (s *Set) Len() int { return len(s.entries) }

func (s *Set) entryFor(key ssh.PublicKey) (Entry, bool) {
	i, ok := s.byKey[string(key.Marshal())]
	if !ok {
		return Entry{}, false
	}
	return s.entries[i], true
}

func (s *Set) user(name string) (Entry, bool) {
	i, ok := s.byName[strings.ToLower(name)]
	if !ok {
		return Entry{}, false
	}
	return s.entries[i], true
}

// add appends e after checking it against the entries already in s.
func (s *Set) add(e Entry) error {
	if prev, ok := s.entryFor(e.Key); ok {
		if prev.Name == e.Name {
			return fmt.Errorf("%w: same key already listed for %q on line %d", ErrDuplicateKey, prev.Name, prev.Line)
		}
		return fmt.Errorf("%w: key already belongs to %q on line %d", ErrDuplicateKey, prev.Name, prev.Line)
	}
	if prev, ok := s.user(e.Name); ok && prev.Name != e.Name {
		return fmt.Errorf("%w: %q clashes with %q on line %d (names are case-insensitive)", ErrDuplicateName, e.Name, prev.Name, prev.Line)
	}
	folded := strings.ToLower(e.Name)
	if _, ok := s.byName[folded]; !ok {
		s.byName[folded] = len(s.entries)
	}
	s.byKey[string(e.Key.Marshal())] = len(s.entries)
	s.entries = append(s.entries, e)
	return nil
}

// sameAccess reports whether s and t let the same keys in under the same
// names. Labels do not matter: they grant nothing.
func (s *Set) sameAccess(t *Set) bool {
	if s.Len() != t.Len() {
		return false
	}
	for _, e := range s.entries {
		if name, ok := t.Lookup(e.Key); !ok || name != e.Name {
			return false
		}
	}
	return true
}

var (
	// ErrDuplicateName means a user name is already taken, or already
	// listed.
	ErrDuplicateName = errors.New("duplicate name")
	// ErrDuplicateKey means a key is already allowed.
	ErrDuplicateKey = errors.New("duplicate key")
	// ErrNoSuchUser means no line of the file has the given name.
	ErrNoSuchUser = errors.New("no such user")
	// ErrNoSuchKey means no key in the file has the given fingerprint.
	ErrNoSuchKey = errors.New("no such key")
	// ErrPrivateKey means a private key was given where a public key
	// belongs.
	ErrPrivateKey = errors.New("this is a private key, which must never leave its owner's machine; give the public key (the .pub file) instead")
	// ErrInvalidFile means an edit was refused because the file it would
	// change has invalid lines; the error also joins their [*LineError]s.
	ErrInvalidFile = errors.New("file has errors")
)

// LineError describes why one line of an access file is invalid.
type LineError struct {
	Path string // file name, if known
	Line int    // 1-based line number
	Err  error
}

// Error returns "path:N: reason", or "line N: reason" if Path is empty.
func (e *LineError) Error() string {
	if e.Path == "" {
		return fmt.Sprintf("line %d: %v", e.Line, e.Err)
	}
	return fmt.Sprintf("%s:%d: %v", e.Path, e.Line, e.Err)
}

// Unwrap returns the reason the line is invalid.
func (e *LineError) Unwrap() error { return e.Err }

// Parse parses an allowed keys file. If any line is invalid, it returns a
// nil Set and the [*LineError] of every invalid line, joined.
func Parse(data []byte) (*Set, error) {
	return parse("", data)
}

// Load reads and parses the allowed keys file at path. Line errors read
// "path:line: reason". A missing file yields an empty Set and an error
// wrapping [fs.ErrNotExist].
func Load(path string) (*Set, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return newSet(), fmt.Errorf("load allowed keys: %w", err)
	}
	if err != nil {
		return nil, fmt.Errorf("load allowed keys: %w", err)
	}
	return parse(path, data)
}

func parse(path string, data []byte) (*Set, error) {
	s := newSet()
	var errs []error
	for n, line := range numberedLines(data) {
		e, skip, err := parseEntry(line)
		if skip {
			continue
		}
		if err == nil {
			e.Line = n
			err = s.add(e)
		}
		if err != nil {
			errs = append(errs, &LineError{Path: path, Line: n, Err: err})
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return s, nil
}

// numberedLines yields each line of data with its 1-based number. Each line
// keeps its terminator, so that concatenating them gives back data.
func numberedLines(data []byte) iter.Seq2[int, []byte] {
	return func(yield func(int, []byte) bool) {
		n := 0
		for line := range bytes.Lines(data) {
			n++
			if !yield(n, line) {
				return
			}
		}
	}
}
