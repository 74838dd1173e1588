package main

// A PTY session's output is meant for a terminal, not a parser: sshchat's
// line editor (x/term) prints each event above the prompt by moving the
// cursor back over "[name] " and what the user was typing ("\x1b[11D" or
// "\r"), clearing to the end of the line ("\x1b[K"), writing the event with
// its "HH:MM " time and a CRLF, then redrawing the prompt and the partial
// input. Names are coloured with SGR sequences. Splitting the stream at
// '\n' therefore gives lines that start with the last prompt and its
// erasure; screenLine replays such a line the way a terminal would and
// keeps what would be left visible on that row.

// screenLine is one terminal row, rebuilt for every line received; its
// buffer is reused, so a reader allocates nothing per line once it has
// seen its longest one.
type screenLine struct {
	buf    []byte
	cursor int
}

// maxColumns bounds how far escape sequences may move the cursor right, so
// that a hostile "\x1b[999999999C", or many of them, cannot make a reader
// allocate without bound. Real rows are far narrower.
const maxColumns = 4096

// render replays raw, one line of terminal output without its '\n', onto
// an empty row and returns the row's visible text, which aliases the
// screenLine's buffer. Printable bytes overwrite the row at the cursor; '\r'
// returns to column 0; CSI sequences move the cursor left (D) or right (C)
// or erase (K); every other escape or control byte has no effect on the
// text. Columns are counted in bytes: the load tool's names and messages
// are ASCII.
func (s *screenLine) render(raw []byte) []byte {
	s.buf, s.cursor = s.buf[:0], 0
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; {
		case c == '\r':
			s.cursor = 0
		case c == 0x1b:
			i = s.escape(raw, i)
		case c < ' ' || c == 0x7f:
			// Bell, backspace and the like: nothing the tool's parser needs.
		default:
			s.put(c)
		}
	}
	// A line ends with the CR of its CRLF, which moves the cursor without
	// erasing: the row keeps everything written on it.
	return s.buf
}

// put writes c at the cursor and advances it.
func (s *screenLine) put(c byte) {
	s.padTo(s.cursor)
	if s.cursor < len(s.buf) {
		s.buf[s.cursor] = c
	} else {
		s.buf = append(s.buf, c)
	}
	s.cursor++
}

// padTo fills the row with spaces up to column n, where an erase or a
// cursor movement left the cursor beyond its text.
func (s *screenLine) padTo(n int) {
	for len(s.buf) < n {
		s.buf = append(s.buf, ' ')
	}
}

// escape interprets the escape sequence starting at raw[i], which is ESC,
// and returns the index of its last byte.
func (s *screenLine) escape(raw []byte, i int) int {
	if i+1 >= len(raw) {
		return i
	}
	if raw[i+1] != '[' {
		// A two-byte escape (ESC 7, ESC M...): no effect on the row's text.
		return i + 1
	}
	// CSI: parameter and intermediate bytes, then a final byte @ to ~.
	n, hasN := 0, false
	j := i + 2
	for ; j < len(raw); j++ {
		c := raw[j]
		if c >= 0x40 && c <= 0x7e {
			break
		}
		if isDigit(c) && n <= maxColumns {
			n, hasN = n*10+int(c-'0'), true
		}
	}
	if j == len(raw) {
		return j - 1 // cut off: ignore it
	}
	if !hasN {
		n = 1
	}
	switch raw[j] {
	case 'D':
		s.cursor = max(s.cursor-n, 0)
	case 'C':
		s.cursor = max(s.cursor, min(s.cursor+n, maxColumns))
	case 'K':
		s.erase(n, hasN)
	}
	return j
}

// erase implements CSI K: 0 (the default) clears from the cursor to the end
// of the row, 1 from its start to the cursor, 2 the whole row.
func (s *screenLine) erase(n int, hasN bool) {
	switch {
	case !hasN || n == 0:
		s.buf = s.buf[:min(s.cursor, len(s.buf))]
	case n == 1:
		for k := range min(s.cursor+1, len(s.buf)) {
			s.buf[k] = ' '
		}
	case n == 2:
		s.buf = s.buf[:0]
	}
}

// stripTime removes the "HH:MM " a PTY session shows before every event.
func stripTime(line []byte) []byte {
	if hasTime(line) {
		return line[6:]
	}
	return line
}

// hasTime reports whether line starts with an event's time, "HH:MM ".
func hasTime(line []byte) bool {
	return len(line) > 6 && line[2] == ':' && line[5] == ' ' &&
		isDigit(line[0]) && isDigit(line[1]) && isDigit(line[3]) && isDigit(line[4])
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
