package keys

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"strings"
)

// newOpsHeader opens every operators file that this package creates.
const newOpsHeader = "# sshchat operators. One user name per line; the names are those of the allowed keys file.\n"

// Ops is an immutable, validated set of operators: user names, compared
// case-insensitively.
//
// The operators file lists one user name (see [CheckName]) per line.
// Blank lines and lines whose first non-blank character is '#' are
// ignored; blanks around a name are allowed; LF and CRLF line endings are
// both accepted. A name listed twice, in any case, is an error, so that
// removing it once removes it.
type Ops struct {
	names []string       // as written, in file order
	line  map[string]int // folded name -> its line
}

func newOps() *Ops { return &Ops{line: make(map[string]int)} }

// Has reports whether name is an operator.
func (o *Ops) Has(name string) bool {
	_, ok := o.line[strings.ToLower(name)]
	return ok
}

// Names returns the operators in file order, spelled as in the file.
func (o *Ops) Names() []string { return slices.Clone(o.names) }

// Len returns the number of operators.
func (o *Ops) Len() int { return len(o.names) }

// sameAccess reports whether o and p make the same users operators.
func (o *Ops) sameAccess(p *Ops) bool {
	if o.Len() != p.Len() {
		return false
	}
	for name := range o.line {
		if _, ok := p.line[name]; !ok {
			return false
		}
	}
	return true
}

// ParseOps parses an operators file. If any line is invalid, it returns a
// nil Ops and the [*LineError] of every invalid line, joined.
func ParseOps(data []byte) (*Ops, error) { return parseOps("", data) }

// LoadOps reads and parses the operators file at path. A missing file
// means no operators: an empty Ops and no error.
func LoadOps(path string) (*Ops, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return newOps(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("load operators: %w", err)
	}
	return parseOps(path, data)
}

func parseOps(path string, data []byte) (*Ops, error) {
	o := newOps()
	var errs []error
	for n, line := range numberedLines(data) {
		name, skip, err := parseOpLine(line)
		if skip {
			continue
		}
		if err == nil {
			err = o.add(name, n)
		}
		if err != nil {
			errs = append(errs, &LineError{Path: path, Line: n, Err: err})
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return o, nil
}

// parseOpLine parses one line of an operators file, with or without its
// terminator. skip is true for blank and comment lines.
func parseOpLine(line []byte) (name string, skip bool, err error) {
	line = bytes.Trim(bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r")), " \t")
	if len(line) == 0 || line[0] == '#' {
		return "", true, nil
	}
	// Check the length first so that a long line is not quoted back whole.
	if len(line) > maxNameLen {
		return "", false, fmt.Errorf("line is %d bytes long; a user name is at most %d", len(line), maxNameLen)
	}
	if f := bytes.Fields(line); len(f) > 1 {
		return "", false, fmt.Errorf("%d words on one line (%q): list one user name per line", len(f), line)
	}
	name = string(line)
	if err := CheckName(name); err != nil {
		return "", false, err
	}
	return name, false, nil
}

func (o *Ops) add(name string, line int) error {
	folded := strings.ToLower(name)
	if prev, ok := o.line[folded]; ok {
		return fmt.Errorf("%w: %q is already listed on line %d (names are case-insensitive)", ErrDuplicateName, name, prev)
	}
	o.line[folded] = line
	o.names = append(o.names, name)
	return nil
}

// OpStore holds the current [Ops] of an operators file and replaces it
// atomically on reload. It is safe for concurrent use. Its Run method
// keeps it current as the file changes, as a [Store]'s does; a missing
// file means no operators.
type OpStore struct {
	*live[Ops]
}

// NewOpStore returns an OpStore for the operators file at path that logs
// to log (nowhere if nil). It starts empty: call Reload to read the file.
func NewOpStore(path string, log *slog.Logger) *OpStore {
	return &OpStore{newLive(fileKind[Ops]{
		what:  "operators",
		unit:  "operators",
		load:  LoadOps,
		same:  (*Ops).sameAccess,
		count: (*Ops).Len,
	}, path, log, newOps())}
}

// IsOp reports whether name is an operator in the current Ops.
func (st *OpStore) IsOp(name string) bool { return st.Ops().Has(name) }

// Ops returns the current Ops.
func (st *OpStore) Ops() *Ops { return st.current() }

// SetOp makes name an operator, or no longer one, in the operators file,
// and makes the change current at once.
func (st *OpStore) SetOp(name string, op bool) error {
	edit := RemoveOp
	if op {
		edit = AddOp
	}
	if err := edit(st.path, name); err != nil {
		return err
	}
	return st.Reload()
}

// AddOp makes name an operator by appending it to the operators file at
// path, creating the file (mode 0600, directory 0700) if it does not
// exist. It refuses an invalid name, a name already listed
// ([ErrDuplicateName]) and a file with errors ([ErrInvalidFile]).
func AddOp(path, name string) error {
	if err := CheckName(name); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	err := editOps(path, func(data []byte, o *Ops) ([]byte, error) {
		if n, ok := o.line[strings.ToLower(name)]; ok {
			return nil, fmt.Errorf("%w: %q is already an operator (line %d)", ErrDuplicateName, name, n)
		}
		if len(data) == 0 {
			data = []byte(newOpsHeader)
		}
		if data[len(data)-1] != '\n' {
			data = append(data, '\n')
		}
		return append(append(data, name...), '\n'), nil
	})
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// RemoveOp removes name (compared case-insensitively) from the operators
// file at path, keeping every other line byte for byte. It returns
// [ErrNoSuchUser] if name is not an operator.
func RemoveOp(path, name string) error {
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s: %w: %q is not an operator (there is no operators file)", path, ErrNoSuchUser, name)
		}
		return err
	}
	err := editOps(path, func(data []byte, o *Ops) ([]byte, error) {
		n, ok := o.line[strings.ToLower(name)]
		if !ok {
			return nil, fmt.Errorf("%w: %q is not an operator", ErrNoSuchUser, name)
		}
		return replaceLines(data, map[int]string{n: ""}), nil
	})
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// RenameOp renames the operator old (compared case-insensitively) to
// newName in the operators file at path, and reports whether old was an
// operator. A missing file, or old not listed, changes nothing. If newName
// is listed too, old's line is removed.
func RenameOp(path, old, newName string) (renamed bool, err error) {
	if err := CheckName(newName); err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	err = editOps(path, func(data []byte, o *Ops) ([]byte, error) {
		n, ok := o.line[strings.ToLower(old)]
		if !ok {
			return nil, nil
		}
		renamed = true
		if m, ok := o.line[strings.ToLower(newName)]; ok && m != n {
			return replaceLines(data, map[int]string{n: ""}), nil
		}
		return replaceLines(data, map[int]string{n: newName}), nil
	})
	if err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	return renamed, nil
}

// editOps is edit for an operators file that must be valid: fn gets its
// content and Ops.
func editOps(path string, fn func(data []byte, o *Ops) ([]byte, error)) error {
	return edit(path, func(data []byte, _ bool) ([]byte, error) {
		o, err := parseOps(path, data)
		if err != nil {
			return nil, refuseInvalid(err)
		}
		return fn(data, o)
	})
}
