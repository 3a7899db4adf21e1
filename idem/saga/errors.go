package saga

import (
	"errors"
	"fmt"
)

// ErrAborted matches an *AbortedError: a saga was aborted and its completed
// steps compensated.
var ErrAborted = errors.New("saga: aborted")

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
	return fmt.Sprintf("saga %q aborted and compensated: %v", e.ID, e.Cause)
}

// Is makes errors.Is(err, ErrAborted) true.
func (e *AbortedError) Is(target error) bool { return target == ErrAborted }

// Unwrap returns the cause.
func (e *AbortedError) Unwrap() error { return e.Cause }

// CompensationError reports a compensation that failed. The saga stays
// aborted but not yet compensated; run it again to resume. If Err is
// permanent (see idem.Permanent), every re-run gets it back: the step
// cannot be undone automatically.
type CompensationError struct {
	ID   string // the saga's ID
	Step string // the step whose compensation failed
	Err  error  // the compensation's error
}

// Error implements error.
func (e *CompensationError) Error() string {
	return fmt.Sprintf("saga %q: compensating step %q: %v", e.ID, e.Step, e.Err)
}

// Unwrap returns the compensation's error.
func (e *CompensationError) Unwrap() error { return e.Err }
