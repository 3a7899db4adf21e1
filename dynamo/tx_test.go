package dynamo_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/idemkit/idemkit/dynamo"
	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/internal/testenv"
)

// The tests of DoTx run on every DynamoDB server. The business write is an
// order item in a table of its own: "owner" says which execution wrote it
// last and "writes" counts the transactions that touched it, so a write
// that landed twice shows.

// orders creates a table for the caller's own items, keyed by "id".
func orders(t *testing.T, c *dynamodb.Client) string {
	t.Helper()
	name := testenv.UniqueName(t, "orders")
	_, err := c.CreateTable(ctxT(t), &dynamodb.CreateTableInput{
		TableName:            aws.String(name),
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("id"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("id"), KeyType: types.KeyTypeHash}},
		BillingMode:          types.BillingModePayPerRequest,
	})
	var inUse *types.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) { // in use: the SDK resent a create that had landed (the name is ours alone)
		t.Fatalf("creating the orders table: %v", err)
	}
	testenv.DeleteTableOnCleanup(t, c, name)
	return name
}

// placeOrder queues the order's write: owner set, writes counted.
func placeOrder(t *testing.T, tx *dynamo.Tx, table, id, owner string) error {
	t.Helper()
	ex, err := expression.NewBuilder().WithUpdate(
		expression.Set(expression.Name("owner"), expression.Value(owner)).
			Add(expression.Name("writes"), expression.Value(1))).Build()
	if err != nil {
		t.Fatal(err)
	}
	return tx.Update(types.Update{
		TableName:                 aws.String(table),
		Key:                       map[string]types.AttributeValue{"id": &types.AttributeValueMemberS{Value: id}},
		UpdateExpression:          ex.Update(),
		ExpressionAttributeNames:  ex.Names(),
		ExpressionAttributeValues: ex.Values(),
	})
}

// order reads the order item: its owner and write count ("", 0 if absent).
func order(t *testing.T, c *dynamodb.Client, table, id string) (owner string, writes int) {
	t.Helper()
	out, err := c.GetItem(ctxT(t), &dynamodb.GetItemInput{
		TableName:      aws.String(table),
		Key:            map[string]types.AttributeValue{"id": &types.AttributeValueMemberS{Value: id}},
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := out.Item["owner"].(*types.AttributeValueMemberS); ok {
		owner = o.Value
	}
	if n, ok := out.Item["writes"].(*types.AttributeValueMemberN); ok {
		fmt.Sscan(n.Value, &writes)
	}
	return owner, writes
}

// txSetup is one server's idem table and orders table behind a wire.
type txSetup struct {
	c      *dynamodb.Client // straight to the server
	w      *wire
	store  *dynamo.Store // through the wire
	orders string
}

func newTxSetup(t *testing.T, srv testenv.DynamoDBServer) txSetup {
	t.Helper()
	if reason, lacks := srv.Lacks(testenv.CapTransactions); lacks {
		t.Skip(reason)
	}
	c, tbl := table(t, srv)
	wc, w := wired(c)
	return txSetup{c: c, w: w, store: mustStore(t, wc, tbl), orders: orders(t, c)}
}

// TestDoTxCommitsOnce: the first call commits the order with the result in
// one transaction (2 round trips: the claim and the transaction); a
// duplicate replays and writes nothing (1 round trip).
func TestDoTxCommitsOnce(t *testing.T) {
	for _, srv := range testenv.DynamoDBServers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			t.Parallel()
			x := newTxSetup(t, srv)
			var runs atomic.Int32
			place := func(ctx context.Context, tx *dynamo.Tx) (string, error) {
				n := runs.Add(1)
				return fmt.Sprintf("order-1/run-%d", n), placeOrder(t, tx, x.orders, "order-1", fmt.Sprint("run-", n))
			}
			got, err := dynamo.DoTx(ctxT(t), x.store, "k", place)
			if err != nil || got != "order-1/run-1" {
				t.Fatalf("first DoTx: %q, %v", got, err)
			}
			if c := x.w.take(); c["PutItem"] != 1 || c["TransactWriteItems"] != 1 || len(c) != 2 {
				t.Errorf("first DoTx sent %v, want 1 PutItem (the claim) and 1 TransactWriteItems", c)
			}
			for i := range 2 {
				got, err := dynamo.DoTx(ctxT(t), x.store, "k", place)
				if err != nil || got != "order-1/run-1" {
					t.Fatalf("duplicate %d: %q, %v; want the first answer replayed", i, got, err)
				}
			}
			if c := x.w.take(); c["PutItem"] != 2 || len(c) != 1 {
				t.Errorf("two duplicates sent %v, want 1 PutItem each", c)
			}
			if owner, writes := order(t, x.c, x.orders, "order-1"); owner != "run-1" || writes != 1 || runs.Load() != 1 {
				t.Errorf("order: owner %q, %d writes, fn ran %d times; want run-1, 1, 1", owner, writes, runs.Load())
			}
		})
	}
}

