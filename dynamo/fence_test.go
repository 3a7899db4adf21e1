package dynamo_test

import (
	"context"
	"errors"
	"strconv"
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

// fenceAttr has a dot so that a fence helper splitting names into document
// paths fails: SET idem.fence on an item without a map "idem" is refused.
const fenceAttr = "idem.fence"

// fenceSetup is an idem Store on its own table and the user's own table of
// orders (key "id"), on one server.
type fenceSetup struct {
	c      *dynamodb.Client
	store  *dynamo.Store
	orders string
}

func newFenceSetup(t *testing.T, srv testenv.DynamoDBServer) fenceSetup {
	t.Helper()
	c, idemTable := table(t, srv)
	orders := testenv.UniqueName(t, "orders")
	ctx := ctxT(t)
	_, err := c.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(orders),
		BillingMode:          types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("id"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("id"), KeyType: types.KeyTypeHash}},
	})
	if err != nil {
		t.Fatalf("%s: creating the orders table: %v", srv.Name, err)
	}
	testenv.DeleteTableOnCleanup(t, c, orders)
	err = dynamodb.NewTableExistsWaiter(c, func(o *dynamodb.TableExistsWaiterOptions) {
		o.MinDelay, o.MaxDelay = 100*time.Millisecond, time.Second
	}).Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(orders)}, time.Minute)
	if err != nil {
		t.Fatalf("%s: waiting for the orders table: %v", srv.Name, err)
	}
	return fenceSetup{c: c, store: mustStore(t, c, idemTable), orders: orders}
}

// How a fenced write reaches the item.
const (
	viaUpdate = "UpdateItem"
	viaPut    = "PutItem"
)

// write sets order id's status, fenced by fence, with UpdateItem or PutItem
// (how), also conditioned on extra when it is set. Refusals carry the item.
func (f fenceSetup) write(ctx context.Context, how, id, status string, fence int64, extra ...expression.ConditionBuilder) error {
	cond := dynamo.FenceCondition(fenceAttr, fence)
	for _, c := range extra {
		cond = cond.And(c)
	}
	key := map[string]types.AttributeValue{"id": &types.AttributeValueMemberS{Value: id}}
	b := expression.NewBuilder().WithCondition(cond)
	if how == viaUpdate {
		b = b.WithUpdate(dynamo.FenceUpdate(expression.Set(expression.Name("status"), expression.Value(status)), fenceAttr, fence))
	}
	ex, err := b.Build()
	if err != nil {
		return err
	}
	if how == viaUpdate {
		_, err = f.c.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName:                           aws.String(f.orders),
			Key:                                 key,
			UpdateExpression:                    ex.Update(),
			ConditionExpression:                 ex.Condition(),
			ExpressionAttributeNames:            ex.Names(),
			ExpressionAttributeValues:           ex.Values(),
			ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
		})
		return err
	}
	key["status"] = &types.AttributeValueMemberS{Value: status}
	key[fenceAttr] = dynamo.FenceValue(fence)
	_, err = f.c.PutItem(ctx, &dynamodb.PutItemInput{
		TableName:                           aws.String(f.orders),
		Item:                                key,
		ConditionExpression:                 ex.Condition(),
		ExpressionAttributeNames:            ex.Names(),
		ExpressionAttributeValues:           ex.Values(),
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	})
	return err
}

