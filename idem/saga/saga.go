package saga

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/idemkit/idemkit/idem"
)

// errStopped is what Step returns, while a saga is being compensated, for
// the first step that never completed: the body must stop there.
var errStopped = errors.New("saga: aborted: no further steps run")

// codeAborted is the stored code of an aborted saga's outcome and of the
// steps fenced off by the abort.
const codeAborted = "saga-aborted"

// Saga is one run of a saga body, handed to it by Run. Its steps are taken
// with Step. A Saga is safe for concurrent use, so independent steps may run
// in parallel.
type Saga struct {
	store      idem.Store
	id         string
	cfg        *config
	compensate bool // replay completed steps only, then compensate

	mu      sync.Mutex
	names   map[string]bool
	undo    []undo // in completion order
	stopped bool
}

// undo is the compensation of a completed step, bound to its result.
type undo struct {
	name string
	fn   func(context.Context) error
}

// ID returns the saga's ID.
func (sg *Saga) ID() string { return sg.id }

// Compensating reports whether this run is compensating an aborted saga:
// Step then replays the steps that completed and runs no action, and the
// body should do nothing but call its steps.
func (sg *Saga) Compensating() bool { return sg.compensate }

// The keys of a saga, all under the options' key prefix.
func sagaKey(id string) string          { return idem.JoinKey(id, "saga") }
func abortKey(id string) string         { return idem.JoinKey(id, "abort") }
func stepKey(id, name string) string    { return idem.JoinKey(id, "step", name) }
func compensateKey(id, n string) string { return idem.JoinKey(id, "compensate", n) }

// Run runs body, a sequence of Steps, as the saga id, so that the saga can
// be run again after any failure and neither repeats completed work nor
// undoes anything twice:
//
//   - Each Step runs its action at most once per saga (the key of the saga
//     and the step name); a re-run gets the stored result of a completed
//     step without running it.
//   - If body returns nil, the saga is complete; running it again returns
//     nil at the cost of one write.
//   - If body returns a permanent error (see idem.Permanent; a step whose
//     action returned one gives it back), the saga is aborted: the decision
//     is stored, then the compensations of the completed steps run in
//     reverse completion order, each at most once (its own key), and Run
//     returns an *AbortedError (ErrAborted) wrapping the cause. Running it
//     again returns the same error and runs nothing.
//   - Any other error from body (a step's transient failure) leaves the
//     saga open: Run returns it and a re-run resumes at the first step that
//     did not complete.
//   - If a compensation fails, Run returns a *CompensationError and a re-run
//     resumes the compensation: it calls body again, during which Step only
//     replays the completed steps (Saga.Compensating is true), then runs the
//     compensations not yet done.
//   - One run at a time: the saga itself is claimed with a lease, extended
//     while it runs. A concurrent Run gets an *idem.InProgressError (or
//     waits, with WithWait). After a crash, the next run takes over once the
//     lease has passed; a step whose action was cut short runs again (its
//     lease's Attempt is above 1, see idem.LeaseFrom).
//
// body must put every side effect inside a Step, since it runs again on
// each re-run, and must stop at the first error a Step returns. Actions and
// compensations should pass their key on to the services they call
// (idem.LeaseFrom(ctx).Key()), so that the one run cut short by a crash
// does not apply twice there either. Step results are stored as JSON.
//
// A completed saga costs 2 writes plus 2 per step and one read (of the
// abort decision); a re-run of a finished saga costs one write.
func Run(ctx context.Context, s idem.Store, id string, body func(ctx context.Context, sg *Saga) error, opts ...Option) error {
	cfg, err := newConfig(id, opts)
	if err != nil {
		return err
	}
	if s == nil {
		return invalid(id, "store is nil")
	}
	_, err = idem.Do(ctx, s, sagaKey(id), func(ctx context.Context) (struct{}, error) {
		return struct{}{}, run(ctx, s, id, cfg, body)
	}, cfg.idemOptions("saga.Run", cfg.wait)...)
	var (
		perm *idem.PermanentError
		h    hidden
	)
	switch {
	case errors.As(err, &perm) && perm.Code == codeAborted:
		return &AbortedError{ID: id, Cause: perm.Err, Replayed: perm.Replayed}
	case errors.As(err, &h):
		return h.err
	}
	return err
}

// hidden carries an error through idem.Do without Do seeing a
// PermanentError inside it (which it would store as the saga's outcome).
type hidden struct{ err error }

// Error implements error.
func (h hidden) Error() string { return h.err.Error() }

// run is one run of the saga under its claim: body, then, if the saga is
// or becomes aborted, the compensations.
func run(ctx context.Context, s idem.Store, id string, cfg *config, body func(context.Context, *Saga) error) error {
	sg := &Saga{store: s, id: id, cfg: cfg, names: map[string]bool{}}
	full := cfg.prefix + abortKey(id)
	cause, aborted, err := readAbort(ctx, s, full)
	if err != nil {
		return err
	}
	sg.compensate = aborted
	berr := body(ctx, sg)
	var perm *idem.PermanentError
	isPerm := errors.As(berr, &perm)
	sg.mu.Lock()
	stopped, undos := sg.stopped, sg.undo
	sg.mu.Unlock()
	switch {
	case !aborted && berr == nil:
		return nil // complete
	case !aborted && !isPerm:
		return hidden{berr} // open: a re-run resumes
	case !aborted:
		cause = perm.Err
		if _, err := s.PutIfAbsent(ctx, full, encodeAbort(cause), cfg.retention); err != nil && !errors.Is(err, idem.ErrConflict) {
			return hidden{fmt.Errorf("saga %q: storing the abort: %w", id, err)}
		}
	case berr != nil && !stopped && !isPerm:
		// A step could not be replayed: compensating now could skip it, or
		// undo it out of order. Retry later.
		return hidden{fmt.Errorf("saga %q: replaying the steps to compensate: %w", id, berr)}
	}
	return compensate(ctx, s, id, cfg, undos, cause)
}

