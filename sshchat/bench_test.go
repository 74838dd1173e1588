package sshchat

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	gossh "golang.org/x/crypto/ssh"

	"github.com/sshchat-dev/sshchat/store"
)

// BenchmarkBroadcast measures the broadcaster alone: one sender, n clients
// whose queues are drained by plain goroutines. Reported per delivery (one
// message reaching one client). The sender waits for every client to drain
// each batch, so no queue overflows and every message is delivered.
func BenchmarkBroadcast(b *testing.B) {
	const batch = 128 // half the default queue
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("clients=%d", n), func(b *testing.B) {
			r := newRoom(roomOptions{}, time.Now)
			defer r.close("bye")
			sender := &client{name: "sender", out: make(chan *event, 2*batch)}
			r.enter(sender)
			go func() {
				for range sender.out {
				}
			}()
			drained := make([]chan struct{}, n-1)
			for i := range drained {
				cli := &client{name: fmt.Sprint("c", i), out: make(chan *event, 2*batch)}
				drained[i] = make(chan struct{}, b.N/batch+1)
				go func() {
					got := 0
					for ev := range cli.out {
						if ev.kind != eventChat {
							continue
						}
						if got++; got%batch == 0 || got == b.N {
							drained[i] <- struct{}{}
						}
					}
				}()
				r.enter(cli)
			}
			msg := message{from: sender, text: "hello, everyone"}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			b.ResetTimer()
			for i := 1; i <= b.N; i++ {
				r.say(msg)
				if i%batch == 0 || i == b.N {
					for _, d := range drained {
						<-d
					}
				}
			}
			b.StopTimer()
			runtime.ReadMemStats(&after)
			deliveries := float64(b.N) * float64(n-1)
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/deliveries, "ns/delivery")
			b.ReportMetric(float64(after.Mallocs-before.Mallocs)/deliveries, "allocs/delivery")
		})
	}
}

// BenchmarkEndToEnd measures the whole server over real SSH on loopback: one
// sender, n-1 line-mode receivers, all in this process. The CPU figure is
// the process's, so it includes the clients' decryption. Each size runs
// plain and with the features that must not slow the hot path, so that
// their cost is read off one run. With history, every message is also
// stored, at a cost per message (store's BenchmarkWriterThroughput reports
// it) that the fan-out shares out: at clients=100 it is a few per cent of a
// delivery, while clients=10, 9 receivers of some 30,000 messages a
// second, measures how fast the room can store more than how fast it fans
// out.
func BenchmarkEndToEnd(b *testing.B) {
	variants := []struct {
		name  string
		tweak func(*testing.B, *Config)
	}{
		{"plain", func(*testing.B, *Config) {}},
		{"metrics", func(_ *testing.B, c *Config) { c.Metrics = prometheus.NewRegistry() }},
		{"history", func(b *testing.B, c *Config) {
			db, err := store.Open(b.TempDir(), slog.New(slog.DiscardHandler))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { db.Close() }) // after benchEndToEnd has shut the server down
			c.Store = db
		}},
	}
	for _, n := range []int{10, 100} {
		for _, v := range variants {
			b.Run(fmt.Sprintf("clients=%d/%s", n, v.name), func(b *testing.B) {
				benchEndToEnd(b, n, func(c *Config) { v.tweak(b, c) })
			})
		}
	}
}

