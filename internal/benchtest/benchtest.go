//go:build unix

// Package benchtest is the side-by-side harness of the dynamo and cassandra
// benchmarks: idemkit and the hand-written SDK or driver code doing the
// same work run in alternating blocks through the same client, and each
// side's wall time, client CPU, allocations and requests are reported per
// call with their ratios. It reads the process's CPU time with getrusage,
// so it builds on Unix only.
package benchtest

import (
	"context"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Op is one call of a benchmarked operation; i numbers the calls of a side.
type Op func(ctx context.Context, i int64) error

// Block is the calls per side in one block: SideBySide alternates blocks
// of idemkit and of the hand-written code, so that drift on the shared
// machine (the server's load, other processes) hits both alike.
const Block = 40

// Tally is what one side used over its blocks.
type Tally struct {
	Calls    int64
	Requests int64 // counted by SideBySide's count, if any
	Wall     time.Duration
	CPU      time.Duration // user+system of the whole process (client only: the server is another)
	Allocs   uint64
}

// SideBySide runs lib and hand alternately in blocks until each has made
// at least b.N calls, each block spread over callers goroutines (at 16
// callers a block is 10 calls per caller). count, if not nil, returns the
// requests sent so far. Go's own ns/op is the sum of both sides; read the
// metrics report adds.
func SideBySide(b *testing.B, callers int, count func() int64, lib, hand Op) (libT, handT Tally) {
	b.Helper()
	per := max(Block/callers, 10)
	var libN, handN atomic.Int64
	for i := 0; libT.Calls < int64(b.N) || handT.Calls < int64(b.N); i++ {
		if i%2 == 0 {
			libT.run(b, callers, per, count, &libN, lib)
			handT.run(b, callers, per, count, &handN, hand)
		} else {
			handT.run(b, callers, per, count, &handN, hand)
			libT.run(b, callers, per, count, &libN, lib)
		}
	}
	return libT, handT
}

func (t *Tally) run(b *testing.B, callers, per int, count func() int64, next *atomic.Int64, f Op) {
	ctx := context.Background()
	errs := make(chan error, callers)
	var r0 int64
	if count != nil {
		r0 = count()
	}
	a0, c0, t0 := allocs(), cpuTime(), time.Now()
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for range per {
				if err := f(ctx, next.Add(1)-1); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	t.Wall += time.Since(t0)
	t.CPU += cpuTime() - c0
	t.Allocs += allocs() - a0
	t.Calls += int64(callers * per)
	if count != nil {
		t.Requests += count() - r0
	}
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
}

// Report adds per call: idemkit's wall and CPU time, allocations and
// requests (ns/op, cpu-ns/op, allocs, req/op), the same for the
// hand-written code (hand-...), and the ratios idemkit/hand (wall-x,
// cpu-x, req-x).
func (t Tally) Report(b *testing.B, libReq, handReq float64, hand Tally) {
	per := func(x float64, n int64) float64 { return x / float64(n) }
	b.ReportMetric(per(float64(t.Wall), t.Calls), "wall-ns/op")
	b.ReportMetric(per(float64(hand.Wall), hand.Calls), "hand-wall-ns/op")
	b.ReportMetric(per(float64(t.CPU), t.Calls), "cpu-ns/op")
	b.ReportMetric(per(float64(hand.CPU), hand.Calls), "hand-cpu-ns/op")
	b.ReportMetric(per(float64(t.Allocs), t.Calls), "lib-allocs/op")
	b.ReportMetric(per(float64(hand.Allocs), hand.Calls), "hand-allocs/op")
	b.ReportMetric(libReq, "req/op")
	b.ReportMetric(handReq, "hand-req/op")
	b.ReportMetric(per(float64(t.Wall), t.Calls)/per(float64(hand.Wall), hand.Calls), "wall-x")
	b.ReportMetric(per(float64(t.CPU), t.Calls)/per(float64(hand.CPU), hand.Calls), "cpu-x")
	b.ReportMetric(libReq/handReq, "req-x")
}

// cpuTime is the CPU time the process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

var allocSample = []metrics.Sample{{Name: "/gc/heap/allocs:objects"}}

// allocs is the number of heap objects the process has allocated.
func allocs() uint64 {
	s := make([]metrics.Sample, 1)
	copy(s, allocSample)
	metrics.Read(s)
	return s[0].Value.Uint64()
}
