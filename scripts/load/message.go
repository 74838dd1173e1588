package main

import (
	"bytes"
	"strconv"
)

// A load message is "load SEQ UNIXNANO": the sender's sequence number,
// counted from 0, and when it was sent. Other clients see it as
// "NAME: load SEQ UNIXNANO".
const messagePrefix = "load "

// appendMessage appends a load message, ended by the byte the client's
// Enter key sends, to buf.
func appendMessage(buf []byte, seq uint64, sentUnixNano int64, enter byte) []byte {
	buf = append(buf, messagePrefix...)
	buf = strconv.AppendUint(buf, seq, 10)
	buf = append(buf, ' ')
	buf = strconv.AppendInt(buf, sentUnixNano, 10)
	return append(buf, enter)
}

// parseDelivery parses a chat line "NAME: load SEQ UNIXNANO" as a client
// receives it, without its newline. from aliases line. It allocates
// nothing: readers call it for every line.
func parseDelivery(line []byte) (from []byte, seq uint64, sentUnixNano int64, ok bool) {
	i := bytes.Index(line, []byte(": "+messagePrefix))
	if i <= 0 {
		return nil, 0, 0, false
	}
	from, rest := line[:i], line[i+len(": "+messagePrefix):]
	sp := bytes.IndexByte(rest, ' ')
	if sp <= 0 {
		return nil, 0, 0, false
	}
	seq, ok = parseUint(rest[:sp])
	if !ok {
		return nil, 0, 0, false
	}
	ts, ok := parseUint(rest[sp+1:])
	if !ok || ts > 1<<63-1 {
		return nil, 0, 0, false
	}
	return from, seq, int64(ts), true
}

// parseUint parses decimal digits; strconv.ParseUint would need a string.
func parseUint(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, true
}
