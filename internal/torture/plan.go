package torture

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"time"
)

// Plan is everything a run is made of, apart from the backend: the
// workload, who submits it, and the faults. Parent and children derive
// the same tasks from it, so a child learns its share from the Plan and
// its slot alone.
type Plan struct {
	Seed uint64 // fixes the workload, the kill schedule and each worker's fault choices

	DoKeys      int // keys submitted through idem.Do
	OnceEvents  int // event IDs submitted through idem.Once
	Counters    int // counters fed through idem.Counter's Add
	CounterOps  int // distinct operations per counter (below Counter.Window)
	Submissions int // deliveries of each Do key and Once event during the chaos
	AddDeliver  int // deliveries of each counter operation during the chaos

	Children int // worker processes (in-process groups on memstore)
	Workers  int // concurrent callers per child

	Lease     time.Duration // WithLease of every Do and Once
	Heartbeat time.Duration // WithHeartbeat
	Wait      time.Duration // WithWait of the callers that wait (WaitShare of them)
	WaitShare float64

	FnFail   float64 // probability that fn fails (Do releases the key)
	KillMid  float64 // probability that fn kills its own process mid-work
	KillLate float64 // probability that fn kills its process after finishing, before returning
	SlowFn   float64 // probability that fn runs for about a lease (heartbeats are needed)

	KillEvery time.Duration // mean interval between the parent's kills of a random child
	Drop      float64       // proxy: probability of dropping a response
	CutAtResp float64       // proxy: probability of closing the connection when the response comes
	CutNow    float64       // proxy: probability of closing the connection before forwarding
	Delay     float64       // proxy: probability of holding a response for DelayBy
	DelayReq  float64       // proxy: probability of holding a request for DelayBy, then forwarding it
	DelayBy   time.Duration // proxy: longer than the clients' timeouts, so a held request may land after its caller gave up

	Deadline time.Duration // bound on the chaos phase: beyond it the run fails
}

// Scale names a Plan size.
type Scale string

// The sizes of a run. CI keeps each backend within about a minute on a
// loaded two-core machine; Full is what `make torture` runs (over 10^5 Do
// calls across moto, ministack and Cassandra).
const (
	CI   Scale = "ci"
	Full Scale = "full"
)

// ScaleFromEnv reads IDEM_TORTURE_SCALE ("ci", the default, or "full").
func ScaleFromEnv() (Scale, error) {
	switch s := Scale(cmp.Or(os.Getenv("IDEM_TORTURE_SCALE"), string(CI))); s {
	case CI, Full:
		return s, nil
	default:
		return "", fmt.Errorf("torture: IDEM_TORTURE_SCALE=%q: want %q or %q", s, CI, Full)
	}
}

// SeedFromEnv reads IDEM_TORTURE_SEED, or picks a seed from the clock; a
// failing run prints its seed so that IDEM_TORTURE_SEED replays its
// workload, kill schedule and fault choices (timing still varies).
func SeedFromEnv() (uint64, error) {
	v := os.Getenv("IDEM_TORTURE_SEED")
	if v == "" {
		return uint64(time.Now().UnixNano()), nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("torture: IDEM_TORTURE_SEED=%q: %w", v, err)
	}
	return n, nil
}

// KeysFromEnv reads IDEM_TORTURE_KEYS, which, when set, overrides the
// number of Do keys of every plan (Once events follow at a sixth of it):
// for sizing a run to a machine.
func KeysFromEnv() (int, error) {
	v := os.Getenv("IDEM_TORTURE_KEYS")
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("torture: IDEM_TORTURE_KEYS=%q: want a positive number", v)
	}
	return n, nil
}

// FaultsFromEnv reads IDEM_TORTURE_FAULTS, a factor (default 1) by which
// WithFaults multiplies the plan's fault probabilities.
func FaultsFromEnv() (float64, error) {
	v := os.Getenv("IDEM_TORTURE_FAULTS")
	if v == "" {
		return 1, nil
	}
	x, err := strconv.ParseFloat(v, 64)
	if err != nil || x < 0 {
		return 0, fmt.Errorf("torture: IDEM_TORTURE_FAULTS=%q: want a factor of at least 0", v)
	}
	return x, nil
}

// WithFaults returns p with the probabilities of the proxy's faults, of
// fn's failures and of its self-kills multiplied by x, and the parent's
// kills x times as frequent; the proxy's probabilities are scaled down
// together if their sum would pass one half.
func (p Plan) WithFaults(x float64) Plan {
	p.Drop, p.CutAtResp, p.CutNow, p.Delay, p.DelayReq = x*p.Drop, x*p.CutAtResp, x*p.CutNow, x*p.Delay, x*p.DelayReq
	if sum := p.Drop + p.CutAtResp + p.CutNow + p.Delay + p.DelayReq; sum > 0.5 {
		k := 0.5 / sum
		p.Drop, p.CutAtResp, p.CutNow, p.Delay, p.DelayReq = k*p.Drop, k*p.CutAtResp, k*p.CutNow, k*p.Delay, k*p.DelayReq
	}
	p.FnFail, p.KillMid, p.KillLate = min(x*p.FnFail, 0.9), min(x*p.KillMid, 0.2), min(x*p.KillLate, 0.2)
	if x > 0 {
		p.KillEvery = time.Duration(float64(p.KillEvery) / x)
	}
	return p
}

