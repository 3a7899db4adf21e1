package idem

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors. Match them with errors.Is; the typed errors below carry
// the details and match the sentinel they belong to.
var (
	// ErrNotFound: the key is absent or expired.
	ErrNotFound = errors.New("idem: not found")
	// ErrConflict: a conditional write's condition was false. See ConflictError.
	ErrConflict = errors.New("idem: version conflict")
	// ErrInProgress: another caller holds a live claim on the key. See InProgressError.
	ErrInProgress = errors.New("idem: request in progress")
	// ErrMismatch: the key was used before with a different request fingerprint.
	ErrMismatch = errors.New("idem: key reused with a different request")
	// ErrUnknownOutcome: the store could not tell whether a write was applied.
	ErrUnknownOutcome = errors.New("idem: outcome unknown")
	// ErrInvalid: bad input, rejected before anything was sent. See InputError.
	ErrInvalid = errors.New("idem: invalid input")
	// ErrLeaseLost: the caller's claim was taken over (or vanished) after its
	// lease passed; the caller must not complete or release it.
	ErrLeaseLost = errors.New("idem: lease lost")
	// ErrCorrupt: a stored record could not be decoded.
	ErrCorrupt = errors.New("idem: corrupt record")
	// ErrAborted: a saga was aborted and its completed steps compensated.
	// See AbortedError.
	ErrAborted = errors.New("idem: saga aborted")
)

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

// InputError reports bad input that was rejected before anything was sent.
type InputError struct {
	Key    string // the key involved, possibly truncated or empty
	Reason string
}

// Error implements error.
func (e *InputError) Error() string {
	return fmt.Sprintf("idem: invalid input for key %q: %s", e.Key, e.Reason)
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *InputError) Is(target error) bool { return target == ErrInvalid }

// UnknownOutcomeError reports a write that may or may not have been applied.
// The caller can retry the same operation: every helper in this package is
// safe to repeat.
type UnknownOutcomeError struct {
	Key string
	Op  string
	Err error // the driver error that made the outcome unknown
}

// Error implements error.
func (e *UnknownOutcomeError) Error() string {
	return fmt.Sprintf("idem: %s %q: outcome unknown: %v", e.Op, e.Key, e.Err)
}

// Is makes errors.Is(err, ErrUnknownOutcome) true.
func (e *UnknownOutcomeError) Is(target error) bool { return target == ErrUnknownOutcome }

// Unwrap returns the underlying driver error.
func (e *UnknownOutcomeError) Unwrap() error { return e.Err }

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

// RetryAfter is how long until the holder's lease passes (at least zero),
// measured from now.
func (e *InProgressError) RetryAfter(now time.Time) time.Duration {
	return max(e.LeaseUntil.Sub(now), 0)
}

// MismatchError reports a key reused with a different request.
type MismatchError struct {
	Key string
}

// Error implements error.
func (e *MismatchError) Error() string {
	return fmt.Sprintf("idem: key %q: reused with a different request", e.Key)
}

// Is makes errors.Is(err, ErrMismatch) true.
func (e *MismatchError) Is(target error) bool { return target == ErrMismatch }

// PermanentError marks an error that is the final answer for a key: Do
// stores it, and every later duplicate gets it back instead of running the
// function again. Wrap an error with Permanent to make it permanent.
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

// PermanentCode is Permanent with a machine-readable code that is stored and
// replayed with the message.
func PermanentCode(code string, err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err, Code: code}
}

// Error implements error.
func (e *PermanentError) Error() string {
	if e.Code != "" {
		return fmt.Sprintf("%s: %v", e.Code, e.Err)
	}
	return e.Err.Error()
}

// Unwrap returns the underlying error.
func (e *PermanentError) Unwrap() error { return e.Err }

// CorruptError reports a stored record that could not be decoded.
type CorruptError struct {
	Key string
	Err error
}

// Error implements error.
func (e *CorruptError) Error() string {
	return fmt.Sprintf("idem: key %q: corrupt record: %v", e.Key, e.Err)
}

// Is makes errors.Is(err, ErrCorrupt) true.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

// Unwrap returns the decoding error.
func (e *CorruptError) Unwrap() error { return e.Err }

// AbortedError reports a saga that was aborted: its body or one of its
// steps failed permanently, and every completed step has been compensated.
type AbortedError struct {
	ID string // the saga's ID
	// Cause is the permanent error that aborted the saga: the original error
	// on the run that aborted it, an error with its message on later runs.
	Cause error
	// Replayed is true when the outcome was read from the store: the saga
	// had been aborted by an earlier run.
	Replayed bool
}

// Error implements error.
func (e *AbortedError) Error() string {
	return fmt.Sprintf("idem: saga %q aborted and compensated: %v", e.ID, e.Cause)
}

// Is makes errors.Is(err, ErrAborted) true.
func (e *AbortedError) Is(target error) bool { return target == ErrAborted }

// Unwrap returns the cause.
func (e *AbortedError) Unwrap() error { return e.Cause }

// CompensationError reports a compensation that failed. The saga stays
// aborted but not yet compensated; run it again to resume. If Err is
// permanent (see Permanent), every re-run gets it back: the step cannot be
// undone automatically.
type CompensationError struct {
	ID   string // the saga's ID
	Step string // the step whose compensation failed
	Err  error  // the compensation's error
}

// Error implements error.
func (e *CompensationError) Error() string {
	return fmt.Sprintf("idem: saga %q: compensating step %q: %v", e.ID, e.Step, e.Err)
}

// Unwrap returns the compensation's error.
func (e *CompensationError) Unwrap() error { return e.Err }