// compensate runs the compensations of the completed steps, in reverse
// completion order, each at most once, and returns the saga's aborted
// outcome.
func compensate(ctx context.Context, s idem.Store, id string, cfg *config, undos []undo, cause error) error {
	opts := cfg.idemOptions("saga.Compensate", cfg.stepWait())
	for i := len(undos) - 1; i >= 0; i-- {
		u := undos[i]
		if _, err := idem.Once(ctx, s, compensateKey(id, u.name), u.fn, opts...); err != nil {
			return hidden{&CompensationError{ID: id, Step: u.name, Err: err}}
		}
	}
	return &idem.PermanentError{Code: codeAborted, Err: cause}
}

// abortRecord is the stored abort decision: the message of its cause.
type abortRecord struct {
	Cause string `json:"cause"`
}

// encodeAbort encodes the abort decision for cause.
func encodeAbort(cause error) []byte {
	b, _ := json.Marshal(abortRecord{Cause: cause.Error()})
	return b
}

// readAbort reads the saga's abort decision, if any.
func readAbort(ctx context.Context, s idem.Store, key string) (cause error, aborted bool, err error) {
	it, err := s.Get(ctx, key)
	if errors.Is(err, idem.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	var a abortRecord
	if err := json.Unmarshal(it.Value, &a); err != nil {
		return nil, false, fmt.Errorf("saga: abort record %q: %w: %w", key, idem.ErrCorrupt, err)
	}
	return errors.New(a.Cause), true, nil
}

// Step runs action as the step name of sg, at most once per saga, and
// returns its result. A re-run of the saga gets the stored result of a
// completed step without running action again. compensate (nil: nothing
// to undo) is remembered with the result and runs, at most once, if the
// saga is aborted.
//
// action's errors are as for idem.Do: a permanent error (idem.Permanent)
// is the step's final outcome and aborts the saga once body returns it;
// any other error releases the step so a re-run runs it again. While the
// saga is being compensated (Saga.Compensating), Step runs no action: it
// returns the stored result of a completed step, and an error for the
// first step that did not complete, fencing that step off so it can never
// run.
//
// Step names must be unique within the saga.
func Step[T any](ctx context.Context, sg *Saga, name string, action func(ctx context.Context) (T, error), compensate func(ctx context.Context, result T) error) (T, error) {
	var zero T
	if err := sg.take(name); err != nil {
		return zero, err
	}
	key := stepKey(sg.id, name)
	var (
		v   T
		err error
	)
	if sg.compensate {
		v, err = replayStep[T](ctx, sg, key)
	} else {
		v, err = forwardStep(ctx, sg, key, action)
	}
	if err != nil {
		return v, err
	}
	if compensate != nil {
		sg.mu.Lock()
		sg.undo = append(sg.undo, undo{name: name, fn: func(ctx context.Context) error { return compensate(ctx, v) }})
		sg.mu.Unlock()
	}
	return v, nil
}

// take registers the step name, refusing an empty or repeated name and any
// step after the compensation stopped the body.
func (sg *Saga) take(name string) error {
	sg.mu.Lock()
	dup := sg.names[name]
	sg.names[name] = true
	stopped := sg.stopped
	sg.mu.Unlock()
	switch {
	case name == "":
		return invalid(sg.id, "step name is empty")
	case dup:
		return invalid(sg.id, fmt.Sprintf("step %q is taken twice", name))
	case stopped:
		return errStopped
	}
	return nil
}

// forwardStep is Step while the saga runs forward: action, at most once
// per saga, under the step's claim (idem.Do).
func forwardStep[T any](ctx context.Context, sg *Saga, key string, action func(context.Context) (T, error)) (T, error) {
	return idem.Do(ctx, sg.store, key, action, sg.cfg.idemOptions("saga.Step", sg.cfg.stepWait())...)
}

// replayStep is Step while the saga is compensated: the stored result of a
// completed step, or, for a step that never completed (or was cut short by
// a crash), a fence that stops it from ever running, and errStopped.
func replayStep[T any](ctx context.Context, sg *Saga, key string) (T, error) {
	var zero T
	lease, result, err := idem.Claim(ctx, sg.store, key, sg.cfg.idemOptions("saga.Step", sg.cfg.stepWait())...)
	var perm *idem.PermanentError
	switch {
	case errors.As(err, &perm) && perm.Replayed:
		sg.stop() // failed permanently: nothing to undo, nothing after it ran
		return zero, errStopped
	case err != nil:
		return zero, err
	case lease != nil:
		if err := lease.CompleteError(ctx, codeAborted, "the saga was aborted before this step completed"); err != nil {
			return zero, err
		}
		sg.stop()
		return zero, errStopped
	}
	var v T
	if err := json.Unmarshal(result, &v); err != nil {
		return zero, fmt.Errorf("saga: step %q: %w: %w", sg.cfg.prefix+key, idem.ErrCorrupt, err)
	}
	return v, nil
}

// stop makes every later Step of this run return errStopped.
func (sg *Saga) stop() {
	sg.mu.Lock()
	sg.stopped = true
	sg.mu.Unlock()
}
