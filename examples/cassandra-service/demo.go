package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"

	"github.com/idemkit/idemkit/examples/internal/report"
	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/idemhttp"
)

// Report is what a run did and whether it kept every promise.
type Report struct {
	Scenarios report.Scenarios
	Requests  int // HTTP requests the clients sent
	Replays   int // responses marked Idempotent-Replayed
	Created   int // orders the service wrote
	Orders    int // orders the clients were told about
	Logs      []string
}

// Scenario is one named situation and what came of it.
type Scenario = report.Scenario

// OK reports whether every scenario kept its promises.
func (r *Report) OK() bool { return r.Scenarios.OK() }

// Print writes the report.
func (r *Report) Print(w io.Writer) {
	r.Scenarios.Print(w)
	fmt.Fprintf(w, "\nHTTP requests sent       %4d\n", r.Requests)
	fmt.Fprintf(w, "  replayed responses     %4d\n", r.Replays)
	fmt.Fprintf(w, "orders clients were told %4d\n", r.Orders)
	fmt.Fprintf(w, "orders written           %4d\n", r.Created)
	if len(r.Logs) > 0 {
		fmt.Fprintln(w, "what the middleware logged:")
		for _, l := range r.Logs {
			fmt.Fprintf(w, "  %s\n", l)
		}
	}
	if r.OK() {
		fmt.Fprintln(w, "\nevery order was created exactly once")
	} else {
		fmt.Fprintln(w, "\nFAILED: see the scenarios marked FAIL above")
	}
}

// client is an HTTP client of the service for one customer.
type client struct {
	base  string
	http  *http.Client
	token string

	mu       sync.Mutex
	requests int
	replays  int
}

type reply struct {
	status   int
	body     string
	replayed bool
	problem  idemhttp.Problem
	err      error // the connection dropped
}

