package torture

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/idemkit/idemkit/idem"
)

// Options are the parts of a run besides its plan and backend.
type Options struct {
	// Store is the store the recovery pass uses: straight to the server,
	// not through the proxy. On memstore it is also the chaos phase's.
	Store idem.Store
	// Wire is the fault proxy the children connect through, or nil.
	Wire Wire
	// Nemesis, if set, runs alongside the chaos phase (the cluster's node
	// kill) and returns what it did, for the figures. Its context ends
	// when the workload is done; the recovery pass waits until it has
	// returned, so it must leave the backend whole.
	Nemesis func(ctx context.Context) NemesisReport
}

// Wire is a fault-injecting proxy between the children and the server.
type Wire interface {
	SetFaults(on bool)
	Stats() WireStats
}

// WireStats counts the faults a Wire injected: responses dropped,
// connections cut (before forwarding a request or when its response came),
// and requests or responses held.
type WireStats struct{ Requests, Dropped, Cut, Delayed int64 }

// NemesisReport is what a nemesis did.
type NemesisReport struct {
	NodeKills int
	Down      []Window // when a node was down
	Note      string
}

// Window is a span of time.
type Window struct{ From, To time.Time }

// Torture runs plan against backend: the chaos phase (child processes, or
// in-process workers on memstore), then, once every lease has passed, the
// recovery pass; then it checks the records and returns the figures. It
// fails t on any violation, and when a fault the plan injects never
// happened. The logs stay in a directory named in the output if t failed
// or IDEM_TORTURE_KEEP is set.
func Torture(t *testing.T, b Backend, p Plan, o Options) Figures {
	t.Helper()
	f := runTorture(t, b, p, o)
	f.emit()
	f.assert(t, b, p, o)
	return f
}

// runTorture is Torture without the verdict.
func runTorture(t *testing.T, b Backend, p Plan, o Options) Figures {
	t.Helper()
	dir, err := os.MkdirTemp("", "idem-torture-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("IDEM_TORTURE_KEEP") != "" {
			t.Logf("torture: logs kept in %s (replay the workload with IDEM_TORTURE_SEED=%d)", dir, p.Seed)
			return
		}
		_ = os.RemoveAll(dir)
	})
	f := Figures{Backend: b.Name, Seed: p.Seed, InProcess: b.Kind == "memory"}
	began := time.Now()
	ctx, stopNemesis := context.WithCancel(context.Background())
	nemesis := make(chan NemesisReport, 1)
	if o.Nemesis != nil {
		go func() { nemesis <- o.Nemesis(ctx) }()
	}
	var last time.Time
	if b.Kind == "memory" {
		last = inProcess(t, p, o.Store, dir)
	} else {
		f.Kills, last = supervise(t, b, p, dir)
	}
	stopNemesis()
	if o.Nemesis != nil {
		nr := <-nemesis
		f.NodeKills, f.Note, f.down = nr.NodeKills, nr.Note, nr.Down
	}
	f.Chaos = time.Since(began)
	if o.Wire != nil {
		o.Wire.SetFaults(false)
		f.Wire = o.Wire.Stats()
	}
	// Every lease of a dead process passes within a lease of its death.
	time.Sleep(time.Until(last.Add(p.Lease + 500*time.Millisecond)))
	recovery(t, p, o.Store, dir)
	recs, err := ReadLogs(dir)
	if err != nil {
		t.Fatal(err)
	}
	f.Report = Check(recs, p)
	f.DownAnswers = answeredWithin(recs, f.down)
	f.Total = time.Since(began)
	f.print(t)
	return f
}

// answeredWithin counts the successful answers given while a node was
// down.
func answeredWithin(recs []Record, down []Window) int {
	n := 0
	for _, r := range recs {
		if r.Ev != EvAnswer || r.Err != "" {
			continue
		}
		for _, w := range down {
			if r.T >= w.From.UnixNano() && r.T <= w.To.UnixNano() {
				n++
				break
			}
		}
	}
	return n
}

// child is one running child process.
type child struct {
	slot, gen int
	cmd       *exec.Cmd
	out       string
}

type exit struct {
	c   *child
	err error
}

