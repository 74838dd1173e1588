package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	gossh "golang.org/x/crypto/ssh"

	"github.com/sshchat-dev/sshchat/sshchat"
)

// parseServe parses args with the environment env, as runServe does.
func parseServe(args []string, env map[string]string) (serveOptions, error) {
	o := defaultServeOptions()
	err := parseServeFlags(serveFlags(&o), args, func(name string) string { return env[name] })
	return o, err
}

func TestServeFlagsAndEnv(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		got  func(serveOptions) any
		want any
	}{
		{"default", nil, nil, func(o serveOptions) any { return o.addr }, ":2222"},
		{"string from env", nil, map[string]string{"SSHCHAT_ADDR": "127.0.0.1:2299"}, func(o serveOptions) any { return o.addr }, "127.0.0.1:2299"},
		{"int from env", nil, map[string]string{"SSHCHAT_MAX_CONNS_PER_IP": "7"}, func(o serveOptions) any { return o.chat.MaxConnsPerIP }, 7},
		{"duration from env", nil, map[string]string{"SSHCHAT_LOGIN_GRACE": "3s"}, func(o serveOptions) any { return o.chat.LoginGrace }, 3 * time.Second},
		{"float from env", nil, map[string]string{"SSHCHAT_RATE": "0.5"}, func(o serveOptions) any { return o.chat.Rate }, 0.5},
		{"bool from env", nil, map[string]string{"SSHCHAT_INSECURE_HOST_KEY_PERMS": "true"}, func(o serveOptions) any { return o.insecureHostKeyPerms }, true},
		{"metrics from env", nil, map[string]string{"SSHCHAT_METRICS": "127.0.0.1:9222"}, func(o serveOptions) any { return o.metricsAddr }, "127.0.0.1:9222"},
		{"ops and data from env", nil, map[string]string{"SSHCHAT_OPS": "/etc/ops", "SSHCHAT_DATA": "/var/d"}, func(o serveOptions) any { return o.ops + " " + o.data }, "/etc/ops /var/d"},
		{"empty env is unset", nil, map[string]string{"SSHCHAT_QUEUE": ""}, func(o serveOptions) any { return o.chat.QueueLen }, 256},
		{"cluster limits from env", nil, map[string]string{"SSHCHAT_NATS_QUEUE": "10", "SSHCHAT_NATS_HOLD": "20", "SSHCHAT_NATS_ORDER_WAIT": "1s"},
			func(o serveOptions) any {
				return [3]any{o.natsLimits.QueueLen, o.natsLimits.HoldLen, o.natsLimits.OrderWait}
			}, [3]any{10, 20, time.Second}},
		{"flag beats env", []string{"-max-line", "100"}, map[string]string{"SSHCHAT_MAX_LINE": "200"}, func(o serveOptions) any { return o.chat.MaxLine }, 100},
		{"false flag beats true env", []string{"-debug=false"}, map[string]string{"SSHCHAT_DEBUG": "true"}, func(o serveOptions) any { return o.debug }, false},
		{"bad env ignored when the flag is given", []string{"-max-line=100"}, map[string]string{"SSHCHAT_MAX_LINE": "lots"}, func(o serveOptions) any { return o.chat.MaxLine }, 100},
	}
	for _, tt := range tests {
		o, err := parseServe(tt.args, tt.env)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if got := tt.got(o); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestServeFlagErrors(t *testing.T) {
	tests := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{nil, map[string]string{"SSHCHAT_MAX_LINE": "lots"}, `invalid value "lots" for SSHCHAT_MAX_LINE (flag -max-line): parse error`},
		{nil, map[string]string{"SSHCHAT_WRITE_TIMEOUT": "10"}, `invalid value "10" for SSHCHAT_WRITE_TIMEOUT (flag -write-timeout)`},
		{nil, map[string]string{"SSHCHAT_DEBUG": "yes"}, `invalid value "yes" for SSHCHAT_DEBUG (flag -debug)`},
		{nil, map[string]string{"SSHCHAT_MAX_AUTH_TRIES": "0"}, "-max-auth-tries (env SSHCHAT_MAX_AUTH_TRIES) is 0: it must be more than 0"},
		{[]string{"-max-auth-tries", "-1"}, nil, "-max-auth-tries (env SSHCHAT_MAX_AUTH_TRIES) is -1: it must be more than 0"},
		{[]string{"-queue", "0"}, nil, "-queue (env SSHCHAT_QUEUE) is 0: it must be more than 0"},
		{[]string{"-nats-hold", "0"}, nil, "-nats-hold (env SSHCHAT_NATS_HOLD) is 0: it must be more than 0"},
		{[]string{"-nats-order-wait", "5s"}, nil, "-nats-order-wait (env SSHCHAT_NATS_ORDER_WAIT) is 5s: it must be under half of -node-ttl (env SSHCHAT_NODE_TTL), 10s: rosters, the nodes' heartbeat, may wait that long"},
		{[]string{"-node-ttl", "3s"}, nil, "-nats-order-wait (env SSHCHAT_NATS_ORDER_WAIT) is 2s: it must be under half of -node-ttl (env SSHCHAT_NODE_TTL), 3s: rosters, the nodes' heartbeat, may wait that long"},
		{[]string{"-login-grace", "0s"}, nil, "-login-grace (env SSHCHAT_LOGIN_GRACE) is 0s: it must be more than 0"},
		{[]string{"-max-conns", "-1"}, nil, "-max-conns (env SSHCHAT_MAX_CONNS) is -1: it must not be negative"},
		{[]string{"-idle-timeout", "-1s"}, nil, "-idle-timeout (env SSHCHAT_IDLE_TIMEOUT) is -1s: it must not be negative"},
		{[]string{"-shutdown-grace", "-1s"}, nil, "-shutdown-grace (env SSHCHAT_SHUTDOWN_GRACE) is -1s: it must not be negative"},
		{[]string{"-rate", "NaN"}, nil, "-rate (env SSHCHAT_RATE) is NaN: it must be a finite number"},
		{[]string{"-auth-log-rate", "+Inf"}, nil, "-auth-log-rate (env SSHCHAT_AUTH_LOG_RATE) is +Inf: it must be a finite number"},
		{[]string{"-history", "-2", "-burst", "-3"}, nil, "-burst (env SSHCHAT_BURST) is -3: it must not be negative\n-history (env SSHCHAT_HISTORY) is -2"},
		{[]string{"-pprof", "127.0.0.1:6060"}, nil, "flag provided but not defined: -pprof"},
	}
	for _, tt := range tests {
		_, err := parseServe(tt.args, tt.env)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("args %q env %v: err = %v, want %q", tt.args, tt.env, err, tt.want)
		}
	}
}