// check fails t unless order id holds status at fence.
func (f fenceSetup) check(t *testing.T, id, status string, fence int64) {
	t.Helper()
	out, err := f.c.GetItem(ctxT(t), &dynamodb.GetItemInput{
		TableName:      aws.String(f.orders),
		Key:            map[string]types.AttributeValue{"id": &types.AttributeValueMemberS{Value: id}},
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		t.Fatal(err)
	}
	var gotStatus, gotFence string
	if v, ok := out.Item["status"].(*types.AttributeValueMemberS); ok {
		gotStatus = v.Value
	}
	if v, ok := out.Item[fenceAttr].(*types.AttributeValueMemberN); ok {
		gotFence = v.Value
	}
	if want := strconv.FormatInt(fence, 10); gotStatus != status || gotFence != want {
		t.Errorf("order %s: got status %q at fence %q, want %q at %s (item %v)", id, gotStatus, gotFence, status, want, out.Item)
	}
}

// refusedBy fails t unless err is a refusal by the fence of a later claim
// at current.
func refusedBy(t *testing.T, what string, err error, fence, current int64) {
	t.Helper()
	var ccf *types.ConditionalCheckFailedException
	if !errors.As(err, &ccf) {
		t.Fatalf("%s: got %v, want a ConditionalCheckFailedException", what, err)
	}
	if got, ok := dynamo.Fenced(err, fenceAttr, fence); !ok || got != current {
		t.Errorf("%s: Fenced(err, %q, %d) = %d, %v; want %d, true", what, fenceAttr, fence, got, ok, current)
	}
}

// TestFenceStaleWorker: a claim's fenced writes land until a later claim of
// the key (a takeover, a claim after a release, or after the record was
// deleted) writes the item; from then on the earlier claim's writes are
// refused and the item keeps the later claim's values. Leases are moved
// with WithClock, nothing sleeps.
func TestFenceStaleWorker(t *testing.T) {
	cases := []struct {
		name    string
		between string // how the key passes from A to B
		aFirst  bool   // A writes the item before B's claim
	}{
		{"Takeover", "takeover", false},
		{"TakeoverAfterWrite", "takeover", true},
		{"Release", "release", true},
		{"Delete", "delete", true},
	}
	for _, srv := range testenv.DynamoDBServers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			t.Parallel()
			f := newFenceSetup(t, srv)
			for _, how := range []string{viaUpdate, viaPut} {
				for _, tc := range cases {
					t.Run(how+"/"+tc.name, func(t *testing.T) {
						c, key, id := ctxT(t), t.Name(), t.Name()
						t0 := time.Now()
						at := func(d time.Duration) idem.Option {
							return idem.WithClock(func() time.Time { return t0.Add(d) })
						}
						a, _, err := idem.Claim(c, f.store, key, idem.WithLease(time.Second))
						if err != nil {
							t.Fatal(err)
						}
						if tc.aFirst {
							if err := f.write(c, how, id, "a", a.Fence()); err != nil {
								t.Fatalf("A's write, alone: %v", err)
							}
							f.check(t, id, "a", a.Fence())
						}
						var b *idem.Lease
						switch tc.between {
						case "takeover":
							b, _, err = idem.Claim(c, f.store, key, at(2*time.Second), idem.WithLease(time.Second))
						case "release":
							if err := a.Release(c); err != nil {
								t.Fatal(err)
							}
							b, _, err = idem.Claim(c, f.store, key)
						case "delete":
							it, gerr := f.store.Get(c, key)
							if gerr != nil {
								t.Fatal(gerr)
							}
							if err := f.store.CompareAndDelete(c, key, it.Version); err != nil {
								t.Fatal(err)
							}
							b, _, err = idem.Claim(c, f.store, key)
						}
						if err != nil || b == nil {
							t.Fatalf("B's claim after %s: %v, %v", tc.between, b, err)
						}
						if b.Fence() <= a.Fence() {
							t.Fatalf("B's fence %d after %s is not above A's %d", b.Fence(), tc.between, a.Fence())
						}
						if err := f.write(c, how, id, "b", b.Fence()); err != nil {
							t.Fatalf("B's write: %v", err)
						}
						f.check(t, id, "b", b.Fence())
						refusedBy(t, "stale A's write after B's", f.write(c, how, id, "stale", a.Fence()), a.Fence(), b.Fence())
						f.check(t, id, "b", b.Fence())
					})
				}
			}
		})
	}
}

// TestFenceDo: the same through idem.Do. The first worker is held inside fn
// while a second caller, whose clock is past the first's lease, takes the
// key over, writes the order and completes. The first worker's write then
// is refused, and Do's completion for it fails with ErrLeaseLost; the
// stored answer and the order stay the second's.
func TestFenceDo(t *testing.T) {
	for _, srv := range testenv.DynamoDBServers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			t.Parallel()
			f := newFenceSetup(t, srv)
			c, key, id := ctxT(t), "charge/order-7", "order-7"
			later := idem.WithClock(func() time.Time { return time.Now().Add(time.Hour) })

			started, proceed := make(chan int64, 1), make(chan struct{})
			type outcome struct {
				v        string
				err      error
				writeErr error
			}
			first := make(chan outcome, 1)
			go func() {
				var writeErr error
				v, err := idem.Do(c, f.store, key, func(ctx context.Context) (string, error) {
					l, ok := idem.LeaseFrom(ctx)
					if !ok {
						return "", errors.New("no lease in fn's context")
					}
					started <- l.Fence()
					<-proceed
					// A stalled worker: its write goes out whatever its
					// context says (the heartbeat may have found the takeover).
					writeErr = f.write(context.WithoutCancel(ctx), viaUpdate, id, "first", l.Fence())
					return "first", nil
				}, idem.WithLease(time.Minute))
				first <- outcome{v, err, writeErr}
			}()
			fence1 := <-started

			var fence2 int64
			got, err := idem.Do(c, f.store, key, func(ctx context.Context) (string, error) {
				l, _ := idem.LeaseFrom(ctx)
				if l.Attempt() == 1 {
					t.Errorf("the second caller's claim is not a takeover")
				}
				fence2 = l.Fence()
				return "second", f.write(ctx, viaPut, id, "second", fence2)
			}, later)
			if err != nil || got != "second" {
				t.Fatalf("the second caller: got %q, %v; want \"second\", nil", got, err)
			}
			if fence2 <= fence1 {
				t.Fatalf("the takeover's fence %d is not above the first worker's %d", fence2, fence1)
			}
			f.check(t, id, "second", fence2)

			close(proceed)
			o := <-first
			refusedBy(t, "the first worker's write after the takeover", o.writeErr, fence1, fence2)
			if o.v != "first" || !errors.Is(o.err, idem.ErrLeaseLost) {
				t.Errorf("the first worker's Do: got %q, %v; want \"first\" and ErrLeaseLost", o.v, o.err)
			}
			f.check(t, id, "second", fence2)
			if got, err := idem.Do(c, f.store, key, func(context.Context) (string, error) {
				return "third", nil
			}); err != nil || got != "second" {
				t.Errorf("a duplicate afterwards: got %q, %v; want the second caller's answer", got, err)
			}
		})
	}
}

