package torture

import (
	"context"
	"fmt"
	mathrand "math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idemkit/idemkit/idem"
)

// recoveryWorkers is how many callers the recovery pass runs at once.
const recoveryWorkers = 8

// recoveryTries bounds the calls per task of the recovery pass: a task is
// called again only after an error that is neither an answer nor a key in
// progress (a conflict between recovery callers of one counter, say).
const recoveryTries = 5

// recovery delivers every Do key, Once event and counter operation once
// more, without faults, after every lease has passed, and records the
// final totals: the end state the checker holds the run to.
func recovery(t *testing.T, p Plan, s idem.Store, dir string) {
	t.Helper()
	log, err := OpenLog(filepath.Join(dir, "recovery.log"), "recovery")
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	var tasks []Task
	for i := range p.DoKeys {
		tasks = append(tasks, Task{Index: -1, Kind: KindDo, Key: DoKey(i)})
	}
	for i := range p.OnceEvents {
		tasks = append(tasks, Task{Index: -1, Kind: KindOnce, Key: OnceID(i)})
	}
	for c := range p.Counters {
		for i := range p.CounterOps {
			op := OpID(c, i)
			tasks = append(tasks, Task{Index: -1, Kind: KindAdd, Key: CounterKey(c), Op: op, Delta: OpDelta(op)})
		}
	}
	q := &queue{tasks: tasks}
	var wg sync.WaitGroup
	for w := range recoveryWorkers {
		c := &caller{store: s, log: log, plan: p, recovery: true,
			rng:   mathrand.New(mathrand.NewPCG(p.Seed, uint64(0xeec0<<16|w))),
			crash: func() { panic("torture: a crash in the recovery pass") }}
		wg.Go(func() {
			for task, ok := q.next(); ok; task, ok = q.next() {
				for range recoveryTries {
					err := c.call(context.Background(), task)
					if k := ErrKind(err); k == "" || k == "in-progress" {
						break
					}
				}
			}
		})
	}
	wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := counterTotals(ctx, s, p, log); err != nil {
		t.Error(err)
	}
}

// Figures are a run's results as reported: faults, calls, violations,
// throughput.
type Figures struct {
	Backend     string
	Seed        uint64
	InProcess   bool // memstore: crashes are goroutine exits, not SIGKILLs
	Kills       int  // children the parent SIGKILLed
	NodeKills   int  // Cassandra nodes killed (the cluster run)
	DownAnswers int  // successful answers given while a node was down
	Note        string
	down        []Window
	Wire        WireStats
	Report
	Chaos time.Duration // the chaos phase
	Total time.Duration // the whole run, recovery and checking included
}

// DoPerSecond is the throughput of the chaos phase: answered Do calls per
// second.
func (f Figures) DoPerSecond() float64 {
	if f.Chaos <= 0 {
		return 0
	}
	return float64(f.ChaosDoCalls) / f.Chaos.Seconds()
}

// Faults describes the faults injected, in a few words.
func (f Figures) Faults() string {
	parts := []string{}
	if f.NodeKills > 0 {
		parts = append(parts, plural(f.NodeKills, "node kill"))
	}
	if f.InProcess {
		parts = append(parts, plural(f.SelfKills, "crash")+" (goroutine exits)")
	} else {
		parts = append(parts, plural(f.Kills, "kill"), plural(f.SelfKills, "self-kill"))
	}
	if f.Wire.Requests > 0 {
		parts = append(parts, plural(int(f.Wire.Dropped), "drop"), plural(int(f.Wire.Cut), "cut"), plural(int(f.Wire.Delayed), "delay"))
	}
	parts = append(parts, plural(f.FnFailures, "fn failure"))
	return strings.Join(parts, ", ")
}

// TableHeader and Row are the figures as a Markdown table, for the README.
const TableHeader = "| backend | faults injected | Do / Once / Add calls | violations | double executions | split answers | lost completions | stuck keys | counter error | Do calls/s |\n" +
	"|---|---|---|---:|---:|---:|---:|---:|---:|---:|"

