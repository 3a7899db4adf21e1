package idemlambda

import "errors"

// ErrNoKey means the key function found no key in the event and WithRequired
// is on (Wrap's default).
var ErrNoKey = errors.New("idemlambda: the event has no idempotency key")
