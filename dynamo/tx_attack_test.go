package dynamo_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/idemkit/idemkit/dynamo"
	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/internal/testenv"
)

// Attacks on DoTx, on every DynamoDB server. Each fault is placed on the
// wire (helpers_test.go): a dropped response is delivered and applied
// first, a cut request never reaches the server whole (so the SDK sends it
// again), and an after hook runs a competitor in the gap the fault opens,
// before the worker sees the failure. Competitors talk to the server
// straight (direct), so they neither see nor consume the worker's faults.
// The order table counts the transactions that wrote each order.

// direct is a Store on x's idem table that bypasses the wire.
func (x txSetup) direct(t *testing.T) *dynamo.Store {
	return mustStore(t, x.c, x.store.Table())
}

// aheadBy is a clock d ahead of the real one.
func aheadBy(d time.Duration) idem.Option {
	return idem.WithClock(func() time.Time { return time.Now().Add(d) })
}

// mustNotRun is a DoTx fn for a duplicate that must replay.
func mustNotRun(t *testing.T) func(context.Context, *dynamo.Tx) (string, error) {
	return func(context.Context, *dynamo.Tx) (string, error) {
		t.Error("fn ran for a key that holds an answer")
		return "", errors.New("must not run")
	}
}

// TestAttackDoTxTakeoverInCutGap: worker A's transaction is cut while being
// written (the server never has it whole). In that gap, B, its clock past
// A's lease, takes the key over and commits its own order. The SDK then
// sends A's request again, unchanged: it is refused on A's claim version,
// so A's order never lands and A gets its result with ErrLeaseLost.
func TestAttackDoTxTakeoverInCutGap(t *testing.T) {
	for _, srv := range testenv.DynamoDBServers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			t.Parallel()
			x := newTxSetup(t, srv)
			var bGot string
			var bErr error
			x.w.inject("TransactWriteItems", fault{cut: true, after: func() {
				bGot, bErr = dynamo.DoTx(ctxT(t), x.direct(t), "k", func(ctx context.Context, tx *dynamo.Tx) (string, error) {
					return "B", placeOrder(t, tx, x.orders, "order-1", "B")
				}, aheadBy(2*time.Second))
			}})
			got, err := dynamo.DoTx(ctxT(t), x.store, "k", func(ctx context.Context, tx *dynamo.Tx) (string, error) {
				return "A", placeOrder(t, tx, x.orders, "order-1", "A")
			}, idem.WithLease(time.Second), idem.WithoutHeartbeat())
			if bErr != nil || bGot != "B" {
				t.Fatalf("B's takeover in the gap: %q, %v", bGot, bErr)
			}
			if !errors.Is(err, idem.ErrLeaseLost) || got != "A" {
				t.Errorf("A after the takeover: %q, %v; want its result with ErrLeaseLost", got, err)
			}
			if c := x.w.take(); c["TransactWriteItems"] < 2 {
				t.Errorf("sent %v, want A's transaction cut then sent again by the SDK", c)
			}
			if owner, writes := order(t, x.c, x.orders, "order-1"); owner != "B" || writes != 1 {
				t.Errorf("order: owner %q, %d writes; want B's one write", owner, writes)
			}
			if got, err := dynamo.DoTx(ctxT(t), x.store, "k", mustNotRun(t)); err != nil || got != "B" {
				t.Errorf("a duplicate: %q, %v; want B's answer", got, err)
			}
		})
	}
}

