package idemkafka

import "errors"

// ErrNoKey: the key function found no key in a record (WithKey returned ""
// or Header found no header). A record never changes, so it fails the same
// way on every delivery: it is logged and committed without running fn.
var ErrNoKey = errors.New("idemkafka: the record has no idempotency key")
