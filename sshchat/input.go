package sshchat

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
)

// Input: how a session reads what its user types. Line-mode sessions read
// plain lines; PTY sessions go through x/term's line editor, behind a key
// filter that keeps what a hostile typist can cost the server small.

// lineSource is how a session reads what its user types.
type lineSource interface{ ReadLine() (string, error) }

// errLineTooLong is returned by a line reader for a line over the limit; the
// rest of that line has been discarded.
var errLineTooLong = errors.New("line too long")

// errPasted is returned by a terminal's line reader with a line that was
// pasted rather than typed: it is valid, and goes at the rate limit.
var errPasted = errors.New("pasted")

// lineTooLongNotice tells a sender why their line vanished.
func lineTooLongNotice(max int) string {
	return fmt.Sprintf("That line was longer than %d bytes and was not sent.", max)
}

// endableReader stops reading once its session has ended. x/crypto keeps
// handing out what a channel had buffered (up to its 2 MiB window) after the
// connection closes; nobody will see the result, so it is not processed.
type endableReader struct {
	r     io.Reader
	ended func() bool
}

func (e endableReader) Read(p []byte) (int, error) {
	if e.ended() {
		return 0, io.EOF
	}
	return e.r.Read(p)
}

// lineReader reads newline-terminated lines from a non-terminal session
// without ever buffering more than the line limit. It holds no buffer while
// it waits for input: an idle session, which is what most sessions are,
// costs one byte, and the buffer comes from a pool once a line starts
// arriving and goes back once everything received has been returned.
type lineReader struct {
	r       io.Reader
	max     int
	buf     *[]byte // from lineBuffers while pending is not empty, else nil
	pending []byte  // received and not yet returned, in *buf
	first   [1]byte // where the first byte of a line is awaited
	err     error   // the reader's error, once it has returned one
}

// lineBuffers hold the lines being received by line-mode sessions.
var lineBuffers = sync.Pool{New: func() any { return new([]byte) }}

func newLineReader(r io.Reader, max int) *lineReader {
	return &lineReader{r: r, max: max}
}

// ReadLine returns the next line without its line ending. A final line
// without a newline is returned before the reader's error, io.EOF.
func (lr *lineReader) ReadLine() (string, error) {
	tooLong := false
	for {
		if i := bytes.IndexByte(lr.pending, '\n'); i >= 0 {
			line := lr.pending[:i]
			lr.pending = lr.pending[i+1:]
			return lr.line(line, tooLong)
		}
		// A line of max bytes plus "\r\n" fits; one that fills the space
		// without a newline is too long, and the rest of it is skipped.
		if len(lr.pending) >= lr.max+2 {
			tooLong, lr.pending = true, lr.pending[:0]
		}
		var err error
		if lr.buf == nil {
			err = lr.await()
		} else {
			err = lr.fill()
		}
		if err != nil {
			if !tooLong && len(lr.pending) == 0 {
				return "", err
			}
			line := lr.pending
			lr.pending = lr.pending[len(line):]
			return lr.line(line, tooLong)
		}
	}
}

// line returns line, which pending no longer holds, as ReadLine does, and
// gives the buffer back if nothing else is pending.
func (lr *lineReader) line(line []byte, tooLong bool) (string, error) {
	line = bytes.TrimSuffix(line, []byte{'\r'})
	s, err := string(line), error(nil)
	if tooLong || len(line) > lr.max {
		s, err = "", errLineTooLong
	}
	if len(lr.pending) == 0 && lr.buf != nil {
		lineBuffers.Put(lr.buf)
		lr.buf, lr.pending = nil, nil
	}
	return s, err
}

// await waits for the first byte of a line, holding no buffer, and then
// takes one.
func (lr *lineReader) await() error {
	if lr.err != nil {
		return lr.err
	}
	n, err := lr.r.Read(lr.first[:])
	lr.err = err
	if n > 0 {
		lr.take()
	}
	return nil
}

// take gets a buffer for the line that has started with lr.first.
func (lr *lineReader) take() {
	lr.buf = lineBuffers.Get().(*[]byte)
	if cap(*lr.buf) < lr.max+2 {
		*lr.buf = make([]byte, lr.max+2)
	}
	lr.pending = append((*lr.buf)[:0], lr.first[0])
}

