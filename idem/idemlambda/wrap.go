package idemlambda

import (
	"context"
	"fmt"
	"reflect"

	"github.com/idemkit/idemkit/idem"
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
//   - With WithValidation, the same key with a different payload fails
//     with *idem.MismatchError (idem.ErrMismatch).
//   - An error from fn releases the key, so a retry runs fn again, unless it
//     is permanent (idem.Permanent): then it is stored and returned to
//     every duplicate.
//   - The claim's lease runs until the invocation's deadline (WithLease).
//     If the invocation times out or crashes, the next retry takes the key
//     over and runs fn again.
//
// An event without a key fails with ErrNoKey, or runs fn unprotected with
// WithRequired(false). Options: WithTTL, WithLease, WithWait,
// WithKeyPrefix, WithRequired, WithValidation, WithOnReplay. Wrap rejects
// a nil store, key function or handler and invalid options with an error
// matching idem.ErrInvalid.
func Wrap[In, Out any](s idem.Store, key func(event In) (string, error), fn func(ctx context.Context, event In) (Out, error), opts ...Option) (func(context.Context, In) (Out, error), error) {
	if nilStore(s) || key == nil || fn == nil {
		return nil, invalid("Wrap needs a store, a key function and a handler")
	}
	cfg, err := newConfig(opts, reflect.TypeFor[In]())
	if err != nil {
		return nil, err
	}
	required := cfg.isRequired(true)
	return func(ctx context.Context, event In) (Out, error) {
		var zero Out
		k, err := key(event)
		if err != nil {
			return zero, fmt.Errorf("idemlambda: reading the key: %w", err)
		}
		if k == "" {
			if required {
				return zero, ErrNoKey
			}
			return fn(ctx, event)
		}
		fp, err := cfg.fingerprint(event)
		if err != nil {
			return zero, err
		}
		var replayed bool
		out, err := idem.Do(ctx, s, k, func(ctx context.Context) (Out, error) {
			return fn(ctx, event)
		}, cfg.idemOptions(ctx, fp, &replayed)...)
		if replayed {
			cfg.replayed(ctx, k)
		}
		return out, err
	}, nil
}
