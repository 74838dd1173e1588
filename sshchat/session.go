package sshchat

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	gliderssh "github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/term"
)

// The session channel is handled here rather than by gliderlabs/ssh's
// default handler, which accepts agent forwarding, stores env requests
// without bound and blocks its request loop on an undrained window-change
// channel. This one accepts exactly what a chat needs: pty-req,
// window-change, a few env vars and shell; exec, subsystems, x11 and agent
// forwarding are refused.

// allowedEnv are the env requests a session may make; the rest are refused.
var allowedEnv = map[string]bool{"TERM": true, "LANG": true, "NO_COLOR": true}

// window is a terminal size.
type window struct{ width, height int }

// sessionSetup is what the client asked for before starting its shell.
type sessionSetup struct {
	pty     bool
	term    string
	size    window
	noColor bool
	started bool // the shell request was accepted
}

// answer replies to one session channel request. Before the shell starts it
// records the PTY and environment; afterwards only window changes are taken,
// passed to resize. Everything else (exec, subsystem, x11-req,
// auth-agent-req, signal, break) is refused.
func (setup *sessionSetup) answer(req *gossh.Request, resize func(window)) {
	ok := false
	switch req.Type {
	case "pty-req":
		var p struct {
			Term                string
			Columns, Rows, W, H uint32
			Modes               string
		}
		if !setup.started && !setup.pty && gossh.Unmarshal(req.Payload, &p) == nil {
			setup.pty, setup.term, ok = true, p.Term, true
			setup.size = window{int(p.Columns), int(p.Rows)}
		}
	case "env":
		var kv struct{ Name, Value string }
		if !setup.started && gossh.Unmarshal(req.Payload, &kv) == nil && allowedEnv[kv.Name] {
			ok = true
			if kv.Name == "NO_COLOR" && kv.Value != "" {
				setup.noColor = true
			}
		}
	case "shell":
		ok = !setup.started
		setup.started = true
	case "window-change":
		var w struct{ Columns, Rows, W, H uint32 }
		if setup.pty && gossh.Unmarshal(req.Payload, &w) == nil {
			ok = true
			setup.size = window{int(w.Columns), int(w.Rows)}
			if resize != nil {
				resize(setup.size)
			}
		}
	}
	if req.WantReply {
		req.Reply(ok, nil)
	}
}

// awaitShell answers the channel's requests until the client starts its
// shell, and reports whether it did within the login grace.
func (s *Server) awaitShell(ctx gliderssh.Context, ch gossh.Channel, reqs <-chan *gossh.Request) (*sessionSetup, bool) {
	setup := &sessionSetup{}
	grace := time.NewTimer(s.cfg.LoginGrace)
	defer grace.Stop()
	for !setup.started {
		select {
		case req, ok := <-reqs:
			if !ok {
				return nil, false
			}
			setup.answer(req, nil)
		case <-grace.C:
			fmt.Fprintln(ch.Stderr(), "sshchat: no shell requested; run ssh without a command.")
			return nil, false
		case <-ctx.Done():
			return nil, false
		}
	}
	return setup, true
}

// handleSession is the gliderlabs ChannelHandler for "session" channels.
func (s *Server) handleSession(_ *gliderssh.Server, conn *gossh.ServerConn, newChan gossh.NewChannel, ctx gliderssh.Context) {
	if !s.begin() {
		newChan.Reject(gossh.ResourceShortage, "server shutting down")
		return
	}
	defer s.active.Done()
	id, err := identityOf(conn)
	if err != nil {
		newChan.Reject(gossh.Prohibited, "not authenticated")
		return
	}
	gc, _ := ctx.Value(guardedConnKey).(*guardedConn)
	if gc == nil || !gc.openSession(s.cfg.MaxSessionsPerConn) {
		newChan.Reject(gossh.ResourceShortage, fmt.Sprintf("at most %d sessions per connection", s.cfg.MaxSessionsPerConn))
		return
	}
	defer gc.closeSession()
	ch, reqs, err := newChan.Accept()
	if err != nil {
		return
	}
	defer ch.Close()
	setup, ok := s.awaitShell(ctx, ch, reqs)
	if !ok {
		return
	}
	gc.loggedIn()

	log := s.log.With("user", id.name, "key", gossh.FingerprintSHA256(id.key), "remote", conn.RemoteAddr().String())
	log.Info("login", "pty", setup.pty)
	start := time.Now()
	status := s.chat(ch, reqs, conn, setup, id, log)
	log.Info("logout", "after", time.Since(start).Round(time.Second).String())
	ch.SendRequest("exit-status", false, gossh.Marshal(struct{ Status uint32 }{status}))
}

// identity is who a connection authenticated as.
type identity struct {
	name string
	key  gossh.PublicKey
}

// identityOf returns the identity recorded by verifiedKey for the key that
// signed the connection's authentication.
func identityOf(conn *gossh.ServerConn) (identity, error) {
	if conn.Permissions == nil {
		return identity{}, errors.New("no permissions")
	}
	name := conn.Permissions.Extensions[extUser]
	key, err := gossh.ParsePublicKey([]byte(conn.Permissions.Extensions[extKey]))
	if name == "" || err != nil {
		return identity{}, fmt.Errorf("no verified identity: %v", err)
	}
	return identity{name, key}, nil
}

