package store

import (
	"bytes"
	"testing"
	"time"
)

func FuzzDecodeMessage(f *testing.F) {
	for _, m := range []Message{
		{Seq: 1, At: t0, From: "alice", Kind: Chat, Text: "hi"},
		{Seq: 1 << 40, At: t0, From: "b", Kind: Action, Text: "waves ✋ \ufffd"},
	} {
		v, err := encodeMessage(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(seqKey(m.Seq), v)
	}
	f.Add([]byte{}, []byte{})
	f.Add(seqKey(3), []byte{1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 255})
	f.Fuzz(func(t *testing.T, key, val []byte) {
		m, err := decodeMessage(key, val)
		if err != nil {
			return
		}
		// Whatever decodes re-encodes to the same bytes.
		again, err := encodeMessage(m)
		if err != nil {
			t.Fatalf("decoded %+v but cannot encode it: %v", m, err)
		}
		if !bytes.Equal(again, val) || !bytes.Equal(seqKey(m.Seq), key) {
			t.Fatalf("%x/%x decoded to %+v, which encodes as %x", key, val, m, again)
		}
		if len(m.Text) > MaxText || len(m.From) > MaxName {
			t.Fatalf("decoded an oversized message: %d/%d bytes", len(m.From), len(m.Text))
		}
	})
}

func FuzzDecodeSeen(f *testing.F) {
	v, err := encodeSeen(Seen{At: t0, Seq: 42})
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte("alice"), v)
	f.Add([]byte(""), []byte{})
	f.Fuzz(func(t *testing.T, name, val []byte) {
		got, s, err := decodeSeen(name, val)
		if err != nil {
			return
		}
		again, err := encodeSeen(s)
		if err != nil {
			t.Fatalf("decoded %+v but cannot encode it: %v", s, err)
		}
		if got != string(name) || !bytes.Equal(again, val) {
			t.Fatalf("%q/%x decoded to %q %+v, which encodes as %x", name, val, got, s, again)
		}
	})
}

func TestMessageTimeRoundTrip(t *testing.T) {
	// Times keep their nanoseconds and come back in UTC.
	at := time.Date(2031, 7, 4, 23, 59, 59, 123456789, time.FixedZone("X", 3600))
	v, err := encodeMessage(Message{Seq: 1, At: at, From: "a", Kind: Chat})
	if err != nil {
		t.Fatal(err)
	}
	m, err := decodeMessage(seqKey(1), v)
	if err != nil {
		t.Fatal(err)
	}
	if !m.At.Equal(at) || m.At.Location() != time.UTC {
		t.Errorf("At = %v, want %v in UTC", m.At, at)
	}
}
