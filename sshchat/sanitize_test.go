package sshchat

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestSanitize(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"plain", "hello, world", "hello, world"},
		{"unicode kept", "héllo 世界 🎉", "héllo 世界 🎉"},
		{"clear screen", "a\x1b[2J\x1b[Hb", "ab"},
		{"colour", "\x1b[31mred\x1b[0m", "red"},
		{"cursor moves", "x\x1b[10;20Hy\x1b[5A\x1b[2Kz", "xyz"},
		{"private mode", "\x1b[?1049hhidden\x1b[?25l", "hidden"},
		{"OSC 52 clipboard write, BEL", "a\x1b]52;c;ZWNobyBwd25lZA==\x07b", "ab"},
		{"OSC title, ST", "a\x1b]0;pwned title\x1b\\b", "ab"},
		{"OSC hyperlink", "\x1b]8;;http://evil\x1b\\click\x1b]8;;\x1b\\", "click"},
		{"DCS", "a\x1bPq#0;2;0;0;0\x1b\\b", "ab"},
		{"unterminated OSC", "a\x1b]0;title", "a"},
		{"C1 CSI", "a\u009b2Jb", "ab"},
		{"C1 OSC", "a\u009d0;t\u009cb", "ab"},
		{"two-byte escapes", "a\x1bcb\x1b7c\x1b(Bd", "abcd"},
		{"lone ESC at end", "abc\x1b", "abc"},
		{"C0 controls", "a\x00b\x07c\x08d\re\nf\x7fg", "abcdefg"},
		{"tab to space", "a\tb", "a b"},
		{"bidi override", "abc\u202edcba\u202c", "abcdcba"},
		{"bidi isolates", "\u2066x\u2067y\u2068z\u2069", "xyz"},
		{"invalid UTF-8", "a\xffb\xc3", "ab"},
		{"C1 controls", "a\u0085b\u008dc", "abc"},
		{"zero-width space in a name", "al\u200bice", "alice"},
		{"zero-width joiners and marks", "a\u200cb\u200dc\u200ed\u200fe", "abcde"},
		{"word joiner and invisible operators", "a\u2060b\u2061c\u2062d\u2063e\u2064f", "abcdef"},
		{"byte order mark", "\ufeffhi\ufeff", "hi"},
		{"tag characters", "flag\U000e0067\U000e0062\U000e007f", "flag"},
		{"tag range ends", "a\U000e0000b\U000e007fc", "abc"},
		{"line and paragraph separators", "one\u2028two\u2029three", "onetwothree"},
		{"visible neighbours kept", "\u200a\u2010\u2065\u2070\ufefe\U000e0080", "\u200a\u2010\u2065\u2070\ufefe\U000e0080"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Sanitize(tt.in); got != tt.want {
				t.Errorf("Sanitize(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// checkSafe fails if s could control a terminal.
func checkSafe(t *testing.T, in, s string) {
	t.Helper()
	if !utf8.ValidString(s) {
		t.Fatalf("Sanitize(%q) = %q: invalid UTF-8", in, s)
	}
	for _, r := range s {
		if isControl(r) || isBidiControl(r) || isInvisible(r) {
			t.Fatalf("Sanitize(%q) = %q: contains %U", in, s, r)
		}
	}
}

func FuzzSanitize(f *testing.F) {
	for _, s := range []string{"hi", "\x1b[2J", "\x1b]52;c;AAAA\x07", "\u202e", "\xff\xfe", "a\x1b", "\u009b31m", "a\u200bb\ufeff", "\U000e0041\u2028"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := Sanitize(in)
		checkSafe(t, in, out)
		if again := Sanitize(out); again != out {
			t.Fatalf("not idempotent: %q -> %q -> %q", in, out, again)
		}
	})
}

func TestLineReader(t *testing.T) {
	const max = 8
	tests := []struct {
		name  string
		in    string
		lines []string // "!" marks errLineTooLong
	}{
		{"lines", "a\nbb\n", []string{"a", "bb"}},
		{"crlf", "a\r\nb\r\n", []string{"a", "b"}},
		{"final line without newline", "a\nlast", []string{"a", "last"}},
		{"exactly max", "12345678\n", []string{"12345678"}},
		{"exactly max with crlf", "12345678\r\nz\n", []string{"12345678", "z"}},
		{"too long then fine", "123456789\nok\n", []string{"!", "ok"}},
		{"far too long", strings.Repeat("x", 100) + "\nok\n", []string{"!", "ok"}},
		{"too long at EOF", strings.Repeat("x", 100), []string{"!"}},
		{"empty lines", "\n\n", []string{"", ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lr := newLineReader(strings.NewReader(tt.in), max)
			var got []string
			for {
				line, err := lr.ReadLine()
				if err == io.EOF {
					break
				}
				if err == errLineTooLong {
					line = "!"
				} else if err != nil {
					t.Fatal(err)
				}
				got = append(got, line)
			}
			if strings.Join(got, "|") != strings.Join(tt.lines, "|") {
				t.Fatalf("got %q, want %q", got, tt.lines)
			}
		})
	}
}

// FuzzLineReader: whatever arrives, no line is longer than the limit and the
// reader ends.
func FuzzLineReader(f *testing.F) {
	f.Add([]byte("a\nb\r\n"), 4)
	f.Add(bytes.Repeat([]byte("x"), 50), 3)
	f.Fuzz(func(t *testing.T, in []byte, max int) {
		max = 1 + abs(max)%64
		lr := newLineReader(bytes.NewReader(in), max)
		for range len(in) + 1 {
			line, err := lr.ReadLine()
			if err == io.EOF {
				return
			}
			if err != nil && err != errLineTooLong {
				t.Fatal(err)
			}
			if len(line) > max {
				t.Fatalf("line of %d bytes, max %d", len(line), max)
			}
		}
		t.Fatal("reader did not reach EOF")
	})
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}