// lineSource is how a session reads what its user types.
type lineSource interface{ ReadLine() (string, error) }

// chat runs one session in the room until the user leaves or is
// disconnected, and returns the session's exit status. The session's writer
// goroutine also answers its channel requests from now on, which saves a
// goroutine per session and makes it the terminal's only resizer.
func (s *Server) chat(ch gossh.Channel, reqs <-chan *gossh.Request, conn *gossh.ServerConn, setup *sessionSetup, id identity, log *slog.Logger) uint32 {
	cli := &client{name: id.name, key: id.key, out: make(chan *event, s.cfg.QueueLen)}
	watchdog := time.AfterFunc(time.Hour, func() {
		log.Warn("write timed out; closing connection", "timeout", s.cfg.WriteTimeout)
		conn.Close()
	})
	watchdog.Stop()
	var (
		out    output
		lines  lineSource
		resize func(window)
	)
	if setup.pty {
		tr := newTerminalReader(ch, "["+id.name+"] ", s.cfg.MaxLine, s.room.Names)
		resize = func(w window) { tr.t.SetSize(w.width, w.height) }
		resize(setup.size)
		out = &terminalOutput{t: tr.t, watched: watched{watchdog, s.cfg.WriteTimeout}, colors: colorsWanted(setup)}
		lines = tr
	} else {
		out = &channelOutput{ch: ch, watched: watched{watchdog, s.cfg.WriteTimeout}}
		lines = newLineReader(ch, s.cfg.MaxLine)
	}

	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		if err := cli.writeLoop(out, reqs, func(req *gossh.Request) { setup.answer(req, resize) }); err != nil {
			// The connection is broken: close it so the reader stops too,
			// then discard output until the room lets the client go.
			log.Debug("write failed", "err", err)
			conn.Close()
			for range cli.out {
			}
			return
		}
		if h := cli.hangup; h.notice != "" {
			// The room let this client go: end the session so its reader
			// stops.
			log.Info("disconnected", "reason", h.notice)
			if h.closeConn {
				conn.Close()
			} else {
				ch.Close()
			}
		}
	}()

	select {
	case s.room.entering <- cli:
	case <-s.room.done:
		cli.hangup = hangup{notice: "The server is shutting down.", closeConn: true}
		close(cli.out)
		<-writerDone
		return 1
	}

	var idle *time.Timer
	if s.cfg.IdleTimeout > 0 {
		idle = time.AfterFunc(s.cfg.IdleTimeout, func() {
			s.room.kick(cli, hangup{notice: fmt.Sprintf("Disconnected after %s without a message.", s.cfg.IdleTimeout), closeConn: false})
		})
		defer idle.Stop()
	}
	s.readLines(cli, lines, idle)
	select {
	case s.room.leaving <- cli:
	case <-s.room.done:
	}
	<-writerDone
	watchdog.Stop()
	if cli.hangup.notice != "" {
		return 1
	}
	return 0
}

// readLines forwards what the user types to the room until the input ends,
// the user quits or the room stops.
func (s *Server) readLines(cli *client, lines lineSource, idle *time.Timer) {
	for {
		line, err := lines.ReadLine()
		msg := message{from: cli}
		switch {
		case errors.Is(err, errLineTooLong):
			msg.notice = lineTooLongNotice(s.cfg.MaxLine)
		case err != nil:
			return
		default:
			if idle != nil {
				idle.Reset(s.cfg.IdleTimeout)
			}
			msg.text = strings.TrimSpace(Sanitize(line))
			if msg.text == "/quit" {
				return
			}
			if msg.text == "" {
				continue
			}
		}
		select {
		case s.room.messages <- msg:
		case <-s.room.done:
			return
		}
	}
}

// colorsWanted reports whether a PTY session gets colours: not when the
// client set NO_COLOR or its terminal is dumb.
func colorsWanted(setup *sessionSetup) bool {
	return !setup.noColor && setup.term != "dumb" && setup.term != ""
}

// watched bounds each write: if the peer stops reading (or vanishes without
// a FIN) the watchdog closes the connection, which fails the write and frees
// the session.
type watched struct {
	watchdog *time.Timer
	timeout  time.Duration
}

func (w watched) arm()    { w.watchdog.Reset(w.timeout) }
func (w watched) disarm() { w.watchdog.Stop() }

// channelOutput writes line-mode sessions: plain text, no escapes.
type channelOutput struct {
	ch gossh.Channel
	watched
}

func (o *channelOutput) write(p []byte) error {
	o.arm()
	defer o.disarm()
	_, err := o.ch.Write(p)
	return err
}

func (o *channelOutput) style() style { return lineMode }

// terminalOutput writes PTY sessions through x/term, which prints above the
// prompt and redraws what the user was typing.
type terminalOutput struct {
	t *term.Terminal
	watched
	colors bool
}

func (o *terminalOutput) write(p []byte) error {
	o.arm()
	defer o.disarm()
	_, err := o.t.Write(p)
	return err
}

func (o *terminalOutput) style() style { return style{terminal: true, color: o.colors} }
