package keys

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"golang.org/x/crypto/ssh"
)

// debounce is how long Watch lets a burst of file events settle before it
// reloads: one save by an editor, or one Add, produces several events.
const debounce = 100 * time.Millisecond

// Store holds the current Set of an allowed keys file and replaces it
// atomically on reload. It is safe for concurrent use.
type Store struct {
	path string
	set  atomic.Pointer[Set]
}

// NewStore returns a Store for the file at path. It starts empty: call
// Reload to read the file.
func NewStore(path string) *Store {
	st := &Store{path: path}
	st.set.Store(newSet())
	return st
}

// Path returns the path of the allowed keys file.
func (st *Store) Path() string { return st.path }

// Lookup returns the name of the user the key belongs to in the current Set.
func (st *Store) Lookup(key ssh.PublicKey) (string, bool) { return st.Set().Lookup(key) }

// Set returns the current Set.
func (st *Store) Set() *Set { return st.set.Load() }

// Reload reads the file again and makes it the current Set. On any error it
// keeps the current Set and returns the error: for invalid lines, the
// [*LineError] of each, joined; for a missing file, an error wrapping
// [fs.ErrNotExist].
func (st *Store) Reload() error {
	_, _, err := st.reload()
	return err
}

func (st *Store) reload() (old, cur *Set, err error) {
	cur, err = Load(st.path)
	if err != nil {
		return nil, nil, err
	}
	return st.set.Swap(cur), cur, nil
}

// Watch reloads the file whenever it changes, until ctx is done, and then
// returns nil. It watches the file's directory, so that it also sees the
// file replaced by a rename, as editors and Add do. After a reload that lets
// in a different set of keys or names, it calls onChange, which must not be
// nil, with the previous and the new Set. A reload that fails is logged, one
// record per invalid line, and the current Set is kept. Watch also reloads
// once when it starts, so that a change made just before is not missed.
func (st *Store) Watch(ctx context.Context, onChange func(old, new *Set)) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch %s: %w", st.path, err)
	}
	defer w.Close()
	dir, name := filepath.Split(st.path)
	if dir == "" {
		dir = "."
	}
	if err := w.Add(dir); err != nil {
		return fmt.Errorf("watch %s: %w", st.path, err)
	}
	settled := time.NewTimer(debounce)
	defer settled.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-w.Events:
			if filepath.Base(ev.Name) == name {
				settled.Reset(debounce)
			}
		case err := <-w.Errors:
			// The error may stand for lost events, such as an overflow.
			slog.Warn("keys: watching allowed keys file", "path", st.path, "err", err)
			settled.Reset(debounce)
		case <-settled.C:
			st.reloadAndNotify(onChange)
		}
	}
}

func (st *Store) reloadAndNotify(onChange func(old, new *Set)) {
	old, cur, err := st.reload()
	if errors.Is(err, fs.ErrNotExist) && st.Set().Len() == 0 {
		return // no file yet and no keys to keep: nothing to say
	}
	if err != nil {
		logReloadError(st.path, err)
		return
	}
	if old.sameKeys(cur) {
		return
	}
	slog.Info("keys: reloaded allowed keys file", "path", st.path, "keys", cur.Len())
	onChange(old, cur)
}

func logReloadError(path string, err error) {
	errs := []error{err}
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		errs = joined.Unwrap()
	}
	for _, err := range errs {
		if le, ok := errors.AsType[*LineError](err); ok {
			slog.Warn("keys: invalid line; keeping previous allowed keys", "path", le.Path, "line", le.Line, "err", le.Err)
			continue
		}
		slog.Warn("keys: cannot reload; keeping previous allowed keys", "path", path, "err", err)
	}
}
