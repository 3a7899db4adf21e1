package main

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/idemkit/idemkit/idem/event"

	"github.com/idemkit/idemkit/examples/internal/report"
	"github.com/idemkit/idemkit/idem"
)

// Config shapes a demo run.
type Config struct {
	Payments int    // payments in the storm
	Seed     uint64 // the fault injector's seed
	// Events, if set, receives every event.Event of the service's calls
	// (the -metrics flag feeds them to OpenTelemetry).
	Events func(context.Context, event.Event)
}

// fault is what the network between client and service does to one
// delivery.
type fault int

const (
	deliver      fault = iota
	dropRequest        // the request never reaches the service
	dropResponse       // the service handles it; the answer is lost
)

// stats counts what the client saw.
type stats struct {
	attempts, lostRequests, lostResponses, crashes atomic.Int64
	inProgress, replays, rejected, declined        atomic.Int64
	transient                                      atomic.Int64
}

// outcome is a client's final answer for one payment.
type outcome struct {
	receipt Receipt
	err     error
}

// client sends one payment, retrying with the same key until it gets a
// final answer, as a well-behaved client of an idempotent API does.
type client struct {
	svc    *Service
	st     *stats
	faults func() fault
}

func (c *client) pay(ctx context.Context, req PayRequest) outcome {
	pause := 5 * time.Millisecond
	for attempt := 1; attempt <= 200; attempt++ {
		c.st.attempts.Add(1)
		f := c.faults()
		if f == dropRequest {
			c.st.lostRequests.Add(1)
			time.Sleep(pause)
			continue
		}
		r, replayed, err, crashed := c.deliver(ctx, req)
		switch {
		case crashed:
			c.st.crashes.Add(1) // the connection drops: the client times out
		case errors.Is(err, idem.ErrInProgress):
			c.st.inProgress.Add(1) // 409: someone is on it; come back later
		case errors.Is(err, idem.ErrMismatch):
			c.st.rejected.Add(1) // 422: a bug in the client; do not retry
			return outcome{err: err}
		case errors.As(err, new(*idem.PermanentError)):
			c.st.declined.Add(1) // the stored, final answer
			return outcome{err: err}
		case err != nil:
			c.st.transient.Add(1) // 503: the service released the key
		case f == dropResponse:
			c.st.lostResponses.Add(1)
		default:
			if replayed {
				c.st.replays.Add(1)
			}
			return outcome{receipt: r}
		}
		time.Sleep(pause)
		pause = min(2*pause, 100*time.Millisecond)
	}
	return outcome{err: fmt.Errorf("gave up on %s", req.Key)}
}

// deliver runs one request on its own server goroutine, which may die
// mid-request (runtime.Goexit in Service.Pay) like a crashed process.
func (c *client) deliver(ctx context.Context, req PayRequest) (r Receipt, replayed bool, err error, crashed bool) {
	answered := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		r, replayed, err = c.svc.Pay(ctx, req)
		close(answered)
	}()
	<-done
	select {
	case <-answered:
		return r, replayed, err, false
	default:
		return Receipt{}, false, nil, true
	}
}

// Report is what a run did and whether it kept every promise.
type Report struct {
	Scenarios report.Scenarios
	Totals    Totals
}

// Totals sums the client's view and the card network's.
type Totals struct {
	Attempts, LostRequests, LostResponses, Crashes int64
	InProgress, Replays, Rejected, Declined        int64
	Transient, NetworkCalls, Deduped, Executed     int64
}

// OK reports whether every scenario kept its promises.
func (r *Report) OK() bool { return r.Scenarios.OK() }

