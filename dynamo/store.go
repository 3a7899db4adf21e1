package dynamo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/kernel"
)

// Client is the part of the DynamoDB API the Store uses. *dynamodb.Client
// satisfies it, and so can a DAX client or a test double. With each write
// the Store passes an optFn that adds a middleware to the SDK's stack: it
// lets the retryer resend only after attempts that provably applied nothing
// and stops it after any other (see the package documentation). A client
// that ignores optFns must not resend writes by itself: a resend after an
// attempt that may have been applied can apply it twice.
type Client interface {
	GetItem(ctx context.Context, params *dynamodb.GetItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	PutItem(ctx context.Context, params *dynamodb.PutItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	DeleteItem(ctx context.Context, params *dynamodb.DeleteItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error)
}

var _ Client = (*dynamodb.Client)(nil)

// Store is an idem.Store over one DynamoDB table. Create it with New. It is
// safe for concurrent use and holds no state besides its configuration.
type Store struct {
	client    Client
	table     string
	tableName *string // table, for the SDK's inputs
	cfg       config
	cond      conditions
}

var _ idem.Store = (*Store)(nil)

// New returns a Store that keeps its items in table through client. The
// table must exist with the key schema the options describe (see
// CreateTable). New sends nothing; it rejects a nil client, an empty table
// name and invalid options.
func New(client Client, table string, opts ...Option) (*Store, error) {
	if client == nil {
		return nil, errors.New("dynamo: New: nil client")
	}
	if table == "" {
		return nil, errors.New("dynamo: New: empty table name")
	}
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	s := &Store{client: client, table: table, tableName: aws.String(table), cfg: cfg}
	if s.cond, err = s.newConditions(); err != nil {
		return nil, fmt.Errorf("dynamo: New: building the conditions: %w", err)
	}
	return s, nil
}

// Table returns the name of the Store's table.
func (s *Store) Table() string { return s.table }

// Get implements idem.Store with one GetItem (strongly consistent unless
// WithConsistentRead(false)). An item whose expiry has passed is reported as
// idem.ErrNotFound even while DynamoDB still holds it.
func (s *Store) Get(ctx context.Context, key string) (idem.Item, error) {
	if err := s.checkInput(key, nil, false); err != nil {
		return idem.Item{}, err
	}
	out, err := s.client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      s.tableName,
		Key:            s.keyAttrs(key),
		ConsistentRead: aws.Bool(s.cfg.consistent),
	})
	if err != nil {
		return idem.Item{}, s.wrapSDK("Get", key, err)
	}
	if len(out.Item) == 0 {
		return idem.Item{}, fmt.Errorf("dynamo: Get %q: %w", key, idem.ErrNotFound)
	}
	it, err := s.decode(key, out.Item)
	if err != nil {
		return idem.Item{}, err
	}
	if kernel.Expired(it, s.cfg.now()) {
		return idem.Item{}, fmt.Errorf("dynamo: Get %q: %w (expired at %s)", key, idem.ErrNotFound, it.ExpiresAt.UTC().Format(time.RFC3339))
	}
	return it, nil
}

// PutIfAbsent implements idem.Store with one PutItem conditioned on the key
// being absent or expired. The item gets a fresh version (kernel.FreshVersion).
func (s *Store) PutIfAbsent(ctx context.Context, key string, value []byte, ttl time.Duration) (idem.Item, error) {
	const op = "PutIfAbsent"
	if err := s.checkInput(key, value, true); err != nil {
		return idem.Item{}, err
	}
	now := s.cfg.now()
	w := s.put(ctx, op, key, value, kernel.FreshVersion(), expiry(now, ttl), now, s.cond.absent, now.Unix())
	switch {
	case w.err != nil:
		return idem.Item{}, w.err
	case w.conflict == nil:
		return w.item, nil
	case !w.conflict.Exists:
		return idem.Item{}, w.unsupported()
	}
	return idem.Item{}, w.refused()
}

// CompareAndSwap implements idem.Store with one PutItem conditioned on the
// stored version and on the item not being expired. The new item replaces
// the old one whole.
func (s *Store) CompareAndSwap(ctx context.Context, key string, version int64, value []byte, ttl time.Duration) (idem.Item, error) {
	const op = "CompareAndSwap"
	if err := kernel.CheckVersion(key, version); err != nil {
		return idem.Item{}, err
	}
	if err := s.checkInput(key, value, true); err != nil {
		return idem.Item{}, err
	}
	now := s.cfg.now()
	w := s.put(ctx, op, key, value, version+1, expiry(now, ttl), now, s.cond.live, version, now.Unix())
	switch {
	case w.err != nil:
		return idem.Item{}, w.err
	case w.conflict == nil:
		return w.item, nil
	}
	return idem.Item{}, w.refused()
}