// TestAttackDoTxDuplicateInDropGap: A's transaction commits, its response is
// dropped, and the three reads that would settle it are dropped too. In the
// gap a duplicate B with its clock past A's lease calls DoTx: it must
// replay A's answer without running fn. A then sends its transaction
// again: refused on the version, the refusal shows A's own record, A
// succeeds, and the order is written once.
func TestAttackDoTxDuplicateInDropGap(t *testing.T) {
	for _, srv := range testenv.DynamoDBServers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			t.Parallel()
			x := newTxSetup(t, srv)
			var bGot string
			var bErr error
			x.w.inject("TransactWriteItems", fault{drop: true, after: func() {
				bGot, bErr = dynamo.DoTx(ctxT(t), x.direct(t), "k", mustNotRun(t), aheadBy(2*time.Second))
			}})
			x.w.inject("GetItem", fault{drop: true}, fault{drop: true}, fault{drop: true})
			got, err := dynamo.DoTx(ctxT(t), x.store, "k", func(ctx context.Context, tx *dynamo.Tx) (string, error) {
				return "A", placeOrder(t, tx, x.orders, "order-1", "A")
			}, idem.WithLease(time.Second), idem.WithoutHeartbeat())
			if err != nil || got != "A" {
				t.Errorf("A: %q, %v; want its committed answer", got, err)
			}
			if bErr != nil || bGot != "A" {
				t.Errorf("B in the gap: %q, %v; want A's committed answer replayed", bGot, bErr)
			}
			if c := x.w.take(); c["TransactWriteItems"] != 2 {
				t.Errorf("sent %v, want A's transaction twice (the read that settles it lost)", c)
			}
			if owner, writes := order(t, x.c, x.orders, "order-1"); owner != "A" || writes != 1 {
				t.Errorf("order: owner %q, %d writes; want A's one write", owner, writes)
			}
			if x.w.pending() {
				t.Error("injected faults left unused")
			}
		})
	}
}

// TestAttackDoTxDeleteRecreateInGap: A's transaction commits and its
// response is dropped; in the gap the record is deleted by hand and C runs
// DoTx on the key afresh (its own order). A's settling read finds C's
// record, which proves nothing, so A sends its transaction again: refused
// (C's fresh version is not A's). A must not succeed, must not write its
// order twice, and must answer an unknown outcome; the key keeps C's
// answer. The second case leaves C's claim in progress in the gap.
func TestAttackDoTxDeleteRecreateInGap(t *testing.T) {
	for _, complete := range []bool{true, false} {
		t.Run(fmt.Sprintf("complete=%v", complete), func(t *testing.T) {
			for _, srv := range testenv.DynamoDBServers(t) {
				t.Run(srv.Name, func(t *testing.T) {
					t.Parallel()
					x := newTxSetup(t, srv)
					d := x.direct(t)
					var cLease *idem.Lease
					x.w.inject("TransactWriteItems", fault{drop: true, after: func() {
						it, err := d.Get(ctxT(t), "k")
						if err != nil {
							t.Errorf("reading A's committed record in the gap: %v", err)
							return
						}
						if err := d.CompareAndDelete(ctxT(t), "k", it.Version); err != nil {
							t.Errorf("deleting A's record: %v", err)
							return
						}
						if complete {
							if got, err := dynamo.DoTx(ctxT(t), d, "k", func(ctx context.Context, tx *dynamo.Tx) (string, error) {
								return "C", placeOrder(t, tx, x.orders, "order-C", "C")
							}); err != nil || got != "C" {
								t.Errorf("C's fresh DoTx in the gap: %q, %v", got, err)
							}
							return
						}
						l, _, err := idem.Claim(ctxT(t), d, "k")
						if err != nil || l == nil {
							t.Errorf("C's fresh claim in the gap: %v, %v", l, err)
						}
						cLease = l
					}})
					got, err := dynamo.DoTx(ctxT(t), x.store, "k", func(ctx context.Context, tx *dynamo.Tx) (string, error) {
						return "A", placeOrder(t, tx, x.orders, "order-A", "A")
					})
					if !errors.Is(err, idem.ErrUnknownOutcome) || got != "A" {
						t.Errorf("A: %q, %v; want its result with ErrUnknownOutcome", got, err)
					}
					if c := x.w.take(); c["TransactWriteItems"] != 2 {
						t.Errorf("sent %v, want A's transaction twice", c)
					}
					if owner, writes := order(t, x.c, x.orders, "order-A"); owner != "A" || writes != 1 {
						t.Errorf("order-A: owner %q, %d writes; want A's first copy alone", owner, writes)
					}
					if complete {
						if owner, writes := order(t, x.c, x.orders, "order-C"); owner != "C" || writes != 1 {
							t.Errorf("order-C: owner %q, %d writes; want 1", owner, writes)
						}
						if got, err := dynamo.DoTx(ctxT(t), x.store, "k", mustNotRun(t)); err != nil || got != "C" {
							t.Errorf("a duplicate: %q, %v; want C's answer", got, err)
						}
						return
					}
					if cLease == nil {
						t.FailNow()
					}
					if err := cLease.Complete(ctxT(t), []byte(`"C"`)); err != nil {
						t.Errorf("C completes after A's resend: %v; A's refused copy must not have moved C's claim", err)
					}
				})
			}
		})
	}
}

