package idem

import (
	"fmt"
	"unicode/utf8"
)

// ValidateKey checks a key for every backend: it must be non-empty valid
// UTF-8. Backends add their own length limits with CheckSize.
func ValidateKey(key string) error {
	if key == "" {
		return &InputError{Reason: "key is empty"}
	}
	if !utf8.ValidString(key) {
		return &InputError{Key: shortKey(key), Reason: "key is not valid UTF-8"}
	}
	return nil
}

// ValidateVersion checks the version given to CompareAndSwap and
// CompareAndDelete, which must be at least 1.
func ValidateVersion(key string, version int64) error {
	if version < 1 {
		return &InputError{Key: shortKey(key), Reason: fmt.Sprintf("version %d is below 1", version)}
	}
	return nil
}

// ValidateUpsertVersion checks the version given to Upsert, which must be at
// least 0.
func ValidateUpsertVersion(key string, version int64) error {
	if version < 0 {
		return &InputError{Key: shortKey(key), Reason: fmt.Sprintf("version %d is negative", version)}
	}
	return nil
}

// CheckSize returns an InputError when n, the size of what, exceeds limit.
// Backends use it to report their own limits, e.g.
// CheckSize(key, "key", len(key), 2048).
func CheckSize(key, what string, n, limit int) error {
	if n > limit {
		return &InputError{Key: shortKey(key), Reason: fmt.Sprintf("%s is %d bytes, over the limit of %d", what, n, limit)}
	}
	return nil
}

// shortKey keeps error messages readable for absurdly long keys.
func shortKey(key string) string {
	const max = 256
	if len(key) <= max {
		return key
	}
	return key[:max] + "..."
}
