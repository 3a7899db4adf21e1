package idemtest

// Linearizable: a history checker for the five kernel operations.
//
// The API:
//
//	type LinearConfig struct {
//		Clients int           // concurrent clients (default 6)
//		Keys    int           // keys per round (default 3)
//		Ops     int           // operations per client per round (default 25)
//		Rounds  int           // rounds, each on fresh keys (default 3)
//		Seed    int64         // 0: random, logged so a failure can be replayed
//		Timeout time.Duration // context timeout of each operation (default 5s)
//	}
//	func Linearizable(t *testing.T, s idem.Store, cfg LinearConfig)
//
// Run calls it as "Kernel/Linearizable" without faults; a backend calls it
// itself on a Store whose wire loses responses, times out or cuts
// connections, to check that its settling is proof and never inference.

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"math"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/idemkit/idemkit/idem"
)

// LinearConfig sizes a Linearizable run; zero fields take defaults.
type LinearConfig struct {
	Clients int           // concurrent clients (default 6)
	Keys    int           // keys per round (default 3)
	Ops     int           // operations per client per round (default 25)
	Rounds  int           // rounds, each on fresh keys (default 3)
	Seed    int64         // 0: random, logged so a failure can be replayed
	Timeout time.Duration // context timeout of each operation (default 5s)
}

func (c LinearConfig) withDefaults() LinearConfig {
	if c.Clients <= 0 {
		c.Clients = 6
	}
	if c.Keys <= 0 {
		c.Keys = 3
	}
	if c.Ops <= 0 {
		c.Ops = 25
	}
	if c.Rounds <= 0 {
		c.Rounds = 3
	}
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Second
	}
	if c.Seed == 0 {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			panic(err)
		}
		c.Seed = int64(binary.LittleEndian.Uint64(b[:])>>1) | 1
	}
	return c
}

// checkTimeout bounds the check of one key's history. The check is
// exponential in the number of overlapping operations; a key it cannot
// decide in this time is logged, not failed.
const checkTimeout = 30 * time.Second

// Linearizable runs cfg.Clients goroutines against s, each doing random
// Get, PutIfAbsent, CompareAndSwap, CompareAndDelete and Upsert calls (no
// TTL) on a few keys, records every call's input, output, invocation and
// return, and checks each key's history against a sequential model of the
// idem.Store contract with porcupine:
//
//   - PutIfAbsent applies iff the key is absent, and the version it returns
//     is above the last version of every incarnation of the key deleted
//     before the call was made (kernel.FreshVersion; the rule is one of real
//     time, as the version is taken when the call starts: a PutIfAbsent
//     that lands late may start below an incarnation created and deleted
//     while it was under way);
//   - CompareAndSwap applies iff the stored version equals the given one,
//     and adds exactly one; CompareAndDelete applies iff it equals;
//   - Upsert applies iff the key is absent or its stored version is lower;
//     when it does not apply it returns the current item;
//   - Get returns the current item, or ErrNotFound;
//   - a conflict is a proof that nothing was applied, and its Exists and
//     Current are the state at that point.
//
// A write that fails with anything but a conflict (an error matching
// idem.ErrUnknownOutcome, a context deadline, a connection cut) may or may
// not have happened: it stays pending to the end of the history and the
// model accepts both outcomes. A failed Get is dropped.
//
// Every write carries a value of its own, CompareAndSwap and
// CompareAndDelete use versions the clients observed shortly before (so
// many of them apply), and Upsert uses versions just below and just above.
// Keys are fresh for each round and each run.
//
// On a violation, Linearizable reports the shortest offending part of the
// key's history it can find, one line per operation, and writes porcupine's
// HTML visualisation of it (and of the key's whole history) to a file whose
// path it logs: under t.ArtifactDir() when go test runs with -artifacts,
// else in os.TempDir(), where it outlives the test. The seed is logged; a
// run with the same LinearConfig.Seed makes the same random choices, though
// which versions the clients observe depends on timing.
func Linearizable(t *testing.T, s idem.Store, cfg LinearConfig) {
	t.Helper()
	v := checkLinear(t.Context(), s, cfg, t.Logf)
	if len(v.violations) == 0 {
		return
	}
	dir, err := visualisationDir(t)
	for _, bad := range v.violations {
		where := "(no visualisation: " + fmt.Sprint(err) + ")"
		if err == nil {
			if path, werr := bad.visualise(dir); werr != nil {
				where = "(no visualisation: " + werr.Error() + ")"
			} else {
				where = "visualisation: " + path
			}
		}
		t.Errorf("not linearizable: key %q (round %d, seed %d): the shortest offending history found, %d of the key's %d operations:\n%s%s",
			bad.key, bad.round, v.seed, len(bad.short), len(bad.full), describeHistory(bad.short), where)
	}
}

