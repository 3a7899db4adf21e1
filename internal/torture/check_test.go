package torture

import (
	"os"
	"path/filepath"
	"testing"
)

// history builds fabricated records; times are in milliseconds.
type fab struct{ recs []Record }

const ms = int64(1e6)

func (f *fab) add(r Record, at int64) *fab {
	r.T = at * ms
	if r.Proc == "" {
		r.Proc = "c0.g0.p1"
	}
	f.recs = append(f.recs, r)
	return f
}

// start: an execution begins at `at` with its lease live until `until`.
func (f *fab) start(kind, key, run string, at, until int64) *fab {
	return f.add(Record{Ev: EvStart, Kind: kind, Key: key, Run: run, Att: 1, Until: until * ms}, at)
}

func (f *fab) ok(kind, key, run string, at int64) *fab {
	return f.add(Record{Ev: EvOK, Kind: kind, Key: key, Run: run, Res: "r-" + run}, at)
}

func (f *fab) fail(kind, key, run string, at int64) *fab {
	return f.add(Record{Ev: EvFail, Kind: kind, Key: key, Run: run, Err: "fn-failed"}, at)
}

// answer: a call of key answered res (or failed with errKind); run is set
// when fn ran inside the call; rec marks the recovery pass.
func (f *fab) answer(kind, key, run, res, errKind string, at int64, rec bool) *fab {
	return f.add(Record{Ev: EvAnswer, Kind: kind, Key: key, Run: run, Ran: run != "", Res: res, Err: errKind, Rec: rec}, at)
}

// done is one whole clean execution of key by run, answered to its caller.
func (f *fab) done(kind, key, run string, at int64) *fab {
	return f.start(kind, key, run, at, at+2000).ok(kind, key, run, at+10).answer(kind, key, run, "r-"+run, "", at+20, false)
}

// counters adds the counter operations of checkPlan and their totals.
func (f *fab) counters(offBy int64) *fab {
	p := checkPlan()
	for c := range p.Counters {
		for i := range p.CounterOps {
			op := OpID(c, i)
			f.add(Record{Ev: EvAnswer, Kind: KindAdd, Key: CounterKey(c), Op: op, Applied: true, Total: 1}, 5)
		}
		f.add(Record{Ev: EvTotal, Kind: KindAdd, Key: CounterKey(c), Total: p.Expected()[CounterKey(c)] + offBy, Rec: true}, 9000)
	}
	return f
}

func checkPlan() Plan { return Plan{Counters: 1, CounterOps: 3} }

// violations is the part of a Report a case states.
type violations struct {
	double, split, lost, stuck, unexplained, doubleAdds, onceOff, keys int
	counter                                                            int64
	stale, unrecorded, cut                                             int
}

func violationsOf(r Report) violations {
	return violations{
		double: r.DoubleExecutions, split: r.SplitAnswers, lost: r.LostCompletions, stuck: r.StuckKeys,
		unexplained: r.UnexplainedAnswers, doubleAdds: r.DoubleAdds, onceOff: r.OnceOff, keys: r.Violations,
		counter: r.CounterError, stale: r.StaleStarts, unrecorded: r.UnrecordedOK, cut: r.CutRuns,
	}
}

// Kinds, shorter, for the cases below.
const do, once = KindDo, KindOnce

