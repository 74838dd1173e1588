package store

import (
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// benchWriter returns a Writer on a fresh database, committing back to
// back to measure the disk, and a function that makes the next message.
func benchWriter(b *testing.B) (*Writer, func() Message) {
	db, _ := openTest(b, dataDir(b))
	log, _ := newLogger()
	w := NewWriter(db, WriterOptions{CommitEvery: time.Nanosecond}, log)
	b.Cleanup(w.Close)
	seq := uint64(0)
	return w, func() Message {
		seq++
		return Message{Seq: seq, At: time.Now(), From: "alice", Kind: Chat, Text: "a typical line of chat, some sixty bytes long, give or take"}
	}
}

// BenchmarkWriterThroughput keeps the Writer's queue busy: its msgs/s is
// the most a room can store.
func BenchmarkWriterThroughput(b *testing.B) {
	w, next := benchWriter(b)
	inflight := make(chan struct{}, 1024)
	start, cpu0 := time.Now(), cpuTime()
	for b.Loop() {
		inflight <- struct{}{}
		if !w.Submit(Batch{Messages: []Message{next()}}, func(error) { <-inflight }) {
			b.Fatal("Submit refused")
		}
	}
	for range cap(inflight) {
		inflight <- struct{}{}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/1e3/float64(b.N), "µs-cpu/msg")
	s := w.Stats()
	b.ReportMetric(float64(s.Batches)/float64(s.Commits), "msgs/commit")
}

// BenchmarkSubmitLatency measures from Submit to done, for a message alone
// and for messages arriving in bursts (a busy room's broadcaster wake-ups).
func BenchmarkSubmitLatency(b *testing.B) {
	for _, burst := range []int{1, 16, 256} {
		b.Run("burst="+strconv.Itoa(burst), func(b *testing.B) {
			w, next := benchWriter(b)
			lat := make([]time.Duration, 0, burst*b.N)
			acked := make(chan struct{}, burst)
			start := time.Now()
			for b.Loop() {
				for range burst {
					at := time.Now()
					w.Submit(Batch{Messages: []Message{next()}}, func(error) {
						lat = append(lat, time.Since(at))
						acked <- struct{}{}
					})
				}
				for range burst {
					<-acked
				}
			}
			elapsed := time.Since(start)
			slices.Sort(lat)
			us := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))]) / 1e3 }
			b.ReportMetric(us(0.5), "p50-µs/msg")
			b.ReportMetric(us(0.99), "p99-µs/msg")
			b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "msgs/s")
		})
	}
}

// BenchmarkLog measures what the history logger pays per wake-up to make
// a message survive a crash. Logging back to back outruns the commits, so
// every 1024 messages the clock stops until the Writer has committed the
// previous 1024, which keeps its queue far from full.
func BenchmarkLog(b *testing.B) {
	w, next := benchWriter(b)
	committed := make(chan error, 1)
	logged := 0
	for b.Loop() {
		if err := w.Log([]Message{next()}); err != nil {
			b.Fatal(err)
		}
		if logged++; logged%1024 == 0 {
			b.StopTimer()
			if logged > 1024 {
				if err := <-committed; err != nil {
					b.Fatal(err)
				}
			}
			if !w.Submit(Batch{}, func(err error) { committed <- err }) {
				b.Fatal("Submit refused")
			}
			b.StartTimer()
		}
	}
}

func BenchmarkRecent100(b *testing.B) {
	db, _ := openTest(b, dataDir(b))
	if err := db.Write(Batch{Messages: msgs(1, 100_000)}); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		got, err := db.Recent(100)
		if err != nil || len(got) != 100 {
			b.Fatal(len(got), err)
		}
	}
}

// cpuTime is the process's user+system CPU time so far: the Writer's work
// happens on its own goroutine, which wall time per operation hides.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
