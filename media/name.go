package media

import (
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"
)

// MaxNameLen is the longest stream name, in bytes of UTF-8.
const MaxNameLen = 128

// ErrBadName is wrapped by every refusal of CheckName (errors.Is); the *NameError in the chain says why.
var ErrBadName = errors.New("media: invalid stream name")

// NameError is a stream name CheckName refused.
type NameError struct {
	Name   string // the name as given (maybe cut short for logs by the caller)
	Reason string // e.g. "empty", "longer than 128 bytes", "contains '/'"
}

func (e *NameError) Error() string { return fmt.Sprintf("%v: %s", ErrBadName, e.Reason) }
func (e *NameError) Unwrap() error { return ErrBadName }

// CheckName applies the stream name rule, the same for publish, play, REST, WHIP/WHEP and relays: 1 to
// MaxNameLen bytes of valid UTF-8; no control characters (C0, DEL, C1), no invisible format characters
// (zero-width, bidi overrides: unicode Cf), no '/' or '\' (names are URL path segments for WHIP/WHEP and keys in
// the cluster directory), no leading or trailing white space. Anything else — letters of any script, digits,
// spaces inside, punctuation — is allowed, as WCS allows it.
func CheckName(name string) error {
	bad := func(reason string) error { return &NameError{Name: name, Reason: reason} }
	switch {
	case name == "":
		return bad("empty")
	case len(name) > MaxNameLen:
		return bad(fmt.Sprintf("longer than %d bytes", MaxNameLen))
	case !utf8.ValidString(name):
		return bad("not valid UTF-8")
	}
	for _, r := range name {
		switch {
		case r == '/' || r == '\\':
			return bad(fmt.Sprintf("contains %q", r))
		case unicode.IsControl(r):
			return bad(fmt.Sprintf("contains the control character %U", r))
		case unicode.Is(unicode.Cf, r):
			return bad(fmt.Sprintf("contains the invisible format character %U", r))
		}
	}
	if first, _ := utf8.DecodeRuneInString(name); unicode.IsSpace(first) {
		return bad("starts with white space")
	}
	if last, _ := utf8.DecodeLastRuneInString(name); unicode.IsSpace(last) {
		return bad("ends with white space")
	}
	return nil
}