// TestDoTxStaleWorkerCommitsNothing: worker A is held inside fn past its
// lease; B takes the key over (its clock ahead), places the order and
// completes. Then A's fn returns its write: the transaction is refused on
// the claim's version, so A's order write never lands and A gets
// ErrLeaseLost with its result.
func TestDoTxStaleWorkerCommitsNothing(t *testing.T) {
	for _, srv := range testenv.DynamoDBServers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			t.Parallel()
			x := newTxSetup(t, srv)
			inside, resume := make(chan struct{}), make(chan struct{})
			type answer struct {
				v   string
				err error
			}
			a := make(chan answer, 1)
			go func() {
				v, err := dynamo.DoTx(ctxT(t), x.store, "k", func(ctx context.Context, tx *dynamo.Tx) (string, error) {
					close(inside)
					<-resume
					return "A", placeOrder(t, tx, x.orders, "order-1", "A")
				}, idem.WithLease(time.Second), idem.WithoutHeartbeat())
				a <- answer{v, err}
			}()
			<-inside
			ahead := idem.WithClock(func() time.Time { return time.Now().Add(2 * time.Second) })
			got, err := dynamo.DoTx(ctxT(t), x.store, "k", func(ctx context.Context, tx *dynamo.Tx) (string, error) {
				if l, _ := idem.LeaseFrom(ctx); l == nil || l.Attempt() == 1 {
					t.Errorf("B's lease %v: want a takeover", l)
				}
				return "B", placeOrder(t, tx, x.orders, "order-1", "B")
			}, ahead)
			if err != nil || got != "B" {
				t.Fatalf("B's takeover: %q, %v", got, err)
			}
			close(resume)
			ans := <-a
			if !errors.Is(ans.err, idem.ErrLeaseLost) || ans.v != "A" {
				t.Errorf("stale A: %q, %v; want its result with ErrLeaseLost", ans.v, ans.err)
			}
			if owner, writes := order(t, x.c, x.orders, "order-1"); owner != "B" || writes != 1 {
				t.Errorf("order: owner %q, %d writes; want B's one write (stale A's must not land)", owner, writes)
			}
			if got, err := dynamo.DoTx(ctxT(t), x.store, "k", func(context.Context, *dynamo.Tx) (string, error) {
				return "", errors.New("must not run")
			}, ahead); err != nil || got != "B" {
				t.Errorf("a duplicate after both: %q, %v; want B's answer", got, err)
			}
		})
	}
}

// TestDoTxUserConditionFails: fn's write carries a condition that fails
// (the order exists already). Nothing is committed, the error names the
// write and carries the item, and the key is released: a retry runs fn.
func TestDoTxUserConditionFails(t *testing.T) {
	for _, srv := range testenv.DynamoDBServers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			t.Parallel()
			x := newTxSetup(t, srv)
			_, err := x.c.PutItem(ctxT(t), &dynamodb.PutItemInput{TableName: aws.String(x.orders), Item: map[string]types.AttributeValue{
				"id": &types.AttributeValueMemberS{Value: "order-1"}, "owner": &types.AttributeValueMemberS{Value: "earlier"}}})
			if err != nil {
				t.Fatal(err)
			}
			var runs atomic.Int32
			create := func(ctx context.Context, tx *dynamo.Tx) (string, error) {
				runs.Add(1)
				if err := placeOrder(t, tx, x.orders, "order-2", "new"); err != nil {
					return "", err
				}
				ex, err := expression.NewBuilder().WithCondition(expression.AttributeNotExists(expression.Name("id"))).Build()
				if err != nil {
					t.Fatal(err)
				}
				return "created", tx.Put(types.Put{
					TableName:                 aws.String(x.orders),
					Item:                      map[string]types.AttributeValue{"id": &types.AttributeValueMemberS{Value: "order-1"}, "owner": &types.AttributeValueMemberS{Value: "new"}},
					ConditionExpression:       ex.Condition(),
					ExpressionAttributeNames:  ex.Names(),
					ExpressionAttributeValues: ex.Values(),
				})
			}
			_, err = dynamo.DoTx(ctxT(t), x.store, "k", create)
			var ce *dynamo.TxConditionError
			if !errors.As(err, &ce) {
				t.Fatalf("got %v, want a *dynamo.TxConditionError", err)
			}
			if ce.Index != 1 || ce.Table != x.orders {
				t.Errorf("the error names write %d of table %s, want write 1 of %s", ce.Index, ce.Table, x.orders)
			}
			if o, ok := ce.Item["owner"].(*types.AttributeValueMemberS); !ok || o.Value != "earlier" {
				t.Errorf("the error carries item %v, want the existing order (owner earlier)", ce.Item)
			}
			if owner, writes := order(t, x.c, x.orders, "order-2"); owner != "" || writes != 0 {
				t.Errorf("order-2: owner %q, %d writes; the cancelled transaction must commit none of its writes", owner, writes)
			}
			if _, err := dynamo.DoTx(ctxT(t), x.store, "k", create); !errors.As(err, &ce) || runs.Load() != 2 {
				t.Errorf("the retry: %v, fn ran %d times; want fn run again (the key was released) and refused again", err, runs.Load())
			}
		})
	}
}

