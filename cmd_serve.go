package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sshchat-dev/sshchat/cluster"
	"github.com/sshchat-dev/sshchat/keys"
	"github.com/sshchat-dev/sshchat/sshchat"
	"github.com/sshchat-dev/sshchat/store"
)

const serveUsageHead = `sshchat serve: run the chat server; users connect with ssh -p 2222 HOST.

Usage: sshchat [serve] [flags]

Each flag can also be set with the environment variable shown after it;
a flag given on the command line wins. SIGINT and SIGTERM shut down
gracefully; SIGHUP reloads the allowed keys, unless the server runs in a
terminal: there it means the terminal closed, and shuts down too.

Flags:
`

// serveOptions is what "sshchat serve" runs with.
type serveOptions struct {
	addr                 string
	metricsAddr          string
	hostKey              string
	insecureHostKeyPerms bool
	keys                 string
	ops                  string
	data                 string
	shutdownGrace        time.Duration
	debug                bool
	chat                 sshchat.Config
	// Clustering: on when nats is set.
	nats       string
	natsCreds  string
	natsPrefix string
	natsLimits cluster.Options // QueueLen, HoldLen, OrderWait, CatchUpWait
	node       string
}

// positiveFlags are the numeric flags that must be more than 0. Every other
// numeric flag may be 0, which often means unlimited, but none may be
// negative.
var positiveFlags = []string{"max-line", "queue", "max-auth-tries", "login-grace", "write-timeout", "nats-queue", "nats-hold", "nats-order-wait", "nats-catchup-wait"}

// metricsShutdownGrace is how long a scrape in progress may take to finish
// once the chat server has shut down.
const metricsShutdownGrace = 2 * time.Second

// defaultServeOptions returns the defaults documented in the README.
func defaultServeOptions() serveOptions {
	return serveOptions{
		addr:          ":2222",
		keys:          defaultKeysFile,
		hostKey:       "keys/host_ed25519",
		ops:           "keys/ops",
		data:          "data",
		shutdownGrace: 5 * time.Second,
		chat:          sshchat.DefaultConfig(),
		natsPrefix:    cluster.DefaultPrefix,
		natsLimits:    cluster.Options{QueueLen: cluster.DefaultQueueLen, HoldLen: cluster.DefaultHoldLen, OrderWait: cluster.DefaultOrderWait, CatchUpWait: cluster.DefaultCatchUpWait},
		node:          hostName(),
	}
}

// hostName is the default node name.
func hostName() string {
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "sshchat"
}