// checkCases are fabricated histories and the violations Check must
// count in each.
var checkCases = []struct {
	name string
	recs *fab
	want violations
}{{
	name: "clean",
	recs: new(fab).done(do, "k", "a", 0).answer(do, "k", "", "r-a", "", 30, false).
		answer(do, "k", "", "r-a", "", 5000, true).
		done(once, "e", "x", 0).answer(once, "e", "", "", "", 5000, true).counters(0),
}, {
	name: "a crash between fn and the stored result, then a takeover: no violation",
	recs: new(fab).start(do, "k", "a", 0, 2000).ok(do, "k", "a", 10).
		add(Record{Ev: EvSelfKill, Kind: do, Key: "k", Run: "a"}, 11).
		start(do, "k", "b", 3000, 5000).ok(do, "k", "b", 3010).answer(do, "k", "b", "r-b", "", 3020, false).
		start(do, "k", "c", 1000, 2000). // cut mid-work by a kill
		answer(do, "k", "", "r-b", "", 6000, true).counters(0),
	want: violations{unrecorded: 1, cut: 1},
}, {
	name: "double execution: two results stored",
	recs: new(fab).start(do, "k", "a", 0, 2000).start(do, "k", "b", 5, 2005).
		ok(do, "k", "a", 10).ok(do, "k", "b", 12).
		answer(do, "k", "a", "r-a", "", 20, false).answer(do, "k", "b", "r-b", "", 21, false).
		answer(do, "k", "", "r-a", "", 5000, true).counters(0),
	want: violations{double: 1, split: 1, lost: 1, keys: 1},
}, {
	name: "double execution: a start after a caller was answered",
	recs: new(fab).done(do, "k", "a", 0).start(do, "k", "b", 50, 2050).fail(do, "k", "b", 60).
		answer(do, "k", "b", "", "fn-failed", 61, false).
		answer(do, "k", "", "r-a", "", 5000, true).counters(0),
	want: violations{double: 1, keys: 1},
}, {
	name: "double execution: a takeover inside a live lease of a crashed execution",
	recs: new(fab).start(do, "k", "a", 0, 2000).
		start(do, "k", "b", 1500, 3500).ok(do, "k", "b", 1510).answer(do, "k", "b", "r-b", "", 1520, false).
		answer(do, "k", "", "r-b", "", 5000, true).counters(0),
	want: violations{double: 1, cut: 1, keys: 1},
}, {
	name: "double execution: a start inside a running execution whose heartbeat extended its lease",
	recs: new(fab).start(do, "k", "a", 0, 2000).
		start(do, "k", "b", 2500, 4500).ok(do, "k", "b", 2510).answer(do, "k", "b", "r-b", "", 2520, false).
		add(Record{Ev: EvOK, Kind: do, Key: "k", Run: "a", Res: "r-a", Until: 4800 * ms}, 2800).
		answer(do, "k", "a", "r-a", "lease-lost", 2810, false).
		answer(do, "k", "", "r-b", "", 5000, true).counters(0),
	want: violations{double: 1, unrecorded: 1, keys: 1},
}, {
	name: "a takeover after the lease of a running execution passed (the store was unreachable): no violation",
	recs: new(fab).start(do, "k", "a", 0, 2000).
		start(do, "k", "b", 2500, 4500).ok(do, "k", "b", 2510).answer(do, "k", "b", "r-b", "", 2520, false).
		add(Record{Ev: EvFail, Kind: do, Key: "k", Run: "a", Err: "fn-lease-gone", Until: 2000 * ms}, 2800).
		answer(do, "k", "", "r-b", "", 5000, true).counters(0),
}, {
	name: "a start after the answer whose own lease had passed is stale, not double",
	recs: new(fab).done(do, "k", "a", 0).start(do, "k", "b", 3000, 2000).
		answer(do, "k", "", "r-a", "", 5000, true).counters(0),
	want: violations{stale: 1, cut: 1},
}, {
	name: "split answer",
	recs: new(fab).start(do, "k", "a", 0, 2000).ok(do, "k", "a", 5).answer(do, "k", "a", "r-a", "unknown-outcome", 6, false).
		answer(do, "k", "", "r-a", "", 30, false). // a duplicate got a's result
		start(do, "k", "b", 10, 2010).ok(do, "k", "b", 15).answer(do, "k", "b", "r-b", "", 40, false).
		answer(do, "k", "", "r-b", "", 5000, true).counters(0),
	want: violations{split: 1, lost: 1, keys: 1, unrecorded: 1},
}, {
	name: "lost completion: answered, then no final answer",
	recs: new(fab).done(do, "k", "a", 0).answer(do, "k", "", "", "in-progress", 5000, true).counters(0),
	want: violations{lost: 1, stuck: 1, keys: 1},
}, {
	name: "stuck key",
	recs: new(fab).start(do, "k", "a", 0, 2000).fail(do, "k", "a", 5).answer(do, "k", "a", "", "fn-failed", 6, false).
		answer(do, "k", "", "", "in-progress", 5000, true).counters(0),
	want: violations{stuck: 1, keys: 1},
}, {
	name: "unexplained answer",
	recs: new(fab).answer(do, "k", "", "r-ghost", "", 30, false).answer(do, "k", "", "r-ghost", "", 5000, true).counters(0),
	want: violations{unexplained: 2, keys: 1},
}, {
	name: "counter off by one",
	recs: new(fab).counters(1),
	want: violations{counter: 1, keys: 1},
}, {
	name: "counter short by two",
	recs: new(fab).counters(-2),
	want: violations{counter: 2, keys: 1},
}, {
	name: "operation applied twice",
	recs: new(fab).counters(0).add(Record{Ev: EvAnswer, Kind: KindAdd, Key: CounterKey(0), Op: OpID(0, 1), Applied: true}, 7),
	want: violations{doubleAdds: 1, keys: 1},
}, {
	name: "once: effect recorded twice",
	recs: new(fab).start(once, "e", "x", 0, 2000).start(once, "e", "y", 1, 2001).ok(once, "e", "x", 5).ok(once, "e", "y", 6).
		answer(once, "e", "x", "", "", 7, false).answer(once, "e", "y", "", "", 8, false).
		answer(once, "e", "", "", "", 5000, true).counters(0),
	want: violations{double: 1, onceOff: 1, keys: 1},
}, {
	name: "once: handled without any execution",
	recs: new(fab).answer(once, "e", "", "", "", 30, false).answer(once, "e", "", "", "", 5000, true).counters(0),
	want: violations{onceOff: 1, keys: 1},
}}