// TestDoTxLostResponse: the transaction is delivered and applied, its
// response dropped on the wire. One read of the record finds the
// transaction's token: success, the order written once. When that read's
// responses are lost too, the transaction is sent again: the copy is refused
// on the claim's version, the refusal shows our own committed record, and
// the call succeeds with the order still written once.
func TestDoTxLostResponse(t *testing.T) {
	for _, srv := range testenv.DynamoDBServers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			t.Parallel()
			x := newTxSetup(t, srv)
			place := func(id string) func(context.Context, *dynamo.Tx) (string, error) {
				return func(ctx context.Context, tx *dynamo.Tx) (string, error) {
					return id, placeOrder(t, tx, x.orders, id, "only")
				}
			}
			x.w.inject("TransactWriteItems", fault{drop: true})
			if got, err := dynamo.DoTx(ctxT(t), x.store, "k1", place("order-1")); err != nil || got != "order-1" {
				t.Fatalf("a lost response settled by a read: %q, %v", got, err)
			}
			if c := x.w.take(); c["TransactWriteItems"] != 1 || c["GetItem"] != 1 {
				t.Errorf("sent %v, want 1 TransactWriteItems and the 1 GetItem that settles it", c)
			}
			x.w.inject("TransactWriteItems", fault{drop: true})
			x.w.inject("GetItem", fault{drop: true}, fault{drop: true}, fault{drop: true}) // the SDK's three attempts of the read
			if got, err := dynamo.DoTx(ctxT(t), x.store, "k2", place("order-2")); err != nil || got != "order-2" {
				t.Fatalf("a lost response, and its read lost too: %q, %v", got, err)
			}
			if c := x.w.take(); c["TransactWriteItems"] != 2 {
				t.Errorf("sent %v, want the transaction twice (the second refused on the version)", c)
			} else {
				t.Logf("sent %v", c)
			}
			for _, id := range []string{"order-1", "order-2"} {
				if owner, writes := order(t, x.c, x.orders, id); owner != "only" || writes != 1 {
					t.Errorf("%s: owner %q, %d writes; want exactly one", id, owner, writes)
				}
			}
			for _, k := range []string{"k1", "k2"} {
				if got, err := dynamo.DoTx(ctxT(t), x.store, k, place("again")); err != nil || got == "again" {
					t.Errorf("a duplicate of %s: %q, %v; want the stored answer", k, got, err)
				}
			}
			if x.w.pending() {
				t.Error("injected faults left unused")
			}
		})
	}
}

// resender is a client that sends every transaction twice, as a client
// that retries on its own would after a lost response: the first copy's
// response is thrown away. It skips the Store's middleware.
type resender struct {
	*dynamodb.Client
	second error // what the server answered the copy
}

func (r *resender) TransactWriteItems(ctx context.Context, in *dynamodb.TransactWriteItemsInput, _ ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error) {
	if _, err := r.Client.TransactWriteItems(ctx, in); err != nil {
		return nil, err
	}
	out, err := r.Client.TransactWriteItems(ctx, in)
	r.second = err
	return out, err
}