// serveFlags defines the flags of "sshchat serve", with o's values as
// defaults, and names each flag's environment variable in its usage.
func serveFlags(o *serveOptions) *flag.FlagSet {
	fs := flag.NewFlagSet("sshchat serve", flag.ContinueOnError)
	// runServe prints errors and help itself, to stderr and stdout.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.StringVar(&o.addr, "addr", o.addr, "SSH listen `address`")
	fs.StringVar(&o.keys, "keys", o.keys, "allowed keys `file`")
	fs.StringVar(&o.hostKey, "host-key", o.hostKey, "host private key `file`, created if missing; refused if group or others may read it")
	fs.BoolVar(&o.insecureHostKeyPerms, "insecure-host-key-perms", o.insecureHostKeyPerms, "accept a host key file that group or others may read")
	fs.StringVar(&o.ops, "ops", o.ops, "operators `file`")
	fs.StringVar(&o.data, "data", o.data, "data `directory`, created 0700 if missing")
	fs.StringVar(&o.metricsAddr, "metrics", o.metricsAddr, "serve /metrics, /healthz and /debug/pprof/ over HTTP on this `address`, e.g. 127.0.0.1:9222 (off if empty)")
	fs.DurationVar(&o.shutdownGrace, "shutdown-grace", o.shutdownGrace, "how long a shutdown waits for sessions to close")
	fs.BoolVar(&o.debug, "debug", o.debug, "log debug messages")
	c := &o.chat
	fs.IntVar(&c.MaxLine, "max-line", c.MaxLine, "longest chat line in bytes; longer lines are refused")
	fs.IntVar(&c.QueueLen, "queue", c.QueueLen, "messages queued per client before it is disconnected as too slow")
	fs.IntVar(&c.History, "history", c.History, "public messages replayed to a user who joins")
	fs.Float64Var(&c.Rate, "rate", c.Rate, "lines per second per user (0 = unlimited)")
	fs.IntVar(&c.Burst, "burst", c.Burst, "lines a user may send at once before -rate applies")
	fs.IntVar(&c.MaxSessionsPerUser, "max-sessions-per-user", c.MaxSessionsPerUser, "concurrent sessions per user (0 = unlimited)")
	fs.IntVar(&c.MaxSessionsPerConn, "max-sessions-per-conn", c.MaxSessionsPerConn, "concurrent sessions per SSH connection (0 = unlimited)")
	fs.IntVar(&c.MaxConns, "max-conns", c.MaxConns, "concurrent connections in total (0 = unlimited)")
	fs.IntVar(&c.MaxConnsPerIP, "max-conns-per-ip", c.MaxConnsPerIP, "concurrent connections per IP address (0 = unlimited)")
	fs.IntVar(&c.MaxAuthTries, "max-auth-tries", c.MaxAuthTries, "authentication attempts per connection")
	fs.DurationVar(&c.LoginGrace, "login-grace", c.LoginGrace, "time from connecting to a started chat session")
	fs.DurationVar(&c.WriteTimeout, "write-timeout", c.WriteTimeout, "time one write to a client may take before it is disconnected")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", c.IdleTimeout, "disconnect sessions silent this long (0 = never)")
	fs.Float64Var(&c.AuthLogRate, "auth-log-rate", c.AuthLogRate, "log records per second about refused connections and logins; the rest are counted (0 = log all)")
	fs.Float64Var(&c.MaxSessionRate, "max-session-rate", c.MaxSessionRate, "new sessions per second per user, after a burst of -max-sessions-per-user (0 = unlimited)")
	fs.IntVar(&c.Catchup, "catchup", c.Catchup, "most public messages replayed to a returning user")
	fs.IntVar(&c.AnnounceMax, "announce-max", c.AnnounceMax, "users in the room above which arrivals and departures are only summarised, once a second (0 = no limit)")
	fs.Var((*days)(&c.HistoryKeep), "history-keep", "how long public messages are kept, such as 30d or 12h (0 = forever)")
	fs.StringVar(&o.nats, "nats", o.nats, "join a cluster of nodes sharing one room through these NATS server `URLs`, comma-separated (off if empty)")
	fs.StringVar(&o.natsCreds, "nats-creds", o.natsCreds, "NATS credentials `file` (none if empty)")
	fs.StringVar(&o.natsPrefix, "nats-subject-prefix", o.natsPrefix, "`prefix` of the NATS subjects and JetStream buckets of this cluster")
	fs.IntVar(&o.natsLimits.QueueLen, "nats-queue", o.natsLimits.QueueLen, "messages to the other nodes waiting to be sent to NATS before more are dropped")
	fs.IntVar(&o.natsLimits.HoldLen, "nats-hold", o.natsLimits.HoldLen, "messages from other nodes held back, waiting for lines sent before them, before the oldest goes out of order")
	fs.DurationVar(&o.natsLimits.OrderWait, "nats-order-wait", o.natsLimits.OrderWait, "longest a message from another node is held back waiting for the lines sent before it; under half of -node-ttl")
	fs.DurationVar(&o.natsLimits.CatchUpWait, "nats-catchup-wait", o.natsLimits.CatchUpWait, "longest a starting node copies what the other nodes said while it was down before it lets users in")
	fs.StringVar(&o.node, "node", o.node, "this node's `name` in the cluster, unique among its nodes")
	fs.DurationVar(&c.PeerTTL, "node-ttl", c.PeerTTL, "how long a node may stay silent before the others take its users as gone")
	fs.VisitAll(func(f *flag.Flag) { f.Usage += " (env " + envVar(f.Name) + ")" })
	return fs
}

