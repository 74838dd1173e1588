package keys

import (
	"bytes"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/crypto/ssh"
)

// MaxLineLen is the longest line, in bytes without its terminator, that an
// allowed keys file may hold. The largest RSA keys in use fit several times.
const MaxLineLen = 16 << 10

const (
	maxNameLen = 32
	minRSABits = 2048
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

// ParseKey parses the first key in data, which is in the format of an
// OpenSSH public key file such as id_ed25519.pub, and ignores its comment.
// It rejects what [Parse] rejects, for the same reasons.
func ParseKey(data []byte) (ssh.PublicKey, error) {
	for line := range bytes.Lines(data) {
		key, _, skip, err := parseLine(line)
		if !skip {
			return key, err
		}
	}
	return nil, errors.New("no public key found")
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
	return ok || typ == ssh.InsecureKeyAlgoDSA || isCertType(typ)
}

func isCertType(typ string) bool { return strings.Contains(typ, "-cert-v01@") }

// checkType rejects key types that sshchat does not accept.
func checkType(typ string) error {
	switch _, ok := accepted[typ]; {
	case ok:
		return nil
	case typ == ssh.InsecureKeyAlgoDSA:
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

// ValidName reports whether name may be used as a user name: 1 to 32
// characters from A-Z, a-z, 0-9, '_', '.' and '-', starting with a letter or
// a digit.
func ValidName(name string) error {
	switch {
	case name == "":
		return errors.New("missing name: the key's comment is the user name")
	case strings.ContainsAny(name, " \t"):
		return fmt.Errorf("names may not contain spaces: %q", name)
	case len(name) > maxNameLen:
		return fmt.Errorf("name is %d bytes long; at most %d are allowed", len(name), maxNameLen)
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

func isAlnum(c rune) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// Fingerprint returns the key's SHA256 fingerprint as OpenSSH prints it:
// "SHA256:" followed by unpadded base64.
func Fingerprint(key ssh.PublicKey) string { return ssh.FingerprintSHA256(key) }

// Describe formats e the way "ssh-keygen -lf" prints a key:
// "<bits> SHA256:<fingerprint> <name> (<TYPE>)".
func Describe(e Entry) string {
	label := accepted[e.Key.Type()].label
	if label == "" {
		label = e.Key.Type()
	}
	return fmt.Sprintf("%d %s %s (%s)", keyBits(e.Key), Fingerprint(e.Key), e.Name, label)
}
