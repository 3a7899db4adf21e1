package torture

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"time"
)

// Report is what Check found in a run's records. The fields up to
// Violations must all be zero; the rest describe what happened.
type Report struct {
	// DoubleExecutions counts fn executions that must not have happened
	// (see Check).
	DoubleExecutions int
	// SplitAnswers counts, per key, the successful answers beyond the
	// first distinct one: two callers of one key got different results.
	SplitAnswers int
	// LostCompletions counts successful answers of the chaos phase whose
	// result is not the key's final answer, or whose key has none.
	LostCompletions int
	// StuckKeys counts keys and events without a successful answer in the
	// recovery pass, which runs after every lease has passed.
	StuckKeys int
	// UnexplainedAnswers counts successful Do answers whose result no
	// execution of the key produced.
	UnexplainedAnswers int
	// CounterError is the sum over counters of |final total - expected|.
	CounterError int64
	// DoubleAdds counts Add calls beyond the first that reported one
	// operation as applied.
	DoubleAdds int
	// OnceOff counts events whose effect was recorded more than once, or
	// that were reported handled with no execution that finished.
	OnceOff int
	// Violations counts the keys, events and counters with at least one
	// violation above.
	Violations int

	DoCalls, OnceCalls, AddCalls int // answered calls, chaos and recovery
	ChaosDoCalls                 int // answered Do calls of the chaos phase

	Runs         int // fn executions started
	FnFailures   int // executions that failed by design or because their lease was lost
	Takeovers    int // executions that took over a lease that had passed
	CutRuns      int // executions cut short: their process died inside fn
	UnrecordedOK int // executions that finished but whose result was not answered by their own call
	StaleStarts  int // executions that started after their own lease had passed
	SelfKills    int // processes that killed themselves inside fn

	Errors   map[string]int // failed answers by error kind
	Examples []string       // the first violations, in words
}

// run is one fn execution, joined from its records.
type run struct {
	start, ok, fail *Record
	answered        bool // its own call returned its result without error
}

// history is everything recorded about one Do key or Once event.
type history struct {
	kind    string
	runs    map[string]*run
	answers []Record
}

// maxExamples bounds Report.Examples.
const maxExamples = 12

// Check reads a run's records against the plan. Its definitions, for a Do
// key or Once event:
//
//   - An execution is one fn call, named by the nonce of its start record.
//     It finished ok if it recorded EvOK, failed if it recorded EvFail, and
//     was cut if it recorded neither (its process died inside fn). It is
//     confirmed if its own call answered its result without error: Do
//     returns nil only once the result is stored.
//   - A double execution is (a) a confirmed execution of a key that has an
//     earlier-started confirmed one (two results stored); (b) an execution
//     that started after a caller of the key had already been given a
//     successful answer, while the execution's own lease was still live at
//     its start; or (c) an execution that started while an earlier one was
//     still inside fn (it had not recorded its end: it was running, or it
//     was cut) and that earlier one's lease was live (before the later of
//     the deadlines it recorded at its start and its end, which are what
//     its claim and its last extension wrote). A stored answer is final for
//     the retention, so no claim may succeed after it; a live lease can
//     only be taken over by a broken claim; and with its own lease live,
//     the claim that started fn cannot have been a stale one. One machine,
//     one clock: the leases are judged by the same clock the records are
//     stamped with. Executions that were cut, failed, or finished without
//     being confirmed (a crash between fn and the stored result, a lease
//     lost while the store was unreachable) are the documented window of
//     re-execution, not doubles; they are counted in CutRuns and
//     UnrecordedOK. An execution whose own lease had passed before fn
//     started (its process stalled for a whole lease after the claim) is a
//     stale start, counted apart.
//   - A split answer: two callers got different successful results.
//   - A lost completion: a caller of the chaos got a successful result, and
//     the key's final answer (the recovery pass's) differs or is missing.
//   - A stuck key: the recovery pass got no successful answer for it.
//   - An unexplained answer: a successful Do answer no execution produced.
//   - Once off: two confirmed executions, a successful answer without any
//     execution that finished ok, or no successful answer in the end.
//
// For a counter, the final total must equal the sum of its distinct
// operations' amounts (CounterError), and no operation may be reported
// applied by two calls (DoubleAdds).
func Check(recs []Record, p Plan) Report {
	rep := Report{Errors: map[string]int{}}
	hists := map[string]*history{}
	adds := map[string]int{}      // op -> calls that reported it applied
	totals := map[string]*int64{} // counter -> final total
	bad := map[string]bool{}
	for i := range recs {
		r := &recs[i]
		rep.tally(r)
		switch {
		case r.Ev == EvTotal:
			totals[r.Key] = &r.Total
		case r.Kind == KindAdd:
			if r.Ev == EvAnswer && r.Err == "" && r.Applied {
				adds[r.Op]++
			}
		case r.Kind == KindDo || r.Kind == KindOnce:
			hists[r.Kind+"/"+r.Key] = joinRecord(hists[r.Kind+"/"+r.Key], r)
		}
	}
	for _, name := range sortedKeys(hists) {
		if rep.checkKey(name, hists[name]) {
			bad[name] = true
		}
	}
	rep.checkCounters(p, adds, totals, bad)
	rep.Violations = len(bad)
	return rep
}