// visualisationDir returns where visualisations go: the test's artifact
// directory with -artifacts (without it, ArtifactDir is removed with the
// test), else a new directory in os.TempDir.
func visualisationDir(t *testing.T) (string, error) {
	if f := flag.Lookup("test.artifacts"); f != nil && f.Value.String() == "true" {
		return t.ArtifactDir(), nil
	}
	return os.MkdirTemp("", "idemtest-linear-")
}

// linearVerdict is the outcome of checkLinear.
type linearVerdict struct {
	seed       int64
	ops        int      // operations recorded (failed Gets included)
	applied    int      // writes reported applied
	refused    int      // writes reported not applied
	unknown    int      // writes of unknown outcome
	dropped    int      // failed Gets
	undecided  []string // keys the checker could not decide in time
	violations []linearViolation
}

type linearViolation struct {
	key   string
	round int
	full  []porcupine.Operation // the key's whole history
	short []porcupine.Operation // the shortest offending part found
}

// checkLinear runs the workload and checks it; Linearizable reports what it
// returns.
func checkLinear(ctx context.Context, s idem.Store, cfg LinearConfig, logf func(string, ...any)) linearVerdict {
	cfg = cfg.withDefaults()
	v := linearVerdict{seed: cfg.Seed}
	run := randomHex(6)
	for round := range cfg.Rounds {
		keys := make([]string, cfg.Keys)
		for k := range keys {
			keys[k] = fmt.Sprintf("idemtest/%s/linear/r%d/k%d", run, round, k)
		}
		history := runRound(ctx, s, cfg, round, keys)
		for _, op := range history {
			v.ops++
			switch out := op.Output.(linOutput); {
			case out.kind == outDropped:
				v.dropped++
			case out.kind == outUnknown:
				v.unknown++
			case op.Input.(linInput).op == opGet:
			case out.kind == outOK:
				v.applied++
			case out.kind == outRefused:
				v.refused++
			}
		}
		for k, key := range keys {
			var ops []porcupine.Operation
			for _, op := range history {
				if op.Input.(linInput).key == k && op.Output.(linOutput).kind != outDropped {
					ops = append(ops, op)
				}
			}
			switch porcupine.CheckOperationsTimeout(linModel, ops, checkTimeout) {
			case porcupine.Illegal:
				v.violations = append(v.violations, linearViolation{key: key, round: round, full: ops, short: shortest(ops)})
			case porcupine.Unknown:
				v.undecided = append(v.undecided, key)
			}
		}
	}
	logf("linearizability: seed %d: %d rounds of %d clients on %d keys: %d operations; writes: %d applied, %d refused, %d of unknown outcome; %d failed Gets dropped; %d keys not linearizable",
		v.seed, cfg.Rounds, cfg.Clients, cfg.Keys, v.ops, v.applied, v.refused, v.unknown, v.dropped, len(v.violations))
	if len(v.undecided) > 0 {
		logf("linearizability: the checker could not decide %d keys within %v: %v", len(v.undecided), checkTimeout, v.undecided)
	}
	return v
}

// recentVersions keeps the last versions the clients observed per key, so
// that CompareAndSwap and CompareAndDelete often name the current one.
type recentVersions struct {
	mu   sync.Mutex
	seen [][]int64 // per key index, newest last
}

