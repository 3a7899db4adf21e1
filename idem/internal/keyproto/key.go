package keyproto

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalidKey means an Idempotency-Key value is malformed. See KeyError.
var ErrInvalidKey = errors.New("idemkit: invalid idempotency key")

// KeyError reports why an Idempotency-Key value was rejected.
type KeyError struct {
	Reason string // what is wrong, for a person: "the key is empty"
}

// Error implements error.
func (e *KeyError) Error() string { return ErrInvalidKey.Error() + ": " + e.Reason }

// Is makes errors.Is(err, ErrInvalidKey) true.
func (e *KeyError) Is(target error) bool { return target == ErrInvalidKey }

func keyError(format string, args ...any) error {
	return &KeyError{Reason: fmt.Sprintf(format, args...)}
}

// ParseKey parses an Idempotency-Key field value. The IETF draft makes it
// an RFC 8941 sf-string ("8e03978e-40d5-43e8-bc93-6894a57f9324", quotes
// included); many clients send the key bare, as Stripe's do, so a bare
// token of visible ASCII characters other than '"', '\\', ',' and ';' is
// accepted too. Surrounding spaces and tabs are ignored. The key must be
// non-empty and at most maxLen bytes once unquoted. The error is a
// *KeyError, matching ErrInvalidKey.
func ParseKey(value string, maxLen int) (string, error) {
	v := strings.Trim(value, " \t")
	var key string
	var err error
	if strings.HasPrefix(v, `"`) {
		key, err = unquote(v)
	} else {
		key, err = bare(v)
	}
	switch {
	case err != nil:
		return "", err
	case key == "":
		return "", keyError("the key is empty")
	case len(key) > maxLen:
		return "", keyError("the key is %d bytes, over the limit of %d", len(key), maxLen)
	}
	return key, nil
}

// unquote reads an sf-string: v starts with '"'.
func unquote(v string) (string, error) {
	var b strings.Builder
	for i := 1; i < len(v); i++ {
		switch c := v[i]; {
		case c == '"':
			if i+1 != len(v) {
				return "", keyError("unexpected data after the quoted key (parameters and lists are not accepted)")
			}
			return b.String(), nil
		case c == '\\':
			if i+1 == len(v) || (v[i+1] != '"' && v[i+1] != '\\') {
				return "", keyError("a backslash in a quoted key must escape '\"' or '\\'")
			}
			i++
			b.WriteByte(v[i])
		case c < 0x20 || c > 0x7e:
			return "", keyError("character %q is not allowed in a key", rune(c))
		default:
			b.WriteByte(c)
		}
	}
	return "", keyError("the quoted key has no closing '\"'")
}

// bare reads a key sent without quotes.
func bare(v string) (string, error) {
	for _, c := range []byte(v) {
		if c <= 0x20 || c > 0x7e || c == '"' || c == '\\' || c == ',' || c == ';' {
			return "", keyError("character %q is not allowed in a bare key (send the key as a quoted string)", rune(c))
		}
	}
	return v, nil
}

// FromValues reads the key from the values of the key header: ok is
// false when there are none. Two or more values, or a malformed one, give
// a 400 problem.
func FromValues(values []string, header string, maxLen int) (key string, ok bool, p *Problem) {
	switch len(values) {
	case 0:
		return "", false, nil
	case 1:
	default:
		return "", true, RepeatedKey(len(values), header)
	}
	key, err := ParseKey(values[0], maxLen)
	if err != nil {
		return "", true, InvalidKey(header, err)
	}
	return key, true, nil
}
