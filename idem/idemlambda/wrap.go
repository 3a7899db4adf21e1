package idemlambda

import (
	"context"
	"errors"
	"fmt"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/internal/keyproto"
)

// Wrap returns a handler that runs fn at most once per key, for
// lambda.Start: key names the event (an order ID, a client token; "" if it
// has none), and every invocation with the same key gets the result of the
// first, stored as JSON:
//
//   - The first invocation claims the key, runs fn and stores its result.
//   - A duplicate (Lambda's own retries of an asynchronous invocation, an
//     EventBridge redelivery, a client's retry) gets the stored result; fn
//     does not run. WithOnReplay reports it.
//   - A duplicate while the first still runs fails with
//     *idem.InProgressError (idem.ErrInProgress), so Lambda or the caller
//     retries later; or it waits, with WithWait.
//   - An error from fn releases the key, so a retry runs fn again, unless it
//     is permanent (idem.Permanent): then it is stored and returned to
//     every duplicate.
//   - The claim's lease runs until the invocation's deadline (WithLease).
//     If the invocation times out or crashes, the next retry takes the key
//     over and runs fn again.
//
// An event without a key fails with ErrNoKey, or runs fn unprotected with
// WithRequired(false). Wrap rejects a nil store, key function or handler
// and invalid options with an error matching idem.ErrInvalid. To reject a
// key reused with a different payload, use WrapValidated.
func Wrap[In, Out any](s idem.Store, key func(event In) (string, error), fn func(ctx context.Context, event In) (Out, error), opts ...Option) (func(context.Context, In) (Out, error), error) {
	return wrap(s, key, nil, fn, opts)
}

// WrapValidated is Wrap with payload validation: the part of the event
// that part returns is fingerprinted (idem.Fingerprint) and stored with the
// key, and an event with the same key and a different part fails with
// idem.ErrMismatch instead of getting the stored result. part takes the
// handler's own event type, so a validation of another type does not
// compile. Return only the fields that define the request.
func WrapValidated[In, Out any](s idem.Store, key func(event In) (string, error), part func(event In) (any, error), fn func(ctx context.Context, event In) (Out, error), opts ...Option) (func(context.Context, In) (Out, error), error) {
	if part == nil {
		return nil, invalid("WrapValidated needs a validation function")
	}
	return wrap(s, key, part, fn, opts)
}

func wrap[In, Out any](s idem.Store, key func(In) (string, error), part func(In) (any, error), fn func(context.Context, In) (Out, error), opts []Option) (func(context.Context, In) (Out, error), error) {
	if keyproto.NilStore(s) || key == nil || fn == nil {
		return nil, invalid("Wrap needs a store, a key function and a handler")
	}
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	cfg.named("idemlambda.Wrap")
	v := validation[In]{part}
	required := cfg.isRequired(true)
	return func(ctx context.Context, event In) (Out, error) {
		var zero Out
		k, err := key(event)
		switch {
		case err != nil:
			return zero, fmt.Errorf("idemlambda: reading the key: %w", err)
		case k == "" && required:
			return zero, ErrNoKey
		case k == "":
			return fn(ctx, event)
		}
		fp, err := v.fingerprint(event)
		if err != nil {
			return zero, err
		}
		ran := false
		out, err := idem.Do(ctx, s, k, func(ctx context.Context) (Out, error) {
			ran = true
			return fn(ctx, event)
		}, cfg.idemOptions(ctx, fp)...)
		if replayed(ran, err) {
			cfg.replayed(ctx, k)
		}
		return out, err
	}, nil
}

// replayed reports whether a call of idem.Do whose fn ran (or not), with
// err, returned a stored answer.
func replayed(ran bool, err error) bool {
	if err == nil {
		return !ran
	}
	perm, ok := errors.AsType[*idem.PermanentError](err)
	return ok && perm.Replayed
}
