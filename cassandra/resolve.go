package cassandra

import (
	"context"
	"fmt"
	"time"
)

// resolve settles a write whose outcome is unknown: cause, the driver's
// error, may have come after the statement reached a coordinator (a write
// timeout, CAS_WRITE_UNKNOWN, a lost response).
//
// A read at the store's serial consistency runs a Paxos round on the key: it
// completes any proposal of w that a replica accepted, or makes sure it can
// never complete. What it sees then decides:
//
//   - w's own write (its write_id, random per call): success.
//   - a competitor's write in w's slot: w lost; a conflict (for Upsert,
//     applied == false) carrying that item.
//   - the row exactly as w's condition requires, without w's write: w did
//     not apply, so w is sent once more (only while ctx is live). The retry
//     also settles a request still in flight after a client-side timeout:
//     whichever of the two applies first, the other finds its condition
//     false, and a retry that finds w's own write there succeeds.
//   - anything else, a failed read, or a second unknown outcome: an
//     *idem.UnknownOutcomeError with the key.
//
// The reads run detached from ctx's cancellation, bounded by the resolve
// timeout: the caller may have given up, but the question must be answered.
func (s *Store) resolve(ctx context.Context, w *write, cause error) (result, error) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.resolveTimeout)
	defer cancel()
	for retried := false; ; retried = true {
		cur, err := s.serialRead(rctx, w.key)
		if err != nil {
			return result{}, w.unknown(fmt.Errorf("%w (the %v read to settle it failed: %v)", cause, s.cfg.serial, err))
		}
		now := s.cfg.now()
		switch judge(w, cur, now) {
		case mine:
			if w.kind == compareAndDelete {
				return result{applied: true}, nil
			}
			return result{applied: true, item: itemOf(w.key, cur)}, nil
		case lost:
			return result{exists: true, item: itemOf(w.key, cur)}, nil
		case unsettled:
			return result{}, w.unknown(cause)
		}
		// notApplied: send w once more, if the caller still wants it.
		if retried || ctx.Err() != nil {
			return result{}, w.unknown(cause)
		}
		applied, cur, err := s.attempt(ctx, w)
		if err == nil {
			if !applied && judge(w, cur, s.cfg.now()) == mine {
				// The first attempt landed after the read: the retry
				// found w's own write in its way.
				return result{applied: true, item: itemOf(w.key, cur)}, nil
			}
			return s.settled(w, applied, cur), nil
		}
		if !s.uncertain(err) {
			return result{}, w.fail(err)
		}
		cause = err
	}
}

// serialRead reads key at the store's serial consistency, trying three
// times with a short backoff: a SERIAL read can time out under contention,
// and it is idempotent.
func (s *Store) serialRead(ctx context.Context, key string) (record, error) {
	var err error
	for i := range 3 {
		if i > 0 {
			t := time.NewTimer(time.Duration(i*i) * 50 * time.Millisecond)
			select {
			case <-ctx.Done():
				t.Stop()
				return record{}, err
			case <-t.C:
			}
		}
		var cur record
		if cur, err = s.exec.read(ctx, s.cfg.serial, s.q.get, key); err == nil {
			return cur, nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	return record{}, err
}