// Print writes the report.
func (r *Report) Print(w io.Writer) {
	r.Scenarios.Print(w)
	t := r.Totals
	fmt.Fprintf(w, "\nclient attempts           %6d\n", t.Attempts)
	fmt.Fprintf(w, "  lost requests           %6d\n", t.LostRequests)
	fmt.Fprintf(w, "  lost responses          %6d\n", t.LostResponses)
	fmt.Fprintf(w, "  server crashes          %6d  (after charging, before answering)\n", t.Crashes)
	fmt.Fprintf(w, "  in progress (409)       %6d\n", t.InProgress)
	fmt.Fprintf(w, "  card network outages    %6d  (key released, retried)\n", t.Transient)
	fmt.Fprintf(w, "replays served            %6d\n", t.Replays)
	fmt.Fprintf(w, "rejected (key reused)     %6d\n", t.Rejected)
	fmt.Fprintf(w, "declined (stored answer)  %6d\n", t.Declined)
	fmt.Fprintf(w, "card network calls        %6d\n", t.NetworkCalls)
	fmt.Fprintf(w, "  charges executed        %6d\n", t.Executed)
	fmt.Fprintf(w, "  repeats it absorbed     %6d  (re-runs after a crash, caught by the provider's key)\n", t.Deduped)
	if r.OK() {
		fmt.Fprintln(w, "\nevery payment was charged exactly once")
	} else {
		fmt.Fprintln(w, "\nFAILED: see the scenarios marked FAIL above")
	}
}

// Run plays every scenario against store.
func Run(ctx context.Context, store idem.Store, cfg Config) (*Report, error) {
	d := &demo{ctx: ctx, store: store, cfg: cfg, rep: &Report{}, st: &stats{}}
	d.runID = crand.Text()[:13] // keys of two runs on one server never meet
	d.rng = rand.New(rand.NewPCG(cfg.Seed, 42))

	d.scenario("clean payment", nil, d.cleanPayment)
	d.scenario("lost response, client retries", nil, d.lostResponse)
	d.scenario("lost request, client retries", nil, d.lostRequest)
	d.scenario("crash after charging", nil, d.crashThenTakeover)
	d.scenario("10 concurrent duplicates", nil, d.concurrentDuplicates)
	d.scenario("key reused, different amount", nil, d.keyReused)
	d.scenario("card declined, client retries", nil, d.cardDeclined)
	d.scenario("card network outage", firstOutages(2), d.networkOutage)
	d.scenario("storm", func() bool { return d.chance(0.05) }, d.storm)
	d.rep.Totals = d.totals()
	return d.rep, nil
}

// demo is what the scenarios of one run share: what the client saw, what
// the card networks did, and the storm's random source.
type demo struct {
	ctx   context.Context
	store idem.Store
	cfg   Config
	runID string
	rep   *Report
	st    *stats

	networkCalls, deduped, executed int64

	rng   *rand.Rand
	rngMu sync.Mutex
}

// scene plays one scenario on svc, its keys made by key, and returns how
// many payments it made, what came of them and the promises it broke.
type scene func(svc *Service, key func(string) string) (int, string, []string)

// scenario plays body on a service of its own, on a card network that has
// an outage whenever outage says so, and checks that the network charged
// no key twice.
func (d *demo) scenario(name string, outage func() bool, body scene) {
	net := newCardNetwork(outage)
	svc := &Service{Store: d.store, Network: net, Lease: 300 * time.Millisecond, Events: d.cfg.Events, crashes: map[string]bool{}}
	key := func(s string) string { return d.runID + "/" + s }
	n, detail, failures := body(svc, key)
	net.mu.Lock()
	charged := 0
	for k, x := range net.executed {
		charged += x
		if x > 1 {
			failures = append(failures, fmt.Sprintf("%s charged %d times", k, x))
		}
	}
	d.networkCalls += int64(net.calls)
	d.deduped += int64(net.deduped)
	d.executed += int64(charged)
	net.mu.Unlock()
	d.rep.Scenarios = append(d.rep.Scenarios, report.Scenario{
		Name:     name,
		Outcome:  fmt.Sprintf("payments %-4d charged %-4d %s", n, charged, detail),
		Failures: failures,
	})
}

// totals sums the client's view and the card networks'.
func (d *demo) totals() Totals {
	st := d.st
	return Totals{
		Attempts: st.attempts.Load(), LostRequests: st.lostRequests.Load(), LostResponses: st.lostResponses.Load(),
		Crashes: st.crashes.Load(), InProgress: st.inProgress.Load(), Replays: st.replays.Load(),
		Rejected: st.rejected.Load(), Declined: st.declined.Load(), Transient: st.transient.Load(),
		NetworkCalls: d.networkCalls, Deduped: d.deduped, Executed: d.executed,
	}
}