// days is a duration flag that also takes whole days: "30d".
type days time.Duration

func (d *days) String() string {
	if *d != 0 && time.Duration(*d)%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", time.Duration(*d)/(24*time.Hour))
	}
	return time.Duration(*d).String()
}

func (d *days) Set(s string) error {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		v, err := strconv.ParseUint(n, 10, 16)
		if err != nil {
			return fmt.Errorf("%q is not a number of days", s)
		}
		*d = days(time.Duration(v) * 24 * time.Hour)
		return nil
	}
	v, err := time.ParseDuration(s)
	*d = days(v)
	return err
}

func (d *days) Get() any { return time.Duration(*d) }

// envVar is the environment variable of the serve flag name.
func envVar(name string) string {
	return "SSHCHAT_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// parseServeFlags parses args, then sets every flag they do not give from
// its environment variable, if that is set and not empty, and checks the
// numbers.
func parseServeFlags(fs *flag.FlagSet, args []string, getenv func(string) string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	given := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		name := envVar(f.Name)
		v := getenv(name)
		if given[f.Name] || v == "" {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			errs = append(errs, fmt.Errorf("invalid value %q for %s (flag -%s): %w", v, name, f.Name, err))
		}
	})
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if err := checkNumbers(fs); err != nil {
		return err
	}
	return checkOrderWait(fs)
}

// checkOrderWait refuses an order wait that is not well under the node
// TTL: a node's rosters, its heartbeat, may be held that long, and the
// other nodes would take it as gone.
func checkOrderWait(fs *flag.FlagSet) error {
	wait := fs.Lookup("nats-order-wait").Value.(flag.Getter).Get().(time.Duration)
	ttl := fs.Lookup("node-ttl").Value.(flag.Getter).Get().(time.Duration)
	if 2*wait >= ttl {
		return fmt.Errorf("-nats-order-wait (env %s) is %s: it must be under half of -node-ttl (env %s), %s: rosters, the nodes' heartbeat, may wait that long",
			envVar("nats-order-wait"), wait, envVar("node-ttl"), ttl)
	}
	return nil
}

// checkNumbers refuses a numeric flag that is negative, not finite, or 0
// where that makes no sense (positiveFlags). sshchat.New would refuse some
// of these too, but without naming the flag.
func checkNumbers(fs *flag.FlagSet) error {
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		g, ok := f.Value.(flag.Getter)
		if !ok {
			return
		}
		var x float64
		switch v := g.Get().(type) {
		case int:
			x = float64(v)
		case float64:
			x = v
		case time.Duration:
			x = float64(v)
		default:
			return
		}
		var problem string
		switch {
		case math.IsNaN(x) || math.IsInf(x, 0):
			problem = "must be a finite number"
		case x <= 0 && slices.Contains(positiveFlags, f.Name):
			problem = "must be more than 0"
		case x < 0:
			problem = "must not be negative"
		default:
			return
		}
		errs = append(errs, fmt.Errorf("-%s (env %s) is %s: it %s", f.Name, envVar(f.Name), f.Value, problem))
	})
	return errors.Join(errs...)
}

func printServeUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprint(w, serveUsageHead)
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// runServe implements "sshchat serve"; args excludes "serve". It returns
// the process exit code.
func runServe(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	o := defaultServeOptions()
	fs := serveFlags(&o)
	if err := parseServeFlags(fs, args, getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printServeUsage(stdout, fs)
			return 0
		}
		for line := range strings.SplitSeq(err.Error(), "\n") {
			fmt.Fprintf(stderr, "sshchat serve: %s\n", line)
		}
		fmt.Fprintln(stderr, "Run 'sshchat serve -h' for the flags.")
		return 2
	}
	level := slog.LevelInfo
	if o.debug {
		level = slog.LevelDebug
	}
	// A write to a broken stderr fails and the record is lost, which is
	// better than dying before the users are told goodbye (see
	// handleSignals on SIGPIPE).
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(log) // package keys logs reloads through the default logger
	reload := make(chan struct{}, 1)
	ctx, stop := handleSignals(log, reload)
	defer stop()
	if err := serve(ctx, o, reload, log, getenv); err != nil {
		log.Error("sshchat stopped", "err", err)
		return 1
	}
	return 0
}

// handleSignals returns a context that is cancelled when the server should
// shut down: on SIGINT or SIGTERM, and on SIGHUP if the process has a
// controlling terminal, where SIGHUP means the terminal closed. Without one
// (under systemd, in a container, after setsid) SIGHUP conventionally asks
// for a reload: it is passed on to reload, without waiting. An inherited
// ignored SIGHUP (nohup) stays ignored. Once shutting down, the signals get
// their default action back, so that a second Ctrl-C ends the process at
// once. stop releases the signals.
//
// SIGPIPE is ignored for good: otherwise the runtime kills the process when
// it writes a log record to a closed stderr (`sshchat 2>&1 | tee log`, then
// Ctrl-C, which kills tee too), before the users are told goodbye.
func handleSignals(log *slog.Logger, reload chan<- struct{}) (ctx context.Context, stop func()) {
	signal.Ignore(syscall.SIGPIPE)
	// Asked now, not when SIGHUP arrives: a terminal that hangs up is taken
	// from the session, so the answer would then always be no.
	inTerminal := hasControllingTerminal()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	if !signal.Ignored(syscall.SIGHUP) {
		signal.Notify(sigs, syscall.SIGHUP)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer signal.Stop(sigs)
		for {
			var sig os.Signal
			select {
			case <-ctx.Done():
				return
			case sig = <-sigs:
			}
			switch {
			case sig == syscall.SIGHUP && !inTerminal:
				log.Info("SIGHUP: reloading allowed keys")
				select {
				case reload <- struct{}{}:
				default: // a reload is pending already
				}
				continue
			case sig == syscall.SIGHUP:
				log.Info("terminal hung up: shutting down; run without a terminal (systemd, setsid) for SIGHUP to reload")
			default:
				log.Info("signal received: shutting down; send it again to stop at once", "signal", sig.String())
			}
			cancel()
			return
		}
	}()
	return ctx, func() {
		cancel()
		<-done
	}
}

// hasControllingTerminal reports whether the process has a controlling
// terminal: /dev/tty opens only then (ENXIO otherwise).
func hasControllingTerminal() bool {
	f, err := os.Open("/dev/tty")
	if err != nil {
		return false
	}
	f.Close()
	return true
}

