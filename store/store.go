// Package store keeps sshchat's durable state — public history, when each
// user last left, and how far the history has copied the cluster's shared
// log — in one bbolt file under the data directory.
//
// Every commit is synced to disk before it returns (bbolt's default), so a
// message whose write has returned survives kill -9 and power loss. Writes
// from the chat go through a [Writer], which groups them so that the room
// never waits on the disk: [Writer.Log] puts a message in a write-ahead log
// (see wal.go) at the cost of a copy into a memory-mapped file, which
// kill -9 cannot undo, and the Writer commits it to the database within
// CommitEvery.
//
// The file is treated as hostile input: Open walks all of it and refuses a
// damaged one with an error that says what to do, and a record that does not
// decode is skipped and logged rather than shown.
package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// FileName is the database's name inside the data directory.
const FileName = "history.db"

// maxSeen bounds how many last-seen records LastSeen loads, so that a
// hostile file cannot make start-up allocate without limit. Real rooms have
// one record per allowed user.
const maxSeen = 1 << 16

// pruneChunk is how many messages one pruning transaction deletes, so that
// pruning a large backlog never holds the write lock for long.
const pruneChunk = 1000

// lockTimeout is how long Open waits for another process to let go of the
// file before saying it is in use.
const lockTimeout = time.Second

var (
	messagesBucket = []byte("messages") // Seq -> message
	seenBucket     = []byte("seen")     // user name -> Seen
	metaBucket     = []byte("meta")
	positionBucket = []byte("positions") // log name -> position
	lastSeqKey     = []byte("last-seq")  // highest Seq ever written, even if pruned
)

// DB is the open history database. Its methods are safe for concurrent use,
// but each one may wait for the disk: the chat's broadcaster writes through a
// [Writer] instead.
type DB struct {
	bolt    *bolt.DB
	path    string
	log     *slog.Logger
	lastSeq atomic.Uint64
	wal     *wal // appended to by a Writer only
}

// Batch is what one transaction writes. Its parts are applied in field
// order: messages, then renames, then last-seen records, then positions.
type Batch struct {
	Messages []Message // Seqs strictly increasing, above every stored Seq
	Renames  []Rename
	Seen     map[string]Seen // by user name
	// Positions records, by the name of an outside log (the cluster's
	// shared history), the position in it up to which the history holds
	// what that log holds.
	Positions map[string]uint64
}

// Rename moves a user's last-seen record to a new name.
type Rename struct {
	From, To string
}

// Open opens dir/history.db, creating dir (mode 0700) and the file if they
// are missing, and writes into it the messages that the write-ahead log
// holds and it lacks. A directory that others can read is used but warned
// about. A file that is damaged or locked by another process is an error;
// Open never replaces or repairs it. A write-ahead log whose end is torn
// (a crash in the middle of a write) loses that end, with a warning.
func Open(dir string, log *slog.Logger) (*DB, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: creating data directory: %w", err)
	}
	if fi, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	} else if fi.Mode().Perm()&0o077 != 0 {
		log.Warn("store: data directory is accessible to other users; the history is private to the room", "dir", dir, "mode", fi.Mode().Perm(), "fix", "chmod 700 "+dir)
	}
	db := &DB{path: filepath.Join(dir, FileName), log: log}
	err := db.guard(func() error {
		var err error
		db.bolt, err = bolt.Open(db.path, 0o600, &bolt.Options{Timeout: lockTimeout})
		return err
	})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("store: %s is in use by another sshchat process (it stayed locked for %v)", db.path, lockTimeout)
	}
	if err == nil {
		err = db.load()
		if err != nil {
			db.bolt.Close()
		}
	}
	if err != nil {
		var pathErr *os.PathError
		if errors.As(err, &pathErr) {
			return nil, fmt.Errorf("store: %w", err)
		}
		return nil, fmt.Errorf("store: %s is damaged (%w); move it aside to start with empty history, or restore it from a backup", db.path, err)
	}
	if err := db.openWAL(dir); err != nil {
		db.bolt.Close()
		return nil, err
	}
	return db, nil
}

