package idem

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// Do runs fn at most once per key and gives every caller the same answer.
//
//   - The first call claims key, runs fn, stores its result (encoded with
//     encoding/json) for the retention (WithRetention) and returns it: 2
//     writes.
//   - A duplicate gets the stored result without running fn: 1 write, whose
//     conflict carries the record.
//   - A duplicate while the first is still running gets *InProgressError
//     (ErrInProgress), or with WithWait waits for its result.
//   - The same key with a different WithFingerprint gets ErrMismatch.
//   - If fn returns an error, the claim is released so a retry runs fn
//     again, and Do returns that error. Wrap it with Permanent to store it
//     instead: duplicates then get a *PermanentError with its message.
//   - If fn panics, the claim is released and the panic goes on, with fn's
//     frames still on its stack. If fn calls runtime.Goexit, the claim
//     stays in progress as after a crash, for a takeover once the lease
//     passes.
//   - While fn runs, a heartbeat extends the lease, for as long as fn runs,
//     even after ctx is cancelled (fn's context is cancelled with it), so
//     only an owner that died loses its key. If the lease is lost anyway
//     (the store was unreachable for a whole lease), fn's context is
//     cancelled with cause ErrLeaseLost. If fn still returns a result, Do
//     tries to store it, fenced by the claim's version: it is stored unless
//     another caller did take the key over, and then Do returns fn's result
//     with an error matching ErrLeaseLost.
//
// If fn succeeded but its result could not be stored, Do returns fn's
// result together with the error, so the caller can tell "done but not
// recorded" from "not done". When the result cannot be encoded or is too
// large for the store (the store refuses it with ErrInvalid), Do stores a
// permanent error with CodeResultNotStored instead, so fn never runs again
// for the key; see the backend's documentation for its largest result.
func Do[T any](ctx context.Context, s Store, key string, fn func(context.Context) (T, error), opts ...Option) (T, error) {
	v, _, err := do(ctx, "Do", s, key, fn, opts)
	return v, err
}

// do is Do, reporting whether the answer was replayed from the store; op
// names the entry point in events.
func do[T any](ctx context.Context, op string, s Store, key string, fn func(context.Context) (T, error), opts []Option) (v T, replayed bool, err error) {
	var zero T
	cfg, key, err := newConfig(key, opts)
	if err != nil {
		return zero, false, err
	}
	cfg.op = op
	if err := checkStore(s, key); err != nil {
		return zero, false, err
	}
	lease, rec, err := claim(ctx, s, key, cfg)
	switch {
	case err != nil:
		return zero, false, err
	case rec != nil:
		v, err := replay[T](key, rec)
		return v, true, err
	}
	v, err = execute(ctx, lease, cfg, fn)
	return v, false, finish(ctx, lease, cfg, key, v, err)
}

// finish stores the answer of fn, which returned v and ferr, and returns
// Do's error.
func finish[T any](ctx context.Context, lease *Lease, cfg *config, key string, v T, ferr error) error {
	cctx := detach(ctx)
	defer cctx.end()
	if ferr != nil {
		return settleError(cctx, lease, key, ferr)
	}
	data, err := encode(cctx, lease, key, v)
	if err != nil {
		return notStored(cctx, lease, key, fmt.Errorf("idem: encoding the result for %q: %w", key, err))
	}
	if err := lease.complete(cctx, data); err != nil {
		err = fmt.Errorf("idem: storing the result for %q: %w", key, err)
		switch {
		case errors.Is(err, ErrInvalid):
			return notStored(cctx, lease, key, err)
		case cfg.commit != nil && !errors.Is(err, ErrLeaseLost) && !errors.Is(err, ErrUnknownOutcome):
			// The commit wrote nothing (WithCommit): as if fn had failed.
			return settleError(cctx, lease, key, err)
		}
		return err
	}
	return nil
}