// Row is the run's line of the Markdown table under TableHeader.
func (f Figures) Row() string {
	return fmt.Sprintf("| %s | %s | %d / %d / %d | %d | %d | %d | %d | %d | %d | %.0f |",
		f.Backend, f.Faults(), f.DoCalls, f.OnceCalls, f.AddCalls, f.Violations,
		f.DoubleExecutions, f.SplitAnswers, f.LostCompletions, f.StuckKeys, f.CounterError, f.DoPerSecond())
}

var headerOnce sync.Once

// print logs the figures in full.
func (f Figures) print(t *testing.T) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "torture figures, %s (seed %d)\n", f.Backend, f.Seed)
	fmt.Fprintf(&b, "  faults injected   %s", f.Faults())
	if f.Wire.Requests > 0 {
		fmt.Fprintf(&b, " (of %d requests through the proxy)", f.Wire.Requests)
	}
	if f.Note != "" {
		fmt.Fprintf(&b, "; %s, %d successful answers while it was down", f.Note, f.DownAnswers)
	}
	fmt.Fprintf(&b, "\n  calls             Do %d (%d in the chaos phase), Once %d, Add %d\n", f.DoCalls, f.ChaosDoCalls, f.OnceCalls, f.AddCalls)
	fmt.Fprintf(&b, "  executions        %d: %d takeovers, %d cut by a crash, %d failed, %d finished unrecorded, %d stale starts\n",
		f.Runs, f.Takeovers, f.CutRuns, f.FnFailures, f.UnrecordedOK, f.StaleStarts)
	fmt.Fprintf(&b, "  violations        %d: double executions %d, split answers %d, lost completions %d, stuck keys %d, unexplained answers %d, counter error %d, double adds %d, once off %d\n",
		f.Violations, f.DoubleExecutions, f.SplitAnswers, f.LostCompletions, f.StuckKeys, f.UnexplainedAnswers, f.CounterError, f.DoubleAdds, f.OnceOff)
	fmt.Fprintf(&b, "  failed answers    %s\n", errorCounts(f.Errors))
	fmt.Fprintf(&b, "  throughput        %.1f Do calls/s over a %.1f s chaos phase (%.1f s in all)", f.DoPerSecond(), f.Chaos.Seconds(), f.Total.Seconds())
	t.Log(b.String())
}

// emit writes the table row (and, once per process, the header) to
// stdout, each line prefixed with "torture: ".
func (f Figures) emit() {
	headerOnce.Do(func() {
		for _, line := range strings.Split(TableHeader, "\n") {
			fmt.Println("torture: " + line)
		}
	})
	fmt.Println("torture: " + f.Row())
}

func plural(n int, what string) string {
	switch {
	case n == 1:
		return "1 " + what
	case strings.HasSuffix(what, "sh"):
		return fmt.Sprintf("%d %ses", n, what)
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func errorCounts(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// assert fails t on any violation, and on any fault the plan injects
// that did not happen (a run that injected nothing proves nothing).
func (f Figures) assert(t *testing.T, b Backend, p Plan, o Options) {
	t.Helper()
	if f.Violations > 0 {
		t.Errorf("torture: %d keys, events or counters violated the guarantees (seed %d):\n  %s",
			f.Violations, f.Seed, strings.Join(f.Examples, "\n  "))
	}
	want := map[string]bool{
		"Do calls in the chaos phase":     f.ChaosDoCalls > 0,
		"fn failures":                     p.FnFail == 0 || f.FnFailures > 0,
		"executions cut by a crash":       f.CutRuns > 0,
		"takeovers of a passed lease":     f.Takeovers > 0,
		"kills of child processes":        b.Kind == "memory" || f.Kills > 0,
		"self-kills inside fn":            b.Kind == "memory" || f.SelfKills > 0,
		"dropped responses":               o.Wire == nil || p.Drop == 0 || f.Wire.Dropped > 0,
		"connections cut":                 o.Wire == nil || p.CutNow+p.CutAtResp == 0 || f.Wire.Cut > 0,
		"Cassandra node kills":            o.Nemesis == nil || f.NodeKills > 0,
		"crashes in memory (Goexit)":      b.Kind != "memory" || f.SelfKills > 0,
		"duplicates answered in-progress": f.Errors["in-progress"] > 0,
	}
	for _, what := range sortedKeys(want) {
		if !want[what] {
			t.Errorf("torture: no %s happened: the run did not test what it claims", what)
		}
	}
}