// fill receives more input after what is pending.
func (lr *lineReader) fill() error {
	if lr.err != nil {
		return lr.err
	}
	space := (*lr.buf)[:lr.max+2]
	held := copy(space, lr.pending)
	n, err := lr.r.Read(space[held:])
	lr.pending = space[:held+n]
	lr.err = err
	return nil
}

// Keys the filter treats specially.
const (
	ctrlC     = 0x03
	ctrlG     = 0x07
	backspace = 0x08
	tab       = '\t'
	keyEnter  = '\r'
	escape    = 0x1b
	del       = 0x7f
)

// keyFilter sits between a PTY session's channel and x/term's line editor.
//
// x/term calls its completion callback on every key, after copying the
// whole line into a string, so a user streaming keys without Enter would
// cost the server time in proportion to the line's length on every key. The
// filter therefore turns the callback on only for the keys it is for (Tab,
// and Ctrl-C, which it rewrites to Ctrl-G because x/term would treat it as
// end of input), handing each of those to x/term alone. It also keeps an
// upper bound on the line's length in bytes and drops printable input past
// the line limit, ringing the bell, instead of letting the line grow.
type keyFilter struct {
	r        io.Reader
	t        *term.Terminal
	complete func(line string, pos int, key rune) (string, int, bool)
	bell     io.Writer
	max      int

	length  int    // upper bound on the line's length in bytes
	measure bool   // the bound is lost: measure the line at the next key
	esc     []byte // the escape sequence being read, if any
	pasting bool   // between bracketed paste's start and end
	pending []byte
	// Reads from the channel are this big: x/crypto sends a window adjust
	// on nearly every read while a peer keeps its window full, so 256-byte
	// reads cost a streaming typist's server an SSH packet per 256 bytes
	// (BenchmarkPTYInput: 80 ns of CPU per byte, 17 with 4 KiB).
	buf [4096]byte
}

func (f *keyFilter) Read(p []byte) (int, error) {
	if len(f.pending) == 0 {
		n, err := f.r.Read(f.buf[:])
		if n == 0 {
			return 0, err
		}
		f.pending = f.buf[:n]
	}
	f.t.AutoCompleteCallback = nil
	n, rang := 0, false
	for len(f.pending) > 0 && n < len(p) {
		c := f.pending[0]
		alone := c == tab || c == ctrlC || f.measure
		if alone && n > 0 {
			break // first hand over what came before, without the callback
		}
		f.pending = f.pending[1:]
		if !f.track(c) {
			rang = true
			continue
		}
		if c == ctrlC {
			c = ctrlG
		}
		p[n] = c
		n++
		if alone {
			f.t.AutoCompleteCallback = f.callback
			break
		}
	}
	if rang {
		f.bell.Write([]byte{'\a'})
	}
	return n, nil
}

// track updates the length bound for key byte c and reports whether c may
// go to the editor.
func (f *keyFilter) track(c byte) bool {
	switch {
	case len(f.esc) > 0:
		f.esc = append(f.esc, c)
		if n := len(f.esc); (n == 2 && c != '[') || (n > 2 && c >= 0x40 && c <= 0x7e) || n == cap(f.esc) {
			f.escaped(string(f.esc))
			f.esc = f.esc[:0]
		}
	case c == escape:
		if f.esc == nil {
			f.esc = make([]byte, 0, maxEscape)
		}
		f.esc = append(f.esc, c)
	case c == keyEnter || (f.pasting && c == '\n'):
		f.length = 0
	case c == del || c == backspace:
		f.length = max(f.length-1, 0)
	case c < 0x20 && !f.pasting:
		f.measure = true // Ctrl-U, Ctrl-W, Ctrl-K and the like edit the line
	case f.length >= f.max:
		return false
	default:
		f.length++
	}
	return true
}

// maxEscape bounds the escape sequence the filter follows; a longer one is
// taken as ended.
const maxEscape = 16

