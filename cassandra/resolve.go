package cassandra

import (
	"context"
	"fmt"
	"time"
)

// resolve settles a write whose outcome is unknown: cause, the driver's
// error, may have come after the statement reached a coordinator (a write
// timeout, CAS_WRITE_UNKNOWN, a client timeout, a closed connection).
//
// The Store settles by proof only, and never sends w again: between the
// first attempt and a resend the key can be deleted and re-created, so that
// w's condition holds once more, and the resend would apply w a second time
// (or delete a newcomer's row). Instead one read at the store's serial
// consistency, which runs a Paxos round on the key and so completes any
// proposal of w that a replica accepted, decides:
//
//   - The row carries w's own write_id (random per call, so no other write
//     has it): w applied, and the call succeeds, even if the item has
//     expired since.
//   - Anything else: an error matching idem.ErrUnknownOutcome, naming the key. A row
//     without w's write_id proves nothing: w may have applied and been
//     overwritten or deleted since, and after a client-side timeout the
//     coordinator may still be working on w, which can then apply after
//     the read.
//
// A CompareAndDelete leaves nothing to recognise, so its unknown outcome is
// reported at once, without a read. The read runs detached from ctx's
// cancellation, bounded by the resolve timeout: the caller may have given
// up, but the question must be answered.
func (s *Store) resolve(ctx context.Context, w *write, cause error) (result, error) {
	if w.kind == compareAndDelete {
		return result{}, w.unknown(cause)
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.resolveTimeout)
	defer cancel()
	cur, err := s.serialRead(rctx, w.key)
	if err != nil {
		return result{}, w.unknown(fmt.Errorf("%w (the %v read to settle it failed: %v)", cause, s.cfg.serial, err))
	}
	if !ours(w, cur) {
		return result{}, w.unknown(fmt.Errorf("%w (a %v read does not show the write)", cause, s.cfg.serial))
	}
	return result{applied: true, item: itemOf(w.key, cur)}, nil
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
