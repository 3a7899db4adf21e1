package idemtest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/kernel"
	"github.com/idemkit/idemkit/idem/memstore"
)

// The checker is itself checked here, as testing/fstest is: it must accept
// memstore and a store that loses responses honestly (reporting an unknown
// outcome), and reject stores that lie. Each broken store wraps memstore
// and lies on some of its calls, after or instead of delegating.

func TestLinearizableMemstore(t *testing.T) {
	Linearizable(t, memstore.New(), LinearConfig{Seed: 1})
}

func TestLinearizableAccepts(t *testing.T) {
	for _, tc := range []struct {
		name  string
		store func() idem.Store
	}{
		{"memstore", func() idem.Store { return memstore.New() }},
		// Every fourth write, chosen at random, reports an unknown outcome:
		// half of them after delegating, half without.
		{"unknown outcomes", func() idem.Store { return newLossy(memstore.New(), 4, unknownErr) }},
		// The same with a context deadline and a cut connection, which the
		// checker must count as "may or may not have happened" too.
		{"deadlines", func() idem.Store { return newLossy(memstore.New(), 4, deadlineErr) }},
		{"cut connections", func() idem.Store { return newLossy(memstore.New(), 4, cutErr) }},
		// Gets that fail are dropped, whatever they return.
		{"failing gets", func() idem.Store { return &failingGet{Store: memstore.New()} }},
		// Calls that take a while before and after they take effect, so
		// that many overlap, as on a real server.
		{"overlapping calls", func() idem.Store { return slow{memstore.New()} }},
		{"overlapping calls with unknown outcomes", func() idem.Store { return newLossy(slow{memstore.New()}, 4, unknownErr) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := checkLinear(t.Context(), tc.store(), LinearConfig{Seed: 7}, t.Logf)
			for _, bad := range v.violations {
				t.Errorf("key %s rejected:\n%s", bad.key, describeHistory(bad.short))
			}
		})
	}
}

func TestLinearizableRejects(t *testing.T) {
	for _, tc := range []struct {
		name  string
		store func() idem.Store
	}{
		// Every third CompareAndSwap whose condition holds acks without
		// writing.
		{"CompareAndSwap acks without writing", func() idem.Store { return &ackingSwap{Store: memstore.New()} }},
		// Every third Get of a key returns the item the write before the
		// last one stored.
		{"stale Get", func() idem.Store { return newStaleGet(memstore.New()) }},
		// Every third applied CompareAndSwap is reported as a conflict that
		// shows the new item.
		{"CompareAndSwap conflict after applying", func() idem.Store { return &conflictAfter{Store: memstore.New(), op: opSwap} }},
		// Every third applied PutIfAbsent is reported as a conflict.
		{"PutIfAbsent conflict after applying", func() idem.Store { return &conflictAfter{Store: memstore.New(), op: opPut} }},
		// Every third applied Upsert reports applied == false.
		{"Upsert not applied after applying", func() idem.Store { return &upsertDenies{Store: memstore.New()} }},
		// The contract before fresh versions: a key deleted and created
		// again starts at version 1, so a version comes back.
		{"versions start at 1", func() idem.Store { return newVersionOne() }},
		// The same lies among overlapping calls.
		{"overlapping: CompareAndSwap acks without writing", func() idem.Store { return &ackingSwap{Store: slow{memstore.New()}} }},
		{"overlapping: stale Get", func() idem.Store { return newStaleGet(slow{memstore.New()}) }},
		{"overlapping: Upsert not applied after applying", func() idem.Store { return &upsertDenies{Store: slow{memstore.New()}} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := checkLinear(t.Context(), tc.store(), LinearConfig{Seed: 7}, t.Logf)
			if len(v.violations) == 0 {
				t.Fatalf("every key accepted (%d operations), want a violation", v.ops)
			}
			bad := v.violations[0]
			if len(bad.short) > len(bad.full) || porcupine.CheckOperations(linModel, bad.short) {
				t.Errorf("the shortest history (%d of %d operations) is not an illegal part of the whole", len(bad.short), len(bad.full))
			}
			t.Logf("%d keys rejected; the first, shortened from %d to %d operations:\n%s", len(v.violations), len(bad.full), len(bad.short), describeHistory(bad.short))
		})
	}
}

