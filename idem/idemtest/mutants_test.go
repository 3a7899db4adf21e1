package idemtest_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"math"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/idemtest"
	"github.com/idemkit/idemkit/idem/kernel"
	"github.com/idemkit/idemkit/idem/memstore"
)

// The suite is itself tested, as testing/fstest is: Run must pass on a
// correct store and fail on each mutant, a store with one bug of the kind a
// backend author makes. A failing Run fails its test, so each mutant runs in
// a child process (this test binary, re-executed to run TestMutantChild
// with IDEMTEST_MUTANT set) and the parent checks that the child failed.

const mutantEnv = "IDEMTEST_MUTANT"

// mutants are the bugs the suite must catch, each with what it breaks.
var mutants = map[string]string{
	"cas-skips-version":         "CompareAndSwap applies whatever version it is given",
	"get-ignores-expiry":        "Get returns expired items",
	"conflict-without-current":  "conflicts do not carry the current item",
	"upsert-applies-equal":      "Upsert applies an equal version",
	"cad-ignores-version":       "CompareAndDelete deletes whatever version it is given",
	"putifabsent-overwrites":    "PutIfAbsent replaces a live item",
	"versions-reused-after-del": "a key created again starts at its old incarnation's version",

	"cas-keeps-version":              "CompareAndSwap does not increase the version",
	"cas-adds-two":                   "CompareAndSwap adds two to the version",
	"cas-not-atomic":                 "CompareAndSwap checks the version and writes in two steps",
	"cas-applies-to-expired":         "CompareAndSwap applies to an expired item",
	"cas-keeps-expiry":               "CompareAndSwap keeps the old expiry instead of its ttl",
	"cad-deletes-expired":            "CompareAndDelete deletes an expired item",
	"putifabsent-blocked-by-expired": "PutIfAbsent is refused by an expired item",
	"putifabsent-ignores-ttl":        "PutIfAbsent stores items that never expire",
	"putifabsent-not-atomic":         "PutIfAbsent checks for the key and writes in two steps",
	"versions-start-at-one":          "PutIfAbsent starts every key at version 1",
	"upsert-applies-lower":           "Upsert applies a lower version",
	"upsert-blocked-by-expired":      "Upsert is refused by an expired item of a higher version",
	"upsert-refusal-without-current": "a refused Upsert does not return the current item",
	"upsert-refusal-is-conflict":     "a refused Upsert returns a conflict instead of a nil error",
	"upsert-ignores-ttl":             "Upsert stores items that never expire",
	"conflict-says-absent":           "conflicts say the key is absent when it exists",
	"keeps-caller-value":             "writes keep the caller's slice",
	"returns-own-value":              "Get hands out the stored slice",
	"accepts-empty-key":              "an empty key is accepted",
	"negative-ttl-expires":           "a negative ttl makes the item expire at once",
}

// controls must pass: memstore itself, and the mutant store with no bug, so
// that a mutant's failure is its bug's and not the mutant store's.
var controls = []string{"memstore", "none"}

func TestMutants(t *testing.T) {
	if os.Getenv(mutantEnv) != "" {
		t.Skip("in a child process")
	}
	if testing.Short() {
		t.Skip("runs the suite once per mutant, in child processes")
	}
	// Every child starts at once, whatever -test.parallel says: they spend
	// most of their time asleep in the suite's expiry tests.
	start := time.Now()
	results := map[string]chan child{}
	for _, name := range append(slices.Sorted(maps.Keys(mutants)), controls...) {
		ch := make(chan child, 1)
		results[name] = ch
		go func() { ch <- runChild(t.Context(), name) }()
	}
	for _, name := range controls {
		t.Run(name, func(t *testing.T) {
			c := <-results[name]
			if c.err != nil {
				t.Errorf("Run failed on the correct store %s (%v):\n%s", name, c.err, tail(c.out))
			}
		})
	}
	for _, name := range slices.Sorted(maps.Keys(mutants)) {
		bug := mutants[name]
		t.Run(name, func(t *testing.T) {
			c := <-results[name]
			var exit *exec.ExitError
			switch {
			case c.err == nil:
				t.Errorf("Run passed on a store whose %s: a gap in the suite", bug)
			case !errors.As(c.err, &exit):
				t.Fatalf("child: %v\n%s", c.err, c.out)
			case !bytes.Contains(c.out, []byte("--- FAIL: TestMutantChild")):
				t.Errorf("child failed without a failing suite (%v):\n%s", c.err, tail(c.out))
			default:
				by := "its first failure (-mutants.all names every catching subtest)"
				if f := failures(c.out); len(f) > 0 {
					by = strings.Join(f, ", ")
				}
				t.Logf("caught in %v (%s) by %s", c.took.Round(time.Millisecond), bug, by)
			}
		})
	}
	t.Logf("%d children in %v", len(results), time.Since(start).Round(time.Millisecond))
}

