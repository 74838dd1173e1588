package keys

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// debounce is how long Run lets a burst of file events settle before it
// reloads: one save by an editor, or one Add, produces several events.
const debounce = 100 * time.Millisecond

// maxLinks bounds the symbolic links Run follows to find what a path
// resolves to, as the kernel does before it gives up with ELOOP.
const maxLinks = 40

// fileKind says how to read one kind of access file and talk about it.
type fileKind[T any] struct {
	what string // names the file in logs: "allowed keys", "operators"
	unit string // names what count counts in logs: "keys", "operators"
	load func(path string) (*T, error)
	// same reports whether two values grant the same access, so that a
	// change that grants nothing new or less is not announced.
	same  func(old, cur *T) bool
	count func(*T) int
}

// live holds the value parsed from one file and replaces it, atomically,
// when the file changes. [Store] and [OpStore] are the live forms of the
// allowed keys and the operators files. It is safe for concurrent use.
type live[T any] struct {
	fileKind[T]
	path string
	log  *slog.Logger
	cur  atomic.Pointer[T]
}

// newLive returns a live value of the file of kind at path, logging to log
// (nowhere if nil), that holds empty until it is reloaded.
func newLive[T any](kind fileKind[T], path string, log *slog.Logger, empty *T) *live[T] {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l := &live[T]{fileKind: kind, path: path, log: log}
	l.cur.Store(empty)
	return l
}

// Path returns the path of the file.
func (l *live[T]) Path() string { return l.path }

func (l *live[T]) current() *T { return l.cur.Load() }

// Reload reads the file again and makes its content current. On any error
// it keeps the current content and returns the error: for invalid lines,
// the [*LineError] of each, joined.
func (l *live[T]) Reload() error {
	_, _, err := l.reload()
	return err
}

func (l *live[T]) reload() (old, cur *T, err error) {
	cur, err = l.load(l.path)
	if err != nil {
		return nil, nil, err
	}
	return l.cur.Swap(cur), cur, nil
}

// Run keeps the content current until ctx is done. It reloads the file
// when it changes, and whenever a value arrives on reload (main sends one
// on SIGHUP; a nil channel never sends). After a reload that changes who
// has access, it calls onChange, if not nil. A reload that fails is logged,
// one record per invalid line, and the current content is kept.
//
// Run watches the directories that decide what the path names: the path's
// own, and, if it is a symbolic link or lies under one, those of every link
// on the way and of the file it resolves to. It re-resolves after every
// change and every reload request, so replacing the file by a rename (as
// editors and this package do), retargeting a link, or a Kubernetes-style
// "..data" swap of a mounted secret are all seen. It also reloads once when
// it starts, so that a change made just before is not missed. A directory
// it cannot watch, such as one that does not exist yet, is logged, and
// tried again at the next reload request; until then, reload requests
// still work.
func (l *live[T]) Run(ctx context.Context, reload <-chan struct{}, onChange func()) {
	f := newFollower(l.path, l.what, l.log)
	defer f.close()
	f.refresh()
	l.reloadAndNotify(onChange, false)
	settled := time.NewTimer(debounce)
	settled.Stop()
	defer settled.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-reload:
			if !ok {
				reload = nil
				continue
			}
			f.refresh()
			l.reloadAndNotify(onChange, true)
		case ev := <-f.events():
			if f.matters(ev) {
				settled.Reset(debounce)
			}
		case err := <-f.errors():
			// The error may stand for lost events, such as an overflow.
			l.log.Warn("keys: watching "+l.what+" file", "path", l.path, "err", err)
			settled.Reset(debounce)
		case <-settled.C:
			f.refresh()
			l.reloadAndNotify(onChange, false)
		}
	}
}

// reloadAndNotify reloads the file, logs what happened, and calls onChange
// if access changed. Unless requested, an unchanged file is not logged.
func (l *live[T]) reloadAndNotify(onChange func(), requested bool) {
	old, cur, err := l.reload()
	if errors.Is(err, fs.ErrNotExist) && !requested && l.count(l.current()) == 0 {
		return // no file yet and nothing to keep: nothing to say
	}
	if err != nil {
		l.logReloadError(err)
		return
	}
	changed := !l.same(old, cur)
	if changed || requested {
		l.log.Info("keys: reloaded "+l.what+" file", "path", l.path, l.unit, l.count(cur), "changed", changed)
	}
	if changed && onChange != nil {
		onChange()
	}
}

