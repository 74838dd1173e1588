package store

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// blockedWriter returns a Writer whose goroutine is held inside the done
// callback of a first batch until release is called, so that tests can
// queue work deterministically behind it.
func blockedWriter(t *testing.T, db *DB, opts WriterOptions) (w *Writer, release func()) {
	t.Helper()
	log, _ := newLogger()
	w = NewWriter(db, opts, log)
	inDone, unblock := make(chan struct{}), make(chan struct{})
	if !w.Submit(Batch{Messages: msgs(1, 1)}, func(error) { close(inDone); <-unblock }) {
		t.Fatal("first Submit refused")
	}
	<-inDone
	var once sync.Once
	release = func() { once.Do(func() { close(unblock) }) }
	t.Cleanup(func() { release(); w.Close() })
	return w, release
}

func TestWriterGroupCommit(t *testing.T) {
	db, _ := openTest(t, dataDir(t))
	w, release := blockedWriter(t, db, WriterOptions{})
	const n = 100
	var order []uint64
	for _, m := range msgs(2, n+1) {
		ok := w.Submit(Batch{Messages: []Message{m}}, func(err error) {
			if err != nil {
				t.Error(err)
			}
			order = append(order, m.Seq) // only the writer goroutine calls done
		})
		if !ok {
			t.Fatalf("Submit of %d refused", m.Seq)
		}
	}
	release()
	w.Close()
	if want := seqs(msgs(2, n+1)); !slices.Equal(order, want) {
		t.Errorf("done order %v, want %v", order, want)
	}
	if s := w.Stats(); s.Commits != 2 || s.Batches != n+1 || s.Failed != 0 || s.Refused != 0 {
		t.Errorf("Stats = %+v, want 2 commits of %d batches", s, n+1)
	}
	if got, _ := db.Recent(2 * n); len(got) != n+1 {
		t.Errorf("%d messages stored, want %d", len(got), n+1)
	}
}

func TestWriterSubmitWhenFull(t *testing.T) {
	db, _ := openTest(t, dataDir(t))
	w, release := blockedWriter(t, db, WriterOptions{MaxPending: 3})
	for _, m := range msgs(2, 4) {
		if !w.Submit(Batch{Messages: []Message{m}}, nil) {
			t.Fatalf("Submit of %d refused with room in the queue", m.Seq)
		}
	}
	called := false
	if w.Submit(Batch{Messages: msgs(5, 5)}, func(error) { called = true }) {
		t.Fatal("Submit to a full queue was accepted")
	}
	release()
	w.Close()
	if called {
		t.Error("done called for a refused Submit")
	}
	if s := w.Stats(); s.Refused != 1 {
		t.Errorf("Stats = %+v, want 1 refused", s)
	}
	if got := db.LastSeq(); got != 4 {
		t.Errorf("LastSeq = %d, want 4", got)
	}
}

func TestWriterSubmitAfterClose(t *testing.T) {
	db, _ := openTest(t, dataDir(t))
	log, _ := newLogger()
	w := NewWriter(db, WriterOptions{}, log)
	w.Close()
	w.Close() // twice is harmless
	if w.Submit(Batch{Messages: msgs(1, 1)}, func(error) { t.Error("done called") }) {
		t.Error("Submit after Close accepted")
	}
}

// TestWriterCloseFlushes checks that Close writes everything submitted
// before it.
func TestWriterCloseFlushes(t *testing.T) {
	dir := dataDir(t)
	db, _ := openTest(t, dir)
	log, _ := newLogger()
	w := NewWriter(db, WriterOptions{}, log)
	for _, m := range msgs(1, 500) {
		if !w.Submit(Batch{Messages: []Message{m}}, nil) {
			t.Fatal("Submit refused")
		}
	}
	w.Close()
	if got := db.LastSeq(); got != 500 {
		t.Errorf("LastSeq = %d, want 500", got)
	}
}

// TestWriterRefusedBatch checks that one bad batch fails alone: the others
// committed with it are written.
func TestWriterRefusedBatch(t *testing.T) {
	db, _ := openTest(t, dataDir(t))
	log, rec := newLogger()
	w := NewWriter(db, WriterOptions{}, log)
	inDone, unblock := make(chan struct{}), make(chan struct{})
	w.Submit(Batch{Messages: msgs(1, 1)}, func(error) { close(inDone); <-unblock })
	<-inDone
	var results []error
	submit := func(b Batch) {
		w.Submit(b, func(err error) { results = append(results, err) })
	}
	submit(Batch{Messages: msgs(2, 3)})
	submit(Batch{Messages: msgs(3, 3)}) // Seq 3 again
	bad := msgs(4, 4)
	bad[0].Text = "\x1b]0;pwned\x07"
	submit(Batch{Messages: bad})
	submit(Batch{Messages: msgs(4, 5)})
	close(unblock)
	w.Close()
	wants := []string{"", "message 3: sequence number is not above 3", "message 4: text has control character", ""}
	if len(results) != len(wants) {
		t.Fatalf("%d done calls, want %d", len(results), len(wants))
	}
	for i, want := range wants {
		if err := results[i]; want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("batch %d: done(%v), want %q", i, err, want)
		}
	}
	if got, _ := db.Recent(10); !slices.Equal(seqs(got), []uint64{1, 2, 3, 4, 5}) {
		t.Errorf("stored %v, want 1..5", seqs(got))
	}
	if s := w.Stats(); s.Failed != 2 {
		t.Errorf("Stats = %+v, want 2 failed", s)
	}
	if !rec.has("store: batch refused") {
		t.Errorf("refused batch not logged: %q", rec.lines)
	}
}

