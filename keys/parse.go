package keys

import (
	"bytes"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/ssh"
)

// MaxLineLen is the longest line, in bytes without its terminator, that an
// allowed keys file may hold. The largest RSA keys in use fit several times.
const MaxLineLen = 16 << 10

const (
	maxNameLen = 32
	minRSABits = 2048
	// keyAlgoDSA is the type of DSA keys, which the parser recognises only
	// to refuse them precisely. x/crypto/ssh deprecated its constant with
	// the algorithm; the use here is deliberate.
	keyAlgoDSA = "ssh-dss"
)

// keyType describes an accepted key type as ssh-keygen -l prints it.
type keyType struct {
	label string
	bits  int // 0 if it depends on the key
}

var accepted = map[string]keyType{
	ssh.KeyAlgoED25519:    {"ED25519", 256},
	ssh.KeyAlgoSKED25519:  {"ED25519-SK", 256},
	ssh.KeyAlgoECDSA256:   {"ECDSA", 256},
	ssh.KeyAlgoECDSA384:   {"ECDSA", 384},
	ssh.KeyAlgoECDSA521:   {"ECDSA", 521},
	ssh.KeyAlgoSKECDSA256: {"ECDSA-SK", 256},
	ssh.KeyAlgoRSA:        {"RSA", 0},
}

// parseLine parses one line of an allowed keys file, with or without its
// terminator, into a key and its comment. skip is true for blank and comment
// lines.
func parseLine(line []byte) (key ssh.PublicKey, comment string, skip bool, err error) {
	line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
	if len(line) > MaxLineLen {
		return nil, "", false, fmt.Errorf("line is %d bytes long; at most %d are allowed", len(line), MaxLineLen)
	}
	line = bytes.Trim(line, " \t")
	if len(line) == 0 || line[0] == '#' {
		return nil, "", true, nil
	}
	if isPrivateKey(line) {
		return nil, "", false, ErrPrivateKey
	}
	key, comment, options, _, err := ssh.ParseAuthorizedKey(line)
	if err != nil {
		return nil, "", false, diagnose(line)
	}
	if len(options) > 0 {
		return nil, "", false, optionsError(strings.Join(options, ","))
	}
	if err := checkKey(key); err != nil {
		return nil, "", false, err
	}
	return key, comment, false, nil
}

// isPrivateKey reports whether line opens a private key file: PEM, as
// ssh-keygen writes (OPENSSH, RSA, EC or PKCS#8), or PuTTY's format.
func isPrivateKey(line []byte) bool {
	pem := bytes.HasPrefix(line, []byte("-----BEGIN ")) && bytes.Contains(line, []byte("PRIVATE KEY-----"))
	return pem || bytes.HasPrefix(line, []byte("PuTTY-User-Key-File-"))
}

// parseEntry parses one line of an allowed keys file into an Entry without
// its line number. skip is true for blank and comment lines.
func parseEntry(line []byte) (e Entry, skip bool, err error) {
	key, comment, skip, err := parseLine(line)
	if skip || err != nil {
		return Entry{}, skip, err
	}
	name, label := splitComment(comment)
	if err := CheckName(name); err != nil {
		return Entry{}, false, withFixedLine(err, key, name, comment)
	}
	if err := checkLabel(label); err != nil {
		return Entry{}, false, err
	}
	return Entry{Name: name, Label: label, Key: key}, false, nil
}

// splitComment splits a key's comment into the user name, its first word,
// and the label, the rest.
func splitComment(comment string) (name, label string) {
	i := strings.IndexAny(comment, " \t")
	if i < 0 {
		return comment, ""
	}
	return comment[:i], strings.Trim(comment[i:], " \t")
}

// withFixedLine adds to err, about the invalid name of key, the line to
// write instead if name looks like the "user@host" comment of a .pub file:
// the user part as the name, the whole comment as the label, which is what
// "sshchat keys add" writes.
func withFixedLine(err error, key ssh.PublicKey, name, comment string) error {
	user, _, ok := strings.Cut(name, "@")
	if !ok || CheckName(user) != nil || checkLabel(comment) != nil {
		return err
	}
	fixed := formatEntry(Entry{Name: user, Label: comment, Key: key})
	return fmt.Errorf("%w; the comment's first word is the user name, so write this line instead: %s", err, fixed)
}

// formatEntry returns the allowed keys line for e, without a terminator.
func formatEntry(e Entry) string {
	line := strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(e.Key)), "\n") + " " + e.Name
	if e.Label != "" {
		line += " " + e.Label
	}
	return line
}

// ParseKey parses the first key in data, which is in the format of an
// OpenSSH public key file such as id_ed25519.pub, and returns it with its
// comment. It rejects what [Parse] rejects, for the same reasons, and a
// private key with [ErrPrivateKey].
func ParseKey(data []byte) (key ssh.PublicKey, comment string, err error) {
	for line := range bytes.Lines(data) {
		key, comment, skip, err := parseLine(line)
		if !skip {
			return key, comment, err
		}
	}
	return nil, "", errors.New("no public key found")
}