// TestMutantChild runs the suite on the store named by IDEMTEST_MUTANT; it
// is run by TestMutants in a child process.
func TestMutantChild(t *testing.T) {
	name := os.Getenv(mutantEnv)
	if name == "" {
		t.Skip("run by TestMutants, with " + mutantEnv + " set")
	}
	if _, ok := mutants[name]; !ok && name != "none" && name != "memstore" {
		t.Fatalf("unknown mutant %q", name)
	}
	if !*allMutants {
		// The watcher must be gone before the test returns: testing marks
		// t done without a lock, and a t.Failed under way then is a race.
		done := make(chan struct{})
		var watcher sync.WaitGroup
		defer func() { close(done); watcher.Wait() }()
		watcher.Go(func() { exitOnFailure(t, done) })
	}
	idemtest.Run(t, func(t *testing.T) idem.Store {
		if name == "memstore" {
			return memstore.New()
		}
		return newMutant(name)
	})
}

// exitOnFailure ends the child process soon after the first subtest fails
// (a subtest's failure marks t failed at once), unless done is closed
// first. One failure is all TestMutants needs, and a mutant can make a test
// sleep for long: a CompareAndSwap that keeps the in-progress claim's expiry
// makes Algorithms/ClaimExpiry wait out a 30-second lease. The suite's
// "--- FAIL" lines are printed only when it ends, so exitOnFailure prints
// its own.
func exitOnFailure(t *testing.T, done <-chan struct{}) {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case <-tick.C:
		}
		if t.Failed() {
			time.Sleep(100 * time.Millisecond) // let failures under way log
			fmt.Printf("--- FAIL: TestMutantChild (stopped at its first failure; -mutants.all runs it to the end)\n")
			os.Exit(1)
		}
	}
}

type child struct {
	out  []byte
	err  error
	took time.Duration
}

// runChild runs the suite on the store name in a child process.
func runChild(ctx context.Context, name string) child {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestMutantChild$", "-test.count=1", "-test.v",
		"-mutants.all="+strconv.FormatBool(*allMutants))
	cmd.Env = append(os.Environ(), mutantEnv+"="+name)
	out, err := cmd.CombinedOutput()
	return child{out, err, time.Since(start)}
}

// allMutants runs each child's suite to the end instead of stopping it at
// its first failure, so that TestMutants -v logs every subtest that catches
// each mutant (about 40 s instead of 5).
var allMutants = flag.Bool("mutants.all", false, "TestMutants: run each mutant's suite to the end, to log every subtest that catches it")

var failLine = regexp.MustCompile(`(?m)^\s*--- FAIL: TestMutantChild/(\S+)`)

// failures lists the deepest failing subtests of a child's verbose output.
func failures(out []byte) []string {
	var all []string
	for _, m := range failLine.FindAllSubmatch(out, -1) {
		all = append(all, string(m[1]))
	}
	var leaves []string
	for _, a := range all {
		leaf := true
		for _, b := range all {
			if strings.HasPrefix(b, a+"/") {
				leaf = false
			}
		}
		if leaf {
			leaves = append(leaves, a)
		}
	}
	return leaves
}

func tail(out []byte) []byte {
	const n = 4000
	if len(out) > n {
		return out[len(out)-n:]
	}
	return out
}

// mutant is a small in-memory store, correct unless bug names one of the
// mutants. It keeps its own map rather than wrapping memstore, so that a
// bug can reach what memstore hides (such as an expired item).
type mutant struct {
	bug string

	mu      sync.Mutex
	items   map[string]idem.Item
	highest int64
	first   map[string]int64 // the first version of each key's latest incarnation
}

func newMutant(bug string) *mutant {
	return &mutant{bug: bug, items: map[string]idem.Item{}, first: map[string]int64{}}
}

// live returns the item at key unless it is absent or expired. m.mu must be
// held.
func (m *mutant) live(key string) (idem.Item, bool) {
	it, ok := m.items[key]
	if !ok || kernel.Expired(it, time.Now()) {
		return idem.Item{}, false
	}
	return it, true
}

// liveUnless is live, except that an expired item is live for the mutant
// named bug. m.mu must be held.
func (m *mutant) liveUnless(bug, key string) (idem.Item, bool) {
	if m.bug == bug {
		it, ok := m.items[key]
		return it, ok
	}
	return m.live(key)
}

// gap lets other calls run between a check and its write, for the mutants
// named bug. m.mu must be held; it is held again on return.
func (m *mutant) gap(bug string) {
	if m.bug == bug {
		m.mu.Unlock()
		time.Sleep(50 * time.Microsecond)
		m.mu.Lock()
	}
}