// TestAttackDoTxUserConditionLostResponse: fn's own write carries a
// condition that fails; the cancellation's response is dropped on the wire
// (the server answered it). The record still holds the claim, which
// proves nothing to the settling read, so the transaction is sent again
// and refused on the same condition. Nothing may be committed and the call
// must not succeed; a retry once the lease has passed runs fn again.
func TestAttackDoTxUserConditionLostResponse(t *testing.T) {
	for _, srv := range testenv.DynamoDBServers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			t.Parallel()
			x := newTxSetup(t, srv)
			runs := 0
			create := func(ctx context.Context, tx *dynamo.Tx) (string, error) {
				runs++
				if err := placeOrder(t, tx, x.orders, "order-2", "new"); err != nil {
					return "", err
				}
				ex, err := expression.NewBuilder().WithCondition(expression.AttributeExists(expression.Name("id"))).Build()
				if err != nil {
					t.Fatal(err)
				}
				return "created", tx.ConditionCheck(types.ConditionCheck{ // order-0 never exists
					TableName:                 aws.String(x.orders),
					Key:                       map[string]types.AttributeValue{"id": &types.AttributeValueMemberS{Value: "order-0"}},
					ConditionExpression:       ex.Condition(),
					ExpressionAttributeNames:  ex.Names(),
					ExpressionAttributeValues: ex.Values(),
				})
			}
			x.w.inject("TransactWriteItems", fault{drop: true})
			got, err := dynamo.DoTx(ctxT(t), x.store, "k", create, idem.WithLease(time.Second))
			var ce *dynamo.TxConditionError
			if err == nil {
				t.Fatalf("DoTx succeeded (%q) with a failed condition behind a lost response", got)
			}
			t.Logf("DoTx answered %v (condition error: %v, unknown: %v)", err, errors.As(err, &ce), errors.Is(err, idem.ErrUnknownOutcome))
			if c := x.w.take(); c["TransactWriteItems"] != 2 {
				t.Errorf("sent %v, want the transaction twice", c)
			}
			if owner, writes := order(t, x.c, x.orders, "order-2"); owner != "" || writes != 0 {
				t.Errorf("order-2: owner %q, %d writes; a cancelled transaction commits nothing", owner, writes)
			}
			if _, err := dynamo.DoTx(ctxT(t), x.store, "k", create, aheadBy(2*time.Second)); !errors.As(err, &ce) || runs != 2 {
				t.Errorf("a retry past the lease: %v, fn ran %d times; want fn run again and refused again", err, runs)
			}
			if owner, writes := order(t, x.c, x.orders, "order-2"); writes != 0 {
				t.Errorf("order-2: owner %q, %d writes after the retry; want none", owner, writes)
			}
		})
	}
}