// serve runs the chat server until ctx is done, then shuts it down
// gracefully. Each value from reload reloads the allowed keys. It returns
// once every goroutine it started has ended.
func serve(ctx context.Context, o serveOptions, reload <-chan struct{}, log *slog.Logger, getenv func(string) string) error {
	var background sync.WaitGroup
	defer background.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// Absolute, so that starting from another directory, which would
	// create a new host key and so a new server identity, shows.
	abs := func(path string) string {
		if a, err := filepath.Abs(path); err == nil {
			return a
		}
		return path // no working directory: logged as given
	}
	log.Info("sshchat starting", append(readBuildVersion().logAttrs(),
		"host_key", abs(o.hostKey), "allowed_keys", abs(o.keys), "ops", abs(o.ops), "data", abs(o.data))...)
	if err := os.MkdirAll(o.data, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}

	var hostKeyOpts []sshchat.HostKeyOption
	if o.insecureHostKeyPerms {
		hostKeyOpts = append(hostKeyOpts, sshchat.InsecureHostKeyPerms())
	}
	hostKey, created, err := sshchat.LoadOrCreateHostKey(o.hostKey, hostKeyOpts...)
	if errors.Is(err, sshchat.ErrHostKeyPermissions) {
		return fmt.Errorf("%w, or accept the risk with -insecure-host-key-perms", err)
	}
	if err != nil {
		return err
	}
	if created {
		log.Info("generated host key", "path", o.hostKey)
	}

	seedAllowedKeys(o.keys, log, getenv)
	allowed := keys.NewStore(o.keys, log)
	if err := allowed.Reload(); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("allowed keys: %w", err)
	}
	if allowed.Set().Len() == 0 {
		log.Warn("no allowed keys yet: nobody can log in until you add one", "add_with", "go run . keys add "+userName(getenv)+" ~/.ssh/id_ed25519.pub", "file", o.keys)
	} else {
		log.Info("allowed keys loaded", "file", o.keys, "keys", allowed.Set().Len())
	}
	ops := keys.NewOpStore(o.ops, log)
	if err := ops.Reload(); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("operators: %w", err)
	}
	sanctions := keys.NewModerationStore(filepath.Join(o.data, moderationFile), log)
	if err := sanctions.Reload(); err != nil {
		return fmt.Errorf("moderation: %w", err)
	}
	audit, err := keys.OpenAuditLog(filepath.Join(o.data, auditFile))
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	defer audit.Close()
	history, err := store.Open(o.data, log)
	if err != nil {
		return err
	}
	defer history.Close()

	// registry is served on /metrics: the Go runtime's, the process's and
	// the chat server's metrics.
	registry := newRegistry()
	cfg := o.chat
	cfg.HostKey, cfg.Auth, cfg.Logger, cfg.Store, cfg.Metrics = hostKey, allowed, log, history, registry
	cfg.Moderation = sshchat.Moderation{Operators: ops, Sanctions: sanctions, Audit: audit}
	var link *cluster.Link
	var shared *cluster.SharedSanctions
	if o.nats != "" {
		link, err = cluster.Dial(cluster.Options{URLs: o.nats, CredsFile: o.natsCreds, Node: o.node, Prefix: o.natsPrefix,
			QueueLen: o.natsLimits.QueueLen, HoldLen: o.natsLimits.HoldLen, OrderWait: o.natsLimits.OrderWait, CatchUpWait: o.natsLimits.CatchUpWait, HistoryKeep: cfg.HistoryKeep,
			HistoryStored: history.LastSeq() > 0, Logger: log})
		if err != nil {
			return err
		}
		defer link.Close() // after the server has shut down: the others hear its bye
		if err := link.RegisterMetrics(registry); err != nil {
			return err
		}
		if shared, err = link.ShareModeration(sanctions); err != nil {
			return err
		}
		defer shared.Close()
		cfg.Peers, cfg.Moderation.Sanctions = link, shared
	}
	server, err := sshchat.New(cfg)
	if err != nil {
		return err
	}
	if link != nil {
		if err := link.Start(server); err != nil {
			return err
		}
		if err := shared.Follow(server.Revalidate); err != nil {
			return err
		}
	}

	// Each file is watched; SIGHUP (reload) asks all of them to reload too.
	reloads := []chan struct{}{make(chan struct{}, 1), make(chan struct{}, 1), make(chan struct{}, 1)}
	background.Go(func() { fanOut(ctx, reload, reloads) })
	background.Go(func() { allowed.Run(ctx, reloads[0], server.Revalidate) })
	background.Go(func() { ops.Run(ctx, reloads[1], nil) })
	sanctionsChanged := server.Revalidate
	if shared != nil {
		// An edit of the file from outside chat is the cluster's too.
		sanctionsChanged = func() { shared.Share(); server.Revalidate() }
	}
	background.Go(func() { sanctions.Run(ctx, reloads[2], sanctionsChanged) })

	l, err := net.Listen("tcp", o.addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	var metrics *metricsServer
	if o.metricsAddr != "" {
		metrics, err = startMetrics(o.metricsAddr, registry, log)
		if err != nil {
			l.Close()
			return err
		}
	}
	served := make(chan error, 1)
	go func() { served <- server.Serve(l) }()
	var serveErr error
	select {
	case serveErr = <-served:
	case <-ctx.Done():
		if metrics != nil {
			metrics.stopping.Store(true)
		}
		log.Info("shutting down", "grace", o.shutdownGrace)
		sctx, cancel := context.WithTimeout(context.Background(), o.shutdownGrace)
		defer cancel()
		if err := server.Shutdown(sctx); err != nil {
			log.Warn("sessions still open after the grace period were closed", "err", err)
		}
		serveErr = <-served
	}
	if metrics != nil {
		metrics.shutdown()
	}
	return serveErr
}