func (m *mutant) put(key string, value []byte, version int64, ttl time.Duration) idem.Item {
	it := idem.Item{Key: key, Value: bytes.Clone(value), Version: version}
	if m.bug == "keeps-caller-value" {
		it.Value = value
	}
	if ttl > 0 || ttl < 0 && m.bug == "negative-ttl-expires" {
		it.ExpiresAt = time.Now().Add(ttl)
	}
	m.items[key] = it
	m.highest = max(m.highest, version)
	return clone(it)
}

func (m *mutant) conflict(op, key string, cur idem.Item, exists bool) error {
	e := &idem.ConflictError{Key: key, Op: op, Exists: exists && m.bug != "conflict-says-absent"}
	if exists && m.bug != "conflict-without-current" {
		e.Current = clone(cur)
	}
	return e
}

func (m *mutant) Get(ctx context.Context, key string) (idem.Item, error) {
	if err := m.check(ctx, key); err != nil {
		return idem.Item{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	it, ok := m.live(key)
	if m.bug == "get-ignores-expiry" {
		it, ok = m.items[key]
	}
	if !ok {
		return idem.Item{}, idem.ErrNotFound
	}
	if m.bug == "returns-own-value" {
		return it, nil
	}
	return clone(it), nil
}

func (m *mutant) PutIfAbsent(ctx context.Context, key string, value []byte, ttl time.Duration) (idem.Item, error) {
	if err := m.check(ctx, key); err != nil {
		return idem.Item{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur, ok := m.liveUnless("putifabsent-blocked-by-expired", key); ok && m.bug != "putifabsent-overwrites" {
		return idem.Item{}, m.conflict("PutIfAbsent", key, cur, true)
	}
	m.gap("putifabsent-not-atomic")
	v := max(kernel.FreshVersion(), m.highest+1)
	if old, ok := m.first[key]; ok && m.bug == "versions-reused-after-del" {
		v = old
	}
	if m.bug == "versions-start-at-one" {
		v = 1
	}
	m.first[key] = v
	if m.bug == "putifabsent-ignores-ttl" {
		ttl = 0
	}
	return m.put(key, value, v, ttl), nil
}

func (m *mutant) CompareAndSwap(ctx context.Context, key string, version int64, value []byte, ttl time.Duration) (idem.Item, error) {
	if err := m.check(ctx, key); err != nil {
		return idem.Item{}, err
	}
	if err := kernel.CheckVersion(key, version); err != nil {
		return idem.Item{}, err
	}
	if version == math.MaxInt64 {
		return idem.Item{}, kernel.Invalid(key, "version would overflow")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, ok := m.liveUnless("cas-applies-to-expired", key)
	if !ok || (cur.Version != version && m.bug != "cas-skips-version") {
		return idem.Item{}, m.conflict("CompareAndSwap", key, cur, ok)
	}
	m.gap("cas-not-atomic")
	next := version + 1
	switch m.bug {
	case "cas-keeps-version":
		next = version
	case "cas-adds-two":
		next = version + 2
	case "cas-keeps-expiry":
		it := m.put(key, value, next, 0)
		it.ExpiresAt = cur.ExpiresAt
		m.items[key] = it
		return clone(it), nil
	}
	return m.put(key, value, next, ttl), nil
}

func (m *mutant) CompareAndDelete(ctx context.Context, key string, version int64) error {
	if err := m.check(ctx, key); err != nil {
		return err
	}
	if err := kernel.CheckVersion(key, version); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, ok := m.liveUnless("cad-deletes-expired", key)
	if !ok || (cur.Version != version && m.bug != "cad-ignores-version") {
		return m.conflict("CompareAndDelete", key, cur, ok)
	}
	delete(m.items, key)
	return nil
}

func (m *mutant) Upsert(ctx context.Context, key string, value []byte, version int64, ttl time.Duration) (idem.Item, bool, error) {
	if err := m.check(ctx, key); err != nil {
		return idem.Item{}, false, err
	}
	if err := kernel.CheckUpsertVersion(key, version); err != nil {
		return idem.Item{}, false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, ok := m.liveUnless("upsert-blocked-by-expired", key)
	if ok && (cur.Version > version && m.bug != "upsert-applies-lower" || cur.Version == version && m.bug != "upsert-applies-equal") {
		switch m.bug {
		case "upsert-refusal-without-current":
			return idem.Item{}, false, nil
		case "upsert-refusal-is-conflict":
			return idem.Item{}, false, m.conflict("Upsert", key, cur, true)
		}
		return clone(cur), false, nil
	}
	if m.bug == "upsert-ignores-ttl" {
		ttl = 0
	}
	return m.put(key, value, version, ttl), true, nil
}

func (m *mutant) check(ctx context.Context, key string) error {
	if m.bug == "accepts-empty-key" && key == "" {
		return ctx.Err()
	}
	if err := kernel.CheckKey(key); err != nil {
		return err
	}
	return ctx.Err()
}

func clone(it idem.Item) idem.Item {
	it.Value = bytes.Clone(it.Value)
	if it.Value == nil {
		it.Value = []byte{}
	}
	return it
}