// benchEndToEnd runs the benchmark on a server whose config tweak changes,
// if not nil.
func benchEndToEnd(b *testing.B, n int, tweak func(*Config)) {
	srv, addr, stop := benchServer(b, tweak)
	defer stop()
	receivers := make([]*bufio.Scanner, n-1)
	var senderIn io.Writer
	for i := range n {
		signer := newSigner(b)
		srv.cfg.Auth.(*allowList).set(signer.PublicKey(), fmt.Sprint("u", i))
		client, err := gossh.Dial("tcp", addr, &gossh.ClientConfig{
			User: "bench", Auth: []gossh.AuthMethod{gossh.PublicKeys(signer)},
			HostKeyCallback: gossh.InsecureIgnoreHostKey(),
		})
		if err != nil {
			b.Fatal(err)
		}
		defer client.Close()
		sess, err := client.NewSession()
		if err != nil {
			b.Fatal(err)
		}
		out, _ := sess.StdoutPipe()
		in, _ := sess.StdinPipe()
		if err := sess.Shell(); err != nil {
			b.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		for sc.Scan() && sc.Text() != fmt.Sprint("-!- You are u", i) {
		}
		if i == 0 {
			senderIn = in
			go func() {
				for sc.Scan() {
				}
			}()
			continue
		}
		receivers[i-1] = sc
	}
	// Receivers acknowledge each line; the sender stays within window
	// lines of the slowest so that nobody's queue overflows.
	const window = 64
	acks := make([]chan struct{}, len(receivers))
	var done sync.WaitGroup
	for i, sc := range receivers {
		acks[i] = make(chan struct{}, b.N)
		done.Add(1)
		go func() {
			defer done.Done()
			for got := 0; got < b.N && sc.Scan(); {
				if len(sc.Bytes()) > 3 && string(sc.Bytes()[:3]) == "u0:" {
					got++
					acks[i] <- struct{}{}
				}
			}
		}()
	}
	line := []byte("the quick brown fox jumps over the lazy dog\n")
	acked := make([]int, len(receivers))
	cpu0 := cpuTime()
	b.ResetTimer()
	for i := range b.N {
		for r := range receivers {
			for ; acked[r] < i-window; acked[r]++ {
				<-acks[r]
			}
		}
		if _, err := senderIn.Write(line); err != nil {
			b.Fatal(err)
		}
	}
	done.Wait()
	b.StopTimer()
	deliveries := float64(b.N) * float64(n-1)
	b.ReportMetric(deliveries/b.Elapsed().Seconds(), "deliveries/s")
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/deliveries, "µs-cpu/delivery")
}

// BenchmarkConnect measures what a connection costs from dial to the end of
// its welcome: key exchange, public key auth, a line-mode session and the
// greeting, with inFlight connections under way at once as the load tool
// makes them. Each round connects clients to a fresh server, which keeps
// them all, so that the joins fan out as they do in a real room. The CPU
// figure is the process's, client and server together: compare it with a
// bare x/crypto handshake, which costs some 1.5–1.8 ms for both sides on
// the 2-core machine the README's figures come from. The server logs as
// main.go has it, formatted text, into io.Discard.
func BenchmarkConnect(b *testing.B) {
	const clients, inFlight = 500, 64
	var cpu time.Duration
	for b.Loop() {
		b.StopTimer()
		srv, addr, stop := benchServer(b, func(c *Config) {
			c.MaxSessionsPerUser = 0
			c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		})
		signers := make([]gossh.Signer, clients)
		for i := range signers {
			signers[i] = newSigner(b)
			srv.cfg.Auth.(*allowList).set(signers[i].PublicKey(), fmt.Sprint("u", i))
		}
		conns := make([]*gossh.Client, clients)
		next := make(chan int, clients)
		for i := range clients {
			next <- i
		}
		close(next)
		var wg sync.WaitGroup
		cpu0 := cpuTime()
		b.StartTimer()
		for range inFlight {
			wg.Go(func() {
				for i := range next {
					conns[i] = benchJoin(b, addr, signers[i], fmt.Sprint("u", i))
				}
			})
		}
		wg.Wait()
		b.StopTimer()
		cpu += cpuTime() - cpu0
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
		stop()
		b.StartTimer()
	}
	n := float64(b.N * clients)
	b.ReportMetric(n/b.Elapsed().Seconds(), "conns/s")
	b.ReportMetric(float64(cpu.Microseconds())/n, "µs-cpu/conn")
}

