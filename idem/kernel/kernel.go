// Package kernel holds what a Store implementation needs beyond the idem
// package itself: FreshVersion, the version PutIfAbsent must write
// (fencing rests on it); Expired; the checks every backend makes on its
// input before it sends anything, and the errors it returns, each matching
// the idem sentinel the Store contract names; and DescribeRecord, for tools
// that show a stored record.
//
// Application code does not need this package; backend authors run
// idemtest.Run to check their Store against the contract.
package kernel

import (
	"fmt"
	"unicode/utf8"

	"github.com/idemkit/idemkit/idem"
)

// CheckKey checks a key for every backend: it must be non-empty valid
// UTF-8. Backends add their own length limits with CheckSize.
func CheckKey(key string) error {
	if key == "" {
		return Invalid(key, "key is empty")
	}
	if !utf8.ValidString(key) {
		return Invalid(key, "key is not valid UTF-8")
	}
	return nil
}

// CheckVersion checks the version given to CompareAndSwap and
// CompareAndDelete, which must be at least 1.
func CheckVersion(key string, version int64) error {
	if version < 1 {
		return Invalid(key, fmt.Sprintf("version %d is below 1", version))
	}
	return nil
}

// CheckUpsertVersion checks the version given to Upsert, which must be at
// least 0.
func CheckUpsertVersion(key string, version int64) error {
	if version < 0 {
		return Invalid(key, fmt.Sprintf("version %d is negative", version))
	}
	return nil
}

// CheckSize rejects n, the size of what, when it exceeds limit. Backends
// use it to report their own limits, e.g. CheckSize(key, "key", len(key),
// 2048).
func CheckSize(key, what string, n, limit int) error {
	if n > limit {
		return Invalid(key, fmt.Sprintf("%s is %d bytes, over the limit of %d", what, n, limit))
	}
	return nil
}

// Invalid reports bad input for key, rejected before anything was sent. The
// error matches idem.ErrInvalid.
func Invalid(key, reason string) error {
	return fmt.Errorf("idem: invalid input for key %q: %s: %w", short(key), reason, idem.ErrInvalid)
}

// Corrupt reports a stored item of key that the backend cannot decode. The
// error matches idem.ErrCorrupt and err.
func Corrupt(key string, err error) error {
	return fmt.Errorf("idem: key %q: %w: %w", short(key), idem.ErrCorrupt, err)
}

// Unknown reports a write of op on key that may or may not have been
// applied, for the driver error err. The error matches
// idem.ErrUnknownOutcome and err.
func Unknown(key, op string, err error) error {
	return fmt.Errorf("idem: %s %q: %w: %w", op, short(key), idem.ErrUnknownOutcome, err)
}

// short keeps error messages readable for absurdly long keys.
func short(key string) string { return Short(key, 256) }

// Short returns key for an error message: whole when it is at most max
// bytes, else its first max bytes or fewer, cut before a character so
// that no character is split (a split one would print as "\xe2" bytes),
// followed by "...".
func Short(key string, max int) string {
	if len(key) <= max {
		return key
	}
	n := max
	// A UTF-8 character is at most 4 bytes: at most 3 steps back.
	for i := 0; i < utf8.UTFMax-1 && n > 0 && !utf8.RuneStart(key[n]); i++ {
		n--
	}
	return key[:n] + "..."
}
