package sshchat

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

// One-shot commands, for scripts and bots: `ssh -p 2222 host COMMAND
// [ARGS]` runs COMMAND as the user and exits, as git does over ssh. An exec
// session is a quiet client of the room: it obeys the user's limits, bans
// and mutes like any session, but is not announced, listed or greeted.

// Exit statuses of one-shot commands.
const (
	exitOK      = 0
	exitRefused = 1 // the room refused: rate limit, mute, ban, too long
	exitUsage   = 2 // unknown command or bad arguments
)

type execCommand struct {
	usage string
	help  string
	run   func(s *Server, x *execSession) uint32
}

// execCommands are the one-shot commands, by name. Filled by init because
// help lists them.
var execCommands map[string]execCommand

func init() {
	execCommands = map[string]execCommand{
		"say":     {"say [TEXT...]", "post TEXT, or each line of stdin, as you", execSay},
		"names":   {"names", "who is online: name, sessions, idle, away", execNames},
		"history": {"history [N]", "the last N public messages (default 20)", execHistory},
		"tail":    {"tail", "print public messages as they arrive, until you disconnect", execTail},
		"help":    {"help", "this list", execHelp},
	}
}

// execSession is one run of a one-shot command.
type execSession struct {
	cli            *client
	args           string // after the command name, --json removed
	json           bool
	stdin          io.Reader
	stdout, stderr io.Writer
	sio            *sessionIO
	log            *slog.Logger
}

// parseExec splits an exec request's command line into the command, its
// arguments and whether --json was given anywhere.
func parseExec(line string) (name, args string, asJSON bool) {
	fields := strings.Fields(line)
	kept := fields[:0]
	for _, f := range fields {
		if f == "--json" {
			asJSON = true
		} else {
			kept = append(kept, f)
		}
	}
	if len(kept) == 0 {
		return "", "", asJSON
	}
	name = kept[0]
	if !asJSON {
		// Keep TEXT's own spacing: take it from the line itself.
		_, args, _ = strings.Cut(strings.TrimSpace(line), name)
		return name, strings.TrimSpace(args), false
	}
	return name, strings.Join(kept[1:], " "), true
}

// runExec runs the command an exec session asked for and returns its exit
// status.
func (s *Server) runExec(sio *sessionIO, id identity, reqs <-chan *gossh.Request, log *slog.Logger) uint32 {
	go sio.answerRequests(reqs, log)
	defer sio.wd.stop()
	stderr := watchedWriter{sio.ch.Stderr(), sio.wd}
	name, args, asJSON := parseExec(sio.setup.command)
	cmd, ok := execCommands[name]
	if !ok {
		fmt.Fprintf(stderr, "sshchat: unknown command %q; try: ssh ... help\n", Sanitize(name))
		return exitUsage
	}
	log.Info("command", "command", name)
	cli := &client{name: id.name, key: id.key, out: make(chan *event, s.cfg.QueueLen), quiet: true}
	if !s.room.enter(cli) {
		fmt.Fprintln(stderr, "sshchat: the server is shutting down")
		return exitRefused
	}
	x := &execSession{cli: cli, args: args, json: asJSON, stdin: endableReader{sio.ch, sio.stopped}, stdout: watchedWriter{sio.ch, sio.wd}, stderr: stderr, sio: sio, log: log}
	if why, refused := s.room.admitted(cli); refused {
		fmt.Fprintln(stderr, "sshchat: "+why)
		return exitRefused
	}
	defer s.room.leave(cli)
	if name == "tail" {
		return cmd.run(s, x)
	}
	// The other commands do not read the room's output; the room closes
	// the queue when they leave.
	go func() {
		for range cli.out {
		}
	}()
	return cmd.run(s, x)
}

// usageError prints one line of usage error and returns its status.
func (x *execSession) usageError(usage string) uint32 {
	fmt.Fprintf(x.stderr, "sshchat: usage: %s\n", usage)
	return exitUsage
}

func execHelp(_ *Server, x *execSession) uint32 {
	names := make([]string, 0, len(execCommands))
	for name := range execCommands {
		names = append(names, name)
	}
	slices.Sort(names)
	var b strings.Builder
	b.WriteString("Commands (ssh -p PORT HOST COMMAND [ARGS]; add --json for JSON lines):\n")
	for _, name := range names {
		c := execCommands[name]
		fmt.Fprintf(&b, "  %-16s %s\n", c.usage, c.help)
	}
	io.WriteString(x.stdout, b.String())
	return exitOK
}