// load creates the buckets of a new file and reads every record of an
// existing one, so that damage is found now rather than in the middle of a
// chat, and sets lastSeq.
func (db *DB) load() error {
	fi, err := os.Stat(db.path)
	if err != nil {
		return err
	}
	return db.update(func(tx *bolt.Tx) error {
		if need := tx.Size(); fi.Size() < need {
			return fmt.Errorf("file is %d bytes but its pages need %d: it was truncated", fi.Size(), need)
		}
		for _, name := range [][]byte{messagesBucket, seenBucket, metaBucket, positionBucket} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		var bad []error
		last := uint64(0)
		if v := tx.Bucket(metaBucket).Get(lastSeqKey); v != nil {
			if len(v) != seqLen {
				return fmt.Errorf("last sequence number is %d bytes, want %d", len(v), seqLen)
			}
			last = binary.BigEndian.Uint64(v)
		}
		err := tx.Bucket(messagesBucket).ForEach(func(k, v []byte) error {
			if _, err := decodeMessage(k, v); err != nil {
				bad = append(bad, err)
			}
			if seq, err := keySeq(k); err == nil {
				last = max(last, seq)
			}
			return nil
		})
		if err != nil {
			return err
		}
		err = tx.Bucket(seenBucket).ForEach(func(k, v []byte) error {
			if _, _, err := decodeSeen(k, v); err != nil {
				bad = append(bad, err)
			}
			return nil
		})
		if err != nil {
			return err
		}
		err = tx.Bucket(positionBucket).ForEach(func(k, v []byte) error {
			if _, err := decodePosition(k, v); err != nil {
				bad = append(bad, err)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if len(bad) > 0 {
			db.log.Warn("store: some records are unreadable and will be skipped", "file", db.path, "count", len(bad), "first", bad[0])
		}
		db.lastSeq.Store(last)
		return tx.Bucket(metaBucket).Put(lastSeqKey, seqKey(last))
	})
}

// guard runs fn, turning a panic or a fault on the memory-mapped file into an
// error: bbolt panics on some damage, and a truncated file faults when a
// missing page is touched.
func (db *DB) guard(fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("damaged page: %v", p)
		}
	}()
	return fn()
}

func (db *DB) view(fn func(*bolt.Tx) error) error {
	return db.guard(func() error { return db.bolt.View(fn) })
}

func (db *DB) update(fn func(*bolt.Tx) error) error {
	return db.guard(func() error { return db.bolt.Update(fn) })
}

// Close closes the files. Close the Writer first.
func (db *DB) Close() error {
	err := db.wal.close()
	if berr := db.bolt.Close(); berr != nil {
		err = errors.Join(err, fmt.Errorf("store: closing %s: %w", db.path, berr))
	}
	return err
}

// LastSeq returns the highest message Seq ever written, 0 for a new file. It
// does not go down when old messages are pruned, so the next message's Seq
// is LastSeq()+1.
func (db *DB) LastSeq() uint64 { return db.lastSeq.Load() }

// Write commits b in one synced transaction. Nothing of b is written if any
// part of it is invalid.
func (db *DB) Write(b Batch) error {
	errs, err := db.write([]Batch{b})
	if err != nil {
		return err
	}
	return errs[0]
}

// write commits the valid batches of bs in one transaction, in order, and
// reports for each batch why it was refused, if it was. err is the
// transaction's failure, which applies to all of them.
func (db *DB) write(bs []Batch) (refused []error, err error) {
	refused = make([]error, len(bs))
	var last uint64
	err = db.update(func(tx *bolt.Tx) error {
		msgs, seen, meta, positions := tx.Bucket(messagesBucket), tx.Bucket(seenBucket), tx.Bucket(metaBucket), tx.Bucket(positionBucket)
		last = 0
		if v := meta.Get(lastSeqKey); len(v) == seqLen {
			last = binary.BigEndian.Uint64(v)
		}
		for i, b := range bs {
			enc, err := encodeBatch(b, last)
			if err != nil {
				refused[i] = fmt.Errorf("store: %w", err)
				continue
			}
			for j, m := range b.Messages {
				if err := msgs.Put(seqKey(m.Seq), enc.messages[j]); err != nil {
					return err
				}
				last = m.Seq
			}
			for _, r := range b.Renames {
				if r.From == r.To {
					continue
				}
				if v := seen.Get([]byte(r.From)); v != nil {
					if err := seen.Put([]byte(r.To), slices.Clone(v)); err != nil {
						return err
					}
					if err := seen.Delete([]byte(r.From)); err != nil {
						return err
					}
				}
			}
			for name, v := range enc.seen {
				if err := seen.Put([]byte(name), v); err != nil {
					return err
				}
			}
			for name, pos := range b.Positions {
				if err := positions.Put([]byte(name), seqKey(pos)); err != nil {
					return err
				}
			}
		}
		return meta.Put(lastSeqKey, seqKey(last))
	})
	if err != nil {
		return nil, fmt.Errorf("store: writing %s: %w", db.path, err)
	}
	for cur := db.lastSeq.Load(); cur < last && !db.lastSeq.CompareAndSwap(cur, last); {
		cur = db.lastSeq.Load()
	}
	return refused, nil
}

type encodedBatch struct {
	messages [][]byte
	seen     map[string][]byte
}

// encodeBatch checks all of b, so that a batch is written whole or not at
// all, and encodes it. after is the highest Seq already written.
func encodeBatch(b Batch, after uint64) (encodedBatch, error) {
	enc := encodedBatch{messages: make([][]byte, len(b.Messages)), seen: make(map[string][]byte, len(b.Seen))}
	for i, m := range b.Messages {
		if m.Seq <= after {
			return encodedBatch{}, fmt.Errorf("message %d: sequence number is not above %d", m.Seq, after)
		}
		after = m.Seq
		var err error
		if enc.messages[i], err = encodeMessage(m); err != nil {
			return encodedBatch{}, err
		}
	}
	for _, r := range b.Renames {
		if err := checkName(r.To); err != nil {
			return encodedBatch{}, fmt.Errorf("renaming %q: %w", r.From, err)
		}
	}
	for name, s := range b.Seen {
		if err := checkName(name); err != nil {
			return encodedBatch{}, fmt.Errorf("last seen: %w", err)
		}
		v, err := encodeSeen(s)
		if err != nil {
			return encodedBatch{}, fmt.Errorf("last seen of %q: %w", name, err)
		}
		enc.seen[name] = v
	}
	for name := range b.Positions {
		if err := checkLogName(name); err != nil {
			return encodedBatch{}, fmt.Errorf("position: %w", err)
		}
	}
	return enc, nil
}

// Recent returns the newest n messages, oldest first.
func (db *DB) Recent(n int) ([]Message, error) {
	return db.Since(0, n)
}

// Since returns the newest n messages whose Seq is above after, oldest
// first. It looks at no more than n records: unreadable ones are logged and
// left out, so it may return fewer.
func (db *DB) Since(after uint64, n int) ([]Message, error) {
	if n <= 0 {
		return nil, nil
	}
	var (
		out []Message
		bad []error
	)
	err := db.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(messagesBucket).Cursor()
		for k, v := c.Last(); k != nil && n > 0; k, v = c.Prev() {
			n--
			m, err := decodeMessage(k, v)
			if err != nil {
				bad = append(bad, err)
				continue
			}
			if m.Seq <= after {
				break
			}
			out = append(out, m)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: reading history from %s: %w", db.path, err)
	}
	if len(bad) > 0 {
		db.log.Warn("store: skipped unreadable messages", "file", db.path, "count", len(bad), "first", bad[0])
	}
	slices.Reverse(out)
	return out, nil
}

// LastSeen returns when each user last left, by name. It loads at most
// 65536 records, logging if there are more.
func (db *DB) LastSeen() (map[string]Seen, error) {
	out := make(map[string]Seen)
	var bad []error
	more := false
	err := db.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(seenBucket).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if len(out) == maxSeen {
				more = true
				break
			}
			name, s, err := decodeSeen(k, v)
			if err != nil {
				bad = append(bad, err)
				continue
			}
			out[name] = s
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: reading last-seen records from %s: %w", db.path, err)
	}
	if len(bad) > 0 {
		db.log.Warn("store: skipped unreadable last-seen records", "file", db.path, "count", len(bad), "first", bad[0])
	}
	if more {
		db.log.Warn("store: too many last-seen records; the rest are ignored", "file", db.path, "loaded", maxSeen)
	}
	return out, nil
}

