package sshchat

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	gliderssh "github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"
)

// A session channel is handled here rather than by gliderlabs/ssh's default
// handler (see the package doc). It accepts exactly what a chat needs:
// pty-req, window-change, a few env vars, and shell or exec (a one-shot
// command, exec.go); subsystems, x11 and agent forwarding are refused.

// allowedEnv are the env requests a session may make; the rest are refused.
var allowedEnv = map[string]bool{"TERM": true, "LANG": true, "NO_COLOR": true}

// sessionSetup is what the client asked for before starting its shell.
type sessionSetup struct {
	pty     bool
	term    string
	size    window
	noColor bool
	started bool   // the shell or exec request was accepted
	command string // what exec asked for; "" for a shell
}

// maxCommandLine bounds an exec request's command line.
const maxCommandLine = 64 << 10

// answer replies to one session channel request and reports whether it
// was accepted. Before the shell starts it records the PTY, the
// environment and an exec command; afterwards only window changes are
// taken, passed to resize. Everything else (subsystem, x11-req,
// auth-agent-req, signal, break) is refused. It never waits on the client.
func (setup *sessionSetup) answer(req *gossh.Request, resize func(window)) bool {
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
	case "exec":
		var cmd struct{ Command string }
		if !setup.started && gossh.Unmarshal(req.Payload, &cmd) == nil && len(cmd.Command) <= maxCommandLine && strings.TrimSpace(cmd.Command) != "" {
			ok, setup.started, setup.command = true, true, cmd.Command
		}
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
	return ok
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
			if !setup.answer(req, nil) {
				s.log.Debug("session request refused", "type", req.Type, "remote", ctx.RemoteAddr().String())
			}
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
//
// Its goroutine becomes the session's reader, which spends an idle user's
// whole session waiting in a read: the setup and the logging, which need
// deep stacks, are done in callees that return first, so that the frames
// it waits under stay small. The garbage collector halves a goroutine's
// stack only while it uses less than a quarter of it, counting an 800-byte
// guard: a reader waiting less than about 1.2 KiB deep goes back to 4 KiB
// after growing for the setup, a deeper one keeps 8 KiB for the session.
func (s *Server) handleSession(_ *gliderssh.Server, conn *gossh.ServerConn, newChan gossh.NewChannel, ctx gliderssh.Context) {
	sess := s.openSession(conn, newChan, ctx)
	if sess == nil {
		return
	}
	var status uint32
	if sess.sio.setup.command != "" {
		status = s.runExec(sess.sio, sess.id, sess.reqs, sess.log)
	} else {
		status = s.chat(sess)
	}
	s.closeSession(sess, status)
}

// session is a session channel whose shell or command has started.
type session struct {
	sio   *sessionIO
	id    identity
	reqs  <-chan *gossh.Request
	log   *slog.Logger
	kind  string // for the metrics
	start time.Time
}

// openSession accepts a session channel and waits for its shell or exec
// request; it returns nil, having undone what it did, if the session does
// not start. closeSession ends a session it returned.
func (s *Server) openSession(conn *gossh.ServerConn, newChan gossh.NewChannel, ctx gliderssh.Context) *session {
	if !s.begin() {
		newChan.Reject(gossh.ResourceShortage, "server shutting down")
		return nil
	}
	started := false
	defer func() {
		if !started {
			s.active.Done()
		}
	}()
	tc := connOf(ctx)
	id, err := identityOf(conn)
	if err != nil || tc == nil {
		newChan.Reject(gossh.Prohibited, "not authenticated")
		return nil
	}
	if !tc.openSession(s.cfg.MaxSessionsPerConn) {
		newChan.Reject(gossh.ResourceShortage, fmt.Sprintf("at most %d sessions per connection", s.cfg.MaxSessionsPerConn))
		return nil
	}
	defer func() {
		if !started {
			tc.closeSession()
		}
	}()
	ch, reqs, err := newChan.Accept()
	if err != nil {
		return nil
	}
	setup, ok := s.awaitShell(ctx, ch, reqs)
	if !ok {
		go gossh.DiscardRequests(reqs)
		ch.Close()
		return nil
	}
	started = true
	tc.startChat()

	pub, _ := gossh.ParsePublicKey([]byte(id.key))
	log := s.log.With("user", id.name, "key", gossh.FingerprintSHA256(pub), "remote", conn.RemoteAddr().String())
	log.Info("login", "pty", setup.pty, "exec", setup.command != "")
	kind := kindLine
	switch {
	case setup.command != "":
		kind = kindExec
	case setup.pty:
		kind = kindTerminal
	}
	s.metrics.session(kind, 1)
	sio := newSessionIO(s, ch, tc, setup, id.name, log)
	return &session{sio: sio, id: id, reqs: reqs, log: log, kind: kind, start: time.Now()}
}

// closeSession ends a session that openSession started, with status.
func (s *Server) closeSession(sess *session, status uint32) {
	sess.log.Info("logout", "after", time.Since(sess.start).Round(time.Second).String())
	sendExitStatus(sess.sio.ch, status)
	s.metrics.session(sess.kind, -1)
	sess.sio.conn.endChat()
	sess.sio.ch.Close()
	sess.sio.conn.closeSession()
	s.active.Done()
}

// sendExitStatus tells the client the session's exit status.
func sendExitStatus(ch gossh.Channel, status uint32) {
	ch.SendRequest("exit-status", false, gossh.Marshal(struct{ Status uint32 }{status}))
}

// identity is who a connection authenticated as.
type identity struct {
	name string
	key  identityKey
}

// identityOf returns the identity recorded by the VerifiedPublicKeyCallback
// for the key that signed the connection's authentication.
func identityOf(conn *gossh.ServerConn) (identity, error) {
	if conn.Permissions == nil {
		return identity{}, errors.New("no permissions")
	}
	name, key := conn.Permissions.Extensions[extUser], conn.Permissions.Extensions[extKey]
	if name == "" || key == "" {
		return identity{}, errors.New("no verified identity")
	}
	return identity{name, identityKey(key)}, nil
}

// sessionIO is a session's way in and out.
type sessionIO struct {
	ch      gossh.Channel
	conn    *trackedConn
	setup   *sessionSetup
	lines   lineSource
	out     output
	resized chan window   // latest size first; only the request handler sends
	hungUp  chan struct{} // closed when the room lets the session go: stop reading
	wd      *watchdog
	// Set by the writer when it closes the channel; closes the connection
	// if the peer never acknowledges, which would keep the reader forever.
	unacknowledged *time.Timer
}

func newSessionIO(s *Server, ch gossh.Channel, tc *trackedConn, setup *sessionSetup, name string, log *slog.Logger) *sessionIO {
	sio := &sessionIO{ch: ch, conn: tc, setup: setup, resized: make(chan window, 1), hungUp: make(chan struct{})}
	sio.wd = newWatchdog(s.cfg.WriteTimeout, func() {
		log.Warn("write timed out; closing connection", "timeout", s.cfg.WriteTimeout)
		tc.Close()
	})
	w := watchedWriter{ch, sio.wd}
	in := endableReader{ch, sio.stopped}
	switch {
	case !setup.pty:
		sio.out, sio.lines = channelOutput{w}, newLineReader(in, s.cfg.MaxLine)
	case setup.term == "dumb":
		sio.out = dumbOutput{w}
		sio.lines = &dumbTerminal{r: bufio.NewReaderSize(in, 256), echo: w, max: s.cfg.MaxLine}
	default:
		held := &heldWriter{w: w}
		tr := newTerminalReader(in, held, "["+name+"] ", s.cfg.MaxLine, s.room.names)
		tr.t.SetSize(setup.size.width, setup.size.height) // nothing typed yet: writes nothing
		// The terminal then marks what is pasted, which goes out at the
		// rate limit instead of being refused past the burst.
		tr.t.SetBracketedPasteMode(true)
		sio.out, sio.lines = &terminalOutput{t: tr.t, held: held, colors: colorsWanted(setup)}, tr
	}
	return sio
}

// stopped reports whether the session's input should no longer be read.
func (sio *sessionIO) stopped() bool {
	select {
	case <-sio.hungUp:
		return true
	default:
		return sio.conn.closed.Load()
	}
}

// answerRequests answers the session's channel requests until the channel
// closes. Window sizes go to the writer, latest first, without waiting: the
// goroutine that answers requests must never wait on the client, or
// x/crypto's connection loop stops with it.
func (sio *sessionIO) answerRequests(reqs <-chan *gossh.Request, log *slog.Logger) {
	resize := func(w window) {
		select {
		case <-sio.resized: // superseded
		default:
		}
		sio.resized <- w
	}
	for req := range reqs {
		if !sio.setup.answer(req, resize) {
			log.Debug("session request refused", "type", req.Type)
		}
	}
}

// chat runs one session in the room until the user leaves or is
// disconnected, and returns the session's exit status: gopl's handleConn.
func (s *Server) chat(sess *session) uint32 {
	cli, written, entered := s.enterChat(sess)
	if entered {
		s.readLines(cli, sess.sio)
		s.room.leave(cli)
	}
	return leaveChat(cli, sess.sio, written)
}

// enterChat starts the session's request handler and writer and enters the
// room, reporting whether the room let the client in. The returned channel
// is closed when the writer is done.
func (s *Server) enterChat(sess *session) (*client, <-chan struct{}, bool) {
	cli := &client{name: sess.id.name, key: sess.id.key, out: make(chan *event, s.cfg.QueueLen)}
	go sess.sio.answerRequests(sess.reqs, sess.log)
	written := s.startWriter(cli, sess.sio, sess.log)
	if !s.room.enter(cli) {
		cli.hangup = hangup{notice: "The server is shutting down.", closeConn: true}
		close(cli.out)
		return cli, written, false
	}
	return cli, written, true
}

// leaveChat waits for the writer of a client the room has let go, and
// returns the session's exit status.
func leaveChat(cli *client, sio *sessionIO, written <-chan struct{}) uint32 {
	<-written
	sio.wd.stop()
	if sio.unacknowledged != nil {
		sio.unacknowledged.Stop()
	}
	if cli.hangup.notice != "" {
		return 1
	}
	return 0
}

// startWriter starts the session's writer goroutine, which ends when the
// room closes the client's queue; the returned channel is closed then.
func (s *Server) startWriter(cli *client, sio *sessionIO, log *slog.Logger) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := cli.writeLoop(sio.out, sio.resized, s.metrics)
		if t, ok := sio.out.(*terminalOutput); ok && err == nil {
			t.t.SetBracketedPasteMode(false) // leave the user's terminal as it was
		}
		if err != nil {
			// The connection is broken: close it so the reader stops too,
			// then discard output until the room lets the client go.
			log.Debug("write failed", "err", err)
			sio.conn.Close()
			for range cli.out {
			}
			return
		}
		if h := cli.hangup; h.notice != "" {
			// The room let this client go: end the session so its reader
			// stops.
			log.Info("disconnected", "reason", h.notice)
			close(sio.hungUp)
			// The exit status goes first: nothing can be sent once the
			// channel or the connection is closed.
			sendExitStatus(sio.ch, 1)
			if h.closeConn {
				sio.conn.Close()
				return
			}
			sio.ch.Close()
			sio.unacknowledged = time.AfterFunc(s.cfg.LoginGrace, func() { sio.conn.Close() })
		}
	}()
	return done
}

