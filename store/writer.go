package store

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// WriterOptions configures a Writer. Zero values take the defaults.
type WriterOptions struct {
	// MaxPending is how many messages (a batch without any counts as one)
	// may wait for a commit; Log and Submit refuse more. Default 65536.
	MaxPending int
	// CommitEvery is the least time between two commits, so that a busy
	// room costs a few commits a second however fast it talks. It is
	// also how much a power loss can take of what was logged, so it is
	// capped at a second. Default 200ms.
	CommitEvery time.Duration
	// MaxBatch is how many pending messages make the Writer commit
	// without waiting for CommitEvery. Default 4096.
	MaxBatch int
	// Keep is how long messages are kept; 0 keeps them forever.
	Keep time.Duration
	// PruneEvery is how often messages older than Keep are pruned, besides
	// once when the Writer starts. Default one minute.
	PruneEvery time.Duration
}

func (o WriterOptions) withDefaults() WriterOptions {
	if o.MaxPending <= 0 {
		o.MaxPending = 1 << 16
	}
	if o.CommitEvery <= 0 {
		o.CommitEvery = 200 * time.Millisecond
	}
	o.CommitEvery = min(o.CommitEvery, time.Second)
	if o.MaxBatch <= 0 {
		o.MaxBatch = 4096
	}
	if o.PruneEvery <= 0 {
		o.PruneEvery = time.Minute
	}
	return o
}

// ErrBusy is Log's and Submit's answer when MaxPending messages are
// already waiting for a commit.
var ErrBusy = errors.New("store: too many messages are waiting to be written")

// ErrClosed is Log's answer once the Writer is closed.
var ErrClosed = errors.New("store: the writer is closed")

// Writer writes to a DB from its own goroutine, so that the caller never
// waits on the disk. Everything handed to it between two commits is written
// together in one transaction (group commit), at most once per CommitEvery,
// so a busy room costs a few syncs a second rather than one per message.
// Between commits it prunes old messages.
type Writer struct {
	db   *DB
	log  *slog.Logger
	opts WriterOptions

	// mu orders appends to the write-ahead log with take, which switches
	// log files, so that the file take leaves holds exactly the logged
	// messages it took. It is never held across a sync.
	mu      sync.Mutex
	queue   []pending
	pending int    // messages in queue, batches without any counting one
	logged  uint64 // highest Seq logged (the database may hold higher ones)
	walUsed bool   // something was logged since the last take
	closing bool

	wake    chan struct{} // the queue stopped being empty, or reached MaxBatch
	stop    chan struct{} // closed by Close
	stopped chan struct{} // closed when run returns

	commits, batches, refused, failed atomic.Uint64
}

type pending struct {
	batch Batch
	done  func(error)
}

// WriterStats counts what a Writer has done, for metrics.
type WriterStats struct {
	Commits uint64 // transactions committed or attempted
	Batches uint64 // batches (and Log calls) written or attempted
	Refused uint64 // Logs and Submits refused because the queue was full or closed
	Failed  uint64 // batches (and Log calls) whose write failed
}