func (r *recentVersions) add(k int, v int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := append(r.seen[k], v)
	if len(s) > 4 {
		s = s[len(s)-4:]
	}
	r.seen[k] = s
}

func (r *recentVersions) get(k int) []int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.seen[k])
}

// runRound runs one round's clients and returns their operations, writes of
// unknown outcome pending to the end.
func runRound(ctx context.Context, s idem.Store, cfg LinearConfig, round int, keys []string) []porcupine.Operation {
	recent := &recentVersions{seen: make([][]int64, len(keys))}
	perClient := make([][]porcupine.Operation, cfg.Clients)
	start := time.Now()
	begin := make(chan struct{})
	var wg sync.WaitGroup
	for c := range cfg.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := mrand.New(mrand.NewPCG(uint64(cfg.Seed), uint64(round)<<32|uint64(c)))
			<-begin
			for n := range cfg.Ops {
				k := r.IntN(len(keys))
				in := chooseOp(r, recent.get(k), k, fmt.Sprintf("c%d.%d", c, n))
				opCtx, cancel := context.WithTimeout(ctx, cfg.Timeout)
				call := time.Since(start).Nanoseconds()
				in.call = call
				out := apply(opCtx, s, keys[k], in)
				ret := time.Since(start).Nanoseconds()
				out.returned = ret
				cancel()
				if out.observed() {
					recent.add(k, out.version)
				}
				perClient[c] = append(perClient[c], porcupine.Operation{ClientId: c, Input: in, Call: call, Output: out, Return: ret})
			}
		}()
	}
	close(begin)
	wg.Wait()
	end := time.Since(start).Nanoseconds() + 1
	var all []porcupine.Operation
	for _, ops := range perClient {
		for _, op := range ops {
			if op.Output.(linOutput).kind == outUnknown {
				// It may take effect at any point after its call.
				op.Metadata, op.Return = linMeta{returned: op.Return}, end
			}
			all = append(all, op)
		}
	}
	slices.SortStableFunc(all, func(a, b porcupine.Operation) int { return cmp.Compare(a.Call, b.Call) })
	return all
}

// chooseOp picks the next operation on key index k, given the versions
// observed there lately (newest last). It draws the same random numbers
// whatever was observed, so a seed fixes every client's sequence of
// operations, keys and values; only the versions follow what the store
// returned.
func chooseOp(r *mrand.Rand, recent []int64, k int, value string) linInput {
	kind, which, other, delta, initial := r.IntN(100), r.IntN(10), r.Uint64(), r.IntN(6), r.Int64N(3)
	in := linInput{key: k, value: value}
	var latest, older int64 = 1, 1 // for CompareAndSwap and CompareAndDelete
	if len(recent) > 0 {
		latest, older = recent[len(recent)-1], recent[other%uint64(len(recent))]
	}
	condition := latest // usually the current version, so the write applies
	switch {
	case which >= 9:
		condition = latest + 1
	case which >= 7:
		condition = older
	}
	switch {
	case kind < 25:
		in.op = opGet
	case kind < 42:
		in.op = opPut
	case kind < 67:
		in.op, in.version = opSwap, max(condition, 1)
	case kind < 80:
		in.op, in.version = opDelete, max(condition, 1)
	default:
		// Just below, at or just above the latest version.
		in.op, in.version = opUpsert, initial
		if len(recent) > 0 {
			in.version = max(latest+[]int64{-3, -1, 0, 1, 1, 2}[delta], 0)
		}
	}
	return in
}