// TestLinearModel checks the model on hand-written histories.
func TestLinearModel(t *testing.T) {
	put := func(c int, call, ret int64, value string, out linOutput) porcupine.Operation {
		return porcupine.Operation{ClientId: c, Input: linInput{op: opPut, value: value}, Call: call, Output: out, Return: ret}
	}
	op := func(c int, call, ret int64, kind opKind, version int64, value string, out linOutput) porcupine.Operation {
		return porcupine.Operation{ClientId: c, Input: linInput{op: kind, version: version, value: value}, Call: call, Output: out, Return: ret}
	}
	ok := func(value string, version int64) linOutput {
		return linOutput{kind: outOK, value: value, version: version}
	}
	current := func(value string, version int64) linOutput {
		return linOutput{kind: outRefused, detail: true, exists: true, value: value, version: version}
	}
	unknown := linOutput{kind: outUnknown, err: "lost"}
	notFound := linOutput{kind: outNotFound}
	deleted := linOutput{kind: outOK}
	const end = 1000

	for _, tc := range []struct {
		name  string
		ops   []porcupine.Operation
		legal bool
	}{
		{"sequential", []porcupine.Operation{
			put(0, 0, 1, "a", ok("a", 100)),
			op(0, 2, 3, opSwap, 100, "b", ok("b", 101)),
			op(1, 4, 5, opGet, 0, "", ok("b", 101)),
			op(1, 6, 7, opDelete, 101, "", deleted),
			op(0, 8, 9, opGet, 0, "", notFound),
			put(1, 10, 11, "c", ok("c", 102)),
		}, true},
		{"fresh version not above a deleted one", []porcupine.Operation{
			put(0, 0, 1, "a", ok("a", 100)),
			op(0, 2, 3, opDelete, 100, "", deleted),
			put(1, 4, 5, "b", ok("b", 100)),
		}, false},
		{"fresh version not above an upserted one", []porcupine.Operation{
			op(0, 0, 1, opUpsert, 500, "a", ok("a", 500)),
			op(0, 2, 3, opDelete, 500, "", deleted),
			put(1, 4, 5, "b", ok("b", 400)),
		}, false},
		{"slow PutIfAbsent starts below an incarnation created and deleted meanwhile", []porcupine.Operation{
			put(0, 0, 100, "a", ok("a", 10)),
			put(1, 5, 10, "b", ok("b", 50)),
			op(1, 12, 15, opDelete, 50, "", deleted),
		}, true},
		{"PutIfAbsent invoked after the delete returned starts below it", []porcupine.Operation{
			put(1, 5, 10, "b", ok("b", 50)),
			op(1, 12, 15, opDelete, 50, "", deleted),
			put(0, 16, 100, "a", ok("a", 10)),
		}, false},
		{"stale Get after a swap returned", []porcupine.Operation{
			put(0, 0, 1, "a", ok("a", 100)),
			op(0, 2, 3, opSwap, 100, "b", ok("b", 101)),
			op(1, 4, 5, opGet, 0, "", ok("a", 100)),
		}, false},
		{"old item while the swap runs", []porcupine.Operation{
			put(0, 0, 1, "a", ok("a", 100)),
			op(0, 2, 6, opSwap, 100, "b", ok("b", 101)),
			op(1, 3, 4, opGet, 0, "", ok("a", 100)),
		}, true},
		{"unknown PutIfAbsent seen later at its version", []porcupine.Operation{
			put(0, 0, end, "a", unknown),
			op(1, 2, 3, opGet, 0, "", ok("a", 77)),
			op(1, 4, 5, opSwap, 77, "b", ok("b", 78)),
		}, true},
		{"unknown PutIfAbsent never seen", []porcupine.Operation{
			put(0, 0, end, "a", unknown),
			op(1, 2, 3, opGet, 0, "", notFound),
		}, true},
		{"unknown PutIfAbsent seen, then a fresh version below it", []porcupine.Operation{
			put(0, 0, end, "a", unknown),
			op(1, 2, 3, opGet, 0, "", ok("a", 77)),
			op(1, 4, 5, opDelete, 77, "", deleted),
			put(1, 6, 7, "b", ok("b", 50)),
		}, false},
		{"unknown CompareAndSwap applied", []porcupine.Operation{
			put(0, 0, 1, "a", ok("a", 100)),
			op(0, 2, end, opSwap, 100, "b", unknown),
			op(1, 3, 4, opGet, 0, "", ok("b", 101)),
		}, true},
		{"unknown CompareAndSwap applied twice", []porcupine.Operation{
			put(0, 0, 1, "a", ok("a", 100)),
			op(0, 2, end, opSwap, 100, "b", unknown),
			op(1, 3, 4, opGet, 0, "", ok("b", 101)),
			op(1, 5, 6, opSwap, 101, "c", ok("c", 102)),
			op(1, 7, 8, opGet, 0, "", ok("b", 101)),
		}, false},
		{"unknown Upsert lands after a delete", []porcupine.Operation{
			put(0, 0, 1, "a", ok("a", 100)),
			op(0, 2, end, opUpsert, 105, "u", unknown),
			op(1, 3, 4, opDelete, 100, "", deleted),
			op(1, 5, 6, opGet, 0, "", ok("u", 105)),
		}, true},
		{"Upsert lands twice", []porcupine.Operation{
			put(0, 0, 1, "a", ok("a", 100)),
			op(0, 2, end, opUpsert, 105, "u", unknown),
			op(1, 3, 4, opGet, 0, "", ok("u", 105)),
			op(1, 5, 6, opDelete, 105, "", deleted),
			op(1, 7, 8, opGet, 0, "", ok("u", 105)),
		}, false},
		{"Upsert not applied over a lower version", []porcupine.Operation{
			put(0, 0, 1, "a", ok("a", 100)),
			op(0, 2, 3, opUpsert, 105, "u", current("a", 100)),
		}, false},
		{"Upsert not applied over an equal version", []porcupine.Operation{
			put(0, 0, 1, "a", ok("a", 100)),
			op(0, 2, 3, opUpsert, 100, "u", current("a", 100)),
		}, true},
		{"Upsert not applied showing its own value", []porcupine.Operation{
			put(0, 0, 1, "a", ok("a", 100)),
			op(0, 2, 3, opUpsert, 105, "u", current("u", 105)),
		}, false},
		{"conflict showing the write's own item", []porcupine.Operation{
			put(0, 0, 1, "a", ok("a", 100)),
			op(0, 2, 3, opSwap, 100, "b", current("b", 101)),
		}, false},
		{"conflict at the version it names", []porcupine.Operation{
			put(0, 0, 1, "a", ok("a", 100)),
			op(0, 2, 3, opDelete, 100, "", current("a", 100)),
		}, false},
		{"conflict on an absent key", []porcupine.Operation{
			op(0, 0, 1, opSwap, 1, "b", linOutput{kind: outRefused, detail: true}),
			op(0, 2, 3, opDelete, 1, "", linOutput{kind: outRefused, detail: true}),
		}, true},
		{"conflict says absent while the key exists", []porcupine.Operation{
			put(0, 0, 1, "a", ok("a", 100)),
			op(0, 2, 3, opSwap, 7, "b", linOutput{kind: outRefused, detail: true}),
		}, false},
		{"PutIfAbsent refused on an absent key", []porcupine.Operation{
			put(0, 0, 1, "a", current("x", 3)),
		}, false},
		{"CompareAndSwap that skips a version", []porcupine.Operation{
			put(0, 0, 1, "a", ok("a", 100)),
			op(0, 2, 3, opSwap, 100, "b", ok("b", 102)),
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			timed(tc.ops)
			if got := porcupine.CheckOperations(linModel, tc.ops); got != tc.legal {
				t.Errorf("got linearizable %v, want %v; history:\n%s", got, tc.legal, describeHistory(tc.ops))
			}
		})
	}
}