func (c *client) do(ctx context.Context, method, path, key, body string) reply {
	req, _ := http.NewRequestWithContext(ctx, method, c.base+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	c.mu.Lock()
	c.requests++
	c.mu.Unlock()
	resp, err := c.http.Do(req)
	if err != nil {
		return reply{err: err}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := reply{status: resp.StatusCode, body: string(b), replayed: resp.Header.Get(idemhttp.ReplayedHeader) == "true"}
	if r.replayed {
		c.mu.Lock()
		c.replays++
		c.mu.Unlock()
	}
	if resp.Header.Get("Content-Type") == "application/problem+json" {
		json.Unmarshal(b, &r.problem)
	}
	return r
}

func orderOf(r reply) Order {
	var o Order
	json.Unmarshal([]byte(r.body), &o)
	return o
}

// Run plays every scenario against a service on store, over real HTTP on
// loopback.
func Run(ctx context.Context, store idem.Store) (*Report, error) {
	d := newDemo(ctx, store)
	defer d.srv.Close()
	d.responseLost()
	d.keyMissingOrMalformed()
	d.concurrentCopies()
	d.twoCustomersOneKey()
	d.crashBeforeAnswering()
	d.dependencyDown()
	d.cancelRetried()
	d.writtenEqualsAnswered()
	d.totals()
	return d.rep, nil
}

// newDemo starts a service on store behind a loopback server, with a
// client for each of its two customers.
func newDemo(ctx context.Context, store idem.Store) *demo {
	runID := rand.Text()[:13] // keys of two runs on one server never meet
	d := &demo{ctx: ctx, store: store}
	d.svc = &Service{
		Store: store, Prefix: runID + "/",
		Tokens: map[string]string{"tok-alice": "alice", "tok-bob": "bob"},
		Logger: slog.New(slog.NewTextHandler(&d.logBuf, &slog.HandlerOptions{ReplaceAttr: dropTime})),
		faults: map[string]bool{},
	}
	d.srv = httptest.NewServer(d.svc.Handler())
	d.alice = &client{base: d.srv.URL, http: d.srv.Client(), token: "tok-alice"}
	d.bob = &client{base: d.srv.URL, http: d.srv.Client(), token: "tok-bob"}
	d.clients = []*client{d.alice, d.bob}
	d.rep = &Report{}
	d.told = map[string]bool{}
	return d
}

// totals adds up what the clients sent and what the service logged.
func (d *demo) totals() {
	for _, c := range d.clients {
		d.rep.Requests += c.requests
		d.rep.Replays += c.replays
	}
	d.rep.Logs = d.logBuf.lines()
}

// demo is what the scenes of one run share: the service, its server, the
// customers' clients and the report they fill.
type demo struct {
	ctx        context.Context
	store      idem.Store
	svc        *Service
	srv        *httptest.Server
	alice, bob *client
	clients    []*client // every client that sent a request, for the totals
	rep        *Report
	told       map[string]bool // order IDs the clients were given
	logBuf     lockedBuffer    // what the middleware logged
}

const (
	book = `{"items":[{"sku":"book","qty":2,"price":1500}]}`
	lamp = `{"items":[{"sku":"lamp","qty":1,"price":4900}]}`
)

func (d *demo) add(name, outcome string, failures []string) {
	d.rep.Scenarios = append(d.rep.Scenarios, Scenario{Name: name, Outcome: outcome, Failures: failures})
}

// want records a broken promise in failures unless cond holds.
func want(failures *[]string, cond bool, format string, args ...any) {
	if !cond {
		*failures = append(*failures, fmt.Sprintf(format, args...))
	}
}

// created is how many orders the service wrote.
func (d *demo) created() int {
	d.svc.mu.Lock()
	defer d.svc.mu.Unlock()
	return d.svc.created
}

// fault arms the service's fault name for key k.
func (d *demo) fault(name, k string) {
	d.svc.mu.Lock()
	d.svc.faults[name+" "+k] = true
	d.svc.mu.Unlock()
}

// 1. The response is lost; the client retries with the same key.
func (d *demo) responseLost() {
	ctx, alice := d.ctx, d.alice
	var f []string
	k := rand.Text()
	lost := alice.do(ctx, "POST", "/orders", k, book) // the client never sees this one
	retry := alice.do(ctx, "POST", "/orders", k, book)
	want(&f, lost.status == http.StatusCreated && retry.status == http.StatusCreated, "statuses %d, %d", lost.status, retry.status)
	want(&f, retry.replayed && retry.body == lost.body, "retry: replayed=%v body %q, want the first body replayed", retry.replayed, retry.body)
	d.told[orderOf(retry).ID] = true
	d.add("response lost, client retries", "201, then the same 201 replayed: "+orderOf(retry).ID, f)

	// The same order, re-encoded by another client library.
	var g []string
	reencoded := alice.do(ctx, "POST", "/orders", k, "{\n  \"items\": [ {\"price\": 1500, \"qty\": 2, \"sku\": \"book\"} ]\n}")
	want(&g, reencoded.replayed && reencoded.body == lost.body, "re-encoded body: %d replayed=%v, want the replay", reencoded.status, reencoded.replayed)
	other := alice.do(ctx, "POST", "/orders", k, lamp)
	want(&g, other.status == http.StatusUnprocessableEntity && other.problem.Code == idemhttp.CodeMismatch, "same key, other items: %d %q, want 422", other.status, other.problem.Code)
	d.add("same key: re-encoded body, other body", "replayed (JSON fingerprint), 422", g)
}

// 2. Key missing or malformed.
func (d *demo) keyMissingOrMalformed() {
	var f []string
	none := d.alice.do(d.ctx, "POST", "/orders", "", book)
	bad := d.alice.do(d.ctx, "POST", "/orders", "two words", book)
	want(&f, none.status == http.StatusBadRequest && none.problem.Code == idemhttp.CodeKeyMissing, "no key: %d %q", none.status, none.problem.Code)
	want(&f, bad.status == http.StatusBadRequest && bad.problem.Code == idemhttp.CodeKeyInvalid, "bad key: %d %q", bad.status, bad.problem.Code)
	d.add("key missing, key malformed", "400 problem+json, twice", f)
}

// 3. Ten copies of one request at once: one order; every copy gets it.
func (d *demo) concurrentCopies() {
	var f []string
	k := rand.Text()
	replies := make([]reply, 10)
	var wg sync.WaitGroup
	for i := range replies {
		wg.Go(func() { replies[i] = d.alice.do(d.ctx, "POST", "/orders", k, lamp) })
	}
	wg.Wait()
	ids := map[string]bool{}
	for i, r := range replies {
		want(&f, r.status == http.StatusCreated, "copy %d: %d %s", i, r.status, r.body)
		ids[orderOf(r).ID] = true
	}
	want(&f, len(ids) == 1, "%d different orders, want 1", len(ids))
	for id := range ids {
		d.told[id] = true
	}
	d.add("10 concurrent copies of one request", "one order, ten identical 201s", f)
}

// 4. Another customer happens to use the same key: another order.
func (d *demo) twoCustomersOneKey() {
	var f []string
	k := rand.Text()
	a := d.alice.do(d.ctx, "POST", "/orders", k, book)
	b := d.bob.do(d.ctx, "POST", "/orders", k, book)
	want(&f, a.status == http.StatusCreated && b.status == http.StatusCreated && !b.replayed, "alice %d, bob %d (replayed %v)", a.status, b.status, b.replayed)
	want(&f, orderOf(a).ID != orderOf(b).ID && orderOf(b).Customer == "bob", "bob got %s, alice's order is %s", b.body, orderOf(a).ID)
	d.told[orderOf(a).ID], d.told[orderOf(b).ID] = true, true
	d.add("two customers, one key", "two orders; bob never sees alice's", f)
}

// 5. The server dies after writing the order, before answering. The
// key is released; the retry runs the handler again, which finds the
// order it wrote (its ID comes from the key) instead of writing another.
func (d *demo) crashBeforeAnswering() {
	var f []string
	k := rand.Text()
	d.fault("crash", k)
	before := d.created()
	// A client without kept-alive connections: Go's transport resends
	// a POST carrying an Idempotency-Key by itself when a reused
	// connection drops, which would hide the crash from this demo.
	fresh := &client{base: d.srv.URL, http: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}, token: "tok-alice"}
	d.clients = append(d.clients, fresh)
	crashed := fresh.do(d.ctx, "POST", "/orders", k, book)
	want(&f, crashed.err != nil, "the crash answered %d", crashed.status)
	retry := d.alice.do(d.ctx, "POST", "/orders", k, book)
	want(&f, retry.status == http.StatusCreated && !retry.replayed, "retry: %d replayed=%v, want a fresh 201", retry.status, retry.replayed)
	want(&f, d.created()-before == 1, "%d orders written, want 1", d.created()-before)
	d.told[orderOf(retry).ID] = true
	d.add("server crash before answering", "connection dropped; the retry answered the same order", f)
}

// 6. The inventory service is down: 503 releases the key.
func (d *demo) dependencyDown() {
	var f []string
	k := rand.Text()
	d.fault("inventory-down", k)
	down := d.alice.do(d.ctx, "POST", "/orders", k, lamp)
	up := d.alice.do(d.ctx, "POST", "/orders", k, lamp)
	want(&f, down.status == http.StatusServiceUnavailable && up.status == http.StatusCreated && !up.replayed,
		"statuses %d then %d (replayed %v), want 503 then a fresh 201", down.status, up.status, up.replayed)
	d.told[orderOf(up).ID] = true
	d.add("dependency down (503)", "key released; the retry created the order", f)
}

// 7. Cancel an order, retry the cancel; read it back.
func (d *demo) cancelRetried() {
	ctx, alice := d.ctx, d.alice
	var f []string
	k := rand.Text()
	o := orderOf(alice.do(ctx, "POST", "/orders", rand.Text(), book))
	d.told[o.ID] = true
	c1 := alice.do(ctx, "PATCH", "/orders/"+o.ID, k, `{"status":"cancelled"}`)
	c2 := alice.do(ctx, "PATCH", "/orders/"+o.ID, k, `{"status":"cancelled"}`)
	want(&f, c1.status == http.StatusOK && c2.replayed && c2.body == c1.body, "cancel: %d, retry replayed=%v", c1.status, c2.replayed)
	got := alice.do(ctx, "GET", "/orders/"+o.ID, "", "")
	want(&f, got.status == http.StatusOK && orderOf(got).Status == "cancelled", "GET: %d %s", got.status, got.body)
	theirs := d.bob.do(ctx, "GET", "/orders/"+o.ID, "", "")
	want(&f, theirs.status == http.StatusNotFound, "bob reading alice's order: %d, want 404", theirs.status)
	d.add("cancel, retried; read back", "200, replayed; GET shows cancelled", f)
}

// Every order a client was told about exists, and no other was written.
func (d *demo) writtenEqualsAnswered() {
	var f []string
	for id := range d.told {
		it, err := d.store.Get(d.ctx, d.svc.Prefix+"orders/"+id)
		want(&f, err == nil && bytes.Contains(it.Value, []byte(id)), "order %s: %v", id, err)
	}
	d.rep.Created, d.rep.Orders = d.created(), len(d.told)
	want(&f, d.rep.Created == d.rep.Orders, "%d orders written, clients were told of %d", d.rep.Created, d.rep.Orders)
	d.add("orders written = orders answered", fmt.Sprintf("%d orders", d.rep.Orders), f)
}

// lockedBuffer collects log lines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) lines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := strings.TrimSpace(b.buf.String())
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func dropTime(groups []string, a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey && len(groups) == 0 {
		return slog.Attr{}
	}
	return a
}
