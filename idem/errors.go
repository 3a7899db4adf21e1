package idem

import (
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// Sentinel errors. Match them with errors.Is; the errors this package and
// the backends return wrap them and say which key was involved.
var (
	// ErrNotFound: the key is absent or expired.
	ErrNotFound = errors.New("idem: not found")
	// ErrConflict: a conditional write's condition was false. See ConflictError.
	ErrConflict = errors.New("idem: version conflict")
	// ErrInProgress: another caller holds a live claim on the key. See InProgressError.
	ErrInProgress = errors.New("idem: request in progress")
	// ErrMismatch: the key was used before with a different request fingerprint.
	ErrMismatch = errors.New("idem: key reused with a different request")
	// ErrUnknownOutcome: the store could not tell whether a write was
	// applied. Every helper in this package is safe to call again.
	ErrUnknownOutcome = errors.New("idem: outcome unknown")
	// ErrInvalid: bad input, rejected before anything was sent.
	ErrInvalid = errors.New("idem: invalid input")
	// ErrLeaseLost: the caller's claim was taken over (or vanished) after its
	// lease passed; the caller must not complete or release it.
	ErrLeaseLost = errors.New("idem: lease lost")
	// ErrCorrupt: a stored record could not be decoded.
	ErrCorrupt = errors.New("idem: corrupt record")
	// ErrSkipUpdate, returned by an Update function, leaves the item
	// unchanged: Update returns the current item and a nil error, or
	// ErrNotFound if the key is absent.
	ErrSkipUpdate = errors.New("idem: skip update")
)

// CodeResultNotStored is the code of the permanent error Do stores when
// fn succeeded but its result could not be stored: it could not be encoded,
// or it is too large for the store. Duplicates get that error back
// (*PermanentError with this Code) instead of running fn again.
const CodeResultNotStored = "idem.result-not-stored"

// ConflictError reports a conditional write whose condition was false. It
// carries the item as it stood when the write was refused, read from the
// write's own response.
type ConflictError struct {
	Key     string
	Op      string // the kernel operation: "PutIfAbsent", "CompareAndSwap", "CompareAndDelete"
	Current Item   // the current item; meaningful only when Exists is true
	Exists  bool   // false: the key was absent (or expired)
}

// Error implements error.
func (e *ConflictError) Error() string {
	if !e.Exists {
		return fmt.Sprintf("idem: %s %q: version conflict: key is absent", e.Op, e.Key)
	}
	return fmt.Sprintf("idem: %s %q: version conflict: current version is %d", e.Op, e.Key, e.Current.Version)
}

// Is makes errors.Is(err, ErrConflict) true.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// InProgressError reports a key whose claim is held by another live caller.
type InProgressError struct {
	Key        string
	LeaseUntil time.Time // when the holder's lease passes unless it is extended
}

// Error implements error.
func (e *InProgressError) Error() string {
	return fmt.Sprintf("idem: key %q: request in progress (lease until %s)", e.Key, e.LeaseUntil.UTC().Format(time.RFC3339Nano))
}

// Is makes errors.Is(err, ErrInProgress) true.
func (e *InProgressError) Is(target error) bool { return target == ErrInProgress }

// PermanentError marks an error that is the final answer for a key: Do
// stores it, and every later duplicate gets it back instead of running the
// function again. Wrap an error with Permanent to make it permanent, or
// return a PermanentError with a Code:
//
//	return Receipt{}, &idem.PermanentError{Code: "card_declined", Err: err}
type PermanentError struct {
	// Err is the error returned by the function on the first execution; on a
	// replay it is an error with the stored message.
	Err error
	// Code is an optional machine-readable code stored with the message.
	Code string
	// Replayed is true when the error was read from the store.
	Replayed bool
}

// Permanent marks err as the final, stored outcome of a Do call.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// Error implements error.
func (e *PermanentError) Error() string {
	switch {
	case e.Err == nil:
		return e.message()
	case e.Code != "":
		return fmt.Sprintf("%s: %v", e.Code, e.Err)
	}
	return e.Err.Error()
}

// message is the message stored for e: Err's, or without one the code.
func (e *PermanentError) message() string {
	switch {
	case e.Err != nil:
		return e.Err.Error()
	case e.Code != "":
		return e.Code
	}
	return "permanent error"
}

// Unwrap returns the underlying error.
func (e *PermanentError) Unwrap() error { return e.Err }

// invalid reports bad input for key, matching ErrInvalid.
func invalid(key, reason string) error {
	return fmt.Errorf("idem: invalid input for key %q: %s: %w", shortKey(key), reason, ErrInvalid)
}

// corrupt reports a stored value of key that could not be decoded,
// matching ErrCorrupt and err.
func corrupt(key string, err error) error {
	return fmt.Errorf("idem: key %q: %w: %w", key, ErrCorrupt, err)
}

// unknown reports a write of op on key whose outcome could not be told,
// matching ErrUnknownOutcome and err.
func unknown(key, op string, err error) error {
	return fmt.Errorf("idem: %s %q: %w: %w", op, key, ErrUnknownOutcome, err)
}

// mismatch reports a key reused with a different request.
func mismatch(key string) error {
	return fmt.Errorf("idem: key %q: %w", key, ErrMismatch)
}

// shortKey keeps error messages readable for absurdly long keys.
func shortKey(key string) string {
	const max = 256
	if len(key) <= max {
		return key
	}
	n := max
	for n > max-utf8.UTFMax+1 && !utf8.RuneStart(key[n]) { // cut before a character, never inside one
		n--
	}
	return key[:n] + "..."
}
