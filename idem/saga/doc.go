// Package saga runs sagas on an idem.Store: a body of steps, each run at
// most once per saga, whose completed steps are compensated, each at most
// once, in reverse order when the saga is aborted by a permanent error.
// A saga can be run again after any crash, timeout or lost response and
// neither repeats completed work nor undoes anything twice.
//
// Every step, compensation, abort decision and outcome is a record of its
// own under the saga's ID (keys built with idem.JoinKey, under the
// WithKeyPrefix prefix), written with idem's claims, so any Store that
// passes idemtest.Run serves.
package saga