// The files sshchat keeps in the data directory, besides the history
// (store.FileName).
const (
	moderationFile = "moderation.json"
	auditFile      = "audit.log"
)

// fanOut passes each value from in to every channel of outs, until ctx is
// done, without waiting: a receiver that has one pending needs no second.
func fanOut(ctx context.Context, in <-chan struct{}, outs []chan struct{}) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-in:
		}
		for _, out := range outs {
			select {
			case out <- struct{}{}:
			default:
			}
		}
	}
}

// newRegistry returns the Prometheus registry for /metrics, with the Go
// runtime and process collectors.
func newRegistry() *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

// metricsServer serves /metrics, /healthz and /debug/pprof/ over HTTP.
type metricsServer struct {
	http     *http.Server
	stopping atomic.Bool // /healthz answers 503 once set
	done     chan struct{}
}

func startMetrics(addr string, registry *prometheus.Registry, log *slog.Logger) (*metricsServer, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen: %w", err)
	}
	m := &metricsServer{done: make(chan struct{})}
	errorLog := slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{ErrorLog: errorLog, Registry: registry}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if m.stopping.Load() {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	m.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: errorLog}
	log.Info("serving metrics", "addr", l.Addr().String(), "paths", "/metrics /healthz /debug/pprof/")
	go func() {
		defer close(m.done)
		if err := m.http.Serve(l); !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "err", err)
		}
	}()
	return m, nil
}

// shutdown lets requests in progress finish for metricsShutdownGrace, then
// closes them.
func (m *metricsServer) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), metricsShutdownGrace)
	defer cancel()
	if err := m.http.Shutdown(ctx); err != nil {
		m.http.Close()
	}
	<-m.done
}

// seedAllowedKeys creates a missing allowed keys file from the running
// user's ~/.ssh/*.pub, so that `go run .` then `ssh -p 2222 localhost` works
// on a fresh checkout. (keys.Seed leaves an existing file alone.)
func seedAllowedKeys(path string, log *slog.Logger, getenv func(string) string) {
	home, err := os.UserHomeDir()
	if err != nil {
		return
	}
	pubs, _ := filepath.Glob(filepath.Join(home, ".ssh", "*.pub"))
	if len(pubs) == 0 {
		return
	}
	name := userName(getenv)
	added, err := keys.Seed(path, name, pubs)
	for _, e := range added {
		log.Info("seeded allowed keys from your ~/.ssh", "file", path, "key", keys.Describe(e))
	}
	if err != nil {
		log.Warn("seeding allowed keys", "err", err)
	}
}

// userName is the running user's name, as a default chat name.
func userName(getenv func(string) string) string {
	name := getenv("USER")
	if name == "" {
		if u, err := user.Current(); err == nil {
			name = u.Username
		}
	}
	if keys.CheckName(name) != nil {
		return "me"
	}
	return name
}
