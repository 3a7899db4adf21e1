package cassandra

import "errors"

// ErrContention: a PutIfAbsent or Upsert found the row changing under it
// (created, deleted, expiring) at every one of the conditional writes it
// allows itself. Nothing was written; the call can be retried. It takes
// writers racing on one key in a tight loop to see it.
var ErrContention = errors.New("cassandra: too much contention")