// Bracketed paste's start and end, which x/term handles.
const (
	pasteStart = "\x1b[200~"
	pasteEnd   = "\x1b[201~"
)

// escaped notes the end of escape sequence seq. A paste adds its keys to
// the line, which the bound follows; cursor keys, history and word moves
// may change the line in ways it cannot, so the line is measured at the
// next key.
func (f *keyFilter) escaped(seq string) {
	switch seq {
	case pasteStart:
		f.pasting = true
	case pasteEnd:
		f.pasting = false
	default:
		f.measure = true
	}
}

// callback is x/term's completion callback while it is on: it measures the
// line, then completes on Tab and clears the line on Ctrl-G.
func (f *keyFilter) callback(line string, pos int, key rune) (string, int, bool) {
	f.measure = false
	f.length = len(line)
	if key >= 0x20 && key != del {
		f.length += len(string(key))
	}
	switch key {
	case ctrlG:
		f.length = 0
		return "", 0, true
	case tab:
		newLine, newPos, ok := f.complete(line, pos, key)
		if ok {
			f.length = len(newLine)
		}
		return newLine, newPos, ok
	}
	return "", 0, false
}

// terminalReader reads lines from a PTY session with x/term's line editor:
// prompt, history, arrow keys, and completion of @names and /commands.
type terminalReader struct {
	t   *term.Terminal
	max int
}

// newTerminalReader returns a reader for the PTY session whose input is in
// and whose terminal output goes to out; bell sounds when input is refused.
func newTerminalReader(in io.Reader, out io.Writer, prompt string, max int, names func() []string) *terminalReader {
	f := &keyFilter{r: in, bell: out, max: max}
	f.t = term.NewTerminal(struct {
		io.Reader
		io.Writer
	}{f, out}, prompt)
	cached := cachedNames(names, time.Now, namesCacheFor)
	f.complete = func(line string, pos int, _ rune) (string, int, bool) { return complete(line, pos, cached) }
	return &terminalReader{t: f.t, max: max}
}

func (tr *terminalReader) ReadLine() (string, error) {
	line, err := tr.t.ReadLine()
	pasted := errors.Is(err, term.ErrPasteIndicator)
	switch {
	case err != nil && !pasted:
		return "", err
	case len(line) > tr.max:
		return "", errLineTooLong
	case pasted:
		return line, errPasted
	}
	return line, nil
}

// namesCacheFor is how long tab completion reuses the list of names: a
// user holding Tab must not make the broadcaster build one per key.
const namesCacheFor = 2 * time.Second

// cachedNames returns names, calling fetch at most once per ttl.
func cachedNames(fetch func() []string, now func() time.Time, ttl time.Duration) func() []string {
	var (
		names   []string
		fetched time.Time
	)
	return func() []string {
		if t := now(); names == nil || t.Sub(fetched) >= ttl {
			names, fetched = fetch(), t
		}
		return names
	}
}

// dumbTerminal reads lines from a PTY whose terminal is "dumb": no cursor
// control at all, so it echoes what is typed and erases with backspaces.
type dumbTerminal struct {
	r    *bufio.Reader
	echo io.Writer
	max  int
}

func (d *dumbTerminal) ReadLine() (string, error) {
	var line []byte
	tooLong := false
	for {
		c, err := d.r.ReadByte()
		if err != nil {
			return "", err
		}
		var echo []byte
		switch {
		case c == keyEnter || c == '\n':
			d.echo.Write([]byte("\r\n"))
			if tooLong {
				return "", errLineTooLong
			}
			return string(line), nil
		case c == 0x04 && len(line) == 0: // Ctrl-D
			return "", io.EOF
		case c == del || c == backspace:
			if len(line) > 0 {
				line = line[:len(line)-1]
				echo = []byte("\b \b")
			}
		case c < 0x20:
		case len(line) >= d.max:
			tooLong = true
		default:
			line = append(line, c)
			echo = []byte{c}
		}
		if echo != nil {
			d.echo.Write(echo)
		}
	}
}

// complete implements tab completion: the word before the cursor is
// completed to a command when it starts with / at the start of the line, or
// to an online user's name when it starts with @. names is called only when
// needed.
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
