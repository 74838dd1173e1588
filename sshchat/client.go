package sshchat

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/term"
)

// client is one chat session: what the broadcaster fans out to.
type client struct {
	name string
	key  gossh.PublicKey // the key that signed the session's authentication
	out  chan *event     // closed by the broadcaster when the client leaves

	// Set by the broadcaster before it closes out; read by the writer after.
	hangup hangup
	// Owned by the broadcaster.
	overflowed bool
}

// hangup says how a client's session ends when the room lets it go.
type hangup struct {
	notice    string // told to the client last, if set
	closeConn bool   // close the whole SSH connection, not just the session
}

// maxBatch bounds how much queued output one write coalesces: about one SSH
// packet's worth.
const maxBatch = 32 << 10

// output is where a session's chat output goes.
type output interface {
	// write sends a batch of rendered events.
	write(p []byte) error
	// style says how to render events.
	style() style
}

// writeLoop drains cli.out to w until the broadcaster closes it, coalescing
// whatever is queued into one write per wake-up: for a busy room that is one
// SSH packet for many lines instead of one per line. Meanwhile it passes the
// session's channel requests to answer.
func (cli *client) writeLoop(w output, reqs <-chan *gossh.Request, answer func(*gossh.Request)) error {
	st := w.style()
	for {
		var ev *event
		select {
		case req, ok := <-reqs:
			if !ok {
				reqs = nil // the channel is closing; the reader sees that too
			} else {
				answer(req)
			}
			continue
		case e, ok := <-cli.out:
			if !ok {
				if cli.hangup.notice != "" {
					return w.write(noticeEvent(cli.hangup.notice).appendTo(nil, st))
				}
				return nil
			}
			ev = e
		}
		if err := cli.writeBatch(w, st, ev); err != nil {
			return err
		}
	}
}

// batchBuffers are the buffers writers coalesce output in, shared so that
// an idle session holds none.
var batchBuffers = sync.Pool{New: func() any { return new([]byte) }}

// writeBatch writes ev and whatever else is queued behind it, up to
// maxBatch, in one write.
func (cli *client) writeBatch(w output, st style, ev *event) error {
	bp := batchBuffers.Get().(*[]byte)
	buf := ev.appendTo((*bp)[:0], st)
	for len(buf) < maxBatch {
		select {
		case ev, ok := <-cli.out:
			if ok {
				buf = ev.appendTo(buf, st)
				continue
			}
			// Closed: writeLoop sees that on its next receive.
		default:
		}
		break
	}
	err := w.write(buf)
	*bp = buf
	batchBuffers.Put(bp)
	return err
}

// appendTo appends ev rendered in st: for line mode, the shared bytes
// rendered once when the event was made.
func (ev *event) appendTo(buf []byte, st style) []byte {
	if st == lineMode {
		return append(buf, ev.line...)
	}
	return ev.render(buf, st)
}

// errLineTooLong is returned by a line reader for a line over the limit; the
// rest of that line has been discarded.
var errLineTooLong = errors.New("line too long")

// lineReader reads newline-terminated lines from a non-terminal session
// without ever buffering more than the line limit.
type lineReader struct {
	r   *bufio.Reader
	max int
}

func newLineReader(r io.Reader, max int) *lineReader {
	// A line of max bytes plus "\r\n" must fit the buffer.
	return &lineReader{r: bufio.NewReaderSize(r, max+2), max: max}
}

// ReadLine returns the next line without its line ending. A final line
// without a newline is returned before io.EOF.
func (lr *lineReader) ReadLine() (string, error) {
	line, err := lr.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		for errors.Is(err, bufio.ErrBufferFull) {
			_, err = lr.r.ReadSlice('\n')
		}
		if err == nil || err == io.EOF {
			err = errLineTooLong
		}
		return "", err
	}
	if err == io.EOF && len(line) > 0 {
		err = nil
	}
	if err != nil {
		return "", err
	}
	line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte{'\n'}), []byte{'\r'})
	if len(line) > lr.max {
		return "", errLineTooLong
	}
	return string(line), nil
}

// terminalReader reads lines from a PTY session with x/term's line editor:
// prompt, history, arrow keys, and completion of @names and /commands.
type terminalReader struct {
	t   *term.Terminal
	max int
}

// ctrlC is what a terminal sends for Ctrl-C. x/term treats it like Ctrl-D
// (end of input); for a chat client it should only clear the line, so it is
// rewritten to ctrlG, a key x/term passes to the completion callback.
const (
	ctrlC = 0x03
	ctrlG = 0x07
)

type ctrlCFilter struct{ io.ReadWriter }

func (f ctrlCFilter) Read(p []byte) (int, error) {
	n, err := f.ReadWriter.Read(p)
	for i, c := range p[:n] {
		if c == ctrlC {
			p[i] = ctrlG
		}
	}
	return n, err
}

func newTerminalReader(rw io.ReadWriter, prompt string, max int, names func() []string) *terminalReader {
	t := term.NewTerminal(ctrlCFilter{rw}, prompt)
	t.AutoCompleteCallback = func(line string, pos int, key rune) (string, int, bool) {
		switch key {
		case ctrlG:
			return "", 0, true
		case '\t':
			return complete(line, pos, names)
		}
		return "", 0, false
	}
	return &terminalReader{t: t, max: max}
}

func (tr *terminalReader) ReadLine() (string, error) {
	line, err := tr.t.ReadLine()
	if errors.Is(err, term.ErrPasteIndicator) {
		err = nil
	}
	if err != nil {
		return "", err
	}
	if len(line) > tr.max {
		return "", errLineTooLong
	}
	return line, nil
}

// complete implements tab completion: the word before the cursor is
// completed to a command when it starts with / at the start of the line, or
// to an online user's name when it starts with @. names is called only when
// needed (it asks the broadcaster).
func complete(line string, pos int, names func() []string) (string, int, bool) {
	start := strings.LastIndexByte(line[:pos], ' ') + 1
	word := line[start:pos]
	var candidates []string
	var suffix string
	switch {
	case start == 0 && strings.HasPrefix(word, "/"):
		candidates, suffix = commandNames(), " "
	case strings.HasPrefix(word, "@"):
		for _, n := range names() {
			candidates = append(candidates, "@"+n)
		}
		suffix = " "
		if start == 0 {
			suffix = ": "
		}
	default:
		return "", 0, false
	}
	var matches []string
	for _, c := range candidates {
		if len(c) >= len(word) && strings.EqualFold(c[:len(word)], word) {
			matches = append(matches, c)
		}
	}
	var fill string
	switch len(matches) {
	case 0:
		return "", 0, false
	case 1:
		fill = matches[0] + suffix
	default:
		fill = commonPrefix(matches)
		if len(fill) <= len(word) {
			return "", 0, false
		}
	}
	return line[:start] + fill + line[pos:], start + len(fill), true
}

func commonPrefix(words []string) string {
	p := words[0]
	for _, w := range words[1:] {
		n := 0
		for n < len(p) && n < len(w) && p[n] == w[n] {
			n++
		}
		p = p[:n]
	}
	return p
}

// lineTooLongNotice tells a sender why their line vanished.
func lineTooLongNotice(max int) string {
	return fmt.Sprintf("That line was longer than %d bytes and was not sent.", max)
}