// TestDoTxClientResends: a client that resends the very same request
// (same ClientRequestToken) after it applied. ministack honours the token
// and answers the copy with success; moto ignores it and cancels the copy
// on the claim's version, and the cancellation shows the record written by
// the first copy. Either way DoTx succeeds and the order is written once.
func TestDoTxClientResends(t *testing.T) {
	for _, srv := range testenv.DynamoDBServers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			t.Parallel()
			x := newTxSetup(t, srv)
			r := &resender{Client: x.c}
			s := mustStore(t, r, x.store.Table())
			got, err := dynamo.DoTx(ctxT(t), s, "k", func(ctx context.Context, tx *dynamo.Tx) (string, error) {
				return "placed", placeOrder(t, tx, x.orders, "order-1", "only")
			})
			if err != nil || got != "placed" {
				t.Fatalf("DoTx through a resending client: %q, %v", got, err)
			}
			if owner, writes := order(t, x.c, x.orders, "order-1"); owner != "only" || writes != 1 {
				t.Errorf("order: owner %q, %d writes; want one write", owner, writes)
			}
			var tce *types.TransactionCanceledException
			_, ignores := srv.Lacks(testenv.CapClientRequestToken)
			switch {
			case ignores && !errors.As(r.second, &tce):
				t.Errorf("the copy: %v; %s ignores ClientRequestToken, want it cancelled on the claim's version", r.second, srv.Name)
			case !ignores && r.second != nil:
				t.Errorf("the copy: %v; want the idempotent success of a repeated ClientRequestToken", r.second)
			}
			t.Logf("%s answered the copy with %v", srv.Name, r.second)
		})
	}
}

// TestDoTxConflictRetried: DynamoDB cancels the transaction for a conflict
// with another transaction (answered on the wire, not delivered): nothing
// applied, so DoTx sends it again. After three such cancellations it gives
// up with a *TxError and releases the key.
func TestDoTxConflictRetried(t *testing.T) {
	for _, srv := range testenv.DynamoDBServers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			t.Parallel()
			x := newTxSetup(t, srv)
			conflict := fault{reply: `{"__type":"com.amazonaws.dynamodb.v20120810#TransactionCanceledException",` +
				`"message":"Transaction cancelled, please refer cancellation reasons for specific reasons [None, TransactionConflict]",` +
				`"CancellationReasons":[{"Code":"None"},{"Code":"TransactionConflict","Message":"Transaction is ongoing for the item"}]}`}
			place := func(ctx context.Context, tx *dynamo.Tx) (string, error) {
				return "placed", placeOrder(t, tx, x.orders, "order-1", "only")
			}
			x.w.inject("TransactWriteItems", conflict)
			if got, err := dynamo.DoTx(ctxT(t), x.store, "k1", place); err != nil || got != "placed" {
				t.Fatalf("after one conflict: %q, %v", got, err)
			}
			if c := x.w.take(); c["TransactWriteItems"] != 2 {
				t.Errorf("sent %v, want the transaction twice", c)
			}
			x.w.inject("TransactWriteItems", conflict, conflict, conflict)
			_, err := dynamo.DoTx(ctxT(t), x.store, "k2", place)
			var te *dynamo.TxError
			if !errors.As(err, &te) || len(te.Reasons) != 2 || te.Reasons[1] != "TransactionConflict" {
				t.Fatalf("after three conflicts: %v, want a *dynamo.TxError with the reasons", err)
			}
			if got, err := dynamo.DoTx(ctxT(t), x.store, "k2", place); err != nil || got != "placed" {
				t.Errorf("the retry after the key was released: %q, %v", got, err)
			}
			if owner, writes := order(t, x.c, x.orders, "order-1"); writes != 2 || owner != "only" {
				t.Errorf("order: owner %q, %d writes; want one per committed call (2)", owner, writes)
			}
		})
	}
}

// TestDoTxPermanentAndFailure: fn's error releases the key and sends
// nothing of tx; a permanent error is stored and tx is dropped.
func TestDoTxPermanentAndFailure(t *testing.T) {
	for _, srv := range testenv.DynamoDBServers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			t.Parallel()
			x := newTxSetup(t, srv)
			boom := errors.New("card declined")
			for _, tc := range []struct {
				key string
				err error
			}{{"failed", boom}, {"permanent", idem.Permanent(boom)}} {
				_, err := dynamo.DoTx(ctxT(t), x.store, tc.key, func(ctx context.Context, tx *dynamo.Tx) (string, error) {
					if err := placeOrder(t, tx, x.orders, "order-"+tc.key, "x"); err != nil {
						t.Fatal(err)
					}
					return "", tc.err
				})
				if !errors.Is(err, boom) {
					t.Errorf("%s: got %v, want fn's error", tc.key, err)
				}
				if owner, _ := order(t, x.c, x.orders, "order-"+tc.key); owner != "" {
					t.Errorf("%s: the order was written (owner %q); fn's writes must be dropped", tc.key, owner)
				}
			}
			if c := x.w.take(); c["TransactWriteItems"] != 0 {
				t.Errorf("sent %v: no transaction may be sent for a failed fn", c)
			}
			_, err := dynamo.DoTx(ctxT(t), x.store, "permanent", func(context.Context, *dynamo.Tx) (string, error) { return "ran", nil })
			var pe *idem.PermanentError
			if !errors.As(err, &pe) || !pe.Replayed {
				t.Errorf("a duplicate of the permanent failure: %v, want it replayed", err)
			}
		})
	}
}