// diagnose explains why ssh.ParseAuthorizedKey rejected line, which is
// neither blank nor a comment.
func diagnose(line []byte) error {
	fields := bytes.FieldsFunc(line, func(r rune) bool { return r == ' ' || r == '\t' })
	i := slices.IndexFunc(fields, func(f []byte) bool { return knownType(string(f)) })
	switch {
	case i < 0:
		return fmt.Errorf("unknown key type %q", fields[0])
	case i > 0:
		return optionsError(string(bytes.Join(fields[:i], []byte(" "))))
	}
	typ := string(fields[0])
	if err := checkType(typ); err != nil {
		return err
	}
	if len(fields) < 2 {
		return fmt.Errorf("missing key data after %q", typ)
	}
	blob, err := base64.StdEncoding.DecodeString(string(fields[1]))
	if err != nil {
		return fmt.Errorf("invalid base64 key data: %w", err)
	}
	key, err := ssh.ParsePublicKey(blob)
	if err != nil {
		return fmt.Errorf("invalid %s key data: %w", typ, err)
	}
	return fmt.Errorf("key type %q does not match its key data, which is %s", typ, key.Type())
}

func optionsError(options string) error {
	return fmt.Errorf("options are not supported: %s (sshchat does not implement them; remove them or do not list this key)", options)
}

// knownType reports whether typ names a key type that checkType has a
// precise verdict on.
func knownType(typ string) bool {
	_, ok := accepted[typ]
	return ok || typ == keyAlgoDSA || isCertType(typ)
}

func isCertType(typ string) bool { return strings.Contains(typ, "-cert-v01@") }

// checkType rejects key types that sshchat does not accept.
func checkType(typ string) error {
	switch _, ok := accepted[typ]; {
	case ok:
		return nil
	case typ == keyAlgoDSA:
		return errors.New("ssh-dss (DSA) keys are not supported: DSA is insecure and obsolete; use an ssh-ed25519 key")
	case isCertType(typ):
		return fmt.Errorf("certificates are not supported (%s): list the plain public key instead", typ)
	default:
		return fmt.Errorf("unsupported key type %q", typ)
	}
}

// checkKey rejects keys that sshchat does not accept.
func checkKey(key ssh.PublicKey) error {
	if err := checkType(key.Type()); err != nil {
		return err
	}
	if key.Type() != ssh.KeyAlgoRSA {
		return nil
	}
	if bits := keyBits(key); bits < minRSABits {
		return fmt.Errorf("ssh-rsa key has %d bits; at least %d are required", bits, minRSABits)
	}
	return nil
}

// keyBits returns the size of an accepted key as ssh-keygen reports it.
func keyBits(key ssh.PublicKey) int {
	if k, ok := key.(ssh.CryptoPublicKey); ok {
		if rk, ok := k.CryptoPublicKey().(*rsa.PublicKey); ok {
			return rk.N.BitLen()
		}
	}
	return accepted[key.Type()].bits
}

// CheckName returns an error that says why name may not be used as a user
// name, or nil if it may: 1 to 32 characters from A-Z, a-z, 0-9, '_', '.'
// and '-', starting with a letter or a digit.
func CheckName(name string) error {
	switch {
	case name == "":
		return errors.New("missing name: the key's comment is the user name")
	case len(name) > maxNameLen:
		return fmt.Errorf("name is %d bytes long; at most %d are allowed", len(name), maxNameLen)
	case strings.ContainsAny(name, " \t"):
		return fmt.Errorf("names may not contain spaces: %q", name)
	}
	for i, c := range name {
		switch {
		case i == 0 && !isAlnum(c):
			return fmt.Errorf("name %q must start with a letter or a digit", name)
		case !isAlnum(c) && c != '_' && c != '.' && c != '-':
			return fmt.Errorf("name %q contains %q; only letters, digits, '_', '.' and '-' are allowed", name, c)
		}
	}
	return nil
}

// checkLabel rejects labels that could disturb a terminal or hide what
// they say when listed: invalid UTF-8, control and format characters
// (tabs aside).
func checkLabel(label string) error {
	if !utf8.ValidString(label) {
		return fmt.Errorf("label %q is not valid UTF-8", label)
	}
	for _, c := range label {
		if c != '\t' && (unicode.IsControl(c) || unicode.Is(unicode.Cf, c)) {
			return fmt.Errorf("label %q contains the control or format character %U", label, c)
		}
	}
	return nil
}

func isAlnum(c rune) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// Describe formats e the way "ssh-keygen -lf" prints a key:
// "<bits> SHA256:<fingerprint> <name> [<label>] (<TYPE>)".
func Describe(e Entry) string {
	typ := accepted[e.Key.Type()].label
	if typ == "" {
		typ = e.Key.Type()
	}
	comment := e.Name
	if e.Label != "" {
		comment += " " + e.Label
	}
	return fmt.Sprintf("%d %s %s (%s)", keyBits(e.Key), ssh.FingerprintSHA256(e.Key), comment, typ)
}