// readLines forwards what the user types to the room until the input ends,
// the user quits or the room stops. It waits for input under the session's
// reader's shallowest frames (see handleSession); lines are handled by
// forward.
func (s *Server) readLines(cli *client, sio *sessionIO) {
	rd := reading{idle: s.idleTimer(cli)}
	for {
		line, err := sio.lines.ReadLine()
		if !s.forward(cli, sio, &rd, line, err) {
			break
		}
	}
	if rd.idle != nil {
		rd.idle.Stop()
	}
}

// idleTimer returns a timer that disconnects cli after the idle timeout,
// or nil if there is none.
func (s *Server) idleTimer(cli *client) *time.Timer {
	if s.cfg.IdleTimeout <= 0 {
		return nil
	}
	return time.AfterFunc(s.cfg.IdleTimeout, func() {
		s.room.kick(cli, hangup{notice: fmt.Sprintf("Disconnected after %s without a message.", s.cfg.IdleTimeout)})
	})
}

// reading is what readLines remembers from one line to the next.
type reading struct {
	unsent     int  // lines of the current paste not sent
	afterPaste bool // the previous line was pasted
	idle       *time.Timer
}

// forward handles one line read, or the reader's error, and reports whether
// to read on. Pasted lines go at the rate limit (room.reserve), and so does
// the line typed right after a paste, which would otherwise find the rate
// used up; what a paste holds beyond maxPasteWait is not sent, and the user
// is told how many lines that was.
func (s *Server) forward(cli *client, sio *sessionIO, rd *reading, line string, err error) bool {
	pasted := errors.Is(err, errPasted)
	pace := pasted || rd.afterPaste
	rd.afterPaste = pasted
	if pasted {
		err = nil
	} else if rd.unsent > 0 {
		s.room.say(message{from: cli, notice: fmt.Sprintf("%d pasted %s not sent: a paste goes out at the rate limit, for %s at most.", rd.unsent, plural(uint64(rd.unsent), "line was", "lines were"), maxPasteWait)})
		rd.unsent = 0
	}
	msg := message{from: cli}
	switch {
	case errors.Is(err, errLineTooLong):
		msg.notice = lineTooLongNotice(s.cfg.MaxLine)
	case err != nil:
		return false
	default:
		if rd.idle != nil {
			rd.idle.Reset(s.cfg.IdleTimeout)
		}
		msg.text = strings.TrimSpace(Sanitize(line))
		if msg.text == "/quit" {
			return false
		}
		if msg.text == "" {
			return true
		}
		if pasted && rd.unsent > 0 {
			rd.unsent++
			return true
		}
		if pace {
			wait, ok := s.room.reserve(cli)
			switch {
			case ok:
				if !sio.sleep(wait) {
					return false
				}
				msg.paced = true
			case pasted:
				rd.unsent++
				return true
			}
		}
	}
	return s.room.say(msg)
}

// sleep waits for d, reporting false if the session ended meanwhile.
func (sio *sessionIO) sleep(d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-sio.hungUp:
	case <-sio.conn.done:
	}
	return false
}

// colorsWanted reports whether a PTY session gets colours: not when the
// client set NO_COLOR or its terminal is dumb.
func colorsWanted(setup *sessionSetup) bool {
	return !setup.noColor && setup.term != "dumb" && setup.term != ""
}
