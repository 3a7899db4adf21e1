// Package idem makes retries safe: effectively-once execution on top of any
// store that offers five conditional writes on one key (the Store
// interface). Backends live in their own packages: memstore (in memory),
// dynamo (DynamoDB conditional writes) and cassandra (Cassandra lightweight
// transactions). Every algorithm here works unchanged on each of them.
//
// # Do
//
// Do runs a function at most once per key and gives every caller the same
// answer:
//
//	charge, err := idem.Do(ctx, store, "order-42", func(ctx context.Context) (Charge, error) {
//		return payments.Charge(ctx, order)
//	}, idem.WithFingerprint(fp))
//
// A first call costs 2 writes (claim, complete); a duplicate costs 1 write,
// whose refusal carries the stored record; nothing is ever read separately.
//
// # The claim record and its lifecycle
//
// A key's value is a claim record, stored as a small binary header and then
// the result's bytes as they are (a record of the first format, JSON, is
// still read): in progress (owner token, lease deadline, request fingerprint),
// completed (the result, or a permanent error) or released (a tombstone
// left by an owner that gave up).
//
//	absent --PutIfAbsent--> in progress --CompareAndSwap--> completed --retention--> absent
//	            ^             |    ^ extend, takeover once the lease passed (CompareAndSwap)
//	            |             '--CompareAndSwap (release on error or panic)--> released
//	            '---------------------------- retention ------------------------------'
//	released --CompareAndSwap (the next claim)--> in progress
//
// Every write of a claim is a CompareAndSwap on the version its writer last
// saw, and a record is never deleted in the claim flow, so a key keeps one
// chain of versions: an owner whose lease was taken over, or whose key was
// released and claimed again, is fenced out. It can never overwrite or
// release its successor's record (ErrLeaseLost).
//
// # Guarantees, and what they rest on
//
//   - Fencing across incarnations. When a key's record does disappear
//     (expired after the retention, or deleted by hand), the next claim
//     starts it at kernel.FreshVersion, above every version it held before. So no
//     version, and no stale Lease, ever matches a later incarnation,
//     provided the clock of the process that starts the key again is not
//     behind the clock of the one that started it before by as much as the
//     time between the two starts. For a key that expired, that time is at
//     least the retention (WithRetention), since every record of a claim lives at
//     least that long; for a record deleted by hand, it is its age.
//     memstore needs no clock at all.
//   - Leases are judged by the claimer's clock (WithClock): a takeover
//     happens when the claimer's clock passes the owner's lease deadline,
//     written by the owner's clock. Clock skew between claimers shortens or
//     lengthens a lease by that skew; keep it well below the lease.
//   - An in-progress record is kept until its lease passes plus the
//     retention, so it never expires under a live owner. A completed or
//     released record is kept for the retention, counted from when it was
//     written.
//   - The heartbeat of Do runs for as long as fn runs, even after the
//     caller's context is cancelled; its interval must be at most half the
//     lease.
//
// # Failures
//
//   - A lost response: stores report a write as applied only when they
//     find their own per-call identifier, and otherwise ErrUnknownOutcome;
//     they never resend a write that may have applied. Claim and Lease
//     settle unknown outcomes by the owner token in every record: Claim
//     reads the key to see whose record is there, and Lease writes, fenced
//     by their version, are sent again a few times and recognise their own
//     record when it is already there.
//   - A crash while fn runs: the claim stays in progress until its lease
//     passes, then the next caller takes it over (Lease.Attempt above 1 says
//     it, since the dead owner may have done part of the work).
//   - A crash after fn, before completion: as above; the work runs again
//     after the lease. Make side effects themselves idempotent where a
//     second run would hurt (pass the key to the payment provider).
//   - fn fails: the claim is released and a retry runs fn again, unless the
//     error is Permanent, in which case it is the stored answer.
//   - fn's result cannot be stored (it cannot be encoded, or it is over
//     the store's size limit): a permanent error with CodeResultNotStored
//     is stored instead, so fn never runs again for the key.
//   - The caller gives up (context cancelled): claims, completion and
//     release run detached from the caller's context, each with its own
//     timeout; a claim that lands after the caller left is released.
//
// # Your own writes
//
// The guarantees above are about the answer. fn's writes to the caller's
// own tables are fn's, and a worker that stalled past its lease may still
// make them after another caller took over. Two tools close that:
//
//   - Lease.Fence, a number that rises with every claim of a key (a
//     takeover, a claim after a release, a delete or an expiry; the bound
//     is kernel.FreshVersion's). Write it with each row and refuse a lower one
//     (dynamo.FenceCondition, cassandra.FencedUpdate): once a later claim
//     has written a row, no earlier claim's write lands on it.
//   - WithCommit, for a backend that can commit the caller's writes with
//     the completion itself: dynamo.DoTx commits fn's writes and its result
//     in one DynamoDB transaction conditioned on the claim's version, so
//     they land once, together, or not at all.
//
// # Events
//
// WithEvents (WithUpdateEvents for Update, Counter.Events for Add, and the
// WithEvents of saga, idemhttp and idemlambda) reports what happens to a
// key, synchronously, as an event.Event: its Kind, the entry point (Op), the
// full key, the attempt, a lease deadline, how long the step took and an
// error. A call reports its claim's outcome once: claimed, takeover,
// replayed, in progress or mismatch, after waited and unknown settled when
// it met them; the owner then reports its extensions, the loss of its
// lease (once), and how the claim ended: completed, failed permanently,
// result not stored, released (with fn's error) or unknown unsettled. A
// first Do is claimed, completed; a duplicate, replayed. Update and Add
// report completed, conflict per lost race, and unknown settled or
// unsettled; Add also replayed for a duplicate operation. Events carry the
// key, which may be personal data: an adapter decides what leaves the
// process. event.Log writes them to a slog.Logger, idemotel to
// OpenTelemetry. Without a hook nothing is spent: no allocation, no call.
//
// # Other helpers
//
// Claim and Lease are the low-level claim API for adapters that store more
// than a Go value. Update is optimistic read-modify-CompareAndSwap. Once
// de-duplicates events by ID. Counter is an exactly-once counter.
// Fingerprint builds a request fingerprint from a value (any bytes serve:
// a SHA-256 of a request that is not JSON); JoinKey builds keys from parts
// (crypto/rand.Text makes a fresh one). Events are in idem/event, sagas in
// idem/saga; what only backend authors need (kernel.FreshVersion, the input
// checks and errors a Store returns) is in idem/kernel.
//
// The package uses the standard library only.
package idem
