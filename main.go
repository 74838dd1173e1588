// Command sshchat is a chat server reached with a plain ssh client.
//
//	sshchat [serve] [flags]   run the server (the default)
//	sshchat keys ...          manage the allowed keys file
//	sshchat ops ...           manage the operators file
//	sshchat help              describe the commands
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof" // for -pprof
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"syscall"
	"time"

	"github.com/sshchat-dev/sshchat/keys"
	"github.com/sshchat-dev/sshchat/sshchat"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv))
}

const usage = `sshchat: a chat server for plain ssh clients.

Usage:
  sshchat [serve] [flags]             run the server (see sshchat serve -h)
  sshchat keys add NAME [FILE|-]      allow a (further) public key under NAME
  sshchat keys list                   list allowed keys with fingerprints and labels
  sshchat keys remove NAME|SHA256:FP  remove NAME's keys, or one key
  sshchat keys rename OLD NEW         rename a user everywhere
  sshchat ops add|remove NAME         make NAME an operator, or no more
  sshchat ops list                    list operators
  sshchat help                        this text

Users connect with: ssh -p 2222 HOST
`

func run(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) > 0 {
		switch args[0] {
		case "keys":
			return runKeys(args[1:], stdin, stdout, stderr, getenv)
		case "ops":
			return runOps(args[1:], stdin, stdout, stderr, getenv)
		case "help", "-h", "-help", "--help":
			fmt.Fprint(stdout, usage)
			return 0
		case "serve":
			args = args[1:]
		}
	}
	return serve(args, stderr, getenv)
}

// envOr returns the environment variable name if set, else def.
func envOr(getenv func(string) string, name, def string) string {
	if v := getenv(name); v != "" {
		return v
	}
	return def
}

func serve(args []string, stderr io.Writer, getenv func(string) string) int {
	cfg := sshchat.DefaultConfig()
	fs := flag.NewFlagSet("sshchat serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", envOr(getenv, "SSHCHAT_ADDR", ":2222"), "listen address (env SSHCHAT_ADDR)")
	keysPath := fs.String("keys", envOr(getenv, "SSHCHAT_KEYS", defaultKeysFile), "allowed keys file (env SSHCHAT_KEYS)")
	hostKeyPath := fs.String("host-key", envOr(getenv, "SSHCHAT_HOST_KEY", "keys/host_ed25519"), "host private key, created if missing (env SSHCHAT_HOST_KEY)")
	shutdownGrace := fs.Duration("shutdown-grace", 5*time.Second, "how long a shutdown waits for sessions to close")
	debug := fs.Bool("debug", false, "log debug messages")
	pprofAddr := fs.String("pprof", "", "serve net/http/pprof on this address, e.g. 127.0.0.1:6060 (off if empty)")
	fs.IntVar(&cfg.MaxLine, "max-line", cfg.MaxLine, "longest chat line in bytes; longer lines are refused")
	fs.IntVar(&cfg.QueueLen, "queue", cfg.QueueLen, "messages queued per client before it is disconnected as too slow")
	fs.IntVar(&cfg.History, "history", cfg.History, "public messages replayed to a user who joins")
	fs.Float64Var(&cfg.Rate, "rate", cfg.Rate, "lines per second per user (0 = unlimited)")
	fs.IntVar(&cfg.Burst, "burst", cfg.Burst, "lines a user may send at once before -rate applies")
	fs.IntVar(&cfg.MaxSessionsPerUser, "max-sessions-per-user", cfg.MaxSessionsPerUser, "concurrent sessions per user (0 = unlimited)")
	fs.IntVar(&cfg.MaxSessionsPerConn, "max-sessions-per-conn", cfg.MaxSessionsPerConn, "concurrent sessions per SSH connection (0 = unlimited)")
	fs.IntVar(&cfg.MaxConns, "max-conns", cfg.MaxConns, "concurrent connections in total (0 = unlimited)")
	fs.IntVar(&cfg.MaxConnsPerIP, "max-conns-per-ip", cfg.MaxConnsPerIP, "concurrent connections per IP address (0 = unlimited)")
	fs.IntVar(&cfg.MaxAuthTries, "max-auth-tries", cfg.MaxAuthTries, "authentication attempts per connection")
	fs.DurationVar(&cfg.LoginGrace, "login-grace", cfg.LoginGrace, "time from connecting to a started chat session")
	fs.DurationVar(&cfg.WriteTimeout, "write-timeout", cfg.WriteTimeout, "time one write to a client may take before it is disconnected")
	fs.DurationVar(&cfg.IdleTimeout, "idle-timeout", cfg.IdleTimeout, "disconnect sessions silent this long (0 = never)")
	fs.Float64Var(&cfg.AuthLogRate, "auth-log-rate", cfg.AuthLogRate, "log records per second about refused connections and logins; the rest are counted (0 = log all)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sshchat: unexpected argument %q; see sshchat help\n", fs.Arg(0))
		return 2
	}
	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	cfg.Logger = log
	if *pprofAddr != "" {
		go func() { log.Error("pprof server stopped", "err", http.ListenAndServe(*pprofAddr, nil)) }()
	}
	if err := serveUntilSignal(*addr, *keysPath, *hostKeyPath, *shutdownGrace, cfg, log, getenv); err != nil {
		log.Error("sshchat stopped", "err", err)
		return 1
	}
	return 0
}

func serveUntilSignal(addr, keysPath, hostKeyPath string, shutdownGrace time.Duration, cfg sshchat.Config, log *slog.Logger, getenv func(string) string) error {
	hostKey, created, err := sshchat.LoadOrCreateHostKey(hostKeyPath)
	if err != nil {
		return err
	}
	if created {
		log.Info("generated host key", "path", hostKeyPath)
	}

	seedAllowedKeys(keysPath, log, getenv)
	store := keys.NewStore(keysPath, log)
	if err := store.Reload(); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("allowed keys: %w", err)
	}
	if store.Set().Len() == 0 {
		log.Warn("no allowed keys yet: nobody can log in until you add one", "add_with", "go run . keys add "+userName(getenv)+" ~/.ssh/id_ed25519.pub", "file", keysPath)
	} else {
		log.Info("allowed keys loaded", "file", keysPath, "keys", store.Set().Len())
	}

	cfg.HostKey, cfg.Auth = hostKey, store
	server, err := sshchat.New(cfg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// SIGHUP asks for a reload, for the cases file watching cannot see.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reloadKeys := make(chan struct{}, 1)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				select {
				case reloadKeys <- struct{}{}:
				default: // a reload is already pending
				}
			}
		}
	}()
	go store.Run(ctx, reloadKeys, server.Revalidate)

	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	served := make(chan error, 1)
	go func() { served <- server.Serve(l) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down", "grace", shutdownGrace)
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := server.Shutdown(sctx); err != nil {
		log.Warn("sessions still open after the grace period were closed", "err", err)
	}
	return <-served
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
