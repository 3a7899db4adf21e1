package torture

import (
	"context"
	"encoding/json"
	"fmt"
	mathrand "math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
)

// childEnv carries a ChildSpec, as JSON, to a child process.
const childEnv = "IDEM_TORTURE_CHILD"

// ChildSpec is what a child process is told: the plan, the backend, its
// slot (which share of the tasks it submits) and generation (how often the
// slot was started before), and the directory of the logs.
type ChildSpec struct {
	Plan    Plan
	Backend Backend
	Slot    int
	Gen     int
	Dir     string
}

// sureKillGens is how many generations of slot 0 kill themselves inside
// fn for sure (its first worker, at its third execution): the random
// self-kills, a few per run, may not come up in a short one.
const sureKillGens = 2

// IsChild reports whether this process was started as a torture child.
func IsChild() bool { return os.Getenv(childEnv) != "" }

// LogPath is the log of a slot's generation.
func LogPath(dir string, slot, gen int) string {
	return filepath.Join(dir, fmt.Sprintf("child-%02d-%03d.log", slot, gen))
}

// RunChild is the body of a child process. It submits the tasks of its
// slot that no earlier generation of the slot answered (those cut by a
// kill are submitted again: duplicate deliveries), with Plan.Workers
// callers at once, and returns when all are answered. Its process may be
// killed at any moment, by the parent or by fn itself.
func RunChild(t testing.TB) {
	var spec ChildSpec
	if err := json.Unmarshal([]byte(os.Getenv(childEnv)), &spec); err != nil {
		t.Fatalf("torture: decoding %s: %v", childEnv, err)
	}
	store, err := spec.Backend.Open(t)
	if err != nil {
		t.Fatal(err)
	}
	proc := fmt.Sprintf("c%d.g%d.p%d", spec.Slot, spec.Gen, os.Getpid())
	log, err := OpenLog(LogPath(spec.Dir, spec.Slot, spec.Gen), proc)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	done, err := answered(spec.Dir, spec.Slot)
	if err != nil {
		t.Fatal(err)
	}
	var todo []Task
	for _, task := range spec.Plan.Share(spec.Slot) {
		if !done[task.Index] {
			todo = append(todo, task)
		}
	}
	q := &queue{tasks: todo}
	var wg sync.WaitGroup
	for w := range spec.Plan.Workers {
		c := &caller{store: store, log: log, plan: spec.Plan, crash: killSelf,
			rng: mathrand.New(mathrand.NewPCG(spec.Plan.Seed, uint64(spec.Slot<<32|spec.Gen<<8|w)))}
		if spec.Slot == 0 && spec.Gen < sureKillGens && w == 0 && spec.Plan.KillMid > 0 {
			c.killAt = 3
		}
		wg.Go(func() {
			for task, ok := q.next(); ok; task, ok = q.next() {
				_ = c.call(context.Background(), task)
			}
		})
	}
	wg.Wait()
}

// killSelf ends the process as a crash does: SIGKILL, so no deferred call,
// no cleanup and no pending write of the store runs.
func killSelf() {
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // the signal is on its way
}

// answered returns the tasks of slot that earlier generations answered.
func answered(dir string, slot int) (map[int]bool, error) {
	files, err := filepath.Glob(filepath.Join(dir, fmt.Sprintf("child-%02d-*.log", slot)))
	if err != nil {
		return nil, err
	}
	done := map[int]bool{}
	for _, f := range files {
		recs, err := readLog(f)
		if err != nil {
			return nil, err
		}
		for _, r := range recs {
			if r.Ev == EvAnswer {
				done[r.Task] = true
			}
		}
	}
	return done, nil
}

// queue hands out tasks to concurrent callers; tasks can be put back.
type queue struct {
	mu    sync.Mutex
	tasks []Task
}

func (q *queue) next() (Task, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.tasks) == 0 {
		return Task{}, false
	}
	t := q.tasks[0]
	q.tasks = q.tasks[1:]
	return t, true
}

func (q *queue) put(t Task) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.tasks = append(q.tasks, t)
}