// supervise runs the chaos phase in child processes: it starts one per
// slot, SIGKILLs a random one at seeded random intervals, and starts a
// new generation of every slot that did not finish, until all have. It
// returns how many children it killed and when the last one ended.
func supervise(t *testing.T, b Backend, p Plan, dir string) (kills int, last time.Time) {
	t.Helper()
	rng := mathrand.New(mathrand.NewPCG(p.Seed, 0x6b111))
	exits := make(chan exit, p.Children)
	live := map[int]*child{}
	gens := make([]int, p.Children)
	failures := 0
	for slot := range p.Children {
		live[slot] = spawn(t, b, p, dir, slot, 0, exits)
	}
	deadline := time.NewTimer(p.Deadline)
	defer deadline.Stop()
	killer := time.NewTimer(killInterval(rng, p))
	defer killer.Stop()
	for len(live) > 0 {
		select {
		case e := <-exits:
			last = time.Now()
			delete(live, e.c.slot)
			if e.err == nil {
				continue // the slot is done
			}
			if !killedBySignal(e.err) {
				if failures++; failures > 3*p.Children {
					t.Fatalf("torture: child %d.%d failed: %v\n%s", e.c.slot, e.c.gen, e.err, tail(e.c.out))
				}
				t.Logf("torture: child %d.%d failed (%v); starting it again:\n%s", e.c.slot, e.c.gen, e.err, tail(e.c.out))
			}
			gens[e.c.slot]++
			live[e.c.slot] = spawn(t, b, p, dir, e.c.slot, gens[e.c.slot], exits)
		case <-killer.C:
			if c := pick(rng, live); c != nil && c.cmd.Process.Signal(syscall.SIGKILL) == nil {
				kills++
			}
			killer.Reset(killInterval(rng, p))
		case <-deadline.C:
			for _, c := range live {
				_ = c.cmd.Process.Kill()
			}
			t.Fatalf("torture: the chaos phase did not finish within %v (%d children still running)", p.Deadline, len(live))
		}
	}
	return kills, last
}

// spawn starts generation gen of slot: this test binary again, running
// only TestTortureChild, told what to do through the environment.
func spawn(t *testing.T, b Backend, p Plan, dir string, slot, gen int, exits chan<- exit) *child {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	spec, err := json.Marshal(ChildSpec{Plan: p, Backend: b, Slot: slot, Gen: gen, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	c := &child{slot: slot, gen: gen, out: filepath.Join(dir, fmt.Sprintf("child-%02d-%03d.out", slot, gen))}
	out, err := os.Create(c.out)
	if err != nil {
		t.Fatal(err)
	}
	c.cmd = exec.Command(exe, "-test.run=^TestTortureChild$", "-test.count=1", "-test.timeout=30m")
	c.cmd.Env = append(os.Environ(), childEnv+"="+string(spec))
	c.cmd.Stdout, c.cmd.Stderr = out, out
	if err := c.cmd.Start(); err != nil {
		out.Close()
		t.Fatal(err)
	}
	go func() {
		err := c.cmd.Wait()
		out.Close()
		exits <- exit{c, err}
	}()
	return c
}

// killInterval is the time to the parent's next kill: exponential with
// mean Plan.KillEvery, at least a tenth of it.
func killInterval(rng *mathrand.Rand, p Plan) time.Duration {
	return max(time.Duration(rng.ExpFloat64()*float64(p.KillEvery)), p.KillEvery/10)
}

// pick returns a random live child, or nil.
func pick(rng *mathrand.Rand, live map[int]*child) *child {
	slots := make([]int, 0, len(live))
	for s := range live {
		slots = append(slots, s)
	}
	if len(slots) == 0 {
		return nil
	}
	slices.Sort(slots)
	return live[slots[rng.IntN(len(slots))]]
}

func killedBySignal(err error) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	s := string(b)
	if len(s) > 3000 {
		s = "..." + s[len(s)-3000:]
	}
	return strings.TrimSpace(s)
}

// inProcess runs the chaos phase on memstore, whose data cannot outlive
// its process: Plan.Children groups of Plan.Workers goroutines share the
// store, and a crash ends the call's goroutine (runtime.Goexit) instead of
// the process: fn's caller never answers, Do neither completes nor
// releases, the heartbeat stops, and the task is delivered again later.
func inProcess(t *testing.T, p Plan, s idem.Store, dir string) time.Time {
	t.Helper()
	var wg sync.WaitGroup
	for slot := range p.Children {
		log, err := OpenLog(LogPath(dir, slot, 0), fmt.Sprintf("m%d", slot))
		if err != nil {
			t.Fatal(err)
		}
		defer log.Close()
		q := &queue{tasks: p.Share(slot)}
		for w := range p.Workers {
			rng := mathrand.New(mathrand.NewPCG(p.Seed, uint64(slot<<32|w)))
			wg.Go(func() { workInProcess(q, &caller{store: s, log: log, plan: p, rng: rng, crash: goexit}) })
		}
	}
	wg.Wait()
	return time.Now()
}

// goexit is the crash of an in-process worker: it ends the call's
// goroutine, running only its deferred calls.
func goexit() { runtime.Goexit() }

// workInProcess drains q, each call in a goroutine of its own so that a
// crash ends only that call; a crashed task goes back into the queue.
func workInProcess(q *queue, c *caller) {
	for task, ok := q.next(); ok; task, ok = q.next() {
		returned := false
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = c.call(context.Background(), task)
			returned = true
		}()
		<-done
		if !returned {
			q.put(task)
		}
	}
}
