package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// Limits on what is stored. They bound what a hostile file can make the
// server allocate or print: a record beyond them is refused when written and
// skipped when read.
const (
	MaxText = 64 << 10 // bytes of one message's text
	MaxName = 64       // bytes of a user name
)

// Kind says what sort of public line a Message is.
type Kind uint8

// Kinds start at 1 so that a Message whose Kind was never set is refused
// rather than stored as something it is not.
const (
	Chat   Kind = 1 // alice: hi
	Action Kind = 2 // * alice waves
)

// Message is one public line of the room's history.
type Message struct {
	Seq  uint64 // the room's sequence number: unique, increasing, never 0
	At   time.Time
	From string
	Kind Kind
	Text string
}

// Seen is when a user's last session left, and the Seq of the last public
// message at that moment, so that "N messages since you left" is the current
// Seq minus Seen.Seq.
type Seen struct {
	At  time.Time
	Seq uint64
}

// Record layouts, all integers big-endian. Messages are keyed by their Seq
// (8 bytes) so that the bucket is in history order; users by their name.
//
//	message:  version(1) kind(1) at-unix-nanos(8) name-length(1) name text
//	seen:     version(1) at-unix-nanos(8) seq(8)
//	position: position(8), keyed by the log's name
const (
	recordVersion = 1
	messageHeader = 1 + 1 + 8 + 1
	seenLen       = 1 + 8 + 8
	seqLen        = 8
)

func seqKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, seqLen), seq)
}

func keySeq(k []byte) (uint64, error) {
	if len(k) != seqLen {
		return 0, fmt.Errorf("key is %d bytes, want %d", len(k), seqLen)
	}
	seq := binary.BigEndian.Uint64(k)
	if seq == 0 {
		return 0, errors.New("sequence number 0")
	}
	return seq, nil
}

// encodeMessage checks m and returns its stored form.
func encodeMessage(m Message) ([]byte, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	return appendMessage(make([]byte, 0, messageHeader+len(m.From)+len(m.Text)), m), nil
}

// appendMessage appends m's stored form to buf. m must be valid.
func appendMessage(buf []byte, m Message) []byte {
	buf = append(buf, recordVersion, byte(m.Kind))
	buf = binary.BigEndian.AppendUint64(buf, uint64(m.At.UnixNano()))
	buf = append(buf, byte(len(m.From)))
	buf = append(buf, m.From...)
	return append(buf, m.Text...)
}

// decodeMessage parses a stored message. Its input comes from disk and is
// trusted no more than a network packet.
func decodeMessage(key, val []byte) (Message, error) {
	seq, err := keySeq(key)
	if err != nil {
		return Message{}, err
	}
	if len(val) < messageHeader {
		return Message{}, fmt.Errorf("message %d: record is %d bytes, shorter than its header", seq, len(val))
	}
	if val[0] != recordVersion {
		return Message{}, fmt.Errorf("message %d: unknown record version %d", seq, val[0])
	}
	nameLen := int(val[10])
	if len(val) < messageHeader+nameLen {
		return Message{}, fmt.Errorf("message %d: name runs past the end of the record", seq)
	}
	m := Message{
		Seq:  seq,
		Kind: Kind(val[1]),
		At:   nanosTime(val[2:10]),
		From: string(val[messageHeader : messageHeader+nameLen]),
		Text: string(val[messageHeader+nameLen:]),
	}
	if err := m.check(); err != nil {
		return Message{}, err
	}
	return m, nil
}

func (m Message) check() error {
	if m.Kind != Chat && m.Kind != Action {
		return fmt.Errorf("message %d: unknown kind %d", m.Seq, m.Kind)
	}
	if err := checkTime(m.At); err != nil {
		return fmt.Errorf("message %d: %w", m.Seq, err)
	}
	if err := checkName(m.From); err != nil {
		return fmt.Errorf("message %d: %w", m.Seq, err)
	}
	if len(m.Text) > MaxText {
		return fmt.Errorf("message %d: text is %d bytes; at most %d are stored", m.Seq, len(m.Text), MaxText)
	}
	if err := checkPrintable(m.Text); err != nil {
		return fmt.Errorf("message %d: text %w", m.Seq, err)
	}
	return nil
}

func encodeSeen(s Seen) ([]byte, error) {
	if err := checkTime(s.At); err != nil {
		return nil, err
	}
	buf := append(make([]byte, 0, seenLen), recordVersion)
	buf = binary.BigEndian.AppendUint64(buf, uint64(s.At.UnixNano()))
	return binary.BigEndian.AppendUint64(buf, s.Seq), nil
}

func decodeSeen(name, val []byte) (string, Seen, error) {
	if err := checkName(string(name)); err != nil {
		return "", Seen{}, err
	}
	if len(val) != seenLen || val[0] != recordVersion {
		return "", Seen{}, fmt.Errorf("user %q: record is not a version %d last-seen record", name, recordVersion)
	}
	s := Seen{At: nanosTime(val[1:9]), Seq: binary.BigEndian.Uint64(val[9:])}
	if err := checkTime(s.At); err != nil {
		return "", Seen{}, fmt.Errorf("user %q: %w", name, err)
	}
	return string(name), s, nil
}

// maxLogName bounds the name of an outside log whose position is kept.
const maxLogName = 255

func checkLogName(name string) error {
	if name == "" || len(name) > maxLogName {
		return fmt.Errorf("log name is %d bytes long; 1 to %d are allowed", len(name), maxLogName)
	}
	if err := checkPrintable(name); err != nil {
		return fmt.Errorf("log name %w", err)
	}
	return nil
}

func decodePosition(name, val []byte) (uint64, error) {
	if err := checkLogName(string(name)); err != nil {
		return 0, err
	}
	if len(val) != seqLen {
		return 0, fmt.Errorf("position in %q is %d bytes, want %d", name, len(val), seqLen)
	}
	return binary.BigEndian.Uint64(val), nil
}

func nanosTime(b []byte) time.Time {
	return time.Unix(0, int64(binary.BigEndian.Uint64(b))).UTC()
}

// checkTime accepts the times that survive a round trip through Unix
// nanoseconds and are not before 1970, which no real message is.
func checkTime(t time.Time) error {
	if t.Before(time.Unix(0, 1)) || t.After(time.Unix(0, 1<<63-1)) {
		return fmt.Errorf("time %s is out of range", t.UTC().Format(time.RFC3339))
	}
	return nil
}

func checkName(name string) error {
	if name == "" || len(name) > MaxName {
		return fmt.Errorf("name is %d bytes long; 1 to %d are allowed", len(name), MaxName)
	}
	if err := checkPrintable(name); err != nil {
		return fmt.Errorf("name %w", err)
	}
	return nil
}

// checkPrintable refuses invalid UTF-8 and control characters: the chat
// never stores them, so finding one on disk means the file was tampered
// with, and a terminal must not be sent escape sequences from it.
func checkPrintable(s string) error {
	for i, r := range s {
		switch {
		case r == utf8.RuneError && !isEncodedRuneError(s[i:]):
			return fmt.Errorf("has invalid UTF-8 at byte %d", i)
		case r < 0x20 || r >= 0x7f && r <= 0x9f:
			return fmt.Errorf("has control character %U at byte %d", r, i)
		}
	}
	return nil
}

// isEncodedRuneError reports whether s starts with a genuine U+FFFD rather
// than an invalid byte that decodes as one.
func isEncodedRuneError(s string) bool {
	_, size := utf8.DecodeRuneInString(s)
	return size == 3
}