// TestAttackDoTxHeartbeatMovesVersion: the heartbeat extends the lease
// while fn runs; fn waits for the first extension (its request cut, so the
// SDK sends it again; the after hook tells fn). The version has moved when
// the commit is sent, its response dropped and the settling reads dropped:
// the resent copy finds the committed record its own. Success, the order
// written once, and the record two versions past the claim's fence.
func TestAttackDoTxHeartbeatMovesVersion(t *testing.T) {
	for _, srv := range testenv.DynamoDBServers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			t.Parallel()
			x := newTxSetup(t, srv)
			extending := make(chan struct{})
			x.w.inject("PutItem", fault{}, fault{cut: true, after: func() { close(extending) }})
			var fence int64
			got, err := dynamo.DoTx(ctxT(t), x.store, "k", func(ctx context.Context, tx *dynamo.Tx) (string, error) {
				l, _ := idem.LeaseFrom(ctx)
				fence = l.Fence()
				select {
				case <-extending:
				case <-time.After(20 * time.Second):
					t.Error("no extension while fn ran")
				}
				x.w.inject("TransactWriteItems", fault{drop: true})
				x.w.inject("GetItem", fault{drop: true}, fault{drop: true}, fault{drop: true})
				return "A", placeOrder(t, tx, x.orders, "order-1", "A")
			}, idem.WithLease(600*time.Millisecond), idem.WithHeartbeat(100*time.Millisecond))
			if err != nil || got != "A" {
				t.Fatalf("DoTx: %q, %v", got, err)
			}
			if owner, writes := order(t, x.c, x.orders, "order-1"); owner != "A" || writes != 1 {
				t.Errorf("order: owner %q, %d writes; want 1", owner, writes)
			}
			it, err := x.direct(t).Get(ctxT(t), "k")
			if err != nil || it.Version < fence+2 {
				t.Errorf("record at version %d (%v), fence %d: want the extension and the commit past the fence", it.Version, err, fence)
			}
			if got, err := dynamo.DoTx(ctxT(t), x.store, "k", mustNotRun(t)); err != nil || got != "A" {
				t.Errorf("a duplicate: %q, %v", got, err)
			}
			if x.w.pending() {
				t.Error("injected faults left unused")
			}
		})
	}
}

// TestAttackDoTxLeaseLostWhileFnRuns: A's fn runs under the heartbeat; B,
// its clock past A's lease, takes the key over and holds it inside its own
// fn. A's next extension finds B's record: A's fn context is cancelled with
// ErrLeaseLost. A's fn queues its order anyway and returns: the commit is
// refused on A's version while B is still in progress. Then B commits.
func TestAttackDoTxLeaseLostWhileFnRuns(t *testing.T) {
	for _, srv := range testenv.DynamoDBServers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			t.Parallel()
			x := newTxSetup(t, srv)
			aInside, bInside, aDone := make(chan struct{}), make(chan struct{}), make(chan struct{})
			type answer struct {
				v   string
				err error
			}
			b := make(chan answer, 1)
			go func() {
				<-aInside
				v, err := dynamo.DoTx(ctxT(t), x.direct(t), "k", func(ctx context.Context, tx *dynamo.Tx) (string, error) {
					close(bInside)
					<-aDone
					return "B", placeOrder(t, tx, x.orders, "order-1", "B")
				}, aheadBy(3*time.Second))
				b <- answer{v, err}
			}()
			var cause error
			got, err := dynamo.DoTx(ctxT(t), x.store, "k", func(ctx context.Context, tx *dynamo.Tx) (string, error) {
				close(aInside)
				<-bInside
				select {
				case <-ctx.Done():
					cause = context.Cause(ctx)
				case <-time.After(20 * time.Second):
					t.Error("A's context was not cancelled after the takeover")
				}
				return "A", placeOrder(t, tx, x.orders, "order-1", "A")
			}, idem.WithLease(time.Second), idem.WithHeartbeat(100*time.Millisecond))
			if owner, _ := order(t, x.c, x.orders, "order-1"); owner != "" {
				t.Errorf("order written by %q while B was still inside fn; A's commit must be refused", owner)
			}
			close(aDone)
			if !errors.Is(cause, idem.ErrLeaseLost) {
				t.Errorf("A's fn context cause %v, want ErrLeaseLost", cause)
			}
			if !errors.Is(err, idem.ErrLeaseLost) || got != "A" {
				t.Errorf("A: %q, %v; want its result with ErrLeaseLost", got, err)
			}
			ans := <-b
			if ans.err != nil || ans.v != "B" {
				t.Fatalf("B: %q, %v", ans.v, ans.err)
			}
			if owner, writes := order(t, x.c, x.orders, "order-1"); owner != "B" || writes != 1 {
				t.Errorf("order: owner %q, %d writes; want B's one", owner, writes)
			}
		})
	}
}