// benchJoin connects as signer, starts a line-mode chat and waits for its
// welcome, which ends with "You are name"; nil if that failed.
func benchJoin(b *testing.B, addr string, signer gossh.Signer, name string) *gossh.Client {
	client, err := gossh.Dial("tcp", addr, &gossh.ClientConfig{
		User: "bench", Auth: []gossh.AuthMethod{gossh.PublicKeys(signer)},
		HostKeyCallback: gossh.InsecureIgnoreHostKey(),
	})
	if err != nil {
		b.Error(err)
		return nil
	}
	sess, err := client.NewSession()
	if err != nil {
		b.Error(err)
		return client
	}
	out, _ := sess.StdoutPipe()
	if err := sess.Shell(); err != nil {
		b.Error(err)
		return client
	}
	sc := bufio.NewScanner(out)
	for sc.Scan() && sc.Text() != "-!- You are "+name {
	}
	if sc.Err() != nil {
		b.Error(sc.Err())
	}
	// The room's later lines are not read: the server's writer must not
	// stall on a full window meanwhile, so drain them.
	go io.Copy(io.Discard, out)
	return client
}

func benchServer(b *testing.B, tweak func(*Config)) (*Server, string, func()) {
	b.Helper()
	cfg := DefaultConfig()
	cfg.HostKey = newSigner(b)
	cfg.Auth = &allowList{names: map[string]string{}}
	cfg.Rate, cfg.MaxConnsPerIP, cfg.History = 0, 0, 0
	cfg.MaxSessionRate = 0
	cfg.Logger = slog.New(slog.DiscardHandler)
	if tweak != nil {
		tweak(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(l)
	return srv, l.Addr().String(), func() {
		ctx, cancel := contextWithTimeout(waitLimit)
		defer cancel()
		srv.Shutdown(ctx)
	}
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkWriter measures sessions' writers alone, from a queued event to
// the channel's Write, one event per write as a quiet room makes them: the
// server's own share of a delivery, besides SSH and the kernel. Events go
// round-robin to the sessions, so that with many each write finds its
// session's state out of the CPU's caches, as a fan-out does.
func BenchmarkWriter(b *testing.B) {
	for _, mode := range []string{"line", "terminal"} {
		for _, n := range []int{1, 1000} {
			b.Run(fmt.Sprintf("%s/sessions=%d", mode, n), func(b *testing.B) {
				sink := &signalWriter{wrote: make(chan struct{}, 1)}
				outs := make([]output, n)
				for i := range outs {
					outs[i] = benchOutput(b, mode, sink)
				}
				sink.writes = 0
				cli := &client{out: make(chan *event, 1)}
				ev := newEvent(eventChat, "alice", "the quick brown fox jumps over the lazy dog", time.Now())
				st := outs[0].style()
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					if err := cli.writeBatch(outs[i], st, ev, nil); err != nil {
						b.Fatal(err)
					}
					if i++; i == n {
						i = 0
					}
				}
				b.ReportMetric(float64(sink.writes)/float64(b.N), "writes/delivery")
			})
		}
	}
}

// benchOutput makes a session's output in mode, line or terminal, writing
// to sink under a watchdog; a terminal shows its prompt, waiting for input.
func benchOutput(b *testing.B, mode string, sink *signalWriter) output {
	wd := newWatchdog(time.Minute, func() { b.Error("watchdog expired") })
	b.Cleanup(wd.stop)
	w := watchedWriter{sink, wd}
	if mode == "line" {
		return channelOutput{w}
	}
	held := &heldWriter{w: w}
	in, typing := io.Pipe()
	tr := newTerminalReader(in, held, "[bench] ", 1024, func() []string { return nil })
	tr.t.SetSize(80, 24)
	read := make(chan struct{})
	go func() {
		defer close(read)
		tr.ReadLine() // draws the prompt, then waits for input as a session does
	}()
	b.Cleanup(func() {
		typing.Close()
		<-read
	})
	<-sink.wrote // the prompt
	return &terminalOutput{t: tr.t, held: held, colors: true}
}

// signalWriter discards what is written, counting the writes and signalling
// the first.
type signalWriter struct {
	writes int
	wrote  chan struct{}
}

func (w *signalWriter) Write(p []byte) (int, error) {
	w.writes++
	select {
	case w.wrote <- struct{}{}:
	default:
	}
	return len(p), nil
}