// TestCheck feeds Check fabricated records with one kind of violation
// each (and clean histories, including the legitimate re-execution after
// a crash between fn and the stored result), and requires each violation
// to be counted where it belongs: a checker that counted nothing would
// let every torture run pass.
func TestCheck(t *testing.T) {
	for _, tc := range checkCases {
		t.Run(tc.name, func(t *testing.T) {
			rep := Check(tc.recs.recs, checkPlan())
			if got := violationsOf(rep); got != tc.want {
				t.Errorf("got  %+v\nwant %+v\nexamples: %q", got, tc.want, rep.Examples)
			}
			if (tc.want.keys > 0) != (len(rep.Examples) > 0) {
				t.Errorf("examples %q for %d violating keys", rep.Examples, tc.want.keys)
			}
		})
	}
}

// TestReadLogs: a log whose last line was cut short by a kill inside
// write(2) reads without it; a malformed line anywhere else is an error.
func TestReadLogs(t *testing.T) {
	dir := t.TempDir()
	log, err := OpenLog(filepath.Join(dir, "a.log"), "p")
	if err != nil {
		t.Fatal(err)
	}
	log.Write(Record{Ev: EvStart, Key: "k", Run: "a"})
	log.Write(Record{Ev: EvOK, Key: "k", Run: "a"})
	log.Close()
	f, err := os.OpenFile(filepath.Join(dir, "a.log"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"t":1,"ev":"ans","key":"k`) // torn
	f.Close()
	recs, err := ReadLogs(dir)
	if err != nil || len(recs) != 2 || recs[1].Ev != EvOK || recs[0].Proc != "p" {
		t.Fatalf("ReadLogs = %+v, %v; want the two whole records", recs, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "b.log"), []byte("{\"t\":1}\nnot json\n{\"t\":2}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadLogs(dir); err == nil {
		t.Fatal("ReadLogs accepted a malformed line in the middle of a log")
	}
}