// TestFenceSameClaim: one claim writes its item more than once, and sends
// one write again as after a lost response: all land, since the fence
// refuses only a higher one. A refusal by the caller's own condition,
// combined with the fence, is not taken for a refusal by the fence.
func TestFenceSameClaim(t *testing.T) {
	for _, srv := range testenv.DynamoDBServers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			t.Parallel()
			f := newFenceSetup(t, srv)
			c, id := ctxT(t), "order-9"
			l, _, err := idem.Claim(c, f.store, "ship/order-9")
			if err != nil {
				t.Fatal(err)
			}
			for i, w := range []struct{ how, status string }{
				{viaUpdate, "paid"},
				{viaPut, "packed"},
				{viaPut, "packed"}, // the same write again
				{viaUpdate, "shipped"},
				{viaUpdate, "shipped"}, // the same write again
			} {
				if err := f.write(c, w.how, id, w.status, l.Fence()); err != nil {
					t.Fatalf("write %d (%s %s) of the same claim: %v", i, w.how, w.status, err)
				}
				f.check(t, id, w.status, l.Fence())
			}
			notShipped := expression.Name("status").NotEqual(expression.Value("shipped"))
			err = f.write(c, viaUpdate, id, "cancelled", l.Fence(), notShipped)
			var ccf *types.ConditionalCheckFailedException
			if !errors.As(err, &ccf) {
				t.Fatalf("a write whose own condition fails: got %v, want a ConditionalCheckFailedException", err)
			}
			if cur, ok := dynamo.Fenced(err, fenceAttr, l.Fence()); ok {
				t.Errorf("a write refused by its own condition, the fence holding: Fenced = %d, true; want false", cur)
			}
			f.check(t, id, "shipped", l.Fence())
			refusedBy(t, "a lower fence with the caller's condition", f.write(c, viaUpdate, id, "cancelled", l.Fence()-1, notShipped), l.Fence()-1, l.Fence())
		})
	}
}

// TestFenced: Fenced reads the refusal's item, and only a number above the
// writer's fence is a refusal by the fence.
func TestFenced(t *testing.T) {
	refusal := func(item map[string]types.AttributeValue) error {
		return &smithyWrapped{&types.ConditionalCheckFailedException{Message: aws.String("refused"), Item: item}}
	}
	n := func(s string) map[string]types.AttributeValue {
		return map[string]types.AttributeValue{"id": &types.AttributeValueMemberS{Value: "o"}, "fence": &types.AttributeValueMemberN{Value: s}}
	}
	cases := []struct {
		name    string
		err     error
		current int64
		ok      bool
	}{
		{"Nil", nil, 0, false},
		{"OtherError", errors.New("throttled"), 0, false},
		{"NoItem", refusal(nil), 0, false},
		{"NoFence", refusal(map[string]types.AttributeValue{"id": &types.AttributeValueMemberS{Value: "o"}}), 0, false},
		{"Below", refusal(n("41")), 0, false},
		{"Equal", refusal(n("42")), 0, false},
		{"Above", refusal(n("43")), 43, true},
		{"Large", refusal(n("1780000000000000")), 1780000000000000, true},
		{"NotAnInteger", refusal(n("43.5")), 0, false},
		{"NotANumber", refusal(map[string]types.AttributeValue{"fence": &types.AttributeValueMemberS{Value: "43"}}), 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cur, ok := dynamo.Fenced(tc.err, "fence", 42)
			if cur != tc.current || ok != tc.ok {
				t.Errorf("Fenced(%v, fence, 42) = %d, %v; want %d, %v", tc.err, cur, ok, tc.current, tc.ok)
			}
		})
	}
}

// smithyWrapped wraps an error as the SDK's operation error does.
type smithyWrapped struct{ err error }

func (e *smithyWrapped) Error() string { return "operation PutItem: " + e.err.Error() }
func (e *smithyWrapped) Unwrap() error { return e.err }