// apply calls the store and translates the result for the model.
func apply(ctx context.Context, s idem.Store, key string, in linInput) linOutput {
	var (
		it      idem.Item
		applied = true
		err     error
	)
	switch in.op {
	case opGet:
		it, err = s.Get(ctx, key)
		switch {
		case err == nil:
			return linOutput{kind: outOK, value: string(it.Value), version: it.Version}
		case errors.Is(err, idem.ErrNotFound):
			return linOutput{kind: outNotFound}
		default:
			return linOutput{kind: outDropped, err: err.Error()}
		}
	case opPut:
		it, err = s.PutIfAbsent(ctx, key, []byte(in.value), 0)
	case opSwap:
		it, err = s.CompareAndSwap(ctx, key, in.version, []byte(in.value), 0)
	case opDelete:
		err = s.CompareAndDelete(ctx, key, in.version)
	case opUpsert:
		it, applied, err = s.Upsert(ctx, key, []byte(in.value), in.version, 0)
		if err == nil && !applied {
			return linOutput{kind: outRefused, detail: true, exists: true, value: string(it.Value), version: it.Version}
		}
	}
	var ce *idem.ConflictError
	switch {
	case err == nil:
		return linOutput{kind: outOK, value: string(it.Value), version: it.Version}
	case in.op != opUpsert && !errors.Is(err, idem.ErrUnknownOutcome) && errors.As(err, &ce):
		return linOutput{kind: outRefused, detail: true, exists: ce.Exists, value: string(ce.Current.Value), version: ce.Current.Version, err: err.Error()}
	case in.op != opUpsert && !errors.Is(err, idem.ErrUnknownOutcome) && errors.Is(err, idem.ErrConflict):
		return linOutput{kind: outRefused, err: err.Error()}
	default:
		return linOutput{kind: outUnknown, err: err.Error()}
	}
}

type opKind uint8

const (
	opGet opKind = iota
	opPut
	opSwap
	opDelete
	opUpsert
)

var opNames = [...]string{"Get", "PutIfAbsent", "CompareAndSwap", "CompareAndDelete", "Upsert"}

// linInput is one call: the operation, the index of its key in the round,
// its arguments (value for writes, version for all but PutIfAbsent) and
// when it was invoked.
type linInput struct {
	op      opKind
	key     int
	value   string
	version int64
	call    int64
}

type outKind uint8

const (
	outOK       outKind = iota // Get found the item; a write applied
	outNotFound                // Get: ErrNotFound
	outRefused                 // a conflict, or Upsert with applied == false
	outUnknown                 // a write that may or may not have happened
	outDropped                 // a failed Get: not checked
)

// linOutput is one call's result. value and version are the item returned:
// the stored one, or the current one of a refusal (when detail is true).
type linOutput struct {
	kind     outKind
	detail   bool // outRefused: the result carries the current item (or says the key is absent)
	exists   bool // outRefused with detail: the key exists
	value    string
	version  int64
	err      string // the error, for the report
	returned int64  // when the call returned
}

// observed reports whether the output names a version the key held.
func (o linOutput) observed() bool {
	return o.kind == outOK && o.version > 0 || o.kind == outRefused && o.detail && o.exists
}

// linMeta is kept with an operation the check counts as pending to the end
// of the history: when it really returned, and what it returned if that
// was not an unknown outcome (it was running when the history was cut).
type linMeta struct {
	returned int64
	was      string
}

func (m linMeta) String() string {
	s := "returned at " + millis(m.returned)
	if m.was != "" {
		s += " with " + m.was
	}
	return s
}

func millis(ns int64) string { return fmt.Sprintf("%.3fms", float64(ns)/1e6) }

// linState is one possible state of a key. Its version is known to lie in
// [lo, hi]: a PutIfAbsent of unknown outcome creates an item whose version
// nobody has seen yet, and later operations narrow it down.
//
// ended remembers the incarnations of the key that CompareAndDelete ended,
// by their last version and when that delete returned: a PutIfAbsent
// invoked after such a delete returned must start above its version. The
// rule is one of real time, not of the order of linearization: kernel.FreshVersion
// is taken when the call starts, so a PutIfAbsent that takes long to land
// may start below an incarnation created and deleted meanwhile, and must
// not be failed for it. Only the latest few endings are kept (forgetting
// one only makes the model more lenient).
type linState struct {
	exists bool
	value  string
	lo, hi int64
	ended  [4]ending // the first n, by time of return
	n      uint8
}

// ending is one ended incarnation: its last version, and when the delete
// that ended it returned.
type ending struct{ version, returned int64 }