// tally counts calls, executions and errors.
func (rep *Report) tally(r *Record) {
	switch r.Ev {
	case EvSelfKill:
		rep.SelfKills++
	case EvStart:
		rep.Runs++
		if r.TK {
			rep.Takeovers++
		}
	case EvFail:
		rep.FnFailures++
	case EvAnswer:
		switch r.Kind {
		case KindDo:
			rep.DoCalls++
			if !r.Rec {
				rep.ChaosDoCalls++
			}
		case KindOnce:
			rep.OnceCalls++
		case KindAdd:
			rep.AddCalls++
		}
		if r.Err != "" {
			rep.Errors[r.Err]++
		}
	}
}

func joinRecord(h *history, r *Record) *history {
	if h == nil {
		h = &history{kind: r.Kind, runs: map[string]*run{}}
	}
	if r.Ev == EvAnswer {
		h.answers = append(h.answers, *r)
	}
	if r.Run == "" {
		return h
	}
	x := h.runs[r.Run]
	if x == nil {
		x = &run{}
		h.runs[r.Run] = x
	}
	switch r.Ev {
	case EvStart:
		x.start = r
	case EvOK:
		x.ok = r
	case EvFail:
		x.fail = r
	case EvAnswer:
		x.answered = x.answered || r.Err == ""
	}
	return h
}

// checkKey applies Check's definitions to one key and reports whether it
// found a violation.
func (rep *Report) checkKey(name string, h *history) bool {
	before := rep.violationCount()
	firstOK, final, results := rep.answersOf(name, h)
	rep.checkRuns(name, h, firstOK)
	produced := map[string]bool{}
	for _, x := range h.runs {
		if x.ok != nil {
			produced[x.ok.Res] = true
		}
	}
	for _, a := range h.answers {
		if a.Err != "" {
			continue
		}
		if h.kind == KindDo && !produced[a.Res] {
			rep.UnexplainedAnswers++
			rep.example("unexplained answer: %s: %s answered %q, which no execution produced", name, a.Proc, a.Res)
		}
		if a.Rec {
			continue
		}
		if final == nil || (h.kind == KindDo && a.Res != final.Res) {
			rep.LostCompletions++
			rep.example("lost completion: %s: %s was answered %q at %s; final answer %s", name, a.Proc, a.Res, stamp(a.T), describe(final))
		}
	}
	if n := len(results); n > 1 {
		rep.SplitAnswers += n - 1
		rep.example("split answers: %s: %d different successful results %q", name, n, results)
	}
	if final == nil {
		rep.StuckKeys++
		rep.example("stuck key: %s: no successful answer in the recovery pass (%s)", name, lastRecoveryError(h))
	}
	if h.kind == KindOnce {
		rep.checkOnce(name, h, firstOK, final)
	}
	return rep.violationCount() > before
}

// answersOf returns the time of the key's first successful answer (0 if
// none), its final answer, and its distinct successful results (Do).
func (rep *Report) answersOf(name string, h *history) (firstOK int64, final *Record, results []string) {
	for i, a := range h.answers {
		if a.Err != "" {
			continue
		}
		if firstOK == 0 || a.T < firstOK {
			firstOK = a.T
		}
		if a.Rec {
			final = &h.answers[i]
		}
		if h.kind == KindDo && !slices.Contains(results, a.Res) {
			results = append(results, a.Res)
		}
	}
	return firstOK, final, results
}