// Upsert implements idem.Store with one PutItem conditioned on the key being
// absent, expired, or at a lower version. A refused Upsert returns the
// current item from the write's own response, with applied == false.
func (s *Store) Upsert(ctx context.Context, key string, value []byte, version int64, ttl time.Duration) (idem.Item, bool, error) {
	const op = "Upsert"
	if err := kernel.CheckUpsertVersion(key, version); err != nil {
		return idem.Item{}, false, err
	}
	if err := s.checkInput(key, value, true); err != nil {
		return idem.Item{}, false, err
	}
	now := s.cfg.now()
	w := s.put(ctx, op, key, value, version, expiry(now, ttl), now, s.cond.below, now.Unix(), version)
	switch {
	case w.err != nil:
		return idem.Item{}, false, w.err
	case w.conflict == nil:
		return w.item, true, nil
	case !w.conflict.Exists:
		return idem.Item{}, false, w.unsupported()
	}
	return w.conflict.Current, false, nil
}

// CompareAndDelete implements idem.Store with one DeleteItem conditioned on
// the stored version and on the item not being expired.
//
// A deletion leaves nothing to recognise: when the request may have been
// applied but its response was lost, the call returns an error matching
// idem.ErrUnknownOutcome, without sending anything more. Retrying it is
// safe: once the key is absent it returns a conflict with Exists false.
func (s *Store) CompareAndDelete(ctx context.Context, key string, version int64) error {
	const op = "CompareAndDelete"
	if err := kernel.CheckVersion(key, version); err != nil {
		return err
	}
	if err := s.checkInput(key, nil, false); err != nil {
		return err
	}
	now := s.cfg.now()
	var a attempts
	_, err := s.client.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName:                           s.tableName,
		Key:                                 s.keyAttrs(key),
		ConditionExpression:                 s.cond.live.expr,
		ExpressionAttributeNames:            s.cond.live.names,
		ExpressionAttributeValues:           s.cond.live.values(version, now.Unix()),
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	}, a.option)
	if err == nil {
		return nil
	}
	if ccf, ok := conditionFailed(err); ok {
		w := s.refusal(op, key, err, ccf, now)
		if w.err != nil {
			return w.err
		}
		return w.refused()
	}
	if mayHaveApplied(err) {
		return kernel.Unknown(key, op, fmt.Errorf(
			"the request may have been applied and a deletion leaves nothing to check: %w", s.wrapSDK(op, key, err)))
	}
	return s.wrapSDK(op, key, err)
}

// write is the outcome of one conditional write.
type write struct {
	item     idem.Item           // the item written, when applied
	conflict *idem.ConflictError // the condition failed
	sdkErr   error               // the SDK's error behind conflict
	err      error               // any other failure, translated
}

// refused returns the conflict, with the SDK's error kept in the chain.
func (w write) refused() error { return &conflictError{w.conflict, w.sdkErr} }

// conflictError is an *idem.ConflictError that also wraps the SDK's
// *types.ConditionalCheckFailedException; its message is idem's.
type conflictError struct {
	conflict *idem.ConflictError
	cause    error
}

func (e *conflictError) Error() string   { return e.conflict.Error() }
func (e *conflictError) Unwrap() []error { return []error{e.conflict, e.cause} }

func (w write) unsupported() error {
	return fmt.Errorf("dynamo: %s %q: condition failed but no current item was returned (ReturnValuesOnConditionCheckFailure=ALL_OLD ignored?): %w: %w",
		w.conflict.Op, w.conflict.Key, ErrUnsupported, w.sdkErr)
}

// put writes the whole item under cond with args (its values), with a
// fresh write token. When the request may have been applied but its
// response was lost, nothing is sent again: settle reads the key once and
// finds the token or not.
func (s *Store) put(ctx context.Context, op, key string, value []byte, version, exp int64, now time.Time, cond condition, args ...int64) write {
	tok := newToken()
	var a attempts
	_, err := s.client.PutItem(ctx, &dynamodb.PutItemInput{
		TableName:                           s.tableName,
		Item:                                s.encode(key, value, version, exp, tok),
		ConditionExpression:                 cond.expr,
		ExpressionAttributeNames:            cond.names,
		ExpressionAttributeValues:           cond.values(args...),
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	}, a.option)
	written := idem.Item{Key: key, Value: bytes.Clone(value), Version: version, ExpiresAt: expiresAt(exp)}
	if written.Value == nil {
		written.Value = []byte{}
	}
	if err == nil {
		return write{item: written}
	}
	if ccf, ok := conditionFailed(err); ok {
		if s.writtenBy(ccf.Item, tok) {
			// Only a client that resends on its own (one that skips the
			// middleware) gets here: the refusal shows our own write.
			return write{item: written}
		}
		return s.refusal(op, key, err, ccf, now)
	}
	if mayHaveApplied(err) {
		return s.settle(ctx, op, key, tok, written, s.wrapSDK(op, key, err))
	}
	return write{err: s.wrapSDK(op, key, err)}
}