// faultSeq does to the deliveries what seq says, one by one, then
// delivers.
func faultSeq(seq ...fault) func() fault {
	var mu sync.Mutex
	return func() fault {
		mu.Lock()
		defer mu.Unlock()
		if len(seq) == 0 {
			return deliver
		}
		f := seq[0]
		seq = seq[1:]
		return f
	}
}

// firstOutages is an outage for the first n charges, and none after.
func firstOutages(n int) func() bool {
	return func() bool { n--; return n >= 0 }
}

// expect checks that o is a receipt for amount.
func expect(o outcome, amount int) []string {
	if o.err != nil {
		return []string{fmt.Sprintf("got error %v, want a receipt", o.err)}
	}
	if o.receipt.Amount != amount {
		return []string{fmt.Sprintf("receipt for %d, want %d", o.receipt.Amount, amount)}
	}
	return nil
}

func (d *demo) cleanPayment(svc *Service, key func(string) string) (int, string, []string) {
	c := &client{svc: svc, st: d.st, faults: faultSeq()}
	o := c.pay(d.ctx, PayRequest{Key: key("clean"), Customer: "cus_1", Amount: 1250})
	return 1, "one attempt, one charge", expect(o, 1250)
}

func (d *demo) lostResponse(svc *Service, key func(string) string) (int, string, []string) {
	c := &client{svc: svc, st: d.st, faults: faultSeq(dropResponse, dropResponse)}
	o := c.pay(d.ctx, PayRequest{Key: key("lost-resp"), Customer: "cus_2", Amount: 990})
	return 1, "2 answers lost; the retry got the stored receipt", expect(o, 990)
}

func (d *demo) lostRequest(svc *Service, key func(string) string) (int, string, []string) {
	c := &client{svc: svc, st: d.st, faults: faultSeq(dropRequest)}
	o := c.pay(d.ctx, PayRequest{Key: key("lost-req"), Customer: "cus_3", Amount: 500})
	return 1, "the retry ran it for the first time", expect(o, 500)
}

func (d *demo) crashThenTakeover(svc *Service, key func(string) string) (int, string, []string) {
	k := key("crash")
	svc.crashAfterCharging(k)
	c := &client{svc: svc, st: d.st, faults: faultSeq()}
	o := c.pay(d.ctx, PayRequest{Key: k, Customer: "cus_4", Amount: 4200})
	f := expect(o, 4200)
	if o.err == nil && o.receipt.Attempt != 2 {
		f = append(f, fmt.Sprintf("completed by attempt %d, want 2 (a takeover)", o.receipt.Attempt))
	}
	return 1, "409 until the lease passed, then a takeover (attempt 2)", f
}

func (d *demo) concurrentDuplicates(svc *Service, key func(string) string) (int, string, []string) {
	var wg sync.WaitGroup
	outs := make([]outcome, 10)
	k := key("concurrent")
	for i := range outs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &client{svc: svc, st: d.st, faults: faultSeq()}
			outs[i] = c.pay(d.ctx, PayRequest{Key: k, Customer: "cus_5", Amount: 700})
		}()
	}
	wg.Wait()
	var f []string
	for i, o := range outs {
		f = append(f, expect(o, 700)...)
		if o.receipt.ChargeID != outs[0].receipt.ChargeID {
			f = append(f, fmt.Sprintf("duplicate %d got charge %s, the first got %s", i, o.receipt.ChargeID, outs[0].receipt.ChargeID))
		}
	}
	return 1, "all 10 got the same receipt", f
}

func (d *demo) keyReused(svc *Service, key func(string) string) (int, string, []string) {
	c := &client{svc: svc, st: d.st, faults: faultSeq()}
	k := key("reused")
	f := expect(c.pay(d.ctx, PayRequest{Key: k, Customer: "cus_6", Amount: 500}), 500)
	if o := c.pay(d.ctx, PayRequest{Key: k, Customer: "cus_6", Amount: 900}); !errors.Is(o.err, idem.ErrMismatch) {
		f = append(f, fmt.Sprintf("reused key: got %v, want ErrMismatch", o.err))
	}
	return 1, "the 900 request was rejected, 500 charged", f
}

