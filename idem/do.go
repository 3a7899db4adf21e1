package idem

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// cleanupTimeout bounds the writes Do makes after fn returns (complete,
// fail, release). They run detached from the caller's context, so a caller
// that gives up does not leave a claim behind.
const cleanupTimeout = 10 * time.Second

// Do runs fn at most once per key and gives every caller the same answer.
//
//   - The first call claims key, runs fn, stores its result (encoded by the
//     Codec, JSON by default) for the TTL and returns it: 2 writes.
//   - A duplicate gets the stored result without running fn: 1 write, whose
//     conflict carries the record. WithReplayed reports which case it was.
//   - A duplicate while the first is still running gets *InProgressError
//     (ErrInProgress), or with WithWait waits for its result.
//   - The same key with a different WithFingerprint gets ErrMismatch.
//   - If fn returns an error, the claim is released so a retry runs fn
//     again, and Do returns that error. Wrap it with Permanent to store it
//     instead: duplicates then get a *PermanentError with its message.
//   - If fn panics, the claim is released and the panic continues.
//   - While fn runs, a heartbeat extends the lease, so only an owner that
//     died loses its key. If the lease is lost anyway (the store was
//     unreachable for a whole lease and another caller took over), fn's
//     context is cancelled with cause ErrLeaseLost and Do returns an error
//     matching ErrLeaseLost.
//
// If fn succeeded but its result could not be stored, Do returns fn's
// result together with the error, so the caller can tell "done but not
// recorded" from "not done".
func Do[T any](ctx context.Context, s Store, key string, fn func(context.Context) (T, error), opts ...Option) (T, error) {
	var zero T
	cfg, key, err := newConfig(key, opts)
	if err != nil {
		return zero, err
	}
	lease, rec, err := claim(ctx, s, key, cfg)
	if err != nil {
		return zero, err
	}
	if rec != nil {
		return replay[T](key, cfg, rec)
	}
	v, panicked, ferr := run(ctx, lease, cfg, fn)

	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if panicked != nil {
		_ = lease.Release(cctx) // best effort: the panic matters more
		panic(panicked)
	}
	if ferr != nil {
		var perm *PermanentError
		if errors.As(ferr, &perm) {
			if err := lease.Fail(cctx, perm.Code, perm.Err.Error()); err != nil {
				return zero, errors.Join(ferr, fmt.Errorf("idem: storing the permanent error for %q: %w", key, err))
			}
			return zero, ferr
		}
		if err := lease.Release(cctx); err != nil {
			return zero, errors.Join(ferr, fmt.Errorf("idem: releasing %q: %w", key, err))
		}
		return zero, ferr
	}
	data, err := cfg.codec.Marshal(v)
	if err != nil {
		_ = lease.Release(cctx)
		return zero, fmt.Errorf("idem: encoding the result for %q: %w", key, err)
	}
	if err := lease.Complete(cctx, data); err != nil {
		return v, fmt.Errorf("idem: storing the result for %q: %w", key, err)
	}
	return v, nil
}

// run calls fn with a context that is cancelled if the lease is lost, while
// a heartbeat extends the lease. The heartbeat has stopped when run returns.
func run[T any](ctx context.Context, lease *Lease, cfg *config, fn func(context.Context) (T, error)) (v T, panicked any, err error) {
	fctx, stop := context.WithValue(ctx, leaseKey{}, lease), func() {}
	if every := cfg.heartbeatEvery(); every > 0 {
		fctx, stop = lease.KeepAlive(fctx, every)
	}
	defer stop()
	defer func() {
		if r := recover(); r != nil {
			panicked = r
		}
	}()
	v, err = fn(fctx)
	if cause := context.Cause(fctx); errors.Is(cause, ErrLeaseLost) && !errors.Is(err, ErrLeaseLost) {
		if err == nil {
			err = cause
		} else {
			err = fmt.Errorf("%w (%w)", err, cause)
		}
	}
	return v, nil, err
}

// KeepAlive extends the lease by its claim's lease duration (WithLease)
// every interval (a third of the lease if every <= 0) until stop is called,
// and returns a context derived from ctx that is cancelled, with a cause
// matching ErrLeaseLost, once the lease is lost: taken over, or not
// extended before it passed. Do uses it while fn runs; adapters that hold a
// Lease from Claim use it while their work runs. stop ends the heartbeat and
// waits for it; it may be called more than once. The heartbeat's writes run
// detached from ctx's cancellation, each bounded by the interval.
func (l *Lease) KeepAlive(ctx context.Context, every time.Duration) (_ context.Context, stop func()) {
	if every <= 0 {
		every = l.cfg.lease / 3
	}
	kctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	quit := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-kctx.Done():
				return
			case <-t.C:
			}
			ectx, ecancel := context.WithTimeout(context.WithoutCancel(kctx), every)
			err := l.Extend(ectx, l.cfg.lease)
			ecancel()
			if errors.Is(err, ErrLeaseLost) || (err != nil && !l.cfg.now().Before(l.Until())) {
				cancel(fmt.Errorf("idem: %q: %w (extend: %v)", l.key, ErrLeaseLost, err))
				return
			}
		}
	}()
	var once sync.Once
	return kctx, func() {
		once.Do(func() {
			close(quit)
			<-done
			cancel(nil)
		})
	}
}

type leaseKey struct{}

// LeaseFrom returns the Lease that Do holds while it runs fn, from fn's
// context. fn uses it to learn whether it is a takeover (Lease.Takeover: a
// previous owner died mid-work and may have done part of it) and which
// attempt it is.
func LeaseFrom(ctx context.Context) (*Lease, bool) {
	l, ok := ctx.Value(leaseKey{}).(*Lease)
	return l, ok
}

func replay[T any](key string, cfg *config, rec *Record) (T, error) {
	var v T
	if rec.Error != nil {
		return v, &PermanentError{Err: errors.New(rec.Error.Message), Code: rec.Error.Code, Replayed: true}
	}
	if err := cfg.codec.Unmarshal(rec.Result, &v); err != nil {
		return v, &CorruptError{Key: key, Err: fmt.Errorf("decoding the stored result: %w", err)}
	}
	return v, nil
}