// Position returns the position recorded for the outside log called name
// (Batch.Positions), 0 if there is none.
func (db *DB) Position(name string) (uint64, error) {
	var pos uint64
	err := db.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(positionBucket).Get([]byte(name))
		if v == nil {
			return nil
		}
		var err error
		pos, err = decodePosition([]byte(name), v)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("store: reading the position in %q from %s: %w", name, db.path, err)
	}
	return pos, nil
}

// RenameUser moves old's last-seen record to new, replacing any record new
// had. It waits for the disk; the chat should use a Batch's Renames instead.
func (db *DB) RenameUser(old, new string) error {
	return db.Write(Batch{Renames: []Rename{{From: old, To: new}}})
}

// Prune deletes the messages from before the given time and returns how many
// it deleted. It works in small transactions so that writers wait little.
//
// Pruning walks from the oldest message and stops at the first one that is
// new enough, so a message stored after a backwards clock jump may outlive
// its time until the messages before it go.
func (db *DB) Prune(before time.Time) (int, error) {
	total := 0
	for {
		n, more, err := db.pruneSome(before)
		total += n
		if err != nil || !more {
			return total, err
		}
	}
}

// pruneSome deletes up to pruneChunk messages from before the given time and
// reports whether there may be more. Unreadable records in the way are
// deleted too: they can never be shown.
func (db *DB) pruneSome(before time.Time) (n int, more bool, err error) {
	var bad int
	err = db.update(func(tx *bolt.Tx) error {
		n, more, bad = 0, false, 0
		b := tx.Bucket(messagesBucket)
		var doomed [][]byte
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if len(doomed) == pruneChunk {
				more = true
				break
			}
			m, err := decodeMessage(k, v)
			if err == nil && !m.At.Before(before) {
				break
			}
			if err != nil {
				bad++
			}
			doomed = append(doomed, bytes.Clone(k))
		}
		// Deleting while a cursor walks the bucket can skip keys.
		for _, k := range doomed {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		n = len(doomed)
		return nil
	})
	if err != nil {
		return 0, false, fmt.Errorf("store: pruning %s: %w", db.path, err)
	}
	if bad > 0 {
		db.log.Warn("store: pruned unreadable messages", "file", db.path, "count", bad)
	}
	return n, more, nil
}
