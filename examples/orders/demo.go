package main

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/idemkit/idemkit/cassandra"
	"github.com/idemkit/idemkit/dynamo"
	"github.com/idemkit/idemkit/examples/internal/report"
	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/memstore"
)

// Backend is what a run places orders on. On DynamoDB: the store, whose
// client goes through Wire, and the orders table, written with dynamo.DoTx.
// On Cassandra and memory: the store and a ledger, written fenced.
type Backend struct {
	Kind   string // "memory", "dynamodb" or "cassandra"
	Store  idem.Store
	Tx     *TxOrders        // DynamoDB only
	Client *dynamodb.Client // DynamoDB only: reads the orders table
	Wire   *Wire            // DynamoDB only: the client's wire
	Ledger Ledger           // memory and Cassandra
}

// NewMemoryBackend is the embedded store with an in-process ledger.
func NewMemoryBackend() *Backend {
	return &Backend{Kind: "memory", Store: memstore.New(), Ledger: NewMemLedger()}
}

// NewDynamoDBBackend places orders in table+"_orders", created if missing,
// next to the idem table. client must go through wire.
func NewDynamoDBBackend(ctx context.Context, client *dynamodb.Client, wire *Wire, table string) (*Backend, error) {
	orders := table + "_orders"
	if err := CreateOrdersTable(ctx, client, orders); err != nil {
		return nil, err
	}
	store, err := dynamo.New(client, table)
	if err != nil {
		return nil, err
	}
	return &Backend{Kind: "dynamodb", Store: store, Tx: &TxOrders{Store: store, Table: orders}, Client: client, Wire: wire}, nil
}

// NewCassandraBackend keeps the ledger in table+"_ledger", created if
// missing, next to the idem table ("keyspace.table", which must exist).
func NewCassandraBackend(ctx context.Context, session *gocql.Session, table string) (*Backend, error) {
	ledger := table + "_ledger"
	if err := CreateLedgerTable(ctx, session, ledger); err != nil {
		return nil, err
	}
	store, err := cassandra.New(session, table)
	if err != nil {
		return nil, err
	}
	return &Backend{Kind: "cassandra", Store: store, Ledger: &CassandraLedger{Session: session, Table: ledger}}, nil
}

// Wire is the http.RoundTripper in front of the demo's DynamoDB client. It
// counts requests by operation and, when armed with DropResponse, delivers
// the next request of an operation and drops its response: the server has
// applied it, the client sees a connection reset.
type Wire struct {
	base http.RoundTripper

	mu      sync.Mutex
	counts  map[string]int
	drop    map[string]int // responses still to drop, by operation
	dropped int
}

// NewWire returns a Wire that forwards to base.
func NewWire(base http.RoundTripper) *Wire {
	return &Wire{base: base, counts: map[string]int{}, drop: map[string]int{}}
}

// DropResponse arms the wire to drop the response of the next request of
// op ("TransactWriteItems").
func (w *Wire) DropResponse(op string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.drop[op]++
}

// Take returns the requests sent by operation, and how many responses were
// dropped, since the last Take.
func (w *Wire) Take() (counts map[string]int, dropped int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	counts, dropped = w.counts, w.dropped
	w.counts, w.dropped = map[string]int{}, 0
	return counts, dropped
}

