// Package idemtest is the conformance suite for idem.Store implementations,
// modelled on testing/fstest.TestFS.
//
// A backend passes when
//
//	func TestConformance(t *testing.T) {
//		idemtest.Run(t, func(t *testing.T) idem.Store { return newMyStore(t) })
//	}
//
// passes. Run checks every rule of the idem.Store contract (expiry, conflicts
// carrying the current item, monotonic Upsert, fresh versions that never
// come back across delete and expiry, bad input, concurrency,
// linearizability) and then runs idemkit's algorithms (claims, Do, Update,
// Once, Add) on the store, so a backend that passes gets the whole toolkit.
//
// Linearizable is the history checker behind "Kernel/Linearizable": random
// concurrent calls of the five operations, checked with porcupine against a
// sequential model of the contract in which a write of unknown outcome may
// or may not have happened. Run calls it without faults; call it yourself on
// a Store whose connection loses responses or times out, to check that the
// store settles uncertain writes by proof:
//
//	func TestLostResponses(t *testing.T) {
//		idemtest.Linearizable(t, newStoreOverLossyWire(t), idemtest.LinearConfig{})
//	}
//
// A violation is reported as the shortest offending part of one key's
// history, one operation a line, with porcupine's HTML visualisation written
// to a file whose path is logged.
//
// The suite uses only the Store interface, real clocks and keys unique to
// each subtest, so it works against shared servers with coarse expiry (whole
// seconds, as DynamoDB and Cassandra keep). Subtests run in parallel; tests
// of expiry sleep a little over two seconds in total.
//
// Counting wraps a Store and counts calls, for round-trip tests.
//
// Faulty wraps a Store and passes each call through a Hook set for its
// operation, for tests of failures where they happen in life: Lose sends a
// call and drops its response (the caller gets idem.ErrUnknownOutcome),
// Drop loses it before it is sent, Fail(err) fails it without sending,
// Resend sends it twice as a retrying driver does, Times(n, h) applies h to
// the first n calls only, and a hook of one's own can run a competitor
// between a write and its answer.
//
// The suite tests itself, as fstest does: its own tests run Run on
// mutant stores, each with one bug a backend author makes (a CompareAndSwap
// or CompareAndDelete that ignores the version, versions that do not go up
// by one or come back after a delete, a Get or a write that still sees an
// expired item, a ttl ignored, conflicts without the current item, an
// Upsert that applies an equal version, a PutIfAbsent that overwrites, a
// check and a write that are not atomic, ...), each in a child process, and
// require each run to fail and a run on a correct store to pass. They run
// on memstore and an in-memory mutant only.
package idemtest
