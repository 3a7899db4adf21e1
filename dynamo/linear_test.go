package dynamo_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/idemkit/idemkit/idem/idemtest"
	"github.com/idemkit/idemkit/internal/testenv"
)

// TestLinearizable runs idemtest's history checker on each server through
// a wire that, on every request (reads too), loses the response after
// delivering the request 7% of the time and cuts the connection while the
// request is being written 2% of the time. Random concurrent kernel
// operations must form a linearizable history, counting an unknown outcome
// as "may or may not have happened": a write that may have been applied is
// never sent again, and is reported applied only when the Store finds its
// own token.
func TestLinearizable(t *testing.T) {
	for _, srv := range testenv.DynamoDBServers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			t.Parallel()
			raw, name := table(t, srv)
			c, w := wired(raw)
			seed := uint64(time.Now().UnixNano())
			t.Logf("wire faults: seed %d", seed)
			w.lossy = &lossy{rnd: rand.New(rand.NewPCG(seed, 0)), drop: 0.07, cut: 0.02}
			idemtest.Linearizable(t, mustStore(t, c, name), idemtest.LinearConfig{Clients: 6, Keys: 3, Ops: 40, Rounds: 8})
			counts := w.take()
			t.Logf("requests: %v", counts)
		})
	}
}