// NewWriter starts a Writer for db. Only one Writer may use a DB; close it
// before closing db.
func NewWriter(db *DB, opts WriterOptions, log *slog.Logger) *Writer {
	w := &Writer{
		db:      db,
		log:     log,
		opts:    opts.withDefaults(),
		wake:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	go w.run()
	return w
}

// Log appends msgs to the write-ahead log with one write and queues them
// for the next commit. Once it has returned nil the messages survive the
// process being killed, so they may be shown; the commit, within
// CommitEvery, makes them survive power loss. Log never waits for a sync.
// A commit that fails is logged and counted in Stats.Failed.
//
// msgs' Seqs must increase and be above every Seq logged before. Log keeps
// msgs: the caller must not change them afterwards. Nothing is logged if a
// message is invalid, if MaxPending messages are waiting (ErrBusy), if the
// Writer is closed (ErrClosed) or if the write fails.
func (w *Writer) Log(msgs []Message) error {
	if len(msgs) == 0 {
		return nil
	}
	frames := make([]byte, 0, len(msgs)*(frameHeader+seqLen+messageHeader+64))
	for i, m := range msgs {
		if err := m.check(); err != nil {
			return fmt.Errorf("store: %w", err)
		}
		if i > 0 && m.Seq <= msgs[i-1].Seq {
			return fmt.Errorf("store: message %d: sequence number is not above %d", m.Seq, msgs[i-1].Seq)
		}
		frames = appendFrame(frames, m)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.admit(len(msgs)); err != nil {
		return err
	}
	if last := max(w.logged, w.db.LastSeq()); msgs[0].Seq <= last {
		return fmt.Errorf("store: message %d: sequence number is not above %d", msgs[0].Seq, last)
	}
	if err := w.db.wal.appendFrames(frames); err != nil {
		w.failed.Add(1)
		return err
	}
	w.logged = msgs[len(msgs)-1].Seq
	w.walUsed = true
	w.enqueue(pending{batch: Batch{Messages: msgs}}, len(msgs))
	return nil
}

// Submit queues b to be written and returns at once. Once b's transaction
// has committed (and synced), or failed, done is called with its error, on
// the Writer's goroutine and in submission order; done must not block, as
// the next commit waits for it. done may be nil.
//
// Submit returns false, and never calls done, when MaxPending messages are
// already waiting or the Writer is closed: b is then not written, which the
// caller should report.
func (w *Writer) Submit(b Batch, done func(error)) bool {
	n := max(len(b.Messages), 1)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.admit(n) != nil {
		return false
	}
	w.enqueue(pending{b, done}, n)
	return true
}

// admit says why n more messages may not be queued, counting the refusal.
// w.mu is held.
func (w *Writer) admit(n int) error {
	var err error
	switch {
	case w.closing:
		err = ErrClosed
	case w.pending+n > w.opts.MaxPending && w.pending > 0:
		err = ErrBusy
	}
	if err != nil {
		w.refused.Add(1)
	}
	return err
}

// enqueue adds p, of n messages, to the queue, waking the Writer's
// goroutine only when it has something new to do: start a wait for
// CommitEvery, or commit at once. w.mu is held.
func (w *Writer) enqueue(p pending, n int) {
	before := w.pending
	w.queue = append(w.queue, p)
	w.pending += n
	if before == 0 || before < w.opts.MaxBatch && w.pending >= w.opts.MaxBatch {
		select {
		case w.wake <- struct{}{}:
		default: // already awake
		}
	}
}

// Close writes everything logged and submitted before it, stops the Writer
// and waits for it. A prune in progress is abandoned; the next start
// resumes it.
func (w *Writer) Close() {
	w.mu.Lock()
	already := w.closing
	w.closing = true
	w.mu.Unlock()
	if !already {
		close(w.stop)
	}
	<-w.stopped
}

// Stats returns the Writer's counters.
func (w *Writer) Stats() WriterStats {
	return WriterStats{
		Commits: w.commits.Load(),
		Batches: w.batches.Load(),
		Refused: w.refused.Load(),
		Failed:  w.failed.Load(),
	}
}

func (w *Writer) run() {
	defer close(w.stopped)
	var tick <-chan time.Time
	var prune *pruning
	if w.opts.Keep > 0 {
		t := time.NewTicker(w.opts.PruneEvery)
		defer t.Stop()
		tick = t.C
		prune = w.startPrune()
	}
	wait := time.NewTimer(w.opts.CommitEvery)
	defer wait.Stop()
	var lastCommit time.Time
	for {
		n, closing := w.state()
		switch {
		case n > 0 && (closing || n >= w.opts.MaxBatch || time.Since(lastCommit) >= w.opts.CommitEvery):
			lastCommit = time.Now()
			w.commit(w.take())
			continue
		case closing:
			// Close set closing before closing stop, and nothing is
			// queued after that: everything is written.
			return
		case prune != nil:
			// Between commits, even in a room that never goes quiet.
			if !w.pruneSome(prune) {
				prune = nil
			}
			continue
		}
		var due <-chan time.Time
		if n > 0 {
			wait.Reset(w.opts.CommitEvery - time.Since(lastCommit))
			due = wait.C
		}
		select {
		case <-w.wake:
		case <-due:
		case <-tick:
			prune = w.startPrune()
		case <-w.stop:
		}
	}
}

// state returns how many messages are queued and whether the Writer is
// closing.
func (w *Writer) state() (pending int, closing bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pending, w.closing
}

// taken is what one commit writes: the queue, and the write-ahead log file
// that holds the logged part of it (-1 if none).
type taken struct {
	queue []pending
	wal   int
}

// take empties the queue and switches write-ahead log files.
func (w *Writer) take() taken {
	w.mu.Lock()
	defer w.mu.Unlock()
	t := taken{queue: w.queue, wal: -1}
	if w.walUsed {
		t.wal = w.db.wal.rotate()
		w.walUsed = false
	}
	w.queue, w.pending = nil, 0
	return t
}

// commit writes t in one transaction, tells each submitter, and empties
// the log file that the transaction made redundant.
func (w *Writer) commit(t taken) {
	q := t.queue
	bs := make([]Batch, len(q))
	for i, p := range q {
		bs[i] = p.batch
	}
	refused, err := w.db.write(bs)
	w.commits.Add(1)
	w.batches.Add(uint64(len(q)))
	if err != nil {
		// The log file is kept, so that a restart before the next
		// successful commit replays its messages.
		w.log.Error("store: commit failed; its messages are not stored", "batches", len(q), "err", err)
	} else if t.wal >= 0 {
		if err := w.db.wal.empty(t.wal); err != nil {
			w.log.Error("store: the write-ahead log could not be emptied; it keeps growing until it is", "err", err)
		}
	}
	for i, p := range q {
		berr := err
		if berr == nil && refused[i] != nil {
			berr = refused[i]
			w.log.Error("store: batch refused", "err", berr)
		}
		if berr != nil {
			w.failed.Add(1)
		}
		if p.done != nil {
			p.done(berr)
		}
	}
}

// pruning is one pass of deleting messages older than a cutoff, done a
// chunk at a time between commits.
type pruning struct {
	before  time.Time
	deleted int
}

func (w *Writer) startPrune() *pruning {
	return &pruning{before: time.Now().Add(-w.opts.Keep)}
}

// pruneSome deletes one chunk and reports whether the pass goes on.
func (w *Writer) pruneSome(p *pruning) bool {
	n, more, err := w.db.pruneSome(p.before)
	p.deleted += n
	if err != nil {
		w.log.Error("store: pruning failed", "err", err)
		return false
	}
	if !more && p.deleted > 0 {
		w.log.Info("store: pruned old messages", "count", p.deleted, "before", p.before)
	}
	return more
}
