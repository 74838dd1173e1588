package sshchat

import (
	"strings"
	"unicode/utf8"
)

// Sanitize makes text from one user safe to print on another user's
// terminal. It removes ANSI escape sequences (CSI, OSC, DCS and friends, in
// both their 7-bit ESC and 8-bit C1 forms), every other C0 and C1 control,
// Unicode bidi embedding/override/isolate controls (which can reorder what a
// reader sees), invisible characters (which can make two names or messages
// look the same while differing), line and paragraph separators, and invalid
// UTF-8. A tab becomes a space. The result never contains a newline: one
// input line stays one output line.
func Sanitize(s string) string {
	if isClean(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			i++ // invalid UTF-8: drop the byte
		case r == 0x1b: // ESC
			i += escapeLen(s[i:])
		case r == 0x9b: // C1 CSI
			i += size + csiBodyLen(s[i+size:])
		case r == 0x9d || r == 0x90 || r == 0x98 || r == 0x9e || r == 0x9f: // C1 OSC, DCS, SOS, PM, APC
			i += size + stringBodyLen(s[i+size:])
		case r == '\t':
			b.WriteByte(' ')
			i += size
		case isControl(r) || isBidiControl(r) || isInvisible(r):
			i += size
		default:
			b.WriteString(s[i : i+size])
			i += size
		}
	}
	return b.String()
}

// isClean reports whether s is printable ASCII, the common case, which
// Sanitize can return without copying.
func isClean(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f {
			return false
		}
	}
	return true
}

func isControl(r rune) bool {
	return r < 0x20 || (r >= 0x7f && r <= 0x9f)
}

func isBidiControl(r rune) bool {
	return (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) ||
		r == 0x200e || r == 0x200f || r == 0x061c
}

// isInvisible reports whether r is a character that shows nothing yet is
// not whitespace: zero-width spaces and joiners, word joiner and invisible
// operators, the byte order mark, and tag characters. U+2028 and U+2029
// separate lines for some terminals and renderers, so they go too.
func isInvisible(r rune) bool {
	return (r >= 0x200b && r <= 0x200f) || (r >= 0x2060 && r <= 0x2064) || r == 0xfeff ||
		(r >= 0xe0000 && r <= 0xe007f) || r == 0x2028 || r == 0x2029
}

// escapeLen returns the length of the escape sequence at the start of s,
// which begins with ESC. Unterminated sequences run to the end of s.
func escapeLen(s string) int {
	if len(s) < 2 {
		return len(s)
	}
	switch s[1] {
	case '[': // CSI
		return 2 + csiBodyLen(s[2:])
	case ']', 'P', 'X', '^', '_': // OSC, DCS, SOS, PM, APC: run to a terminator
		return 2 + stringBodyLen(s[2:])
	}
	// nF sequences (ESC, intermediates 0x20-0x2f, final byte) and the
	// two-byte Fp/Fe/Fs forms.
	n := 1
	for n < len(s) && s[n] >= 0x20 && s[n] <= 0x2f {
		n++
	}
	if n < len(s) {
		n++
	}
	return n
}

// csiBodyLen returns the length of a CSI sequence's parameters,
// intermediates and final byte (0x40-0x7e).
func csiBodyLen(s string) int {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 0x40 && c <= 0x7e {
			return i + 1
		} else if c < 0x20 || c > 0x7e {
			// Not a CSI byte: the sequence is malformed and ends here.
			return i
		}
	}
	return len(s)
}

// stringBodyLen returns the length of a control string's body up to and
// including its terminator: BEL, ESC \ or the C1 ST.
func stringBodyLen(s string) int {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case 0x07:
			return i + 1
		case 0x1b:
			if i+1 < len(s) && s[i+1] == '\\' {
				return i + 2
			}
			return i + 1
		case 0xc2:
			if i+1 < len(s) && s[i+1] == 0x9c { // U+009C ST
				return i + 2
			}
		}
	}
	return len(s)
}