// RoundTrip implements http.RoundTripper.
func (w *Wire) RoundTrip(req *http.Request) (*http.Response, error) {
	op := strings.TrimPrefix(req.Header.Get("X-Amz-Target"), "DynamoDB_20120810.")
	w.mu.Lock()
	w.counts[op]++
	drop := w.drop[op] > 0
	if drop {
		w.drop[op]--
	}
	w.mu.Unlock()
	resp, err := w.base.RoundTrip(req)
	if err != nil || !drop {
		return resp, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	w.mu.Lock()
	w.dropped++
	w.mu.Unlock()
	return nil, &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
}

// Report is what a run did and whether every order was written once.
type Report struct {
	Kind      string
	Scenarios report.Scenarios
	Notes     []string
	Calls     int // PlaceOrder calls
	Runs      int // executions of fn
	Replays   int // calls answered from the stored result
}

// OK reports whether every scenario kept its promises.
func (r *Report) OK() bool { return r.Scenarios.OK() }

// Print writes the report, its promise last.
func (r *Report) Print(w io.Writer) {
	r.Scenarios.Print(w)
	fmt.Fprintf(w, "\nPlaceOrder calls   %4d\n", r.Calls)
	fmt.Fprintf(w, "  fn executions    %4d\n", r.Runs)
	fmt.Fprintf(w, "  replays          %4d\n", r.Replays)
	for _, n := range r.Notes {
		fmt.Fprintf(w, "\n%s\n", n)
	}
	if r.OK() {
		fmt.Fprintln(w, "\nevery order was written exactly once")
	} else {
		fmt.Fprintln(w, "\nFAILED: see the scenarios marked FAIL above")
	}
}

// placer is one of the services: TxOrders or FencedOrders.
type placer interface {
	PlaceOrder(ctx context.Context, w *Worker, req OrderRequest) (Order, bool, error)
}

// run is one run's state: its keys, its counts.
type run struct {
	ctx context.Context
	b   *Backend
	svc placer
	rep *Report
	id  string // keys and order ids of two runs on one server never meet
}

func (r *run) key(s string) string { return r.id + "/" + s }

func (r *run) place(w *Worker, req OrderRequest) (Order, bool, error) {
	o, ran, err := r.svc.PlaceOrder(r.ctx, w, req)
	r.rep.Calls++
	if ran {
		r.rep.Runs++
	} else if err == nil {
		r.rep.Replays++
	}
	return o, ran, err
}

func (r *run) scenario(name string, body func() (outcome string, failures []string)) {
	outcome, failures := body()
	r.rep.Scenarios = append(r.rep.Scenarios, report.Scenario{Name: name, Outcome: outcome, Failures: failures})
}

// Run plays every scenario of b's kind.
func Run(ctx context.Context, b *Backend) (*Report, error) {
	r := &run{ctx: ctx, b: b, rep: &Report{Kind: b.Kind}, id: crand.Text()[:13]}
	switch b.Kind {
	case "dynamodb":
		r.svc = b.Tx
		r.txScenarios()
	case "memory", "cassandra":
		tl := &tally{Ledger: b.Ledger}
		r.svc = &FencedOrders{Store: b.Store, Ledger: tl}
		r.fencedScenarios(tl)
		if b.Kind == "memory" {
			r.rep.Notes = append(r.rep.Notes, "dynamo.DoTx, which commits the order with its answer in one transaction, needs DynamoDB:\n  go run ./examples/orders -store=dynamodb")
		} else {
			r.rep.Notes = append(r.rep.Notes, "Cassandra has no transaction across partitions: the ledger row is fenced, the answer stored by its own write.")
		}
	default:
		return nil, fmt.Errorf("unknown backend %q", b.Kind)
	}
	return r.rep, nil
}

// stall returns a worker held inside fn until resume is closed, with a 1 s
// lease and no heartbeat, so its lease passes while it waits. inside is
// closed once it is held.
func stall(name string) (w *Worker, inside, resume chan struct{}) {
	inside, resume = make(chan struct{}), make(chan struct{})
	var once sync.Once
	return &Worker{
		Name:    name,
		Options: []idem.Option{idem.WithLease(time.Second), idem.WithoutHeartbeat()},
		Inside: func(context.Context, OrderRequest) {
			once.Do(func() { close(inside) })
			<-resume
		},
	}, inside, resume
}

// ahead is a worker whose clock is 2 s ahead: the stalled worker's 1 s
// lease has passed for it, without waiting.
func ahead(name string) *Worker {
	return &Worker{Name: name, Options: []idem.Option{idem.WithClock(func() time.Time { return time.Now().Add(2 * time.Second) })}}
}

type answer struct {
	o   Order
	err error
}

// takeover plays the stalled worker: worker-A is held inside fn past its
// 1 s lease while worker-B, its clock ahead, takes the key over and places
// the order; then A resumes, and a duplicate follows. It returns the
// workers, the request, A's answer, and what went wrong with B's order or
// the duplicate's replay.
func (r *run) takeover() (a, bw *Worker, req OrderRequest, stale answer, f []string) {
	a, inside, resume := stall("worker-A")
	bw = ahead("worker-B")
	req = OrderRequest{Key: r.key("stall"), OrderID: r.key("ord-3"), Customer: "cus_3", Amount: 4200}
	done := make(chan answer, 1)
	go func() {
		o, _, err := r.svc.PlaceOrder(r.ctx, a, req)
		done <- answer{o, err}
	}()
	<-inside
	o, ran, err := r.place(bw, req)
	if err != nil || !ran || o.Worker != bw.Name || o.Attempt != 2 {
		f = append(f, fmt.Sprintf("worker-B's takeover: %+v, fn ran %v, %v; want its order, attempt 2", o, ran, err))
	}
	close(resume)
	stale = <-done
	r.rep.Calls++
	r.rep.Runs++
	if o, ran, err := r.place(&Worker{Name: "worker-1"}, req); err != nil || ran || o.Worker != bw.Name {
		f = append(f, fmt.Sprintf("a duplicate afterwards: %+v, fn ran %v, %v; want worker-B's order", o, ran, err))
	}
	return a, bw, req, stale, f
}

// txScenarios plays the dynamo.DoTx scenarios, counting round trips on
// b's Wire.
func (r *run) txScenarios() {
	r.b.Wire.Take()
	r.scenario("client retry (duplicate key)", r.txRetry)
	r.scenario("lost response of the transaction", r.txLostResponse)
	r.scenario("stalled worker, takeover", r.txTakeover)
	r.scenario("order id taken already", r.txOrderIDTaken)
}

// txStored reads the order committed under orderID.
func (r *run) txStored(orderID string) (StoredOrder, []string) {
	b := r.b
	o, found, err := b.Tx.Read(r.ctx, b.Client, orderID)
	switch {
	case err != nil:
		return o, []string{err.Error()}
	case !found:
		return o, []string{fmt.Sprintf("order %s was never written", orderID)}
	}
	return o, nil
}

// txOnce reads the order committed under orderID and checks that worker
// wrote it, once.
func (r *run) txOnce(orderID, worker string) (StoredOrder, []string) {
	o, f := r.txStored(orderID)
	if f == nil && (o.Writes != 1 || o.Worker != worker) {
		f = append(f, fmt.Sprintf("order %s: %d writes by %q, want 1 by %s", orderID, o.Writes, o.Worker, worker))
	}
	return o, f
}

func (r *run) txRetry() (string, []string) {
	b := r.b
	w := &Worker{Name: "worker-1"}
	req := OrderRequest{Key: r.key("retry"), OrderID: r.key("ord-1"), Customer: "cus_1", Amount: 1250}
	var f []string
	var trips []string
	for i := range 3 {
		o, ran, err := r.place(w, req)
		c, _ := b.Wire.Take()
		trips = append(trips, fmt.Sprint(total(c)))
		switch {
		case err != nil:
			f = append(f, fmt.Sprintf("call %d: %v", i+1, err))
		case ran != (i == 0):
			f = append(f, fmt.Sprintf("call %d: fn ran %v, want only the first to run it", i+1, ran))
		case o.Worker != w.Name || o.Amount != req.Amount:
			f = append(f, fmt.Sprintf("call %d: got %+v", i+1, o))
		}
		if i > 0 && c["TransactWriteItems"] > 0 {
			f = append(f, fmt.Sprintf("duplicate %d sent a transaction", i))
		}
	}
	_, sf := r.txOnce(req.OrderID, w.Name)
	return fmt.Sprintf("3 calls, fn ran once, order written 1 time; round trips %s", strings.Join(trips, "+")), append(f, sf...)
}

func (r *run) txLostResponse() (string, []string) {
	b := r.b
	w := &Worker{Name: "worker-1"}
	req := OrderRequest{Key: r.key("lost"), OrderID: r.key("ord-2"), Customer: "cus_2", Amount: 990}
	b.Wire.Take() // the reads of the scenario before
	b.Wire.DropResponse("TransactWriteItems")
	o, ran, err := r.place(w, req)
	c, dropped := b.Wire.Take()
	var f []string
	switch {
	case dropped != 1:
		f = append(f, fmt.Sprintf("%d responses dropped, want the transaction's", dropped))
	case err != nil:
		f = append(f, fmt.Sprintf("got %v, want the lost response settled", err))
	case !ran || o.Worker != w.Name:
		f = append(f, fmt.Sprintf("got %+v (fn ran %v)", o, ran))
	}
	if _, ran, err := r.place(w, req); err != nil || ran {
		f = append(f, fmt.Sprintf("the client's retry: fn ran %v, %v; want the stored answer", ran, err))
	}
	_, sf := r.txOnce(req.OrderID, w.Name)
	return fmt.Sprintf("response dropped after the commit; settled (%d TransactWriteItems, %d GetItem), order written 1 time",
		c["TransactWriteItems"], c["GetItem"]), append(f, sf...)
}

func (r *run) txTakeover() (string, []string) {
	_, bw, req, stale, f := r.takeover()
	if !errors.Is(stale.err, idem.ErrLeaseLost) {
		f = append(f, fmt.Sprintf("worker-A's commit: %v, want idem.ErrLeaseLost", stale.err))
	}
	_, sf := r.txOnce(req.OrderID, bw.Name)
	return "worker-A held past its 1 s lease; worker-B took over and committed; A's commit refused (idem.ErrLeaseLost); order written 1 time, by B",
		append(f, sf...)
}

func (r *run) txOrderIDTaken() (string, []string) {
	w := &Worker{Name: "worker-1"}
	first := OrderRequest{Key: r.key("taken-1"), OrderID: r.key("ord-4"), Customer: "cus_4", Amount: 300}
	second := OrderRequest{Key: r.key("taken-2"), OrderID: first.OrderID, Customer: "cus_5", Amount: 800}
	var f []string
	if _, _, err := r.place(w, first); err != nil {
		f = append(f, fmt.Sprintf("the first order: %v", err))
	}
	for i := range 2 {
		_, ran, err := r.place(w, second)
		var ce *dynamo.TxConditionError
		switch {
		case !errors.As(err, &ce):
			f = append(f, fmt.Sprintf("attempt %d: %v, want a *dynamo.TxConditionError", i+1, err))
		case !ran:
			f = append(f, fmt.Sprintf("attempt %d did not run fn: the key was not released", i+1))
		case ce.Item != nil && storedOrder(ce.Item).IdemKey != first.Key:
			f = append(f, fmt.Sprintf("the refusal shows the order of key %q, want %q", storedOrder(ce.Item).IdemKey, first.Key))
		}
	}
	o, sf := r.txOnce(first.OrderID, w.Name)
	if sf == nil && o.IdemKey != first.Key {
		sf = append(sf, fmt.Sprintf("order %s now belongs to key %q", first.OrderID, o.IdemKey))
	}
	return "*dynamo.TxConditionError, nothing committed; the retry ran fn again (key released) and was refused again; order written 1 time",
		append(f, sf...)
}

func total(c map[string]int) int {
	n := 0
	for _, v := range c {
		n += v
	}
	return n
}

// tally is a Ledger that records every write and what came of it.
type tally struct {
	Ledger
	mu     sync.Mutex
	writes []ledgerWrite
}

type ledgerWrite struct {
	worker string
	fence  int64
	err    error
}

func (t *tally) Write(ctx context.Context, e Entry, fence int64) error {
	err := t.Ledger.Write(ctx, e, fence)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.writes = append(t.writes, ledgerWrite{e.Worker, fence, err})
	return err
}

// take returns the writes since the last take.
func (t *tally) take() []ledgerWrite {
	t.mu.Lock()
	defer t.mu.Unlock()
	w := t.writes
	t.writes = nil
	return w
}

func (r *run) fencedScenarios(tl *tally) {
	row := func(orderID, worker string, fence int64) []string {
		e, found, err := r.b.Ledger.Read(r.ctx, orderID)
		switch {
		case err != nil:
			return []string{err.Error()}
		case !found:
			return []string{fmt.Sprintf("ledger row %s was never written", orderID)}
		case e.Worker != worker || e.Fence != fence:
			return []string{fmt.Sprintf("ledger row %s: written by %q with fence %d, want %s with %d", orderID, e.Worker, e.Fence, worker, fence)}
		}
		return nil
	}
	refused := "ErrFenced"
	if r.b.Kind == "cassandra" {
		refused = "cassandra.ErrFenced"
	}

	r.scenario("client retry (duplicate key)", func() (string, []string) {
		w := &Worker{Name: "worker-1"}
		req := OrderRequest{Key: r.key("retry"), OrderID: r.key("ord-1"), Customer: "cus_1", Amount: 1250}
		var f []string
		for i := range 3 {
			o, ran, err := r.place(w, req)
			switch {
			case err != nil:
				f = append(f, fmt.Sprintf("call %d: %v", i+1, err))
			case ran != (i == 0):
				f = append(f, fmt.Sprintf("call %d: fn ran %v, want only the first to run it", i+1, ran))
			case o.Worker != w.Name:
				f = append(f, fmt.Sprintf("call %d: got %+v", i+1, o))
			}
		}
		writes := tl.take()
		if len(writes) != 1 || writes[0].err != nil {
			f = append(f, fmt.Sprintf("ledger writes %v, want 1 that landed", writes))
			return "ledger writes not as planned", f
		}
		return "3 calls, fn ran once, ledger row written 1 time; the duplicates wrote nothing", append(f, row(req.OrderID, w.Name, writes[0].fence)...)
	})

	r.scenario("stalled worker, takeover", func() (string, []string) {
		a, bw, req, stale, f := r.takeover()
		if !errors.Is(stale.err, ErrFenced) || (r.b.Kind == "cassandra" && !errors.Is(stale.err, cassandra.ErrFenced)) {
			f = append(f, fmt.Sprintf("worker-A's ledger write: %v, want it refused (%s)", stale.err, refused))
		}
		writes := tl.take()
		if len(writes) != 2 || writes[0].worker != bw.Name || writes[0].err != nil || writes[1].worker != a.Name || writes[1].err == nil {
			f = append(f, fmt.Sprintf("ledger writes %v, want worker-B's landed, then worker-A's refused, and none by the duplicate", writes))
			return "ledger writes not as planned", f
		}
		if writes[1].fence >= writes[0].fence {
			f = append(f, fmt.Sprintf("worker-A's fence %d is not below worker-B's %d", writes[1].fence, writes[0].fence))
		}
		return fmt.Sprintf("worker-B took over and wrote the row; worker-A's write after it refused (%s); the duplicate wrote nothing; row written 1 time, by B", refused),
			append(f, row(req.OrderID, bw.Name, writes[0].fence)...)
	})
}

func (w ledgerWrite) String() string {
	return fmt.Sprintf("{%s fence %d: %v}", w.worker, w.fence, w.err)
}