func (l *live[T]) logReloadError(err error) {
	errs := []error{err}
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		errs = joined.Unwrap()
	}
	keeping := "keys: invalid line; keeping previous " + l.what
	for _, err := range errs {
		if le, ok := errors.AsType[*LineError](err); ok {
			l.log.Warn(keeping, "path", le.Path, "line", le.Line, "err", le.Err)
			continue
		}
		l.log.Warn("keys: cannot reload; keeping previous "+l.what, "path", l.path, "err", err)
	}
}

// follower keeps an fsnotify watch on every directory whose entries decide
// what a path reads as, and knows which events may change it. Directory
// watches see a file replaced by a rename, which a watch on the file would
// miss.
type follower struct {
	w    *fsnotify.Watcher // nil if none could be made
	path string
	what string
	log  *slog.Logger
	// names are the paths, as fsnotify reports them, whose events matter.
	names map[string]bool
	// failed are the directories that could not be watched, so that each
	// failure is logged once.
	failed map[string]bool
}

func newFollower(path, what string, log *slog.Logger) *follower {
	f := &follower{path: path, what: what, log: log, failed: make(map[string]bool)}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		f.warn(path, err)
		return f
	}
	f.w = w
	return f
}

func (f *follower) close() {
	if f.w != nil {
		f.w.Close()
	}
}

// events and errors are the watcher's channels, or nil ones that never
// deliver if there is no watcher.
func (f *follower) events() chan fsnotify.Event {
	if f.w == nil {
		return nil
	}
	return f.w.Events
}

func (f *follower) errors() chan error {
	if f.w == nil {
		return nil
	}
	return f.w.Errors
}

func (f *follower) matters(ev fsnotify.Event) bool {
	return f.names[filepath.Clean(ev.Name)]
}

// refresh resolves the path again and moves the watches to the directories
// that now matter. The watcher forgets by itself a directory that is
// removed, so one that comes back is watched again.
func (f *follower) refresh() {
	if f.w == nil {
		return
	}
	if own := filepath.Dir(f.path); !f.failed[own] {
		if _, err := realDir(f.path); err != nil {
			f.warn(own, err)
		}
	} else if _, err := realDir(f.path); err == nil {
		delete(f.failed, own)
	}
	names, dirs := resolveChain(f.path)
	for _, dir := range f.w.WatchList() {
		if !dirs[dir] {
			_ = f.w.Remove(dir) // fails only if the directory just went away
		}
	}
	watched := make(map[string]bool)
	for _, dir := range f.w.WatchList() {
		watched[dir] = true
	}
	for dir := range dirs {
		if watched[dir] {
			continue
		}
		if err := f.w.Add(dir); err != nil {
			f.warn(dir, err)
			continue
		}
		delete(f.failed, dir)
	}
	f.names = names
}

// warn logs, once until it is watched, that dir cannot be watched.
func (f *follower) warn(dir string, err error) {
	if f.failed[dir] {
		return
	}
	f.failed[dir] = true
	f.log.Warn("keys: cannot watch "+f.what+" file for changes; send SIGHUP to reload it", "path", f.path, "dir", dir, "err", err)
}

// resolveChain returns every path whose change may change what path reads
// as: path itself, each symbolic link it goes through (in its last element
// or in a directory above), the files those links point at, and what path
// finally resolves to; and the directories holding them. Paths are spelled
// as fsnotify reports events in those directories: real directory, then
// the entry's name.
func resolveChain(path string) (names, dirs map[string]bool) {
	names, dirs = make(map[string]bool), make(map[string]bool)
	note := func(p string) {
		dir, err := realDir(p)
		if err != nil {
			return // a missing directory holds nothing to watch
		}
		names[filepath.Join(dir, filepath.Base(p))] = true
		dirs[dir] = true
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return names, dirs
	}
	todo, seen := []string{abs}, map[string]bool{}
	for len(todo) > 0 && len(seen) < maxLinks {
		p := todo[0]
		todo = todo[1:]
		if seen[p] {
			continue
		}
		seen[p] = true
		note(p)
		for a := filepath.Dir(p); a != filepath.Dir(a); a = filepath.Dir(a) {
			if isSymlink(a) {
				todo = append(todo, a)
			}
		}
		if target, err := os.Readlink(p); err == nil {
			if !filepath.IsAbs(target) {
				target = filepath.Join(filepath.Dir(p), target)
			}
			todo = append(todo, filepath.Clean(target))
		}
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		note(real)
	}
	return names, dirs
}

// realDir returns the directory holding p with every symbolic link in it
// resolved.
func realDir(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(filepath.Dir(abs))
}

func isSymlink(p string) bool {
	fi, err := os.Lstat(p)
	return err == nil && fi.Mode()&fs.ModeSymlink != 0
}
