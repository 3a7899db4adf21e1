package cassandra

import (
	"errors"
	"fmt"
)

// ErrContention means a PutIfAbsent, an Upsert or a FencedUpdate found the row
// changing under it (created, deleted, expiring) at every one of the
// conditional writes it allows itself. Nothing was written; the call can be retried. It takes
// writers racing on one key in a tight loop to see it.
var ErrContention = errors.New("cassandra: too much contention")

// ErrFenced means a fenced write was refused because its row carries a higher
// fence, written by a later claim of the key. Nothing was written. The
// error is a *FencedError.
var ErrFenced = errors.New("cassandra: fenced out by a later claim")

// FencedError is the refusal of FencedUpdate: the row's fence is above the
// write's. It matches ErrFenced.
type FencedError struct {
	Table   string         // the FencedWrite's Table
	Key     map[string]any // a copy of the FencedWrite's Key
	Fence   int64          // the write's fence
	Current int64          // the row's fence, above Fence, as the refusal read it
}

// Error implements error.
func (e *FencedError) Error() string {
	return fmt.Sprintf("cassandra: fenced update of %s: the row's fence %d is above the write's %d: %v",
		describeRow(e.Table, e.Key), e.Current, e.Fence, ErrFenced)
}

// Unwrap returns the underlying error, for errors.Is and errors.As.
func (e *FencedError) Unwrap() error { return ErrFenced }

// ErrKeyspaceNotFound means Check found no keyspace of the Store's table. The
// error matches ErrTableNotFound too.
var ErrKeyspaceNotFound = errors.New("cassandra: keyspace not found")

// ErrTableNotFound means Check found no table of the Store's name in its
// keyspace, or no keyspace (then the error matches ErrKeyspaceNotFound
// too).
var ErrTableNotFound = errors.New("cassandra: table not found")

// ErrSchemaMismatch means Check found the Store's table without the primary
// key, the columns or the types CreateTable gives it.
var ErrSchemaMismatch = errors.New("cassandra: table schema mismatch")