// checkRuns counts the key's double executions, cut runs, stale starts
// and unrecorded successes.
func (rep *Report) checkRuns(name string, h *history, firstOK int64) {
	var confirmed []*run
	for _, id := range sortedKeys(h.runs) {
		x := h.runs[id]
		if x.start == nil {
			continue
		}
		switch {
		case x.ok == nil && x.fail == nil:
			rep.CutRuns++
		case x.ok != nil && x.answered:
			confirmed = append(confirmed, x)
		case x.ok != nil:
			rep.UnrecordedOK++
		}
	}
	slices.SortFunc(confirmed, func(a, b *run) int { return cmp.Compare(a.start.T, b.start.T) })
	double := map[*run]bool{}
	for _, x := range confirmed[min(1, len(confirmed)):] {
		double[x] = true
		rep.example("double execution: %s: %s's execution %s, started %s, stored a second result %q (first: %q)",
			name, x.start.Proc, x.start.Run, stamp(x.start.T), x.ok.Res, confirmed[0].ok.Res)
	}
	for _, id := range sortedKeys(h.runs) {
		x := h.runs[id]
		if x.start == nil || firstOK == 0 || x.start.T <= firstOK {
			continue
		}
		if x.start.Until != 0 && x.start.T >= x.start.Until {
			rep.StaleStarts++
			continue
		}
		if !double[x] {
			double[x] = true
			rep.example("double execution: %s: %s's execution %s started %s, after a caller was answered at %s (attempt %d, lease live until %s)",
				name, x.start.Proc, x.start.Run, stamp(x.start.T), stamp(firstOK), x.start.Att, stamp(x.start.Until))
		}
	}
	rep.overlaps(name, h, double)
	rep.DoubleExecutions += len(double)
}

// overlaps marks as double the executions that started inside another
// execution's fn while that one's lease was live (rule (c) of Check).
func (rep *Report) overlaps(name string, h *history, double map[*run]bool) {
	var runs []*run
	for _, id := range sortedKeys(h.runs) {
		if x := h.runs[id]; x.start != nil {
			runs = append(runs, x)
		}
	}
	slices.SortFunc(runs, func(a, b *run) int { return cmp.Compare(a.start.T, b.start.T) })
	for i, a := range runs {
		end, live := int64(math.MaxInt64), a.start.Until
		if e := cmp.Or(a.ok, a.fail); e != nil {
			end, live = e.T, max(live, e.Until)
		}
		for _, b := range runs[i+1:] {
			stale := b.start.Until != 0 && b.start.T >= b.start.Until
			if b.start.T >= end || b.start.T >= live || stale || double[b] {
				continue
			}
			double[b] = true
			rep.example("double execution: %s: %s's execution %s started %s inside %s's execution %s, whose lease was live until %s",
				name, b.start.Proc, b.start.Run, stamp(b.start.T), a.start.Proc, a.start.Run, stamp(live))
		}
	}
}

// checkOnce counts an event whose effect was not recorded exactly once.
func (rep *Report) checkOnce(name string, h *history, firstOK int64, final *Record) {
	confirmed, finished := 0, 0
	for _, x := range h.runs {
		if x.ok != nil {
			finished++
			if x.answered {
				confirmed++
			}
		}
	}
	switch {
	case confirmed > 1:
		rep.OnceOff++
		rep.example("once off: %s: the effect was recorded by %d executions", name, confirmed)
	case firstOK != 0 && finished == 0:
		rep.OnceOff++
		rep.example("once off: %s: reported handled at %s, but no execution finished", name, stamp(firstOK))
	case final == nil:
		rep.OnceOff++
	}
}

// checkCounters compares each counter's final total with the plan.
func (rep *Report) checkCounters(p Plan, adds map[string]int, totals map[string]*int64, bad map[string]bool) {
	for _, op := range sortedKeys(adds) {
		if n := adds[op]; n > 1 {
			rep.DoubleAdds += n - 1
			bad["add/"+op] = true
			rep.example("double add: operation %s was reported applied by %d calls", op, n)
		}
	}
	want := p.Expected()
	for _, c := range sortedKeys(want) {
		got := totals[c]
		if got == nil {
			rep.CounterError += abs(want[c])
			bad["counter/"+c] = true
			rep.example("counter %s: no final total; want %d", c, want[c])
			continue
		}
		if d := abs(*got - want[c]); d != 0 {
			rep.CounterError += d
			bad["counter/"+c] = true
			rep.example("counter %s: final total %d, want %d (off by %d)", c, *got, want[c], *got-want[c])
		}
	}
}

func (rep *Report) violationCount() int {
	return rep.DoubleExecutions + rep.SplitAnswers + rep.LostCompletions + rep.StuckKeys +
		rep.UnexplainedAnswers + rep.OnceOff
}

func (rep *Report) example(format string, args ...any) {
	if len(rep.Examples) < maxExamples {
		rep.Examples = append(rep.Examples, fmt.Sprintf(format, args...))
	}
}

func lastRecoveryError(h *history) string {
	for i := len(h.answers) - 1; i >= 0; i-- {
		if a := h.answers[i]; a.Rec {
			return fmt.Sprintf("it answered %s: %s", a.Err, a.Msg)
		}
	}
	return "it answered nothing"
}

func describe(final *Record) string {
	if final == nil {
		return "missing"
	}
	return fmt.Sprintf("%q", final.Res)
}

func stamp(ns int64) string { return time.Unix(0, ns).Format("15:04:05.000000") }

func abs(n int64) int64 {
	if n < 0 {
		return -n
	}
	return n
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