func (d *demo) cardDeclined(svc *Service, key func(string) string) (int, string, []string) {
	c := &client{svc: svc, st: d.st, faults: faultSeq()}
	k := key("declined")
	var f []string
	for range 3 {
		if o := c.pay(d.ctx, PayRequest{Key: k, Customer: "cus_broke", Amount: 100}); !errors.As(o.err, new(*idem.PermanentError)) {
			f = append(f, fmt.Sprintf("got %v, want the stored decline", o.err))
		}
	}
	svc.Network.mu.Lock()
	if svc.Network.calls != 1 {
		f = append(f, fmt.Sprintf("the network was asked %d times, want 1", svc.Network.calls))
	}
	svc.Network.mu.Unlock()
	return 0, "3 tries, 1 network call, the same decline", f
}

func (d *demo) networkOutage(svc *Service, key func(string) string) (int, string, []string) {
	c := &client{svc: svc, st: d.st, faults: faultSeq()}
	o := c.pay(d.ctx, PayRequest{Key: key("outage"), Customer: "cus_7", Amount: 3100})
	return 1, "2 failures released the key; the 3rd try charged", expect(o, 3100)
}

// chance is true with probability p, drawn from the run's seeded source.
func (d *demo) chance(p float64) bool {
	d.rngMu.Lock()
	defer d.rngMu.Unlock()
	return d.rng.Float64() < p
}

func (d *demo) randomFaults() fault {
	switch {
	case d.chance(0.10):
		return dropRequest
	case d.chance(0.15):
		return dropResponse
	}
	return deliver
}

// stormJob is one payment of the storm, and how many times the client
// submits it.
type stormJob struct {
	req    PayRequest
	copies int
}

// The storm: many payments, concurrent clients, random faults.
func (d *demo) storm(svc *Service, key func(string) string) (int, string, []string) {
	jobs, crashes := d.stormJobs(svc, key)
	f := d.stormPay(svc, jobs)
	svc.Network.mu.Lock()
	for _, j := range jobs {
		if n := svc.Network.executed[j.req.Key]; n != 1 {
			f = append(f, fmt.Sprintf("%s charged %d times, want 1", j.req.Key, n))
		}
	}
	svc.Network.mu.Unlock()
	sort.Strings(f)
	return len(jobs), fmt.Sprintf("16 clients, random faults, %d crashes armed", crashes), f
}

// stormJobs draws the storm's payments, some submitted twice, and arms a
// crash after charging for a few; it returns how many crashes it armed.
func (d *demo) stormJobs(svc *Service, key func(string) string) ([]stormJob, int) {
	jobs := make([]stormJob, d.cfg.Payments)
	crashes := 0
	for i := range jobs {
		jobs[i] = stormJob{req: PayRequest{Key: key(fmt.Sprintf("storm-%d", i)), Customer: fmt.Sprintf("cus_%d", i%17), Amount: 100 + i}, copies: 1}
		if d.chance(0.2) {
			jobs[i].copies = 2 // the client double-submits
		}
		if d.chance(0.03) {
			svc.crashAfterCharging(jobs[i].req.Key)
			crashes++
		}
	}
	return jobs, crashes
}

// stormPay sends every copy of every job, 16 clients at a time over a
// network with random faults, and checks that each key got one receipt.
func (d *demo) stormPay(svc *Service, jobs []stormJob) []string {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		seen = map[string]string{}
		f    []string
	)
	sem := make(chan struct{}, 16)
	for _, j := range jobs {
		for range j.copies {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sem <- struct{}{}
				defer func() { <-sem }()
				c := &client{svc: svc, st: d.st, faults: d.randomFaults}
				o := c.pay(d.ctx, j.req)
				mu.Lock()
				defer mu.Unlock()
				f = append(f, expect(o, j.req.Amount)...)
				if prev, ok := seen[j.req.Key]; ok && prev != o.receipt.ChargeID {
					f = append(f, fmt.Sprintf("%s: two different receipts %s and %s", j.req.Key, prev, o.receipt.ChargeID))
				}
				seen[j.req.Key] = o.receipt.ChargeID
			}()
		}
	}
	wg.Wait()
	return f
}