// TestLinearShortest checks that a violation buried in noise is cut down to
// the operations that show it, and that the report and the visualisation
// name them.
func TestLinearShortest(t *testing.T) {
	var ops []porcupine.Operation
	add := func(c int, in linInput, out linOutput) {
		at := int64(len(ops) * 10)
		ops = append(ops, porcupine.Operation{ClientId: c, Input: in, Call: at, Output: out, Return: at + 5})
	}
	add(0, linInput{op: opPut, value: "a"}, linOutput{kind: outOK, value: "a", version: 100})
	for i := range 20 {
		add(i%3, linInput{op: opGet}, linOutput{kind: outOK, value: "a", version: 100})
		add(i%3, linInput{op: opSwap, version: 99, value: fmt.Sprint("x", i)}, linOutput{kind: outRefused, detail: true, exists: true, value: "a", version: 100})
	}
	add(1, linInput{op: opSwap, version: 100, value: "b"}, linOutput{kind: outOK, value: "b", version: 101})
	add(2, linInput{op: opGet}, linOutput{kind: outOK, value: "a", version: 100}) // stale
	for range 10 {
		add(0, linInput{op: opGet}, linOutput{kind: outOK, value: "b", version: 101})
	}
	timed(ops)
	if porcupine.CheckOperations(linModel, ops) {
		t.Fatal("the history is linearizable; the test is wrong")
	}
	short := shortest(ops)
	if len(short) != 3 {
		t.Errorf("got %d operations, want 3 (the put, the swap and the stale Get):\n%s", len(short), describeHistory(short))
	}
	text := describeHistory(short)
	for _, want := range []string{`PutIfAbsent(value "a")`, `CompareAndSwap(version 100, value "b") -> applied`, `client 2  Get -> found "a" at version 100`} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q:\n%s", want, text)
		}
	}
	path, err := linearViolation{key: "idemtest/x/k0", full: ops, short: short}.visualise(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		t.Errorf("visualisation %s: %v, %d bytes", path, err, fi.Size())
	}
}