// TestServeHelp checks that help lists every flag with its environment
// variable.
func TestServeHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"serve", "-h"}, strings.NewReader(""), &stdout, &stderr, os.Getenv); code != 0 || stderr.Len() > 0 {
		t.Fatalf("serve -h: exit %d, stderr %q", code, stderr.String())
	}
	help := stdout.String()
	if first, _, _ := strings.Cut(help, "\n"); !strings.HasPrefix(first, "sshchat serve: ") {
		t.Errorf("help starts with %q, want a one-line description", first)
	}
	o := defaultServeOptions()
	serveFlags(&o).VisitAll(func(f *flag.Flag) {
		if !strings.Contains(help, "  -"+f.Name+" ") && !strings.Contains(help, "  -"+f.Name+"\n") {
			t.Errorf("help does not list -%s", f.Name)
		}
		if !strings.Contains(help, "(env "+envVar(f.Name)+")") {
			t.Errorf("help does not name %s", envVar(f.Name))
		}
	})
}

// serveIn returns serve options using files in dir, listening on loopback.
func serveIn(t *testing.T, dir string, args ...string) serveOptions {
	t.Helper()
	t.Setenv("HOME", t.TempDir()) // nothing in ~/.ssh to seed the keys with
	o, err := parseServe(append([]string{
		"-addr", "127.0.0.1:0",
		"-host-key", filepath.Join(dir, "host_ed25519"),
		"-keys", filepath.Join(dir, "allowed_keys"),
		"-ops", filepath.Join(dir, "ops"),
		"-data", filepath.Join(dir, "data"),
	}, args...), nil)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func TestServeHostKeyPermissions(t *testing.T) {
	tests := []struct {
		mode os.FileMode
		args []string
		want string // error; "" for none
	}{
		{0o600, nil, ""},
		{0o644, nil, "permissions 0644 for '%s' are too open: it must not be accessible by group or others (chmod 600 %[1]s), or accept the risk with -insecure-host-key-perms"},
		{0o640, nil, "permissions 0640 for '%s' are too open"},
		{0o644, []string{"-insecure-host-key-perms"}, ""},
	}
	for _, tt := range tests {
		dir := t.TempDir()
		o := serveIn(t, dir, tt.args...)
		if _, _, err := sshchat.LoadOrCreateHostKey(o.hostKey); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(o.hostKey, tt.mode); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // start up, then shut down at once
		err := serve(ctx, o, nil, slog.New(slog.DiscardHandler), func(string) string { return "" })
		switch want := fmt.Sprintf(tt.want, o.hostKey); {
		case tt.want == "" && err != nil:
			t.Errorf("mode %04o %q: %v", tt.mode, tt.args, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("mode %04o %q: err = %v, want %q", tt.mode, tt.args, err, want)
		}
	}
}

// TestMetricsEndpoint scrapes the metrics listener of a server, then shuts
// the server down, holding the shutdown up at its "shutting down" log
// record: /healthz answers 503 from then on.
func TestMetricsEndpoint(t *testing.T) {
	leaks := goleak.IgnoreCurrent()
	dir := t.TempDir()
	alice := writeUserKey(t, filepath.Join(dir, "alice.pub"))
	line := bytes.TrimSpace(gossh.MarshalAuthorizedKey(alice.PublicKey()))
	if err := os.WriteFile(filepath.Join(dir, "allowed_keys"), append(line, " alice\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	o := serveIn(t, dir, "-metrics", "127.0.0.1:0")
	logr, logw := io.Pipe()
	logs := readLines(t, logr)
	hold := &holdWriter{w: logw, hold: `msg="shutting down"`, held: make(chan struct{}), release: make(chan struct{})}
	ctx, shutDown := context.WithCancel(context.Background())
	defer shutDown()
	served := make(chan error, 1)
	go func() {
		served <- serve(ctx, o, nil, slog.New(slog.NewTextHandler(hold, nil)), func(string) string { return "" })
		logw.Close()
	}()
	metricsAddr := logs.waitFor(`msg="serving metrics" addr=(\S+)`)[1]
	sshAddr := logs.waitFor(`msg=listening addr=(\S+)`)[1]

	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: waitLimit}
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := client.Get("http://" + metricsAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(body)
	}
	for _, tt := range []struct {
		path string
		want string
	}{
		{"/healthz", "ok\n"},
		{"/metrics", "\ngo_goroutines "},
		{"/metrics", "\nprocess_open_fds "},
		{"/metrics", "\ngo_gc_duration_seconds{"},
		{"/debug/pprof/", "goroutine"},
		{"/debug/pprof/goroutine?debug=1", "goroutine profile: total "},
		{"/debug/pprof/cmdline", ""},
	} {
		if code, body := get(tt.path); code != http.StatusOK || !strings.Contains(body, tt.want) {
			t.Errorf("GET %s: %d, want 200 with %q in:\n%.500s", tt.path, code, tt.want, body)
		}
	}

	lines := dialChat(t, sshAddr, alice)
	expectWelcome(t, lines, "alice", "alice")
	// The chat server's own metrics are on the same listener, and move
	// with real SSH traffic.
	for _, want := range []string{"\nsshchat_sessions{kind=\"line\"} 1\n", "\nsshchat_users_online 1\n", "\nsshchat_handshake_seconds_count 1\n"} {
		if _, body := get("/metrics"); !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", strings.TrimSpace(want))
		}
	}
	shutDown()
	select {
	case <-hold.held:
	case <-time.After(waitLimit):
		t.Fatal(`no "shutting down" log record`)
	}
	if code, body := get("/healthz"); code != http.StatusServiceUnavailable {
		t.Errorf("GET /healthz while shutting down: %d %q, want 503", code, body)
	}
	close(hold.release)
	skipTo(t, lines, "-!- The server is shutting down. Bye!")
	select {
	case err := <-served:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitLimit):
		t.Fatal("serve did not return")
	}
	if _, err := client.Get("http://" + metricsAddr + "/healthz"); err == nil {
		t.Error("metrics listener still open after shutdown")
	}
	goleak.VerifyNone(t, leaks)
}

// holdWriter writes to w, but the first write containing hold waits for
// release, after closing held.
type holdWriter struct {
	w       io.Writer
	hold    string
	held    chan struct{}
	release chan struct{}
	once    sync.Once
}

func (h *holdWriter) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte(h.hold)) {
		h.once.Do(func() {
			close(h.held)
			<-h.release
		})
	}
	return h.w.Write(p)
}
