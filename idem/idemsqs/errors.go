package idemsqs

import "errors"

// ErrNoKey means the key function found no key in a message (WithKey returned ""
// or Attribute found no attribute). The message is left for redelivery.
var ErrNoKey = errors.New("idemsqs: the message has no idempotency key")