// TestLinearCut checks that cutting a history keeps what happened before the
// cut and turns writes still running into pending ones.
func TestLinearCut(t *testing.T) {
	ops := []porcupine.Operation{
		{Input: linInput{op: opPut, value: "a"}, Call: 0, Output: linOutput{kind: outOK, value: "a", version: 5}, Return: 10},
		{Input: linInput{op: opGet}, Call: 5, Output: linOutput{kind: outNotFound}, Return: 30},
		{Input: linInput{op: opSwap, version: 5, value: "b"}, Call: 15, Output: linOutput{kind: outOK, value: "b", version: 6}, Return: 30},
		{Input: linInput{op: opGet}, Call: 25, Output: linOutput{kind: outOK, value: "b", version: 6}, Return: 26},
		{Input: linInput{op: opGet}, Call: 40, Output: linOutput{kind: outOK, value: "b", version: 6}, Return: 41},
	}
	timed(ops)
	cut := cutAt(ops, 26)
	if len(cut) != 3 {
		t.Fatalf("got %d operations, want 3 (the put, the running swap, the returned Get)", len(cut))
	}
	if out := cut[1].Output.(linOutput); out.kind != outUnknown || cut[1].Return != 27 {
		t.Errorf("running swap: got kind %d returning at %d, want pending (kind %d) at 27", out.kind, cut[1].Return, outUnknown)
	}
	if m, ok := cut[1].Metadata.(linMeta); !ok || m.returned != 30 || !strings.Contains(m.was, "applied") {
		t.Errorf("running swap's note: got %+v, want its real return and result", cut[1].Metadata)
	}
	if !porcupine.CheckOperations(linModel, cut) {
		t.Errorf("the cut is not linearizable:\n%s", describeHistory(cut))
	}
}

// TestLinearDeterministic checks that one seed makes the same choices of
// operations, keys and values (the versions come from the clock).
func TestLinearDeterministic(t *testing.T) {
	run := func() [3][]linInput { // per client, in its order
		cfg := LinearConfig{Clients: 3, Keys: 2, Ops: 40, Rounds: 1, Seed: 42}.withDefaults()
		var ins [3][]linInput
		for _, op := range runRound(t.Context(), memstore.New(), cfg, 0, []string{"a", "b"}) {
			in := op.Input.(linInput)
			in.version, in.call = 0, 0 // versions and times follow the clock
			ins[op.ClientId] = append(ins[op.ClientId], in)
		}
		return ins
	}
	first, second := run(), run()
	if fmt.Sprint(first) != fmt.Sprint(second) {
		t.Errorf("two runs with seed 42 chose differently:\n%v\n%v", first, second)
	}
}