// TestAttackDoTxKeyPrefix: the same key under two prefixes is two keys:
// each commits its own order, even when the first one's response is lost
// (the settling read must look at the prefixed record). A duplicate under
// each prefix replays its own answer.
func TestAttackDoTxKeyPrefix(t *testing.T) {
	for _, srv := range testenv.DynamoDBServers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			t.Parallel()
			x := newTxSetup(t, srv)
			for _, p := range []string{"tenant-a/", "tenant-b/"} {
				x.w.inject("TransactWriteItems", fault{drop: true})
				got, err := dynamo.DoTx(ctxT(t), x.store, "k", func(ctx context.Context, tx *dynamo.Tx) (string, error) {
					return p, placeOrder(t, tx, x.orders, "order-"+p, p)
				}, idem.WithKeyPrefix(p))
				if err != nil || got != p {
					t.Errorf("%s: %q, %v", p, got, err)
				}
				if c := x.w.take(); c["TransactWriteItems"] != 1 || c["GetItem"] != 1 {
					t.Errorf("%s: sent %v, want 1 transaction settled by 1 read", p, c)
				}
			}
			for _, p := range []string{"tenant-a/", "tenant-b/"} {
				if got, err := dynamo.DoTx(ctxT(t), x.store, "k", mustNotRun(t), idem.WithKeyPrefix(p)); err != nil || got != p {
					t.Errorf("a duplicate under %s: %q, %v", p, got, err)
				}
				if owner, writes := order(t, x.c, x.orders, "order-"+p); owner != p || writes != 1 {
					t.Errorf("order-%s: owner %q, %d writes; want 1", p, owner, writes)
				}
			}
			if _, err := x.direct(t).Get(ctxT(t), "k"); !errors.Is(err, idem.ErrNotFound) {
				t.Errorf("the unprefixed key: %v, want ErrNotFound", err)
			}
		})
	}
}

// TestAttackDoTxWriteAfterDoTx: a goroutine fn leaked queues a write once
// DoTx has returned: refused with ErrInvalid, and nothing more is sent.
func TestAttackDoTxWriteAfterDoTx(t *testing.T) {
	for _, srv := range testenv.DynamoDBServers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			t.Parallel()
			x := newTxSetup(t, srv)
			var leaked *dynamo.Tx
			if _, err := dynamo.DoTx(ctxT(t), x.store, "k", func(ctx context.Context, tx *dynamo.Tx) (string, error) {
				leaked = tx
				return "A", placeOrder(t, tx, x.orders, "order-1", "A")
			}); err != nil {
				t.Fatal(err)
			}
			x.w.take()
			done := make(chan error)
			go func() { done <- placeOrder(t, leaked, x.orders, "order-2", "leaked") }()
			if err := <-done; !errors.Is(err, idem.ErrInvalid) {
				t.Errorf("a write after DoTx returned: %v, want ErrInvalid", err)
			}
			if c := x.w.take(); len(c) != 0 {
				t.Errorf("sent %v after DoTx returned", c)
			}
			if owner, _ := order(t, x.c, x.orders, "order-2"); owner != "" {
				t.Errorf("the leaked write landed (owner %q)", owner)
			}
		})
	}
}

