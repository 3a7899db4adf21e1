package idem_test

import (
	"context"

	"github.com/idemkit/idemkit/idem/idemtest"
)

// The tests of this package inject faults with idemtest.Faulty: Lose (the
// write applies, its response is lost), Drop (the request is lost before
// it is sent), Resend (a driver retries a write that applied), Fail (the
// store is unreachable), or one of the hooks below, which run a competitor
// inside the gap before the caller hears anything.

// lostWith sends the call, runs inGap, then loses the response: the write
// applied and a competitor's writes landed before its caller heard about
// it. inGap writes to the wrapped store (Faulty.Store) unless it wants its
// own calls hooked too. A send that fails answers the caller as it is,
// without running inGap: a write that did not apply leaves no such gap.
func lostWith(inGap func(ctx context.Context)) idemtest.Hook {
	return func(ctx context.Context, c idemtest.Call, send func() error) error {
		if err := send(); err != nil {
			return err
		}
		// The send Lose makes is inGap's; the caller's went first.
		return idemtest.Lose(ctx, c, func() error { inGap(ctx); return nil })
	}
}

// droppedWith runs inGap and loses the call before it is sent: the caller
// gets the same unknown outcome as from lostWith, but nothing applied.
func droppedWith(inGap func(ctx context.Context)) idemtest.Hook {
	return func(ctx context.Context, c idemtest.Call, send func() error) error {
		inGap(ctx)
		return idemtest.Drop(ctx, c, send)
	}
}

// everyThirdLost loses the response of every third call of its operation
// after sending it.
func everyThirdLost(ctx context.Context, c idemtest.Call, send func() error) error {
	if c.N%3 != 0 {
		return send()
	}
	return idemtest.Lose(ctx, c, send)
}
