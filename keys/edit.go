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
const newFileHeader = "# sshchat allowed keys. One public key per line: keytype base64 name\n"

// Add appends key to the allowed keys file at path under the user name name,
// creating the file (mode 0600, directory 0700) if it does not exist. It
// refuses an invalid name or key, a name already in the file (compared
// case-insensitively; ErrDuplicateName), a key already in the file
// (ErrDuplicateKey), and a file that is not valid to begin with.
func Add(path, name string, key ssh.PublicKey) (Entry, error) {
	if err := ValidName(name); err != nil {
		return Entry{}, fmt.Errorf("%s: %w", path, err)
	}
	if err := checkKey(key); err != nil {
		return Entry{}, fmt.Errorf("%s: %w", path, err)
	}
	var e Entry
	err := edit(path, func(data []byte, _ bool) ([]byte, error) {
		s, err := parse(path, data)
		if err != nil {
			return nil, fmt.Errorf("refusing to edit a file with errors:\n%w", err)
		}
		if prev, ok := s.user(name); ok {
			if prev.Name == name {
				return nil, fmt.Errorf("%w: %q already has a key on line %d", ErrDuplicateName, name, prev.Line)
			}
			return nil, fmt.Errorf("%w: %q is taken by %q on line %d (names are case-insensitive)", ErrDuplicateName, name, prev.Name, prev.Line)
		}
		if len(data) == 0 {
			data = []byte(newFileHeader)
		}
		data, e = appendEntry(data, name, key)
		return data, s.add(e)
	})
	if err != nil {
		return Entry{}, fmt.Errorf("%s: %w", path, err)
	}
	return e, nil
}

// Remove removes every key of the user name (compared case-insensitively)
// from the allowed keys file at path and returns them. Every other line is
// kept byte for byte. It returns ErrNoSuchUser if the user has no key.
func Remove(path, name string) (removed []Entry, err error) {
	if _, err := os.Stat(path); err != nil {
		return nil, err
	}
	err = edit(path, func(data []byte, _ bool) ([]byte, error) {
		kept := make([]byte, 0, len(data))
		for n, line := range numberedLines(data) {
			key, comment, skip, err := parseLine(line)
			if !skip && err == nil && strings.EqualFold(comment, name) {
				removed = append(removed, Entry{Name: comment, Key: key, Line: n})
				continue
			}
			kept = append(kept, line...)
		}
		if len(removed) == 0 {
			return nil, fmt.Errorf("%w: %q", ErrNoSuchUser, name)
		}
		return kept, nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return removed, nil
}

// Seed creates the allowed keys file at path, if it does not exist, with the
// keys read from pubFiles (OpenSSH public key files such as
// ~/.ssh/id_ed25519.pub), all under the user name name. It is meant for a
// server's first run. Files that cannot be read or hold no acceptable key
// are skipped; Seed returns the entries it wrote together with an error
// that joins the reason each file was skipped. If path exists, or no file
// yields a key, Seed writes nothing.
func Seed(path, name string, pubFiles []string) ([]Entry, error) {
	if err := ValidName(name); err != nil {
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
		key, err := readKeyFile(f)
		if err == nil {
			more, e := appendEntry(data, name, key)
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

func readKeyFile(name string) (ssh.PublicKey, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	return ParseKey(data)
}

// appendEntry appends the line for key and name to the file content data.
func appendEntry(data []byte, name string, key ssh.PublicKey) ([]byte, Entry) {
	if len(data) > 0 && data[len(data)-1] != '\n' {
		data = append(data, '\n')
	}
	e := Entry{Name: name, Key: key, Line: bytes.Count(data, []byte("\n")) + 1}
	data = append(data, bytes.TrimSuffix(ssh.MarshalAuthorizedKey(key), []byte("\n"))...)
	data = append(data, ' ')
	data = append(data, name...)
	return append(data, '\n'), e
}

// edit replaces the file at path with what fn makes of its content, holding
// an exclusive lock on "<path>.lock" throughout so that concurrent edits
// through this package, by this process or others, do not lose each other's
// changes. (Text editors take no such lock.) A missing file
// reads as empty, with exists false; its directory is created (0700) if
// needed. If fn returns nil content, the file is left alone. A symbolic link
// at path is followed and kept.
func edit(path string, fn func(data []byte, exists bool) ([]byte, error)) error {
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	lock, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close() // releases the lock
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
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