// floor returns the version a PutIfAbsent invoked at call must exceed.
func (s linState) floor(call int64) int64 {
	var v int64
	for _, e := range s.ended[:s.n] {
		if e.returned < call {
			v = max(v, e.version)
		}
	}
	return v
}

// deleted returns the key absent after a delete of the incarnation at
// version, returned at returned (0: not known, so it constrains nothing).
func (s linState) deleted(version, returned int64) linState {
	next := linState{ended: s.ended, n: s.n}
	if returned == 0 {
		return next
	}
	var kept []ending
	for _, e := range s.ended[:s.n] {
		if e.version >= version && e.returned <= returned {
			return next // the new ending adds nothing
		}
		if e.version > version || e.returned < returned {
			kept = append(kept, e) // not dominated by the new one
		}
	}
	kept = append(kept, ending{version, returned})
	slices.SortFunc(kept, func(a, b ending) int { return cmp.Compare(a.returned, b.returned) })
	kept = kept[max(len(kept)-len(next.ended), 0):]
	next.ended = [4]ending{}
	next.n = uint8(copy(next.ended[:], kept))
	return next
}

func (s linState) holding(value string, version int64) linState {
	return linState{exists: true, value: value, lo: version, hi: version, ended: s.ended, n: s.n}
}

// is reports whether the state can be the item (value, version), and the
// state narrowed to it.
func (s linState) is(value string, version int64) (linState, bool) {
	if !s.exists || s.value != value || version < s.lo || version > s.hi {
		return s, false
	}
	return s.holding(value, version), true
}

// step returns the states the key can be in after the call in with result
// out, from state s; none if the result is impossible.
func step(s linState, in linInput, out linOutput) []linState {
	switch in.op {
	case opGet:
		return stepGet(s, out)
	case opPut:
		return stepPut(s, in, out)
	case opSwap, opDelete:
		return stepSwapOrDelete(s, in, out)
	case opUpsert:
		return stepUpsert(s, in, out)
	}
	return nil
}

func stepGet(s linState, out linOutput) []linState {
	switch out.kind {
	case outOK:
		if n, ok := s.is(out.value, out.version); ok {
			return []linState{n}
		}
	case outNotFound:
		if !s.exists {
			return []linState{s}
		}
	}
	return nil
}

func stepPut(s linState, in linInput, out linOutput) []linState {
	switch out.kind {
	case outOK:
		if !s.exists && out.value == in.value && out.version >= 1 && out.version > s.floor(in.call) {
			return []linState{s.holding(in.value, out.version)}
		}
		return nil
	case outRefused:
		if !out.detail {
			return onlyIf(s.exists, s)
		}
		if !out.exists {
			return nil // the key must exist for PutIfAbsent to be refused
		}
		return refusedWith(s, out, func(int64) bool { return true })
	default:
		next := []linState{s}
		if !s.exists {
			n := s.holding(in.value, 0)
			n.lo, n.hi = max(s.floor(in.call)+1, 1), math.MaxInt64
			next = append(next, n)
		}
		return next
	}
}

func stepSwapOrDelete(s linState, in linInput, out linOutput) []linState {
	applied := func(returned int64) (linState, bool) {
		if !s.exists || in.version < s.lo || in.version > s.hi {
			return s, false
		}
		if in.op == opDelete {
			return s.deleted(in.version, returned), true
		}
		return s.holding(in.value, in.version+1), true
	}
	switch out.kind {
	case outOK:
		n, ok := applied(out.returned)
		if !ok || in.op == opSwap && (out.value != in.value || out.version != in.version+1) {
			return nil
		}
		return []linState{n}
	case outRefused:
		if !out.detail {
			return onlyIf(!s.exists || s.lo != in.version || s.hi != in.version, s)
		}
		if !out.exists {
			return onlyIf(!s.exists, s)
		}
		return refusedWith(s, out, func(v int64) bool { return v != in.version })
	default:
		next := []linState{s}
		if n, ok := applied(0); ok { // if it applied, it ended the incarnation at an unknown time
			next = append(next, n)
		}
		return next
	}
}