// execute runs fn with a context that carries the lease and is cancelled
// if the lease is lost, while a heartbeat extends the lease. The heartbeat
// has stopped when execute returns. If fn panics, execute releases the
// claim and panics again from inside the deferred call, before anything
// unwinds, so the panic keeps fn's frames on its stack. If fn ends its
// goroutine (runtime.Goexit), the claim stays, as if the process had died,
// for a takeover once the lease passes.
func execute[T any](ctx context.Context, lease *Lease, cfg *config, fn func(context.Context) (T, error)) (v T, err error) {
	var hb *heartbeat
	var fctx context.Context
	if every := cfg.heartbeatEvery(); every > 0 {
		hb = lease.keepAlive(ctx, every)
		fctx = hb.ctx // it carries the lease
	} else {
		fctx = context.WithValue(ctx, leaseKey{}, lease)
	}
	defer hb.stop()
	returned := false
	defer func() {
		if returned {
			return
		}
		if r := recover(); r != nil {
			hb.stop()
			cctx := detach(ctx)
			_ = lease.release(cctx, fmt.Errorf("idem: fn panicked: %v", r)) // best effort: the panic matters more
			cctx.end()
			panic(r)
		}
	}()
	v, err = fn(fctx)
	returned = true
	// The heartbeat may only presume the lease lost (the store was out of
	// reach for a whole lease): a result is still stored, fenced by the
	// version, and that write tells whether another caller took over.
	if err == nil {
		return v, nil // the cause is looked up only for an error to explain
	}
	if cause := context.Cause(fctx); errors.Is(cause, ErrLeaseLost) && !errors.Is(err, ErrLeaseLost) {
		err = fmt.Errorf("%w (%w)", err, cause)
	}
	return v, err
}

// settleError finishes a claim whose fn failed: a permanent error is
// stored, any other releases the key.
func settleError(ctx context.Context, lease *Lease, key string, ferr error) error {
	var perm *PermanentError
	if errors.As(ferr, &perm) {
		if err := lease.completeError(ctx, perm.Code, perm.message(), perm); err != nil {
			return errors.Join(ferr, fmt.Errorf("idem: storing the permanent error for %q: %w", key, err))
		}
		return ferr
	}
	if err := lease.release(ctx, ferr); err != nil {
		return errors.Join(ferr, fmt.Errorf("idem: releasing %q: %w", key, err))
	}
	return ferr
}

// notStored stores a permanent CodeResultNotStored error for a key whose
// fn succeeded with a result that cannot be stored, and returns cause
// with what became of the key.
func notStored(ctx context.Context, lease *Lease, key string, cause error) error {
	if err := lease.completeError(ctx, CodeResultNotStored, cause.Error(), cause); err != nil {
		return errors.Join(cause, fmt.Errorf("idem: storing that the result of %q could not be stored: %w", key, err))
	}
	return fmt.Errorf("%w (stored as a permanent error, code %s: fn will not run again for this key)", cause, CodeResultNotStored)
}

// replay decodes the answer stored in rec into a T of the caller's own:
// nothing of it is shared with another caller or with a Cache.
func replay[T any](key string, rec *record) (T, error) {
	if rec.Error != nil {
		var zero T
		return zero, replayError(rec.Error)
	}
	var v T // stays on the stack: decodeFast keeps no pointer to it
	if decodeFast(rec.Result, &v) {
		return v, nil
	}
	return decodeJSON[T](key, rec.Result)
}

// decodeJSON decodes a stored result with encoding/json.
func decodeJSON[T any](key string, data []byte) (T, error) {
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		return v, corrupt(key, fmt.Errorf("decoding the stored result: %w", err))
	}
	return v, nil
}

// encode encodes fn's result as JSON. A MarshalJSON method that panics
// gets the key a permanent CodeResultNotStored answer before the panic goes
// on, so fn, which has run, never runs again for the key.
func encode[T any](ctx context.Context, lease *Lease, key string, v T) (data []byte, err error) {
	done := false
	defer func() {
		if done {
			return
		}
		if r := recover(); r != nil {
			_ = notStored(ctx, lease, key, fmt.Errorf("idem: encoding the result for %q: encoding panicked: %v", key, r))
			panic(r)
		}
	}()
	data, err = json.Marshal(v)
	done = true
	return data, err
}

// checkStore rejects a nil Store before anything is attempted.
func checkStore(s Store, key string) error {
	if s == nil {
		return invalid(key, "store is nil")
	}
	return nil
}
