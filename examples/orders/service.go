package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/idemkit/idemkit/cassandra"
	"github.com/idemkit/idemkit/dynamo"
	"github.com/idemkit/idemkit/idem"
)

// OrderRequest is what a client sends. Key is the client's idempotency
// key, the same on every retry of one order.
type OrderRequest struct {
	Key      string `json:"-"`
	OrderID  string `json:"order_id"`
	Customer string `json:"customer"`
	Amount   int    `json:"amount"` // cents
}

// Order is the service's answer: the order as the worker that placed it
// wrote it.
type Order struct {
	OrderID  string `json:"order_id"`
	Customer string `json:"customer"`
	Amount   int    `json:"amount"`
	Worker   string `json:"worker"`  // which worker placed it
	Attempt  int    `json:"attempt"` // which claim of the key: 1, plus one per takeover
}

// Worker is one process of the order service. Options are its idem
// options (lease, clock); Inside, if set, runs inside fn before the
// order's write: the demo holds a worker there to stall it.
type Worker struct {
	Name    string
	Options []idem.Option
	Inside  func(ctx context.Context, req OrderRequest)
}

func (w *Worker) order(ctx context.Context, req OrderRequest) Order {
	if w.Inside != nil {
		w.Inside(ctx, req)
	}
	o := Order{OrderID: req.OrderID, Customer: req.Customer, Amount: req.Amount, Worker: w.Name}
	if lease, ok := idem.LeaseFrom(ctx); ok {
		o.Attempt = lease.Attempt()
	}
	return o
}

func (w *Worker) options(req OrderRequest) ([]idem.Option, error) {
	fp, err := idem.Fingerprint(req)
	if err != nil {
		return nil, err
	}
	return append([]idem.Option{idem.WithKeyPrefix("orders/"), idem.WithFingerprint(fp)}, w.Options...), nil
}

// TxOrders places orders on DynamoDB: the order item and the idempotent
// answer commit in one transaction (dynamo.DoTx), so the item is written
// once or not at all, whatever fails and whoever retries.
//
// The orders table is keyed by order_id. An item records the idempotency
// key that placed it (an order id belongs to one request) and counts the
// transactions that wrote it in "writes", so a write that landed twice
// would show.
type TxOrders struct {
	Store *dynamo.Store
	Table string
}

// PlaceOrder places req as worker w. ran reports whether fn ran in this
// call (false: a replay of the stored answer). An order id another key
// placed already is a *dynamo.TxConditionError: nothing committed, the key
// released.
func (s *TxOrders) PlaceOrder(ctx context.Context, w *Worker, req OrderRequest) (o Order, ran bool, err error) {
	opts, err := w.options(req)
	if err != nil {
		return Order{}, false, err
	}
	o, err = dynamo.DoTx(ctx, s.Store, req.Key, func(ctx context.Context, tx *dynamo.Tx) (Order, error) {
		ran = true
		o := w.order(ctx, req)
		free := expression.AttributeNotExists(expression.Name("order_id")).
			Or(expression.Name("idem_key").Equal(expression.Value(req.Key)))
		ex, err := expression.NewBuilder().WithCondition(free).WithUpdate(
			expression.Set(expression.Name("customer"), expression.Value(o.Customer)).
				Set(expression.Name("amount"), expression.Value(o.Amount)).
				Set(expression.Name("worker"), expression.Value(o.Worker)).
				Set(expression.Name("idem_key"), expression.Value(req.Key)).
				Add(expression.Name("writes"), expression.Value(1))).Build()
		if err != nil {
			return Order{}, err
		}
		return o, tx.Update(types.Update{
			TableName:                 aws.String(s.Table),
			Key:                       orderKey(req.OrderID),
			UpdateExpression:          ex.Update(),
			ConditionExpression:       ex.Condition(),
			ExpressionAttributeNames:  ex.Names(),
			ExpressionAttributeValues: ex.Values(),
		})
	}, opts...)
	return o, ran, err
}

// StoredOrder is an order item as the orders table holds it.
type StoredOrder struct {
	Worker, IdemKey string
	Writes          int
}

// Read returns the order item (found false if it is absent).
func (s *TxOrders) Read(ctx context.Context, client *dynamodb.Client, orderID string) (o StoredOrder, found bool, err error) {
	out, err := client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(s.Table),
		Key:            orderKey(orderID),
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return StoredOrder{}, false, fmt.Errorf("reading order %s: %w", orderID, err)
	}
	if out.Item == nil {
		return StoredOrder{}, false, nil
	}
	return storedOrder(out.Item), true, nil
}

func storedOrder(item map[string]types.AttributeValue) StoredOrder {
	var o StoredOrder
	if v, ok := item["worker"].(*types.AttributeValueMemberS); ok {
		o.Worker = v.Value
	}
	if v, ok := item["idem_key"].(*types.AttributeValueMemberS); ok {
		o.IdemKey = v.Value
	}
	if v, ok := item["writes"].(*types.AttributeValueMemberN); ok {
		o.Writes, _ = strconv.Atoi(v.Value)
	}
	return o
}

func orderKey(id string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{"order_id": &types.AttributeValueMemberS{Value: id}}
}

// CreateOrdersTable creates the orders table, keyed by order_id, if it is
// missing, and waits until it is active.
func CreateOrdersTable(ctx context.Context, client *dynamodb.Client, table string) error {
	_, err := client.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(table),
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("order_id"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("order_id"), KeyType: types.KeyTypeHash}},
		BillingMode:          types.BillingModePayPerRequest,
	})
	var inUse *types.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) {
		return fmt.Errorf("creating orders table %s: %w", table, err)
	}
	err = dynamodb.NewTableExistsWaiter(client).Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)}, time.Minute)
	if err != nil {
		return fmt.Errorf("waiting for orders table %s: %w", table, err)
	}
	return nil
}