// settle decides a write that may have been applied, whose response was
// lost, by one strongly consistent read: the item carries the write's token
// (applied), or the outcome is unknown. An absent key or another writer's
// item proves nothing: our write may have been applied and then replaced or
// deleted.
func (s *Store) settle(ctx context.Context, op, key string, tok []byte, written idem.Item, cause error) write {
	unknown := func(why string, args ...any) write {
		return write{err: kernel.Unknown(key, op, fmt.Errorf(why+": %w", append(args, cause)...))}
	}
	if ctx.Err() != nil {
		return unknown("the request may have been applied and the context ended before it could be checked")
	}
	out, err := s.client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      s.tableName,
		Key:            s.keyAttrs(key),
		ConsistentRead: aws.Bool(true),
	})
	switch {
	case err != nil:
		return unknown("the request may have been applied and reading the key to check failed (%v)", err)
	case s.writtenBy(out.Item, tok):
		return write{item: written}
	case len(out.Item) == 0:
		return unknown("the request may have been applied and the key is now absent")
	}
	return unknown("the request may have been applied and the key now holds another write")
}

// refusal translates a failed condition. now is the time the condition was
// built with, which also decides whether the returned item has expired.
func (s *Store) refusal(op, key string, err error, ccf *types.ConditionalCheckFailedException, now time.Time) write {
	ce := &idem.ConflictError{Key: key, Op: op}
	if len(ccf.Item) > 0 {
		cur, derr := s.decode(key, ccf.Item)
		if derr != nil {
			return write{err: derr}
		}
		if !kernel.Expired(cur, now) {
			ce.Current, ce.Exists = cur, true
		}
	}
	return write{conflict: ce, sdkErr: err}
}

// name is an attribute name in an expression, taken whole: a configured name
// such as "idem.key" is one attribute, not a document path.
func name(attr string) expression.NameBuilder {
	return expression.NameNoDotSplit(attr)
}

// absent is true when the key has no item or its item has expired. A
// comparison with a missing attribute is false in DynamoDB, so items without
// an expiry attribute (never expiring) are never absent.
func (s *Store) absent(now time.Time) expression.ConditionBuilder {
	return expression.AttributeNotExists(name(s.cfg.pk)).
		Or(name(s.cfg.exp).LessThanEqual(expression.Value(now.Unix())))
}

// liveAt is true when a live (unexpired) item at version is stored.
func (s *Store) liveAt(now time.Time, version int64) expression.ConditionBuilder {
	exp := name(s.cfg.exp)
	return name(s.cfg.ver).Equal(expression.Value(version)).
		And(expression.AttributeNotExists(exp).Or(exp.GreaterThan(expression.Value(now.Unix()))))
}

// conditions are the Store's condition expressions, built once by New.
type conditions struct {
	absent condition // absent(now): args now
	live   condition // liveAt(now, version): args version, now
	below  condition // absent, or at a version below: args now, version
}

// condition is a condition expression whose text and names never change:
// only its values do, one Number per argument, at the placeholders New
// recorded.
type condition struct {
	expr  *string
	names map[string]string // shared by every request: never modified
	slots []string          // the placeholder of each argument
}

// newConditions builds each condition once with distinct stand-in values
// and records which placeholder each stand-in took.
func (s *Store) newConditions() (conditions, error) {
	const a, b = -1_000_001, -1_000_002 // stand-ins: no clock or version takes them
	var c conditions
	var err error
	if c.absent, err = newCondition(s.absent(time.Unix(a, 0)), a); err != nil {
		return c, err
	}
	if c.live, err = newCondition(s.liveAt(time.Unix(b, 0), a), a, b); err != nil {
		return c, err
	}
	c.below, err = newCondition(s.absent(time.Unix(a, 0)).Or(name(s.cfg.ver).LessThan(expression.Value(int64(b)))), a, b)
	return c, err
}

func newCondition(cond expression.ConditionBuilder, standIns ...int64) (condition, error) {
	ex, err := expression.NewBuilder().WithCondition(cond).Build()
	if err != nil {
		return condition{}, err
	}
	c := condition{expr: ex.Condition(), names: ex.Names(), slots: make([]string, len(standIns))}
	vals := ex.Values()
	if len(vals) != len(standIns) {
		return condition{}, fmt.Errorf("condition %q has %d values, want %d", *c.expr, len(vals), len(standIns))
	}
	for i, v := range standIns {
		want := strconv.FormatInt(v, 10)
		for slot, av := range vals {
			if n, ok := av.(*types.AttributeValueMemberN); ok && n.Value == want {
				c.slots[i] = slot
			}
		}
		if c.slots[i] == "" {
			return condition{}, fmt.Errorf("condition %q: no placeholder for value %d", *c.expr, i)
		}
	}
	return c, nil
}

// values binds args to c's placeholders, in a map of the request's own.
func (c condition) values(args ...int64) map[string]types.AttributeValue {
	m := make(map[string]types.AttributeValue, len(args))
	for i, v := range args {
		m[c.slots[i]] = &types.AttributeValueMemberN{Value: strconv.FormatInt(v, 10)}
	}
	return m
}
