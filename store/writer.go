package store

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// WriterOptions configures a Writer. Zero values take the defaults.
type WriterOptions struct {
	// MaxPending is how many batches may wait for a commit; Submit refuses
	// more. Default 4096.
	MaxPending int
	// Keep is how long messages are kept; 0 keeps them forever.
	Keep time.Duration
	// PruneEvery is how often messages older than Keep are pruned, besides
	// once when the Writer starts. Default one minute.
	PruneEvery time.Duration
}

func (o WriterOptions) withDefaults() WriterOptions {
	if o.MaxPending <= 0 {
		o.MaxPending = 4096
	}
	if o.PruneEvery <= 0 {
		o.PruneEvery = time.Minute
	}
	return o
}

// Writer writes batches to a DB from its own goroutine, so that the caller
// never waits on the disk. Everything submitted while a commit is syncing is
// written together in the next transaction (group commit), so a busy room
// costs a sync per disk round trip rather than one per message. Between
// commits it prunes old messages.
type Writer struct {
	db   *DB
	log  *slog.Logger
	opts WriterOptions

	mu      sync.Mutex
	queue   []pending
	closing bool

	wake    chan struct{} // something was queued
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
	Batches uint64 // batches written or attempted
	Refused uint64 // Submits refused because the queue was full or closed
	Failed  uint64 // batches whose done was given an error
}

// NewWriter starts a Writer for db. Close it before closing db.
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

// Submit queues b to be written and returns at once. Once b's transaction
// has committed (and synced), or failed, done is called with its error, on
// the Writer's goroutine and in submission order; done must not block, as
// the next commit waits for it. done may be nil.
//
// Submit returns false, and never calls done, when MaxPending batches are
// already waiting or the Writer is closed: b is then not written, which the
// caller should report.
func (w *Writer) Submit(b Batch, done func(error)) bool {
	w.mu.Lock()
	ok := !w.closing && len(w.queue) < w.opts.MaxPending
	if ok {
		w.queue = append(w.queue, pending{b, done})
	}
	w.mu.Unlock()
	if !ok {
		w.refused.Add(1)
		return false
	}
	select {
	case w.wake <- struct{}{}:
	default: // already awake
	}
	return true
}

// Close writes everything submitted before it, stops the Writer and waits
// for it. A prune in progress is abandoned; the next start resumes it.
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
	for {
		if q := w.take(); len(q) > 0 {
			w.commit(q)
			continue
		}
		select {
		case <-w.stop:
			// Close set closing before closing stop, so this take gets
			// the last of the queue.
			w.commit(w.take())
			return
		default:
		}
		if prune != nil {
			if !w.pruneSome(prune) {
				prune = nil
			}
			continue
		}
		select {
		case <-w.wake:
		case <-tick:
			prune = w.startPrune()
		case <-w.stop:
		}
	}
}

// take empties the queue.
func (w *Writer) take() []pending {
	w.mu.Lock()
	defer w.mu.Unlock()
	q := w.queue
	w.queue = nil
	return q
}

// commit writes q in one transaction and then tells each submitter.
func (w *Writer) commit(q []pending) {
	if len(q) == 0 {
		return
	}
	bs := make([]Batch, len(q))
	for i, p := range q {
		bs[i] = p.batch
	}
	refused, err := w.db.write(bs)
	w.commits.Add(1)
	w.batches.Add(uint64(len(q)))
	if err != nil {
		w.log.Error("store: commit failed; its messages are not stored", "batches", len(q), "err", err)
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