func TestWriterCommitError(t *testing.T) {
	db, _ := openTest(t, dataDir(t))
	log, rec := newLogger()
	w := NewWriter(db, WriterOptions{}, log)
	db.Close() // every commit now fails
	errs := make(chan error, 1)
	w.Submit(Batch{Messages: msgs(1, 1)}, func(err error) { errs <- err })
	if err := <-errs; err == nil {
		t.Error("commit to a closed database succeeded")
	}
	w.Close()
	if !rec.has("store: commit failed") {
		t.Errorf("failed commit not logged: %q", rec.lines)
	}
}

func TestWriterPrunes(t *testing.T) {
	dir := dataDir(t)
	db, _ := openTest(t, dir)
	now := time.Now()
	var old, fresh []Message
	for i, m := range msgs(1, 2*pruneChunk+10) {
		if i < 2*pruneChunk+5 {
			m.At = now.Add(-48 * time.Hour)
			old = append(old, m)
		} else {
			m.At = now
			fresh = append(fresh, m)
		}
	}
	if err := db.Write(Batch{Messages: append(old, fresh...)}); err != nil {
		t.Fatal(err)
	}
	log, rec := newLogger()
	w := NewWriter(db, WriterOptions{Keep: 24 * time.Hour}, log)
	defer w.Close()
	line := rec.wait(t, "store: pruned old messages")
	if want := fmt.Sprintf("count=%d", len(old)); !strings.Contains(line, want) {
		t.Errorf("logged %q, want %s", line, want)
	}
	if got, _ := db.Recent(100); !slices.Equal(seqs(got), seqs(fresh)) {
		t.Errorf("left %v, want %v", seqs(got), seqs(fresh))
	}
}

// TestCrash kills a process that is writing through a Writer and checks
// that every message it had acknowledged is on disk: for Submit, once its
// done was called; for Log, once Log returned, which is when the chat shows
// a message.
func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	for _, mode := range []string{"submit", "log"} {
		t.Run(mode, func(t *testing.T) { testCrash(t, mode) })
	}
}

func testCrash(t *testing.T, mode string) {
	dir := dataDir(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$")
	cmd.Env = append(os.Environ(), "STORE_CRASH_DIR="+dir, "STORE_CRASH_MODE="+mode)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdin, err := cmd.StdinPipe() // held open: the child waits on it when done
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	const enough = 2000
	var acked []uint64
	sc := bufio.NewScanner(out)
	for len(acked) < enough && sc.Scan() {
		if s, ok := strings.CutPrefix(sc.Text(), "acked "); ok {
			seq, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			acked = append(acked, seq)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if len(acked) < enough {
		t.Fatalf("child acknowledged only %d messages", len(acked))
	}

	db, _ := openTest(t, dir)
	stored, err := db.Recent(int(db.LastSeq()))
	if err != nil {
		t.Fatal(err)
	}
	byseq := map[uint64]Message{}
	for _, m := range stored {
		byseq[m.Seq] = m
	}
	for _, seq := range acked {
		if m, ok := byseq[seq]; !ok || m.Text != crashText(seq) {
			t.Fatalf("acknowledged message %d lost (stored: %v)", seq, ok)
		}
	}
	t.Logf("%d acknowledged, %d stored", len(acked), len(stored))
}

func crashText(seq uint64) string { return "message " + strconv.FormatUint(seq, 10) }

// TestCrashChild is TestCrash's child process: it writes until killed.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv("STORE_CRASH_DIR")
	if dir == "" {
		t.Skip("run by TestCrash")
	}
	log, _ := newLogger()
	db, err := Open(dir, log)
	if err != nil {
		t.Fatal(err)
	}
	w := NewWriter(db, WriterOptions{}, log)
	message := func(seq uint64) Message {
		return Message{Seq: seq, At: time.Now(), From: "alice", Kind: Chat, Text: crashText(seq)}
	}
	if os.Getenv("STORE_CRASH_MODE") == "log" {
		// As the broadcaster does: one to a few messages at a time.
		for seq := uint64(1); seq <= 1e6; seq += 3 {
			batch := []Message{message(seq), message(seq + 1), message(seq + 2)}[:1+seq%3]
			if err := w.Log(batch); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			for _, m := range batch {
				fmt.Printf("acked %d\n", m.Seq)
			}
		}
	} else {
		inflight := make(chan struct{}, 1024)
		for seq := uint64(1); seq <= 1e6; seq++ {
			inflight <- struct{}{}
			w.Submit(Batch{Messages: []Message{message(seq)}}, func(err error) {
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
				fmt.Printf("acked %d\n", seq)
				<-inflight
			})
		}
	}
	os.Stdin.Read(make([]byte, 1))
}
