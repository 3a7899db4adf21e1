// Package report prints what an example did, scenario by scenario, and
// says whether every promise held. Each example adds its own totals.
package report

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// Scenario is one named situation an example plays, and what came of it.
type Scenario struct {
	Name     string
	Outcome  string
	Failures []string // promises broken; none when the scenario passed
}

// Scenarios is the list an example played, in order.
type Scenarios []Scenario

// OK reports whether every scenario kept its promises.
func (ss Scenarios) OK() bool {
	for _, s := range ss {
		if len(s.Failures) > 0 {
			return false
		}
	}
	return true
}

// Print writes one line per scenario, "ok" or "FAIL", with the failures
// under it.
func (ss Scenarios) Print(w io.Writer) {
	width := 0
	for _, s := range ss {
		width = max(width, len(s.Name))
	}
	for _, s := range ss {
		mark := "ok  "
		if len(s.Failures) > 0 {
			mark = "FAIL"
		}
		fmt.Fprintf(w, "%s %-*s  %s\n", mark, width, s.Name, s.Outcome)
		for _, f := range s.Failures {
			fmt.Fprintf(w, "       - %s\n", f)
		}
	}
}

// Report is what every example's report offers: its scenarios and totals
// printed, and whether every promise held.
type Report interface {
	Print(w io.Writer)
	OK() bool
}

// Text returns rep as Print writes it.
func Text(rep Report) string {
	var b strings.Builder
	rep.Print(&b)
	return b.String()
}

// Finish ends an example's main: it prints rep to standard output, or err
// to standard error, and exits 1 if the run failed or broke a promise.
func Finish(name string, rep Report, err error) {
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
	rep.Print(os.Stdout)
	if !rep.OK() {
		os.Exit(1)
	}
}
