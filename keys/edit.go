package keys

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/crypto/ssh"
)

// newFileHeader opens every allowed keys file that this package creates, so
// that someone who finds the file knows what it is and how to edit it.
const newFileHeader = "# sshchat allowed keys. One public key per line: keytype base64 name [label]\n"

// Add appends e.Key to the allowed keys file at path under the user name
// e.Name, with the label e.Label, creating the file (mode 0600, directory
// 0700) if it does not exist. The user may already have other keys. It
// refuses an invalid name, label or key; a name spelled differently
// (names are compared case-insensitively) from the same user's other keys
// ([ErrDuplicateName]); a key already in the file, under any name
// ([ErrDuplicateKey], naming its user); and a file with errors
// ([ErrInvalidFile]). It returns the entry written, with its line.
func Add(path string, e Entry) (Entry, error) {
	if err := checkEntry(e); err != nil {
		return Entry{}, fmt.Errorf("%s: %w", path, err)
	}
	err := editSet(path, func(data []byte, s *Set) ([]byte, error) {
		if prev, ok := s.user(e.Name); ok && prev.Name != e.Name {
			return nil, fmt.Errorf("%w: %q is taken by %q on line %d (names are case-insensitive); to add a key for that user, spell it %q", ErrDuplicateName, e.Name, prev.Name, prev.Line, prev.Name)
		}
		if len(data) == 0 {
			data = []byte(newFileHeader)
		}
		data, e = appendEntry(data, e)
		return data, s.add(e)
	})
	if err != nil {
		return Entry{}, fmt.Errorf("%s: %w", path, err)
	}
	return e, nil
}

// checkEntry checks what Add and WriteFile are given; Line is ignored.
func checkEntry(e Entry) error {
	if err := CheckName(e.Name); err != nil {
		return err
	}
	if err := checkLabel(e.Label); err != nil {
		return err
	}
	return checkKey(e.Key)
}

// Remove removes every key of the user name (compared case-insensitively)
// from the allowed keys file at path and returns them. Every other line is
// kept byte for byte. It returns [ErrNoSuchUser] if the user has no key.
func Remove(path, name string) ([]Entry, error) {
	return removeWhere(path, func(e Entry) bool { return strings.EqualFold(e.Name, name) },
		fmt.Errorf("%w: %q", ErrNoSuchUser, name))
}

// RemoveFingerprint removes the key whose SHA256 fingerprint, as OpenSSH
// prints it ("SHA256:" and unpadded base64), is fingerprint from the
// allowed keys file at path and returns it. It returns [ErrNoSuchKey] if no
// key has that fingerprint.
func RemoveFingerprint(path, fingerprint string) (Entry, error) {
	removed, err := removeWhere(path, func(e Entry) bool { return ssh.FingerprintSHA256(e.Key) == fingerprint },
		fmt.Errorf("%w: no key has the fingerprint %q", ErrNoSuchKey, fingerprint))
	if err != nil {
		return Entry{}, err
	}
	return removed[0], nil
}

