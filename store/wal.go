package store

import (
	"bufio"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"syscall"

	"golang.org/x/sys/unix"
)

// The write-ahead log is how a message survives kill -9 without the room
// waiting for a disk sync: [Writer.Log] copies it into a log file mapped
// into memory (MAP_SHARED), which the kernel keeps even if the process
// dies, and the message may then be shown. A copy costs a fraction of the
// write(2) it replaces. Each file is preallocated to walMapSize, so that
// writing to the mapping never finds the disk full; what does not fit is
// appended past it with an ordinary write. A frame whose header is zero
// ends a file: the unused, preallocated rest. The Writer commits logged messages to the database
// (which syncs) a few times a second; once a commit holds everything in a
// log file, the file is emptied. Open replays what a crash left behind.
//
// There are two log files, used in turn: when the Writer takes the messages
// to commit, later appends go to the other file, so that the first holds
// exactly what is being committed and can be emptied afterwards even in a
// room that never stops talking.
//
// Power loss can lose what the page cache held: the messages logged since
// the last commit, which is at most CommitEvery (a second at most) plus
// the commit's own time.

// WALNames are the write-ahead log files' names inside the data directory.
var WALNames = [2]string{"history.0.wal", "history.1.wal"}

// Frame layout, integers big-endian: a crash can cut the last frame short,
// and the checksum (CRC-32C of the length and the payload) tells a torn or
// scribbled frame from a whole one.
//
//	frame:   payload-length(4) checksum(4) payload
//	payload: seq(8) message record (see record.go)
const (
	frameHeader = 4 + 4
	minPayload  = seqLen + messageHeader
	maxPayload  = seqLen + messageHeader + MaxName + MaxText
)

// replayChunk is how many replayed messages one transaction writes.
const replayChunk = 10000

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// walMapSize is how much of each log file is preallocated and mapped:
// what a busy room logs between two commits.
const walMapSize = 8 << 20

// wal is the pair of log files. Only the Writer appends, under its lock;
// the file that is not active is touched only by the Writer's goroutine, so
// emptying it never holds up an append.
type wal struct {
	files  [2]*os.File
	maps   [2][]byte // each file's first walMapSize bytes
	paths  [2]string
	size   [2]int64 // bytes of frames in each file
	active int      // the file appends go to
}

// appendFrames adds frames to the active file: a copy into its mapping, or
// one write past it. A write that fails leaves size where it was, so that
// the next append covers what it left.
func (l *wal) appendFrames(frames []byte) error {
	i := l.active
	if end := l.size[i] + int64(len(frames)); end <= int64(len(l.maps[i])) {
		copy(l.maps[i][l.size[i]:], frames)
		l.size[i] = end
		return nil
	}
	n, err := l.files[i].WriteAt(frames, l.size[i])
	if err != nil {
		return fmt.Errorf("store: appending to %s: %w", l.paths[i], err)
	}
	l.size[i] += int64(n)
	return nil
}

// rotate makes the other file active and returns the one that was.
func (l *wal) rotate() int {
	old := l.active
	l.active ^= 1
	return old
}

// empty clears file i, whose messages are committed. It need not reach
// the disk: messages already in the database are skipped by replay.
func (l *wal) empty(i int) error {
	if l.size[i] == 0 {
		return nil
	}
	if l.size[i] > int64(len(l.maps[i])) {
		if err := l.files[i].Truncate(walMapSize); err != nil {
			return fmt.Errorf("store: emptying %s: %w", l.paths[i], err)
		}
	}
	clear(l.maps[i][:min(l.size[i], int64(len(l.maps[i])))])
	l.size[i] = 0
	return nil
}

func (l *wal) close() error {
	var errs []error
	for i, f := range l.files {
		if l.maps[i] != nil {
			if err := syscall.Munmap(l.maps[i]); err != nil {
				errs = append(errs, fmt.Errorf("store: unmapping %s: %w", l.paths[i], err))
			}
			l.maps[i] = nil
		}
		if f != nil {
			if err := f.Close(); err != nil {
				errs = append(errs, fmt.Errorf("store: closing %s: %w", l.paths[i], err))
			}
			l.files[i] = nil
		}
	}
	return errors.Join(errs...)
}

// prepare empties file i, reserves walMapSize bytes of disk for it and
// maps them.
func (l *wal) prepare(i int) error {
	f := l.files[i]
	if err := f.Truncate(0); err != nil {
		return err
	}
	// Reserved, not sparse: writing to the mapping must not find the disk
	// full, which would kill the process with SIGBUS.
	if err := unix.Fallocate(int(f.Fd()), 0, 0, walMapSize); err != nil {
		return fmt.Errorf("reserving %d bytes: %w", walMapSize, err)
	}
	m, err := syscall.Mmap(int(f.Fd()), 0, walMapSize, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("mapping: %w", err)
	}
	l.maps[i] = m
	return nil
}