// NewPlan returns the plan of a scale for a backend, by its report name
// (memstore, moto, ministack, cassandra, cluster; any other DynamoDB
// server is sized as ministack). Sizes follow each server's throughput on
// a loaded two-core machine: moto serves its requests one at a time.
func NewPlan(scale Scale, backend string, seed uint64) Plan {
	p := Plan{
		Seed:        seed,
		DoKeys:      240,
		OnceEvents:  80,
		Counters:    4,
		CounterOps:  40,
		Submissions: 3,
		AddDeliver:  2,
		Children:    3,
		Workers:     6,
		Lease:       2 * time.Second,
		Heartbeat:   400 * time.Millisecond,
		Wait:        3 * time.Second,
		WaitShare:   0.3,
		FnFail:      0.15,
		KillMid:     0.005,
		KillLate:    0.005,
		SlowFn:      0.02,
		KillEvery:   3 * time.Second,
		Drop:        0.01,
		CutAtResp:   0.006,
		CutNow:      0.006,
		Delay:       0.003,
		DelayReq:    0.003,
		DelayBy:     4500 * time.Millisecond,
		Deadline:    3 * time.Minute,
	}
	switch backend {
	case "memstore":
		p.DoKeys, p.OnceEvents, p.Counters, p.CounterOps, p.Workers = 2000, 600, 8, 100, 16
	case "cluster":
		p.DoKeys, p.OnceEvents = 400, 100
	}
	if scale != Full {
		return p
	}
	p.Deadline = 12 * time.Minute
	p.Children, p.Workers = 4, 8
	switch backend {
	case "memstore":
		p.DoKeys, p.OnceEvents, p.Children, p.Workers = 6000, 1000, 3, 16
	case "moto":
		p.DoKeys, p.OnceEvents, p.Counters, p.CounterOps = 3000, 500, 6, 100
	case "cluster":
		p.DoKeys, p.OnceEvents, p.Counters, p.CounterOps = 1000, 200, 6, 60
	default:
		p.DoKeys, p.OnceEvents, p.Counters, p.CounterOps = 12000, 2000, 12, 150
	}
	return p
}

// Task is one delivery of a key, event or counter operation.
type Task struct {
	Index int    // position in Plan.Tasks, the same in every process
	Kind  string // KindDo, KindOnce or KindAdd
	Key   string // the Do key, Once event ID or counter key
	Op    string // KindAdd: the operation ID
	Delta int64  // KindAdd: the amount
	Wait  bool   // KindDo, KindOnce: call WithWait(Plan.Wait)
}

// Kinds of task.
const (
	KindDo   = "do"
	KindOnce = "once"
	KindAdd  = "add"
)

// DoKey, OnceID and CounterKey name the plan's keys; OpID names a
// counter's operations.
func DoKey(i int) string      { return fmt.Sprintf("do-%05d", i) }
func OnceID(i int) string     { return fmt.Sprintf("ev-%05d", i) }
func CounterKey(i int) string { return fmt.Sprintf("ctr-%03d", i) }
func OpID(c, i int) string    { return fmt.Sprintf("%s/op-%04d", CounterKey(c), i) }

// OpDelta is the amount operation op adds: 1 to 5, from its ID.
func OpDelta(op string) int64 {
	h := fnv.New32a()
	h.Write([]byte(op))
	return int64(h.Sum32()%5) + 1
}

// Expected returns the total each counter must reach: the sum of its
// distinct operations' amounts, however often each was delivered.
func (p Plan) Expected() map[string]int64 {
	want := map[string]int64{}
	for c := range p.Counters {
		for i := range p.CounterOps {
			want[CounterKey(c)] += OpDelta(OpID(c, i))
		}
	}
	return want
}

// Tasks returns every delivery of the chaos phase, in the order they are
// dealt out. Each key's deliveries are placed around a random point of the
// run: the first two close together (duplicates in flight at once, dealt
// to different children), the others later (redeliveries).
func (p Plan) Tasks() []Task {
	r := rand.New(rand.NewPCG(p.Seed, 0x7a5c))
	type slot struct {
		at float64
		t  Task
	}
	var all []slot
	spread := func(t Task, n int) {
		base := r.Float64()
		for i := range n {
			at := base + r.Float64()*0.002
			if i >= 2 {
				at = base + 0.05 + r.Float64()*0.3
			}
			t.Wait = t.Kind != KindAdd && r.Float64() < p.WaitShare
			all = append(all, slot{at, t})
		}
	}
	for i := range p.DoKeys {
		spread(Task{Kind: KindDo, Key: DoKey(i)}, p.Submissions)
	}
	for i := range p.OnceEvents {
		spread(Task{Kind: KindOnce, Key: OnceID(i)}, p.Submissions)
	}
	for c := range p.Counters {
		for i := range p.CounterOps {
			op := OpID(c, i)
			spread(Task{Kind: KindAdd, Key: CounterKey(c), Op: op, Delta: OpDelta(op)}, p.AddDeliver)
		}
	}
	slices.SortStableFunc(all, func(a, b slot) int { return cmp.Compare(a.at, b.at) })
	out := make([]Task, len(all))
	for i, s := range all {
		s.t.Index = i
		out[i] = s.t
	}
	return out
}

// Share returns the tasks of child slot: every Children-th task.
func (p Plan) Share(slot int) []Task {
	var out []Task
	for _, t := range p.Tasks() {
		if t.Index%p.Children == slot {
			out = append(out, t)
		}
	}
	return out
}