func execSay(s *Server, x *execSession) uint32 {
	var lines lineSource
	if x.args != "" {
		lines = &oneLine{x.args}
	} else {
		lines = newLineReader(x.stdin, s.cfg.MaxLine)
	}
	sent, refused := 0, map[string]int{}
	for {
		line, err := lines.ReadLine()
		var why string
		switch {
		case errors.Is(err, errLineTooLong):
			why = fmt.Sprintf("longer than %d bytes", s.cfg.MaxLine)
		case err != nil:
			return sayResult(x, sent, refused)
		default:
			text := strings.TrimSpace(Sanitize(line))
			if text == "" {
				continue
			}
			if len(text) > s.cfg.MaxLine {
				why = fmt.Sprintf("longer than %d bytes", s.cfg.MaxLine)
				break
			}
			why = s.room.post(x.cli, text)
		}
		if why != "" {
			refused[why]++
		} else {
			sent++
		}
	}
}

// sayResult reports what say refused, if anything, and its status.
func sayResult(x *execSession, sent int, refused map[string]int) uint32 {
	if len(refused) == 0 {
		return exitOK
	}
	whys := make([]string, 0, len(refused))
	total := 0
	for why, n := range refused {
		whys = append(whys, fmt.Sprintf("%d %s", n, why))
		total += n
	}
	slices.Sort(whys)
	fmt.Fprintf(x.stderr, "sshchat: %d of %d %s not sent: %s\n", total, total+sent, plural(uint64(total+sent), "line"), strings.Join(whys, ", "))
	return exitRefused
}

// oneLine is a lineSource of one line: say's TEXT argument.
type oneLine struct{ text string }

func (o *oneLine) ReadLine() (string, error) {
	if o.text == "" {
		return "", io.EOF
	}
	line := o.text
	o.text = ""
	return line, nil
}

// presence is one user as names shows them.
type presence struct {
	Name     string `json:"name"`
	Sessions int    `json:"sessions"`
	Idle     int64  `json:"idle_seconds"`
	Away     string `json:"away,omitempty"`
	// Nodes are the other nodes of the cluster the user is on, comma
	// separated; Sessions counts only this node's.
	Nodes string `json:"nodes,omitempty"`
}

func execNames(s *Server, x *execSession) uint32 {
	if x.args != "" {
		return x.usageError("names")
	}
	for _, p := range s.room.presence() {
		if x.json {
			writeJSON(x.stdout, p)
			continue
		}
		line := fmt.Sprintf("%s %d %s, idle %s", p.Name, p.Sessions, plural(uint64(p.Sessions), "session"), time.Duration(p.Idle)*time.Second)
		if p.Away != "" {
			line += ", away: " + p.Away
		}
		if p.Nodes != "" {
			line += ", on " + p.Nodes
		}
		io.WriteString(x.stdout, line+"\n")
	}
	return exitOK
}

func execHistory(s *Server, x *execSession) uint32 {
	n := 20
	if x.args != "" {
		v, err := strconv.Atoi(x.args)
		if err != nil || v <= 0 {
			return x.usageError("history [N]")
		}
		n = min(v, maxHistoryShown)
	}
	st := style{json: x.json}
	var buf []byte
	for _, ev := range s.room.recent(n) {
		buf = ev.appendTo(buf, st)
	}
	x.stdout.Write(buf)
	return exitOK
}

func execTail(s *Server, x *execSession) uint32 {
	if x.args != "" {
		return x.usageError("tail")
	}
	x.sio.out = jsonOrLines{x.stdout, x.json}
	// Said once the room has taken the client: from here on nothing said
	// is missed.
	x.stdout.Write(noticeEvent(tailStarted).appendTo(nil, x.sio.out.style()))
	written := s.startWriter(x.cli, x.sio, x.log)
	// Until the client disconnects: its input ends.
	io.Copy(io.Discard, x.stdin)
	s.room.leave(x.cli)
	<-written
	return exitOK
}

// tailStarted is the first line tail prints.
const tailStarted = "Following the room; disconnect to stop."

// jsonOrLines is tail's output.
type jsonOrLines struct {
	w    io.Writer
	json bool
}

func (o jsonOrLines) write(p []byte) error {
	_, err := o.w.Write(p)
	return err
}
func (jsonOrLines) resize(window) error { return nil }
func (o jsonOrLines) style() style      { return style{json: o.json} }

func writeJSON(w io.Writer, v any) {
	b, _ := json.Marshal(v)
	w.Write(append(b, '\n'))
}