func stepUpsert(s linState, in linInput, out linOutput) []linState {
	canApply := !s.exists || s.lo < in.version
	switch out.kind {
	case outOK:
		if canApply && out.value == in.value && out.version == in.version {
			return []linState{s.holding(in.value, in.version)}
		}
		return nil
	case outRefused:
		return refusedWith(s, out, func(v int64) bool { return v >= in.version })
	default:
		next := []linState{s}
		if canApply {
			next = append(next, s.holding(in.value, in.version))
		}
		return next
	}
}

// refusedWith checks a refusal that names the current item: the state must
// be that item, and its version must be one that refuses the write.
func refusedWith(s linState, out linOutput, refuses func(int64) bool) []linState {
	n, ok := s.is(out.value, out.version)
	return onlyIf(ok && refuses(out.version), n)
}

func onlyIf(ok bool, s linState) []linState {
	if !ok {
		return nil
	}
	return []linState{s}
}

// linModel is the sequential model of one key, with unknown outcomes as
// nondeterminism.
var linModel = (&porcupine.NondeterministicModel{
	Init: func() []any { return []any{linState{}} },
	Step: func(state, input, output any) []any {
		var next []any
		for _, n := range step(state.(linState), input.(linInput), output.(linOutput)) {
			next = append(next, n)
		}
		return next
	},
	Hash: func(state any) uint64 {
		s := state.(linState)
		h := fnv.New64a()
		b := []byte{0}
		if s.exists {
			b[0] = 1
		}
		b = binary.LittleEndian.AppendUint64(b, uint64(s.lo))
		b = binary.LittleEndian.AppendUint64(b, uint64(s.hi))
		for _, e := range s.ended[:s.n] {
			b = binary.LittleEndian.AppendUint64(b, uint64(e.version))
			b = binary.LittleEndian.AppendUint64(b, uint64(e.returned))
		}
		h.Write(b)
		h.Write([]byte(s.value))
		return h.Sum64()
	},
	DescribeOperation: func(input, output any) string {
		return describeCall(input.(linInput)) + " -> " + describeResult(input.(linInput), output.(linOutput))
	},
	DescribeState: func(state any) string {
		s := state.(linState)
		switch {
		case !s.exists && s.n == 0:
			return "absent"
		case !s.exists:
			e := s.ended[s.n-1]
			return fmt.Sprintf("absent; deleted at version %d by a call that returned at %s", e.version, millis(e.returned))
		case s.lo == s.hi:
			return fmt.Sprintf("%q at version %d", s.value, s.lo)
		default:
			return fmt.Sprintf("%q at a version not yet seen, above %d", s.value, s.lo-1)
		}
	},
	DescribeOperationMetadata: func(m any) string {
		if m == nil {
			return ""
		}
		return "counted as pending to the end; " + m.(linMeta).String()
	},
}).ToModel()

func describeCall(in linInput) string {
	switch in.op {
	case opGet:
		return "Get"
	case opPut:
		return fmt.Sprintf("PutIfAbsent(value %q)", in.value)
	case opDelete:
		return fmt.Sprintf("CompareAndDelete(version %d)", in.version)
	default:
		return fmt.Sprintf("%s(version %d, value %q)", opNames[in.op], in.version, in.value)
	}
}

func describeResult(in linInput, out linOutput) string {
	switch out.kind {
	case outOK:
		switch in.op {
		case opGet:
			return fmt.Sprintf("found %q at version %d", out.value, out.version)
		case opDelete:
			return "deleted"
		default:
			return fmt.Sprintf("applied: %q at version %d", out.value, out.version)
		}
	case outNotFound:
		return "not found"
	case outRefused:
		switch {
		case in.op == opUpsert:
			return fmt.Sprintf("not applied: current %q at version %d", out.value, out.version)
		case !out.detail:
			return "conflict without the current item (" + out.err + ")"
		case !out.exists:
			return "conflict: the key is absent"
		default:
			return fmt.Sprintf("conflict: current %q at version %d", out.value, out.version)
		}
	case outUnknown:
		return "may or may not have happened (" + out.err + ")"
	default:
		return "failed, not checked (" + out.err + ")"
	}
}