// appendFrame appends m's frame to buf. m must be valid.
func appendFrame(buf []byte, m Message) []byte {
	start := len(buf)
	buf = append(buf, make([]byte, frameHeader)...)
	buf = binary.BigEndian.AppendUint64(buf, m.Seq)
	buf = appendMessage(buf, m)
	binary.BigEndian.PutUint32(buf[start:], uint32(len(buf)-start-frameHeader))
	binary.BigEndian.PutUint32(buf[start+4:], frameChecksum(buf[start:start+4], buf[start+frameHeader:]))
	return buf
}

func frameChecksum(length, payload []byte) uint32 {
	return crc32.Update(crc32.Checksum(length, castagnoli), castagnoli, payload)
}

// walContents is what a log file holds.
type walContents struct {
	messages []Message // whole frames whose records are valid, in file order
	bad      []error   // whole frames whose records are not
	// torn says why the file ends in something that is not a whole frame
	// (a crash in the middle of a write, or damage), which starts at
	// tornAt. Nothing from there on is trusted.
	torn   error
	tornAt int64
}

// readWAL parses a log file. Its input is as hostile as a network packet:
// lengths are bounded before anything is allocated, and records are checked
// as when they are read from the database. It fails only if r does.
func readWAL(r io.Reader) (walContents, error) {
	var (
		c   walContents
		off int64 // where the frame being read starts
		hdr [frameHeader]byte
	)
	tear := func(why error) (walContents, error) {
		c.torn, c.tornAt = why, off
		return c, nil
	}
	br := bufio.NewReader(r)
	payload := make([]byte, 0, 256)
	for {
		_, err := io.ReadFull(br, hdr[:])
		switch {
		case err == io.EOF:
			return c, nil
		case err == io.ErrUnexpectedEOF:
			return tear(errors.New("the last frame's header is cut short"))
		case err != nil:
			return c, err
		}
		length := binary.BigEndian.Uint32(hdr[:4])
		if length == 0 && binary.BigEndian.Uint32(hdr[4:]) == 0 {
			return c, nil // the unused rest of the file
		}
		if length < minPayload || length > maxPayload {
			return tear(fmt.Errorf("frame length %d is out of range", length))
		}
		payload = slices.Grow(payload[:0], int(length))[:length]
		_, err = io.ReadFull(br, payload)
		switch {
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			return tear(errors.New("the last frame is cut short"))
		case err != nil:
			return c, err
		}
		if binary.BigEndian.Uint32(hdr[4:]) != frameChecksum(hdr[:4], payload) {
			return tear(errors.New("checksum mismatch"))
		}
		off += frameHeader + int64(length)
		m, err := decodeMessage(payload[:seqLen], payload[seqLen:])
		if err != nil {
			c.bad = append(c.bad, err)
			continue
		}
		c.messages = append(c.messages, m)
	}
}

// openWAL opens (creating) both log files and writes what they hold that
// the database lacks into it, then empties them. A torn end or a bad
// record is logged and dropped; a file that cannot be opened or read is an
// error.
func (db *DB) openWAL(dir string) error {
	l := &wal{}
	for i, name := range WALNames {
		l.paths[i] = filepath.Join(dir, name)
		f, err := os.OpenFile(l.paths[i], os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			l.close()
			return fmt.Errorf("store: opening write-ahead log: %w", err)
		}
		l.files[i] = f
	}
	if err := db.replay(l); err != nil {
		l.close()
		return err
	}
	db.wal = l
	return nil
}

func (db *DB) replay(l *wal) error {
	var found []Message
	for i, f := range l.files {
		c, err := readWAL(f)
		if err != nil {
			return fmt.Errorf("store: reading write-ahead log %s: %w; move it aside to start without the messages it holds", l.paths[i], err)
		}
		if len(c.bad) > 0 {
			db.log.Warn("store: some write-ahead log records are unreadable and will be skipped", "file", l.paths[i], "count", len(c.bad), "first", c.bad[0])
		}
		if c.torn != nil {
			size, _ := f.Seek(0, io.SeekEnd)
			db.log.Warn("store: dropping the end of the write-ahead log: a crash cut its last write short, or it is damaged", "file", l.paths[i], "offset", c.tornAt, "bytes", size-c.tornAt, "why", c.torn)
		}
		found = append(found, c.messages...)
	}
	// The files take turns, so their messages interleave; Seqs are unique.
	slices.SortStableFunc(found, func(a, b Message) int { return cmp.Compare(a.Seq, b.Seq) })
	found = slices.CompactFunc(found, func(a, b Message) bool { return a.Seq == b.Seq })
	last := db.LastSeq()
	found = slices.DeleteFunc(found, func(m Message) bool { return m.Seq <= last })
	for chunk := range slices.Chunk(found, replayChunk) {
		if err := db.Write(Batch{Messages: chunk}); err != nil {
			return fmt.Errorf("store: replaying the write-ahead log: %w", err)
		}
	}
	if len(found) > 0 {
		db.log.Info("store: replayed messages from the write-ahead log", "count", len(found), "last", found[len(found)-1].Seq)
	}
	for i := range l.files {
		if err := l.prepare(i); err != nil {
			return fmt.Errorf("store: write-ahead log %s: %w", l.paths[i], err)
		}
	}
	return nil
}