// ErrFenced: a ledger write was refused because the row carries a higher
// fence, written by a later claim of the order's key.
var ErrFenced = errors.New("orders: ledger write fenced out by a later claim")

// Entry is one order's ledger row.
type Entry struct {
	OrderID  string
	Customer string
	Amount   int
	Worker   string
	Fence    int64 // the fence of the claim that wrote it
}

// Ledger holds one row per order. Write lands if the row's fence is not
// above fence and then stores fence with the row; otherwise it writes
// nothing and returns an error matching ErrFenced.
type Ledger interface {
	Write(ctx context.Context, e Entry, fence int64) error
	Read(ctx context.Context, orderID string) (e Entry, found bool, err error)
}

// FencedOrders places orders on any store: fn writes the order's ledger
// row fenced by its claim (Lease.Fence), then idem.Do stores the answer.
// The two are separate writes, so a stalled worker is stopped by the
// fence: once a later claim has written the row, its write is refused.
type FencedOrders struct {
	Store  idem.Store
	Ledger Ledger
}

// PlaceOrder places req as worker w. ran reports whether fn ran in this
// call. A refused ledger write is an error matching ErrFenced.
func (s *FencedOrders) PlaceOrder(ctx context.Context, w *Worker, req OrderRequest) (o Order, ran bool, err error) {
	opts, err := w.options(req)
	if err != nil {
		return Order{}, false, err
	}
	o, err = idem.Do(ctx, s.Store, req.Key, func(ctx context.Context) (Order, error) {
		ran = true
		o := w.order(ctx, req)
		lease, ok := idem.LeaseFrom(ctx)
		if !ok {
			return Order{}, errors.New("orders: no lease in fn's context")
		}
		e := Entry{OrderID: o.OrderID, Customer: o.Customer, Amount: o.Amount, Worker: o.Worker}
		if err := s.Ledger.Write(ctx, e, lease.Fence()); err != nil {
			return Order{}, fmt.Errorf("orders: ledger write of %s by %s: %w", req.OrderID, w.Name, err)
		}
		return o, nil
	}, opts...)
	return o, ran, err
}

// MemLedger is an in-process Ledger: the fencing rule of
// cassandra.FencedUpdate on a map.
type MemLedger struct {
	mu   sync.Mutex
	rows map[string]Entry
}

// NewMemLedger returns an empty MemLedger.
func NewMemLedger() *MemLedger { return &MemLedger{rows: map[string]Entry{}} }

// Write implements Ledger.
func (l *MemLedger) Write(_ context.Context, e Entry, fence int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if cur, ok := l.rows[e.OrderID]; ok && cur.Fence > fence {
		return fmt.Errorf("order %s: the row's fence %d is above the write's %d: %w", e.OrderID, cur.Fence, fence, ErrFenced)
	}
	e.Fence = fence
	l.rows[e.OrderID] = e
	return nil
}

// Read implements Ledger.
func (l *MemLedger) Read(_ context.Context, orderID string) (Entry, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.rows[orderID]
	return e, ok, nil
}

// CassandraLedger is a Ledger in a Cassandra table written only through
// cassandra.FencedUpdate:
//
//	CREATE TABLE ks.ledger (
//		order_id text PRIMARY KEY,
//		customer text,
//		amount   bigint,
//		worker   text,
//		fence    bigint  -- written by FencedUpdate only
//	)
type CassandraLedger struct {
	Session *gocql.Session
	Table   string // "keyspace.table"
}

// CreateLedgerTable creates the ledger table if it is missing.
func CreateLedgerTable(ctx context.Context, session *gocql.Session, table string) error {
	err := session.Query(`CREATE TABLE IF NOT EXISTS ` + table + ` (
		order_id text PRIMARY KEY,
		customer text,
		amount   bigint,
		worker   text,
		fence    bigint
	)`).ExecContext(ctx)
	if err != nil {
		return fmt.Errorf("creating ledger table %s: %w", table, err)
	}
	return nil
}

// Write implements Ledger with cassandra.FencedUpdate; a refusal matches
// both ErrFenced and cassandra.ErrFenced.
func (l *CassandraLedger) Write(ctx context.Context, e Entry, fence int64) error {
	err := cassandra.FencedUpdate(ctx, l.Session, cassandra.FencedWrite{
		Table: l.Table,
		Key:   map[string]any{"order_id": e.OrderID},
		Set:   map[string]any{"customer": e.Customer, "amount": int64(e.Amount), "worker": e.Worker},
	}, fence)
	if errors.Is(err, cassandra.ErrFenced) {
		return fmt.Errorf("%w: %w", ErrFenced, err)
	}
	return err
}

// Read reads the row at SERIAL, so it sees every write FencedUpdate made.
func (l *CassandraLedger) Read(ctx context.Context, orderID string) (Entry, bool, error) {
	e := Entry{OrderID: orderID}
	var amount int64
	err := l.Session.Query(`SELECT customer, amount, worker, fence FROM `+l.Table+` WHERE order_id = ?`, orderID).
		Consistency(gocql.Serial).
		ScanContext(ctx, &e.Customer, &amount, &e.Worker, &e.Fence)
	if errors.Is(err, gocql.ErrNotFound) {
		return Entry{}, false, nil
	}
	if err != nil {
		return Entry{}, false, fmt.Errorf("reading ledger row %s: %w", orderID, err)
	}
	e.Amount = int(amount)
	return e, true, nil
}