func removeWhere(path string, match func(Entry) bool, none error) (removed []Entry, err error) {
	if _, err := os.Stat(path); err != nil {
		return nil, err // and create nothing
	}
	err = editSet(path, func(data []byte, s *Set) ([]byte, error) {
		drop := make(map[int]string)
		for _, e := range s.entries {
			if match(e) {
				removed = append(removed, e)
				drop[e.Line] = ""
			}
		}
		if len(removed) == 0 {
			return nil, none
		}
		return replaceLines(data, drop), nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return removed, nil
}

// Rename renames the user old (compared case-insensitively) to newName in
// the allowed keys file at path, keeping each key's label, and returns the
// renamed entries. A change of case only is a rename too. It refuses an
// invalid newName, a newName that another user has ([ErrDuplicateName]), a
// user with no key ([ErrNoSuchUser]) and a file with errors
// ([ErrInvalidFile]).
func Rename(path, old, newName string) (renamed []Entry, err error) {
	if err := CheckName(newName); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if _, err := os.Stat(path); err != nil {
		return nil, err
	}
	err = editSet(path, func(data []byte, s *Set) ([]byte, error) {
		if prev, ok := s.user(newName); ok && !strings.EqualFold(prev.Name, old) {
			return nil, fmt.Errorf("%w: %q is taken by %q on line %d (names are case-insensitive)", ErrDuplicateName, newName, prev.Name, prev.Line)
		}
		lines := make(map[int]string)
		for _, e := range s.entries {
			if strings.EqualFold(e.Name, old) {
				e.Name = newName
				lines[e.Line] = formatEntry(e)
				renamed = append(renamed, e)
			}
		}
		if len(renamed) == 0 {
			return nil, fmt.Errorf("%w: %q", ErrNoSuchUser, old)
		}
		return replaceLines(data, lines), nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return renamed, nil
}

// Seed creates the allowed keys file at path, if it does not exist, with the
// keys read from pubFiles (OpenSSH public key files such as
// ~/.ssh/id_ed25519.pub), all under the user name name, each labelled with
// its file's comment. It is meant for a server's first run. Files that
// cannot be read or hold no acceptable key are skipped; Seed returns the
// entries it wrote together with an error that joins the reason each file
// was skipped. If path exists, or no file yields a key, Seed writes
// nothing.
func Seed(path, name string, pubFiles []string) ([]Entry, error) {
	if err := CheckName(name); err != nil {
		return nil, fmt.Errorf("seed %s: %w", path, err)
	}
	switch _, err := os.Lstat(path); {
	case err == nil:
		return nil, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("seed %s: %w", path, err)
	}
	s := newSet()
	data := []byte(newFileHeader)
	var skipped []error
	for _, f := range pubFiles {
		e, err := readKeyFile(f, name)
		if err == nil {
			more, e := appendEntry(data, e)
			if err = s.add(e); err == nil {
				data = more
				continue
			}
		}
		skipped = append(skipped, fmt.Errorf("seed %s: skipping %s: %w", path, f, err))
	}
	if s.Len() == 0 {
		return nil, errors.Join(skipped...)
	}
	written := false
	err := edit(path, func(_ []byte, exists bool) ([]byte, error) {
		if exists {
			return nil, nil
		}
		written = true
		return data, nil
	})
	if err != nil {
		return nil, fmt.Errorf("seed %s: %w", path, err)
	}
	if !written {
		return nil, nil
	}
	return s.Entries(), errors.Join(skipped...)
}

// readKeyFile reads a public key file as the entry of user name, labelled
// with the file's comment.
func readKeyFile(file, name string) (Entry, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return Entry{}, err
	}
	key, comment, err := ParseKey(data)
	if err != nil {
		return Entry{}, err
	}
	if err := checkLabel(comment); err != nil {
		return Entry{}, err
	}
	return Entry{Name: name, Label: comment, Key: key}, nil
}

// WriteFile replaces the allowed keys file at path, whatever it held, with
// entries in order (their Line is ignored), unless it already holds exactly
// that, and reports whether it wrote. It is for tools that generate the
// whole file, such as a load test's thousand users; writing only on change
// spares a running server needless reloads. It refuses invalid entries and
// duplicates as [Parse] would, and then writes nothing.
func WriteFile(path string, entries []Entry) (changed bool, err error) {
	s := newSet()
	data := []byte(newFileHeader)
	for i, e := range entries {
		if err := checkEntry(e); err != nil {
			return false, fmt.Errorf("%s: entry %d (%s): %w", path, i, e.Name, err)
		}
		data, e = appendEntry(data, e)
		if err := s.add(e); err != nil {
			return false, fmt.Errorf("%s: entry %d (%s): %w", path, i, e.Name, err)
		}
	}
	err = edit(path, func(old []byte, exists bool) ([]byte, error) {
		if exists && bytes.Equal(old, data) {
			return nil, nil
		}
		changed = true
		return data, nil
	})
	if err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	return changed, nil
}

// appendEntry appends the line for e to the file content data and returns
// e with its line number.
func appendEntry(data []byte, e Entry) ([]byte, Entry) {
	if len(data) > 0 && data[len(data)-1] != '\n' {
		data = append(data, '\n')
	}
	e.Line = bytes.Count(data, []byte("\n")) + 1
	data = append(data, formatEntry(e)...)
	return append(data, '\n'), e
}

// replaceLines returns data with the content of each line numbered in
// with replaced by the text given, keeping the line's own terminator; an
// empty text removes the line, terminator and all.
func replaceLines(data []byte, with map[int]string) []byte {
	out := make([]byte, 0, len(data))
	for n, line := range numberedLines(data) {
		text, ok := with[n]
		switch {
		case !ok:
			out = append(out, line...)
		case text != "":
			body := bytes.TrimRight(line, "\r\n")
			out = append(append(out, text...), line[len(body):]...)
		}
	}
	return out
}

// editSet is edit for an allowed keys file that must be valid: fn gets its
// content and Set.
func editSet(path string, fn func(data []byte, s *Set) ([]byte, error)) error {
	return edit(path, func(data []byte, _ bool) ([]byte, error) {
		s, err := parse(path, data)
		if err != nil {
			return nil, refuseInvalid(err)
		}
		return fn(data, s)
	})
}

// refuseInvalid explains an edit refused because the file has the line
// errors errs: an edit cannot know what a bad line was meant to say, and
// the server keeps the last good content until the file is valid again, so
// an edit made now would not take effect.
func refuseInvalid(errs error) error {
	return fmt.Errorf("refusing to edit: the %w, so a running server does not load it either; fix or delete these lines with a text editor, then run the command again:\n%w", ErrInvalidFile, errs)
}

// edit replaces the file at path with what fn makes of its content, holding
// an exclusive lock on the file's directory throughout, so that concurrent
// edits through this package, by this process or others, do not lose each
// other's changes. (Text editors take no such lock.) A missing file reads
// as empty, with exists false; its directory is created (0700) if needed.
// If fn returns nil content, the file is left alone. A symbolic link at
// path is followed and kept.
//
// The lock is on the directory, not on a lock file beside the file: a lock
// file cannot be removed safely (a process waiting on the removed one and a
// process locking a new one would both go ahead), and one left behind
// confuses people. Edits must not nest within one directory: the inner
// one would wait forever for the outer one's lock.
func edit(path string, fn func(data []byte, exists bool) ([]byte, error)) error {
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return err
	}
	defer unlock()
	data, err := os.ReadFile(path)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	data, err = fn(data, exists)
	if err != nil || data == nil {
		return err
	}
	return writeAtomic(path, data)
}

// lockDir takes an exclusive flock(2) on dir, waiting for it, and returns
// the function that releases it.
func lockDir(dir string) (unlock func(), err error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(d.Fd()), syscall.LOCK_EX); err != nil {
		d.Close()
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return func() { d.Close() }, nil // closing releases the lock
}

// writeAtomic replaces the file at path with data, so that readers see
// either the old content or the new, never a mix, even after a crash. It
// keeps the mode and owner of an existing file; a new file gets mode 0600.
func writeAtomic(path string, data []byte) (err error) {
	perm := fs.FileMode(0o600)
	var owner *syscall.Stat_t
	switch fi, err := os.Stat(path); {
	case err == nil:
		perm = fi.Mode().Perm()
		owner, _ = fi.Sys().(*syscall.Stat_t)
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		return err
	}
	if owner != nil {
		if err := tmp.Chown(int(owner.Uid), int(owner.Gid)); err != nil {
			return fmt.Errorf("keep owner of %s: %w", path, err)
		}
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	return syncDir(dir)
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