// TestAttackDoTxConcurrentLossy: many goroutines run DoTx on a few keys
// through a wire that drops responses after delivery and cuts requests at
// random, retrying until each gets an answer. Each fn places the key's
// order with its own name. At the end every key's order was written by
// exactly one transaction, its owner is the answer every caller got.
func TestAttackDoTxConcurrentLossy(t *testing.T) {
	for _, srv := range testenv.DynamoDBServers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			t.Parallel()
			x := newTxSetup(t, srv)
			seed := rand.Uint64()
			t.Logf("seed %d", seed)
			x.w.mu.Lock()
			x.w.lossy = &lossy{rnd: rand.New(rand.NewPCG(seed, 1)), drop: 0.15, cut: 0.05}
			x.w.mu.Unlock()
			const keys, callers, tries = 3, 6, 60
			answers := make([][]string, keys)
			var mu sync.Mutex
			var wg sync.WaitGroup
			for k := range keys {
				for c := range callers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						key, me := fmt.Sprint("k", k), fmt.Sprintf("k%d/caller-%d", k, c)
						for range tries {
							got, err := dynamo.DoTx(ctxT(t), x.store, key, func(ctx context.Context, tx *dynamo.Tx) (string, error) {
								return me, placeOrder(t, tx, x.orders, key, me)
							}, idem.WithLease(time.Second), idem.WithWait(3*time.Second))
							if err == nil {
								mu.Lock()
								answers[k] = append(answers[k], got)
								mu.Unlock()
								return
							}
						}
						t.Errorf("%s: no answer after %d tries", me, tries)
					}()
				}
			}
			wg.Wait()
			x.w.mu.Lock()
			x.w.lossy = nil
			x.w.mu.Unlock()
			for k := range keys {
				key := fmt.Sprint("k", k)
				owner, writes := order(t, x.c, x.orders, key)
				if writes != 1 {
					t.Errorf("%s: order written by %d transactions (last %q), want exactly 1", key, writes, owner)
				}
				for _, a := range answers[k] {
					if a != owner {
						t.Errorf("%s: a caller got %q, the order's owner is %q (answers %v)", key, a, owner, answers[k])
						break
					}
				}
			}
		})
	}
}

// gapResult runs hook when DoTx encodes it: after fn has returned, before
// the transaction is sealed and sent.
type gapResult struct{ hook func() }

func (r gapResult) MarshalJSON() ([]byte, error) {
	r.hook()
	return []byte(`"done"`), nil
}

// TestAttackDoTxWriteAfterFnReturned: a goroutine fn leaked queues a write
// after fn has returned but before DoTx commits (forced: the result's
// MarshalJSON, which DoTx runs between the two, lets the goroutine write
// and waits for it). Tx's own refusal says "a write queued after fn
// returned", yet the write is accepted and committed with fn's result.
func TestAttackDoTxWriteAfterFnReturned(t *testing.T) {
	for _, srv := range testenv.DynamoDBServers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			t.Parallel()
			x := newTxSetup(t, srv)
			returned, wrote := make(chan struct{}), make(chan error)
			var leakedErr error
			_, err := dynamo.DoTx(ctxT(t), x.store, "k", func(ctx context.Context, tx *dynamo.Tx) (gapResult, error) {
				go func() {
					<-returned
					wrote <- placeOrder(t, tx, x.orders, "order-leaked", "leaked")
				}()
				return gapResult{hook: func() { close(returned); leakedErr = <-wrote }}, placeOrder(t, tx, x.orders, "order-1", "fn")
			})
			if err != nil {
				t.Fatal(err)
			}
			if !errors.Is(leakedErr, idem.ErrInvalid) {
				t.Errorf("a write queued after fn returned: %v, want ErrInvalid", leakedErr)
			}
			if owner, writes := order(t, x.c, x.orders, "order-leaked"); owner != "" {
				t.Errorf("a write queued after fn returned was committed with its result (owner %q, %d writes)", owner, writes)
			}
		})
	}
}
