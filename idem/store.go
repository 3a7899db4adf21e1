package idem

import (
	"context"
	"time"
)

// Item is one record in a Store: a key, an opaque value, a version and an
// optional expiry.
type Item struct {
	// Key identifies the item. It is never empty.
	Key string
	// Value is the caller's payload. It may be empty; stores return an empty
	// value as a zero-length slice (nil or not).
	Value []byte
	// Version is a fresh version after PutIfAbsent (see kernel.FreshVersion: above
	// every version of an earlier incarnation of the key that ended before
	// the call), goes up by one
	// on each CompareAndSwap, and is the caller's value after an applied
	// Upsert.
	Version int64
	// ExpiresAt is when the item stops existing. The zero time means never.
	// Stores may round it up to their own precision (DynamoDB and Cassandra
	// keep whole seconds).
	ExpiresAt time.Time
}

// Store is the kernel every backend implements: five conditional writes on a
// single key. Everything else in idemkit (claims, Do, Update, Once, counters)
// is built on these five operations and works unchanged on every Store.
//
// The contract, checked by idemtest.Run:
//
//   - An expired item is absent for every operation, whether or not the
//     database has physically deleted it yet. A ttl <= 0 means no expiry.
//   - A failed condition returns an error e with errors.Is(e, ErrConflict);
//     errors.As(e, &*ConflictError) gives the current item (or says that
//     the key is absent), taken from the write's own response: a conflict
//     costs one round trip, never a second read.
//   - Upsert is monotonic: it applies iff the key is absent or its stored
//     version is lower than version; otherwise it returns the current item,
//     applied == false and a nil error.
//   - Own writes are recognised: when a write's response is lost and the
//     retry finds its condition false because of the first attempt, the call
//     succeeds. Backends recognise a write by an identifier unique to the
//     call, stored with the item (never by comparing values: two callers may
//     write identical bytes). A deletion leaves nothing to recognise, so a
//     CompareAndDelete whose retry finds the key gone reports
//     ErrUnknownOutcome rather than letting two callers win one version.
//   - Versions never come back: PutIfAbsent starts a key at kernel.FreshVersion,
//     taken when the call starts, above every version of an earlier
//     incarnation of the key that ended (was deleted or expired) before
//     the call, and CompareAndSwap adds exactly one. A caller
//     holding a version of one incarnation can therefore never act on a
//     later one. The bound this rests on is kernel.FreshVersion's.
//   - Settling is proof, not inference. A write that may have been applied
//     (a lost response, a timeout, a cut connection) is reported as applied
//     only when the store finds its own per-call identifier, as not
//     applied only when the store proves it (a refusal the database
//     answered), and otherwise with an error matching ErrUnknownOutcome.
//     A store never settles by sending the write again after an attempt
//     that may have been applied: between the two, the key can be deleted
//     and re-created, and the resend would apply a second time or to an
//     item it never targeted. The five operations are linearizable under
//     lost responses, with an unknown outcome counted as "may or may not
//     have happened".
//   - Bad input (an empty key, a negative version, a key or value beyond the
//     backend's limits) is rejected with an error matching ErrInvalid before
//     anything is sent. No operation half-applies.
//
// Implementations must be safe for concurrent use.
type Store interface {
	// Get returns the item stored at key, or ErrNotFound.
	Get(ctx context.Context, key string) (Item, error)

	// PutIfAbsent stores value at key with a fresh version (kernel.FreshVersion)
	// if the key is absent (or expired). It returns the stored item, or a
	// *ConflictError carrying the current item if the key exists.
	PutIfAbsent(ctx context.Context, key string, value []byte, ttl time.Duration) (Item, error)

	// CompareAndSwap replaces the item at key with value and version+1 if
	// its stored version equals version (which must be at least 1). The new
	// item expires ttl from now (never, if ttl <= 0). On a mismatch, or if
	// the key is absent, it returns a *ConflictError.
	CompareAndSwap(ctx context.Context, key string, version int64, value []byte, ttl time.Duration) (Item, error)

	// CompareAndDelete deletes the item at key if its stored version equals
	// version (which must be at least 1). On a mismatch, or if the key is
	// absent, it returns a *ConflictError.
	CompareAndDelete(ctx context.Context, key string, version int64) error

	// Upsert stores value at key with the caller's version (at least 0) if
	// the key is absent or its stored version is lower, and returns the new
	// item and applied == true. Otherwise it changes nothing and returns the
	// current item, applied == false and a nil error.
	Upsert(ctx context.Context, key string, value []byte, version int64, ttl time.Duration) (item Item, applied bool, err error)
}