// describeHistory writes a history one operation a line, in the order of
// invocation, with times in milliseconds since the round began.
func describeHistory(ops []porcupine.Operation) string {
	ops = slices.Clone(ops)
	slices.SortStableFunc(ops, func(a, b porcupine.Operation) int { return cmp.Compare(a.Call, b.Call) })
	var b strings.Builder
	for _, op := range ops {
		in, out := op.Input.(linInput), op.Output.(linOutput)
		ret := millis(op.Return)
		if m, ok := op.Metadata.(linMeta); ok {
			ret = "end (" + m.String() + ")"
		}
		fmt.Fprintf(&b, "  client %d  %s -> %s  [%s .. %s]\n", op.ClientId, describeCall(in), describeResult(in, out), millis(op.Call), ret)
	}
	return b.String()
}

// shortest returns a shorter history that is still not linearizable, so
// that every history it returns proves the original is not: it cuts the
// history at the earliest moment from which the violation is certain
// (operations running at that moment become pending, of unknown outcome;
// Gets among them are dropped), then drops operations that change nothing
// in the model (Gets and refusals) while the rest stays illegal. Both steps
// only remove constraints, so a shortened history that is illegal makes
// the whole one illegal.
func shortest(ops []porcupine.Operation) []porcupine.Operation {
	illegal := func(h []porcupine.Operation) bool {
		return porcupine.CheckOperationsTimeout(linModel, h, 2*time.Second) == porcupine.Illegal
	}
	var times []int64
	for _, op := range ops {
		times = append(times, op.Call)
		if op.Output.(linOutput).kind != outUnknown {
			times = append(times, op.Return)
		}
	}
	slices.Sort(times)
	times = slices.Compact(times)
	// The whole history is illegal; find the earliest cut that is too.
	best := ops
	lo, hi := 0, len(times)-1
	for lo < hi {
		mid := (lo + hi) / 2
		if cut := cutAt(ops, times[mid]); illegal(cut) {
			best, hi = cut, mid
		} else {
			lo = mid + 1
		}
	}
	for i := len(best) - 1; i >= 0; i-- {
		out := best[i].Output.(linOutput)
		if best[i].Input.(linInput).op != opGet && out.kind != outRefused {
			continue
		}
		if fewer := slices.Delete(slices.Clone(best), i, i+1); illegal(fewer) {
			best = fewer
		}
	}
	return best
}

// cutAt returns the history as it stood at moment at: operations invoked
// later are left out, writes still running become of unknown outcome, Gets
// still running are dropped.
func cutAt(ops []porcupine.Operation, at int64) []porcupine.Operation {
	var cut []porcupine.Operation
	for _, op := range ops {
		if op.Call > at {
			continue
		}
		if op.Return > at {
			if op.Input.(linInput).op == opGet {
				continue
			}
			if op.Metadata == nil {
				out := op.Output.(linOutput)
				op.Metadata = linMeta{returned: op.Return, was: describeResult(op.Input.(linInput), out)}
				op.Output = linOutput{kind: outUnknown, err: "still running at the cut"}
			}
			op.Return = at + 1
		}
		cut = append(cut, op)
	}
	return cut
}

// visualise writes porcupine's visualisations of the short and the whole
// history to dir and returns the short one's path.
func (v linearViolation) visualise(dir string) (string, error) {
	name := strings.NewReplacer("/", "_", " ", "_").Replace(v.key)
	short := filepath.Join(dir, name+".short.html")
	for path, h := range map[string][]porcupine.Operation{short: v.short, filepath.Join(dir, name+".full.html"): v.full} {
		_, info := porcupine.CheckOperationsVerbose(linModel, h, checkTimeout)
		if err := porcupine.VisualizePath(linModel, info, path); err != nil {
			return "", err
		}
	}
	return short, nil
}