// TestDoTxLimits: Tx refuses the write that would pass DynamoDB's limits
// before anything is sent; a transaction that passes 4 MB only with the
// result stores a permanent error and sends nothing.
func TestDoTxLimits(t *testing.T) {
	key := func(i int) map[string]types.AttributeValue {
		return map[string]types.AttributeValue{"id": &types.AttributeValueMemberS{Value: fmt.Sprint(i)}}
	}
	var tx dynamo.Tx
	for i := range dynamo.MaxTxItems - 1 {
		if err := tx.Delete(types.Delete{TableName: aws.String("t"), Key: key(i)}); err != nil {
			t.Fatalf("write %d: %v", i+1, err)
		}
	}
	if err := tx.Delete(types.Delete{TableName: aws.String("t"), Key: key(100)}); !errors.Is(err, idem.ErrInvalid) || !strings.Contains(err.Error(), "100") {
		t.Errorf("write 100 (with DoTx's own, 101): %v, want ErrInvalid naming the limit", err)
	}
	for name, err := range map[string]error{
		"no table":     new(dynamo.Tx).Put(types.Put{Item: key(1)}),
		"no item":      new(dynamo.Tx).Put(types.Put{TableName: aws.String("t")}),
		"no key":       new(dynamo.Tx).Delete(types.Delete{TableName: aws.String("t")}),
		"no update":    new(dynamo.Tx).Update(types.Update{TableName: aws.String("t"), Key: key(1)}),
		"no condition": new(dynamo.Tx).ConditionCheck(types.ConditionCheck{TableName: aws.String("t"), Key: key(1)}),
	} {
		if !errors.Is(err, idem.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	big := func(i, n int) types.Put {
		return types.Put{TableName: aws.String("t"), Item: map[string]types.AttributeValue{
			"id": &types.AttributeValueMemberS{Value: fmt.Sprint(i)}, "blob": &types.AttributeValueMemberB{Value: make([]byte, n)}}}
	}
	var heavy dynamo.Tx
	for i := range 10 {
		if err := heavy.Put(big(i, 400_000)); err != nil {
			t.Fatalf("put %d of 400 kB: %v", i, err)
		}
	}
	if err := heavy.Put(big(10, 400_000)); !errors.Is(err, idem.ErrInvalid) {
		t.Errorf("the put that passes 4 MB: %v, want ErrInvalid", err)
	}

	for _, srv := range testenv.DynamoDBServers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			t.Parallel()
			x := newTxSetup(t, srv)
			_, err := dynamo.DoTx(ctxT(t), x.store, "k", func(ctx context.Context, tx *dynamo.Tx) ([]byte, error) {
				for i := range 10 {
					if err := tx.Put(big(i, 410_000)); err != nil {
						t.Fatal(err)
					}
				}
				return make([]byte, 100_000), nil // with the record, over 4 MB
			})
			if !errors.Is(err, idem.ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid for a transaction over 4 MB", err)
			}
			if c := x.w.take(); c["TransactWriteItems"] != 0 {
				t.Errorf("sent %v: a transaction over the limit must not be sent", c)
			}
			_, err = dynamo.DoTx(ctxT(t), x.store, "k", func(context.Context, *dynamo.Tx) ([]byte, error) { return nil, nil })
			var pe *idem.PermanentError
			if !errors.As(err, &pe) || pe.Code != idem.CodeResultNotStored {
				t.Errorf("a duplicate: %v, want the permanent %s error", err, idem.CodeResultNotStored)
			}
		})
	}
}

// plainClient has no TransactWriteItems.
type plainClient struct{ dynamo.Client }

func TestDoTxNeedsTransactions(t *testing.T) {
	s := mustStore(t, plainClient{}, "t")
	_, err := dynamo.DoTx(context.Background(), s, "k", func(context.Context, *dynamo.Tx) (int, error) { return 1, nil })
	if !errors.Is(err, dynamo.ErrUnsupported) {
		t.Errorf("got %v, want ErrUnsupported", err)
	}
	if _, err := dynamo.DoTx[int](context.Background(), nil, "k", nil); !errors.Is(err, idem.ErrInvalid) {
		t.Errorf("nil store: %v, want ErrInvalid", err)
	}
}
