package idemtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/idemkit/idemkit/idem"
)

// Option adjusts Run for a backend.
type Option func(*config)

type config struct {
	contenders int
	rounds     int
	skip       map[string]string
}

// WithContention sets how many goroutines race on one key, and for how many
// rounds, in the concurrency tests. The default is 32 goroutines and 8
// rounds.
func WithContention(goroutines, rounds int) Option {
	return func(c *config) { c.contenders, c.rounds = max(goroutines, 2), max(rounds, 1) }
}

// Skip skips the named subtest (its name relative to Run, such as
// "Kernel/Expiry") and logs why. Use it only for a behaviour a server cannot
// provide, never to hide a bug.
func Skip(name, reason string) Option {
	return func(c *config) { c.skip[name] = reason }
}

// Run checks that the Store returned by newStore obeys the idem.Store
// contract, then runs idemkit's algorithms on it. newStore is called once per
// Run; every subtest uses keys of its own, so the store may be shared.
func Run(t *testing.T, newStore func(t *testing.T) idem.Store, opts ...Option) {
	t.Helper()
	cfg := config{contenders: 32, rounds: 8, skip: map[string]string{}}
	for _, o := range opts {
		o(&cfg)
	}
	s := newStore(t)
	if s == nil {
		t.Fatal("newStore returned nil")
	}
	h := &harness{store: s, cfg: cfg, run: randomHex(4)}
	t.Run("Kernel", func(t *testing.T) { h.kernel(t) })
	t.Run("Algorithms", func(t *testing.T) { h.algorithms(t) })
}

type harness struct {
	store idem.Store
	cfg   config
	run   string // distinguishes keys of two runs on one server
}

type test struct {
	name string
	fn   func(t *testing.T, h *harness)
}

// each runs tests as parallel subtests, honouring Skip.
func (h *harness) each(t *testing.T, group string, tests []test) {
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if reason, ok := h.cfg.skip[group+"/"+tc.name]; ok {
				t.Skip(reason)
			}
			t.Parallel()
			tc.fn(t, h)
		})
	}
}

// key returns a key unique to the test and run; suffix tells keys of one
// test apart.
func (h *harness) key(t *testing.T, suffix string) string {
	name := strings.NewReplacer("/", ".", " ", "_").Replace(t.Name())
	return fmt.Sprintf("idemtest/%s/%s/%s", h.run, name, suffix)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// conflict asserts err is a conflict and returns its details.
func conflict(t *testing.T, err error, what string) *idem.ConflictError {
	t.Helper()
	if !errors.Is(err, idem.ErrConflict) {
		t.Fatalf("%s: got error %v, want one matching idem.ErrConflict", what, err)
	}
	var ce *idem.ConflictError
	if !errors.As(err, &ce) {
		t.Fatalf("%s: got %T (%v), want a *idem.ConflictError in the chain", what, err, err)
	}
	return ce
}

// sleepUntilExpired waits until every item has expired with a margin for a
// server that keeps whole seconds.
func sleepUntilExpired(items ...idem.Item) {
	var last time.Time
	for _, it := range items {
		if it.ExpiresAt.After(last) {
			last = it.ExpiresAt
		}
	}
	time.Sleep(time.Until(last) + 1100*time.Millisecond)
}
