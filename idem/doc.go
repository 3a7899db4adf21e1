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
// A key's value is a Record: in progress (owner token, lease deadline,
// request fingerprint) or completed (the result, or a permanent error).
//
//	absent --PutIfAbsent--> in progress --CompareAndSwap--> completed --TTL--> absent
//	                          |    ^ extend (CompareAndSwap)
//	                          |    '-- takeover by CompareAndSwap once the lease has passed
//	                          '--CompareAndDelete (release on error or panic)--> absent
//
// Completion, extension and release are conditioned on the version the
// owner last wrote, so an owner whose lease was taken over is fenced out:
// it can never overwrite or delete its successor's record (ErrLeaseLost).
//
// # Failures
//
//   - A lost response: the owner token in every record lets a retried write
//     recognise its own first attempt. Stores settle unknown outcomes
//     themselves where they can and report ErrUnknownOutcome where they
//     cannot; Claim then reads the key to see whose record is there.
//   - A crash while fn runs: the claim stays in progress until its lease
//     passes, then the next caller takes it over (Lease.Takeover reports
//     it, since the dead owner may have done part of the work).
//   - A crash after fn, before completion: as above; the work runs again
//     after the lease. Make side effects themselves idempotent where a
//     second run would hurt (pass the key to the payment provider).
//   - fn fails: the claim is released and a retry runs fn again, unless the
//     error is Permanent, in which case it is the stored answer.
//   - The caller gives up (context cancelled): completion and release run
//     detached from the caller's context, with their own timeout.
//
// # Other helpers
//
// Claim and Lease are the low-level claim API for adapters that store more
// than a Go value. Update is optimistic read-modify-CompareAndSwap. Once
// de-duplicates events by ID. Add is an exactly-once counter. RunSaga and
// Step give each saga step and each compensation a key of its own, so a
// re-run saga skips completed steps and compensations run at most once.
// Fingerprint, Key, NewKey and NewKeyV7 build fingerprints and keys.
//
// The package uses the standard library and github.com/google/uuid only.
package idem