// timed copies each operation's times into its input and output, as the
// workload records them.
func timed(ops []porcupine.Operation) {
	for i, op := range ops {
		in, out := op.Input.(linInput), op.Output.(linOutput)
		in.call = op.Call
		if out.kind != outUnknown {
			out.returned = op.Return
		}
		ops[i].Input, ops[i].Output = in, out
	}
}

// lossy reports an unknown outcome on one write in every n, chosen at
// random: half the time after delegating, half without.
type lossy struct {
	idem.Store
	n    int
	fail func(op, key string) error
	mu   sync.Mutex
	r    *rand.Rand
}

func newLossy(s idem.Store, n int, fail func(op, key string) error) *lossy {
	return &lossy{Store: s, n: n, fail: fail, r: rand.New(rand.NewPCG(3, 5))}
}

func unknownErr(op, key string) error {
	return kernel.Unknown(key, op, errors.New("response lost"))
}
func deadlineErr(string, string) error { return fmt.Errorf("waiting: %w", context.DeadlineExceeded) }
func cutErr(string, string) error      { return errors.New("read tcp: connection reset by peer") }

// roll returns 0 to delegate honestly, 1 to fail without delegating, 2 to
// fail after delegating.
func (s *lossy) roll() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.r.IntN(s.n) != 0 {
		return 0
	}
	return 1 + s.r.IntN(2)
}

func (s *lossy) PutIfAbsent(ctx context.Context, key string, value []byte, ttl time.Duration) (idem.Item, error) {
	r := s.roll()
	if r == 1 {
		return idem.Item{}, s.fail("PutIfAbsent", key)
	}
	it, err := s.Store.PutIfAbsent(ctx, key, value, ttl)
	if r == 2 {
		return idem.Item{}, s.fail("PutIfAbsent", key)
	}
	return it, err
}

func (s *lossy) CompareAndSwap(ctx context.Context, key string, version int64, value []byte, ttl time.Duration) (idem.Item, error) {
	r := s.roll()
	if r == 1 {
		return idem.Item{}, s.fail("CompareAndSwap", key)
	}
	it, err := s.Store.CompareAndSwap(ctx, key, version, value, ttl)
	if r == 2 {
		return idem.Item{}, s.fail("CompareAndSwap", key)
	}
	return it, err
}

func (s *lossy) CompareAndDelete(ctx context.Context, key string, version int64) error {
	r := s.roll()
	if r == 1 {
		return s.fail("CompareAndDelete", key)
	}
	err := s.Store.CompareAndDelete(ctx, key, version)
	if r == 2 {
		return s.fail("CompareAndDelete", key)
	}
	return err
}

func (s *lossy) Upsert(ctx context.Context, key string, value []byte, version int64, ttl time.Duration) (idem.Item, bool, error) {
	r := s.roll()
	if r == 1 {
		return idem.Item{}, false, s.fail("Upsert", key)
	}
	it, applied, err := s.Store.Upsert(ctx, key, value, version, ttl)
	if r == 2 {
		return idem.Item{}, false, s.fail("Upsert", key)
	}
	return it, applied, err
}

// slow delays each call by up to 300µs before and after delegating, so that
// concurrent calls overlap.
type slow struct{ idem.Store }

func pause() { time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond) }

func (s slow) Get(ctx context.Context, key string) (idem.Item, error) {
	pause()
	defer pause()
	return s.Store.Get(ctx, key)
}

func (s slow) PutIfAbsent(ctx context.Context, key string, value []byte, ttl time.Duration) (idem.Item, error) {
	pause()
	defer pause()
	return s.Store.PutIfAbsent(ctx, key, value, ttl)
}

func (s slow) CompareAndSwap(ctx context.Context, key string, version int64, value []byte, ttl time.Duration) (idem.Item, error) {
	pause()
	defer pause()
	return s.Store.CompareAndSwap(ctx, key, version, value, ttl)
}

