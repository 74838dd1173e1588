package keys

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// AuditAction names what an operator did.
type AuditAction string

// The actions operators take in chat.
const (
	AuditKick   AuditAction = "kick"
	AuditBan    AuditAction = "ban"
	AuditUnban  AuditAction = "unban"
	AuditMute   AuditAction = "mute"
	AuditUnmute AuditAction = "unmute"
	AuditOp     AuditAction = "op"
	AuditDeop   AuditAction = "deop"
	AuditMOTD   AuditAction = "motd"
)

// maxActionLen bounds an AuditAction, which is one short word.
const maxActionLen = 32

// AuditRecord is one operator action. It is written as one line of JSON
// with the fields "time" (RFC 3339, UTC), "operator", "action", "target",
// "reason" and "until", the last three left out when empty.
type AuditRecord struct {
	Time     time.Time   `json:"time"`            // when; the zero time means now
	Operator string      `json:"operator"`        // who: a user name
	Action   AuditAction `json:"action"`          // what
	Target   string      `json:"target,omitzero"` // to whom, if anyone: a user name
	// Reason is the reason given, or for AuditMOTD the new message. It is
	// at most [MaxMOTDLen] bytes with no control characters.
	Reason string    `json:"reason,omitzero"`
	Until  time.Time `json:"until,omitzero"` // when a ban or mute expires; zero: when lifted
}

// AuditLog appends operator actions to a file, one JSON line each. It only
// ever appends, and several processes may append to the same file: each
// record is one write to a file opened with O_APPEND, so lines are never
// interleaved. It is safe for concurrent use.
type AuditLog struct {
	f *os.File
}

// OpenAuditLog opens the audit log at path for appending, creating it (mode
// 0600, directory 0700) if needed. If the file ends in a partial line, left
// by a crash or a full disk, the next record starts on a line of its own.
func OpenAuditLog(path string) (*AuditLog, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	if err := endLine(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("open audit log %s: %w", path, err)
	}
	return &AuditLog{f: f}, nil
}

// endLine appends a newline to f, opened for reading and appending, unless
// f is empty or already ends with one.
func endLine(f *os.File) error {
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return err
	}
	last := make([]byte, 1)
	if _, err := f.ReadAt(last, fi.Size()-1); err != nil {
		return err
	}
	if last[0] == '\n' {
		return nil
	}
	_, err = f.Write([]byte{'\n'})
	return err
}

// Record appends r to the log and syncs it to disk, so it does disk I/O
// and must not be called where a slow disk would stall others. It refuses
// a record with an invalid operator or target name, a missing action or an
// invalid reason.
func (a *AuditLog) Record(r AuditRecord) error {
	if err := r.check(); err != nil {
		return fmt.Errorf("audit %s: %w", a.f.Name(), err)
	}
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	r.Time, r.Until = r.Time.UTC(), r.Until.UTC()
	var line bytes.Buffer
	enc := json.NewEncoder(&line) // ends the record with a newline
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("audit %s: %w", a.f.Name(), err)
	}
	if _, err := a.f.Write(line.Bytes()); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	if err := a.f.Sync(); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}

func (r AuditRecord) check() error {
	if err := checkUserField("operator", r.Operator); err != nil {
		return err
	}
	if r.Action == "" {
		return errors.New("action: missing")
	}
	if err := checkText("action", string(r.Action), maxActionLen); err != nil {
		return err
	}
	if r.Target != "" {
		if err := checkUserField("target", r.Target); err != nil {
			return err
		}
	}
	return checkText("reason", r.Reason, MaxMOTDLen)
}

// Close closes the log. Records after Close fail.
func (a *AuditLog) Close() error { return a.f.Close() }
