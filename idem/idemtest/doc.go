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
// carrying the current item, monotonic Upsert, bad input, concurrency) and
// then runs idemkit's algorithms (claims, Do, Update, Once, Add) on the store,
// so a backend that passes gets the whole toolkit.
//
// The suite uses only the Store interface, real clocks and keys unique to
// each subtest, so it works against shared servers with coarse expiry (whole
// seconds, as DynamoDB and Cassandra keep). Subtests run in parallel; tests
// of expiry sleep a little over two seconds in total.
//
// Counting wraps a Store and counts calls, for round-trip tests.
package idemtest