func (s slow) CompareAndDelete(ctx context.Context, key string, version int64) error {
	pause()
	defer pause()
	return s.Store.CompareAndDelete(ctx, key, version)
}

func (s slow) Upsert(ctx context.Context, key string, value []byte, version int64, ttl time.Duration) (idem.Item, bool, error) {
	pause()
	defer pause()
	return s.Store.Upsert(ctx, key, value, version, ttl)
}

// failingGet fails every third Get with an error and a made-up item.
type failingGet struct {
	idem.Store
	n atomic.Int64
}

func (s *failingGet) Get(ctx context.Context, key string) (idem.Item, error) {
	if s.n.Add(1)%3 == 0 {
		return idem.Item{Key: key, Value: []byte("garbage"), Version: 12345}, errors.New("read timeout")
	}
	return s.Store.Get(ctx, key)
}

// ackingSwap acks every third CompareAndSwap whose condition holds without
// writing it.
type ackingSwap struct {
	idem.Store
	n atomic.Int64
}

func (s *ackingSwap) CompareAndSwap(ctx context.Context, key string, version int64, value []byte, ttl time.Duration) (idem.Item, error) {
	if cur, err := s.Store.Get(ctx, key); err == nil && cur.Version == version && s.n.Add(1)%3 == 0 {
		return idem.Item{Key: key, Value: append([]byte(nil), value...), Version: version + 1}, nil
	}
	return s.Store.CompareAndSwap(ctx, key, version, value, ttl)
}

// staleGet returns, on every third Get, the item the key held before its
// last write.
type staleGet struct {
	idem.Store
	n          atomic.Int64
	mu         sync.Mutex
	prev, last map[string]idem.Item
}

func newStaleGet(s idem.Store) *staleGet {
	return &staleGet{Store: s, prev: map[string]idem.Item{}, last: map[string]idem.Item{}}
}

func (s *staleGet) wrote(it idem.Item, err error) {
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if last, ok := s.last[it.Key]; ok {
		s.prev[it.Key] = last
	}
	s.last[it.Key] = it
}

func (s *staleGet) Get(ctx context.Context, key string) (idem.Item, error) {
	it, err := s.Store.Get(ctx, key)
	if s.n.Add(1)%3 == 0 {
		s.mu.Lock()
		defer s.mu.Unlock()
		if prev, ok := s.prev[key]; ok && err == nil && it.Version == s.last[key].Version {
			return prev, nil
		}
	}
	return it, err
}

func (s *staleGet) PutIfAbsent(ctx context.Context, key string, value []byte, ttl time.Duration) (idem.Item, error) {
	it, err := s.Store.PutIfAbsent(ctx, key, value, ttl)
	s.wrote(it, err)
	return it, err
}

func (s *staleGet) CompareAndSwap(ctx context.Context, key string, version int64, value []byte, ttl time.Duration) (idem.Item, error) {
	it, err := s.Store.CompareAndSwap(ctx, key, version, value, ttl)
	s.wrote(it, err)
	return it, err
}

func (s *staleGet) Upsert(ctx context.Context, key string, value []byte, version int64, ttl time.Duration) (idem.Item, bool, error) {
	it, applied, err := s.Store.Upsert(ctx, key, value, version, ttl)
	if applied {
		s.wrote(it, err)
	}
	return it, applied, err
}

// conflictAfter reports every third applied write of kind op as a conflict
// showing the item it wrote.
type conflictAfter struct {
	idem.Store
	op opKind
	n  atomic.Int64
}

func (s *conflictAfter) lie(op string, it idem.Item, err error) (idem.Item, error) {
	if err == nil && s.n.Add(1)%3 == 0 {
		return idem.Item{}, &idem.ConflictError{Key: it.Key, Op: op, Current: it, Exists: true}
	}
	return it, err
}

func (s *conflictAfter) PutIfAbsent(ctx context.Context, key string, value []byte, ttl time.Duration) (idem.Item, error) {
	it, err := s.Store.PutIfAbsent(ctx, key, value, ttl)
	if s.op != opPut {
		return it, err
	}
	return s.lie("PutIfAbsent", it, err)
}

func (s *conflictAfter) CompareAndSwap(ctx context.Context, key string, version int64, value []byte, ttl time.Duration) (idem.Item, error) {
	it, err := s.Store.CompareAndSwap(ctx, key, version, value, ttl)
	if s.op != opSwap {
		return it, err
	}
	return s.lie("CompareAndSwap", it, err)
}

// upsertDenies reports every third applied Upsert as not applied.
type upsertDenies struct {
	idem.Store
	n atomic.Int64
}

func (s *upsertDenies) Upsert(ctx context.Context, key string, value []byte, version int64, ttl time.Duration) (idem.Item, bool, error) {
	it, applied, err := s.Store.Upsert(ctx, key, value, version, ttl)
	if applied && s.n.Add(1)%3 == 0 {
		return it, false, err
	}
	return it, applied, err
}

// versionOne is a store of the old contract, without TTLs: PutIfAbsent
// starts every key at version 1, so a version comes back after a delete.
type versionOne struct {
	mu    sync.Mutex
	items map[string]idem.Item
}

func newVersionOne() *versionOne { return &versionOne{items: map[string]idem.Item{}} }

func (s *versionOne) conflict(op, key string) error {
	cur, ok := s.items[key]
	return &idem.ConflictError{Key: key, Op: op, Current: cur, Exists: ok}
}

func (s *versionOne) Get(_ context.Context, key string) (idem.Item, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if it, ok := s.items[key]; ok {
		return it, nil
	}
	return idem.Item{}, idem.ErrNotFound
}

func (s *versionOne) PutIfAbsent(_ context.Context, key string, value []byte, _ time.Duration) (idem.Item, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.items[key]; ok {
		return idem.Item{}, s.conflict("PutIfAbsent", key)
	}
	s.items[key] = idem.Item{Key: key, Value: value, Version: 1}
	return s.items[key], nil
}

func (s *versionOne) CompareAndSwap(_ context.Context, key string, version int64, value []byte, _ time.Duration) (idem.Item, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.items[key]; !ok || cur.Version != version {
		return idem.Item{}, s.conflict("CompareAndSwap", key)
	}
	s.items[key] = idem.Item{Key: key, Value: value, Version: version + 1}
	return s.items[key], nil
}

func (s *versionOne) CompareAndDelete(_ context.Context, key string, version int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.items[key]; !ok || cur.Version != version {
		return s.conflict("CompareAndDelete", key)
	}
	delete(s.items, key)
	return nil
}

func (s *versionOne) Upsert(_ context.Context, key string, value []byte, version int64, _ time.Duration) (idem.Item, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.items[key]; ok && cur.Version >= version {
		return cur, false, nil
	}
	s.items[key] = idem.Item{Key: key, Value: value, Version: version}
	return s.items[key], true, nil
}

// TestLinearEndings checks the model's memory of ended incarnations: a
// PutIfAbsent must start above every incarnation deleted before it was
// invoked, and only those.
func TestLinearEndings(t *testing.T) {
	var s linState
	for _, e := range []ending{{10, 100}, {20, 200}, {15, 150}, {30, 300}, {40, 400}, {50, 500}} {
		s = s.deleted(e.version, e.returned)
	}
	s = s.deleted(5, 600)  // dominated by {50, 500}: adds nothing
	s = s.deleted(99, 0)   // returned at an unknown time: constrains nothing
	s = s.deleted(45, 450) // between two kept endings
	// Kept: {30, 300}, {40, 400}, {45, 450}, {50, 500}; the older ones
	// were forgotten, which only makes the model lenient.
	for _, tc := range []struct {
		call, want int64
	}{
		{50, 0},    // before every delete returned
		{250, 0},   // {20, 200} forgotten
		{300, 0},   // concurrent with {30, 300}: intervals are closed
		{301, 30},  // after it
		{451, 45},  // after {45, 450}
		{1000, 50}, // after all of them
	} {
		if got := s.floor(tc.call); got != tc.want {
			t.Errorf("floor(%d): got %d, want %d (endings %v)", tc.call, got, tc.want, s.ended[:s.n])
		}
	}
	if s.n != 4 {
		t.Errorf("got %d endings kept, want 4: %v", s.n, s.ended[:s.n])
	}
}
