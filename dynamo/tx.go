package dynamo

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/kernel"
)

// DynamoDB's limits on one TransactWriteItems request.
const (
	// MaxTxItems is the most writes one transaction holds. DoTx's own
	// completion is one of them, so fn may queue MaxTxItems-1.
	MaxTxItems = 100
	// MaxTxBytes is the most bytes the items of one transaction may
	// total, the completed record included.
	MaxTxBytes = 4 << 20
)

// TxClient is the part of the DynamoDB API DoTx uses besides Client's.
// *dynamodb.Client satisfies it.
type TxClient interface {
	Client
	TransactWriteItems(ctx context.Context, params *dynamodb.TransactWriteItemsInput, optFns ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error)
}

var _ TxClient = (*dynamodb.Client)(nil)

// DoTx is idem.Do whose fn also queues writes of its own on tx, to any
// table of the Store's client: DoTx commits them in one TransactWriteItems
// together with the write that stores fn's result, conditioned on the claim
// still being this call's (its version). Either all of them land, once, or
// none does:
//
//   - A duplicate replays the stored result and writes nothing: 1 round
//     trip. A first execution costs the claim and the transaction: 2.
//   - A worker whose claim was taken over (its lease passed) commits
//     nothing: DoTx returns fn's result with an error matching
//     idem.ErrLeaseLost.
//   - If a condition of one of fn's writes fails, nothing is committed,
//     the key is released (a retry runs fn again) and DoTx returns a
//     *TxConditionError naming the write and carrying the item as it was.
//     So does any other refusal of the transaction (a *TxError).
//   - If fn fails, the key is released and nothing of tx is sent; if it
//     returns an idem.Permanent error, that error is stored and tx is
//     dropped.
//   - A transaction over DynamoDB's limits (MaxTxItems writes, MaxTxBytes)
//     is refused before it is sent. Tx's methods refuse the write that
//     would pass MaxTxItems-1, so fn can tell; a transaction found too
//     large only with the result gets the key a permanent error
//     (idem.CodeResultNotStored), as a result too large to store does.
//   - A lost response is settled by one read of the record, which carries
//     the transaction's token; if that read cannot tell, the transaction is
//     sent again: its condition on the claim's version lets at most one copy
//     commit, and a copy that finds the record committed by an earlier one
//     succeeds. Each request also carries a ClientRequestToken, so that a
//     client that resends on its own gets DynamoDB's idempotent answer.
//   - A refusal whose response is lost cannot be told from a commit whose
//     response is lost: if the read cannot tell either, DoTx returns an
//     error matching idem.ErrUnknownOutcome and the key stays claimed
//     until its lease passes; nothing of fn's was committed twice.
//
// Everything else is as for idem.Do, with the same options (idem.WithCommit
// is DoTx's own). The Store's client must implement TxClient.
func DoTx[T any](ctx context.Context, s *Store, key string, fn func(ctx context.Context, tx *Tx) (T, error), opts ...idem.Option) (T, error) {
	var zero T
	if s == nil {
		return zero, fmt.Errorf("dynamo: DoTx %q: the store is nil: %w", key, idem.ErrInvalid)
	}
	if fn == nil {
		return zero, fmt.Errorf("dynamo: DoTx %q: fn is nil: %w", key, idem.ErrInvalid)
	}
	tc, ok := s.client.(TxClient)
	if !ok {
		return zero, fmt.Errorf("dynamo: DoTx %q: the client (%T) has no TransactWriteItems: %w", key, s.client, ErrUnsupported)
	}
	tx := &Tx{}
	run := func(ctx context.Context) (T, error) {
		defer tx.seal() // a write queued once fn has returned (by a goroutine it left) is refused
		return fn(ctx, tx)
	}
	commit := func(ctx context.Context, key string, version int64, value []byte, ttl time.Duration) (idem.Item, error) {
		return s.commit(ctx, tc, tx, key, version, value, ttl)
	}
	return idem.Do(ctx, s, key, run, append(slices.Clip(opts), idem.WithCommit(commit))...)
}

// Tx collects the writes fn queues for DoTx to commit with its result. Each
// method takes the SDK's own type, built as for TransactWriteItems (with
// expression for conditions and updates); a ReturnValuesOnConditionCheckFailure
// left unset becomes ALL_OLD, so a failed condition reports the item. Tx is
// safe for concurrent use; once fn returns, it refuses further writes.
type Tx struct {
	mu     sync.Mutex
	items  []types.TransactWriteItem
	bytes  int
	sealed bool
}

// Put queues a PutItem.
func (tx *Tx) Put(p types.Put) error {
	if len(p.Item) == 0 {
		return txInvalid("Put", p.TableName, "no item")
	}
	if p.ReturnValuesOnConditionCheckFailure == "" {
		p.ReturnValuesOnConditionCheckFailure = types.ReturnValuesOnConditionCheckFailureAllOld
	}
	size := itemBytes(p.Item) + exprBytes(p.ConditionExpression, p.ExpressionAttributeNames, p.ExpressionAttributeValues)
	return tx.add("Put", p.TableName, types.TransactWriteItem{Put: &p}, size)
}

// Update queues an UpdateItem.
func (tx *Tx) Update(u types.Update) error {
	if len(u.Key) == 0 || aws.ToString(u.UpdateExpression) == "" {
		return txInvalid("Update", u.TableName, "no key or no update expression")
	}
	if u.ReturnValuesOnConditionCheckFailure == "" {
		u.ReturnValuesOnConditionCheckFailure = types.ReturnValuesOnConditionCheckFailureAllOld
	}
	size := itemBytes(u.Key) + len(aws.ToString(u.UpdateExpression)) +
		exprBytes(u.ConditionExpression, u.ExpressionAttributeNames, u.ExpressionAttributeValues)
	return tx.add("Update", u.TableName, types.TransactWriteItem{Update: &u}, size)
}

// Delete queues a DeleteItem.
func (tx *Tx) Delete(d types.Delete) error {
	if len(d.Key) == 0 {
		return txInvalid("Delete", d.TableName, "no key")
	}
	if d.ReturnValuesOnConditionCheckFailure == "" {
		d.ReturnValuesOnConditionCheckFailure = types.ReturnValuesOnConditionCheckFailureAllOld
	}
	size := itemBytes(d.Key) + exprBytes(d.ConditionExpression, d.ExpressionAttributeNames, d.ExpressionAttributeValues)
	return tx.add("Delete", d.TableName, types.TransactWriteItem{Delete: &d}, size)
}

// ConditionCheck queues a condition on an item that the transaction does
// not write: if it fails, nothing is committed.
func (tx *Tx) ConditionCheck(c types.ConditionCheck) error {
	if len(c.Key) == 0 || aws.ToString(c.ConditionExpression) == "" {
		return txInvalid("ConditionCheck", c.TableName, "no key or no condition expression")
	}
	if c.ReturnValuesOnConditionCheckFailure == "" {
		c.ReturnValuesOnConditionCheckFailure = types.ReturnValuesOnConditionCheckFailureAllOld
	}
	size := itemBytes(c.Key) + exprBytes(c.ConditionExpression, c.ExpressionAttributeNames, c.ExpressionAttributeValues)
	return tx.add("ConditionCheck", c.TableName, types.TransactWriteItem{ConditionCheck: &c}, size)
}

// Len returns how many writes are queued.
func (tx *Tx) Len() int {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	return len(tx.items)
}

func (tx *Tx) add(op string, table *string, it types.TransactWriteItem, size int) error {
	if aws.ToString(table) == "" {
		return txInvalid(op, table, "no table name")
	}
	tx.mu.Lock()
	defer tx.mu.Unlock()
	switch {
	case tx.sealed:
		return txInvalid(op, table, "the transaction was already committed (a write queued after fn returned)")
	case len(tx.items)+1 > MaxTxItems-1:
		return txInvalid(op, table, fmt.Sprintf("it would be write %d, and a transaction holds %d, one of them DoTx's own", len(tx.items)+1, MaxTxItems))
	case tx.bytes+size > MaxTxBytes:
		return txInvalid(op, table, fmt.Sprintf("the transaction would hold %d bytes, over DynamoDB's %d", tx.bytes+size, MaxTxBytes))
	}
	tx.items = append(tx.items, it)
	tx.bytes += size
	return nil
}

// seal ends the queueing and returns the writes and their size.
func (tx *Tx) seal() ([]types.TransactWriteItem, int) {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	tx.sealed = true
	return tx.items, tx.bytes
}

func txInvalid(op string, table *string, reason string) error {
	return fmt.Errorf("dynamo: Tx.%s (table %q): %s: %w", op, aws.ToString(table), reason, idem.ErrInvalid)
}

// TxConditionError reports that the condition of one of fn's writes failed,
// so the transaction committed nothing, neither fn's writes nor its result,
// and DoTx released the key.
type TxConditionError struct {
	Key   string // the idempotency key
	Index int    // which of fn's writes, counted from 0 in the order queued
	Table string // that write's table
	// Item is the item as the failed condition found it, when the write
	// asked for it (ReturnValuesOnConditionCheckFailure=ALL_OLD, Tx's
	// default) and the item existed.
	Item map[string]types.AttributeValue
	Err  error // the SDK's *types.TransactionCanceledException
}

// Error implements error.
func (e *TxConditionError) Error() string {
	return fmt.Sprintf("dynamo: DoTx %q: the condition of write %d (table %s) failed; nothing was committed", e.Key, e.Index, e.Table)
}

// Unwrap returns the underlying error, for errors.Is and errors.As.
func (e *TxConditionError) Unwrap() error { return e.Err }

// TxError reports a transaction DynamoDB cancelled for a reason other than
// a failed condition (a conflict with a concurrent transaction, throttling,
// a validation error of one write): nothing was committed and DoTx released
// the key.
type TxError struct {
	Key     string
	Reasons []string // the cancellation reason of each write, DoTx's own first ("None" when it was not the cause)
	Err     error    // the SDK's error
}

// Error implements error.
func (e *TxError) Error() string {
	return fmt.Sprintf("dynamo: DoTx %q: the transaction was cancelled (reasons %v); nothing was committed: %v", e.Key, e.Reasons, e.Err)
}

// Unwrap returns the underlying error, for errors.Is and errors.As.
func (e *TxError) Unwrap() error { return e.Err }

// txAttempts bounds how often commit sends a transaction that DynamoDB
// cancelled for a conflict with another transaction or for throttling.
const txAttempts = 3

// commit is what DoTx gives idem.WithCommit: fn's writes and the completed record in one
// TransactWriteItems, the record's Put conditioned as CompareAndSwap's.
func (s *Store) commit(ctx context.Context, c TxClient, tx *Tx, key string, version int64, value []byte, ttl time.Duration) (idem.Item, error) {
	const op = "DoTx"
	if err := kernel.CheckVersion(key, version); err != nil {
		return idem.Item{}, err
	}
	if err := s.checkInput(key, value, true); err != nil {
		return idem.Item{}, err
	}
	items, size := tx.seal()
	for attempt := 1; ; attempt++ {
		w, retry := s.sendTx(ctx, c, op, key, version, value, ttl, items, size)
		if !retry || attempt == txAttempts || ctx.Err() != nil {
			if w.conflict != nil {
				return idem.Item{}, w.refused()
			}
			return w.item, w.err
		}
		if err := sleepCtx(ctx, time.Duration(attempt)*25*time.Millisecond); err != nil {
			return idem.Item{}, errors.Join(w.err, err)
		}
	}
}

// sendTx sends the transaction once. retry reports a cancellation that
// another attempt may get past (a conflict with a concurrent transaction,
// throttling): nothing was committed.
func (s *Store) sendTx(ctx context.Context, c TxClient, op, key string, version int64, value []byte, ttl time.Duration, items []types.TransactWriteItem, size int) (w write, retry bool) {
	now := s.cfg.now()
	ex, err := expression.NewBuilder().WithCondition(s.liveAt(now, version)).Build()
	if err != nil {
		return write{err: fmt.Errorf("dynamo: %s %q: building condition: %w", op, key, err)}, false
	}
	tok, exp := newToken(), expiry(now, ttl)
	record := s.encode(key, value, version+1, exp, tok)
	total := size + itemBytes(record) + exprBytes(ex.Condition(), ex.Names(), ex.Values())
	if total > MaxTxBytes {
		return write{err: kernel.Invalid(key, fmt.Sprintf("the transaction holds %d bytes with the result, over DynamoDB's %d", total, MaxTxBytes))}, false
	}
	var a attempts
	_, err = c.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{
		TransactItems: append([]types.TransactWriteItem{{Put: &types.Put{
			TableName:                           aws.String(s.table),
			Item:                                record,
			ConditionExpression:                 ex.Condition(),
			ExpressionAttributeNames:            ex.Names(),
			ExpressionAttributeValues:           ex.Values(),
			ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
		}}}, items...),
		ClientRequestToken: aws.String(hex.EncodeToString(tok)),
	}, a.option)
	written := idem.Item{Key: key, Value: append([]byte{}, value...), Version: version + 1, ExpiresAt: expiresAt(exp)}
	var tce *types.TransactionCanceledException
	switch {
	case err == nil:
		return write{item: written}, false
	case errors.As(err, &tce):
		return s.cancelled(ctx, op, key, tok, written, items, tce, err, now)
	case mayHaveApplied(err):
		return s.settle(ctx, op, key, tok, written, s.wrapSDK(op, key, err)), false
	}
	return write{err: s.wrapSDK(op, key, err)}, false
}

// cancelled translates a cancelled transaction, whose reasons come in the
// order of its writes, the record's first.
func (s *Store) cancelled(ctx context.Context, op, key string, tok []byte, written idem.Item, items []types.TransactWriteItem, tce *types.TransactionCanceledException, err error, now time.Time) (write, bool) {
	reasons := make([]string, len(tce.CancellationReasons))
	for i, r := range tce.CancellationReasons {
		reasons[i] = aws.ToString(r.Code)
	}
	if len(reasons) > 0 && reasons[0] == "ConditionalCheckFailed" {
		return s.claimRefused(ctx, op, key, tok, written, tce.CancellationReasons[0].Item, err, now), false
	}
	for i, code := range reasons[min(1, len(reasons)):] {
		if code == "ConditionalCheckFailed" {
			return write{err: &TxConditionError{Key: key, Index: i, Table: tableOf(items[i]),
				Item: tce.CancellationReasons[i+1].Item, Err: err}}, false
		}
	}
	retry := slices.ContainsFunc(reasons, func(code string) bool {
		return code == "TransactionConflict" || code == "ThrottlingError" || code == "ProvisionedThroughputExceeded"
	})
	return write{err: &TxError{Key: key, Reasons: reasons, Err: s.wrapSDK(op, key, err)}}, retry
}

// claimRefused translates a failed condition on the record: the claim is
// no longer at the version (a conflict), or our own earlier copy of the
// transaction committed (only a client that resends on its own gets here).
// When the cancellation did not carry the record, one read fetches it.
func (s *Store) claimRefused(ctx context.Context, op, key string, tok []byte, written idem.Item, cur map[string]types.AttributeValue, err error, now time.Time) write {
	if len(cur) == 0 {
		out, gerr := s.client.GetItem(ctx, &dynamodb.GetItemInput{
			TableName:      aws.String(s.table),
			Key:            s.keyAttrs(key),
			ConsistentRead: aws.Bool(true),
		})
		if gerr != nil {
			return write{err: s.wrapSDK(op, key, errors.Join(err, fmt.Errorf("reading the record after the transaction's condition on it failed: %w", gerr)))}
		}
		cur = out.Item
	}
	if s.writtenBy(cur, tok) {
		return write{item: written}
	}
	return s.refusal(op, key, err, &types.ConditionalCheckFailedException{Item: cur}, now)
}

// tableOf returns the table of a queued write.
func tableOf(it types.TransactWriteItem) string {
	switch {
	case it.Put != nil:
		return aws.ToString(it.Put.TableName)
	case it.Update != nil:
		return aws.ToString(it.Update.TableName)
	case it.Delete != nil:
		return aws.ToString(it.Delete.TableName)
	case it.ConditionCheck != nil:
		return aws.ToString(it.ConditionCheck.TableName)
	}
	return ""
}

// itemBytes is the size DynamoDB counts for an item or key: the UTF-8
// bytes of each attribute name plus its value's size.
func itemBytes(m map[string]types.AttributeValue) int {
	n := 0
	for name, v := range m {
		n += len(name) + valueBytes(v)
	}
	return n
}

// valueBytes is an attribute value's size as DynamoDB counts it, a number
// counted by its digits (DynamoDB needs about half as many bytes): strings
// and binaries by their bytes, 1 byte for a boolean or null, 3 bytes of
// overhead for a list or map plus 1 byte per element.
func valueBytes(v types.AttributeValue) int {
	switch v := v.(type) {
	case *types.AttributeValueMemberS:
		return len(v.Value)
	case *types.AttributeValueMemberN:
		return len(v.Value)
	case *types.AttributeValueMemberB:
		return len(v.Value)
	case *types.AttributeValueMemberBOOL, *types.AttributeValueMemberNULL:
		return 1
	case *types.AttributeValueMemberSS:
		return sumBytes(v.Value, func(s string) int { return len(s) })
	case *types.AttributeValueMemberNS:
		return sumBytes(v.Value, func(s string) int { return len(s) })
	case *types.AttributeValueMemberBS:
		return sumBytes(v.Value, func(b []byte) int { return len(b) })
	case *types.AttributeValueMemberL:
		return 3 + sumBytes(v.Value, func(e types.AttributeValue) int { return 1 + valueBytes(e) })
	case *types.AttributeValueMemberM:
		return 3 + len(v.Value) + itemBytes(v.Value)
	}
	return 0
}

func sumBytes[E any](s []E, size func(E) int) int {
	n := 0
	for _, e := range s {
		n += size(e)
	}
	return n
}

// exprBytes is the size of an expression with its names and values.
func exprBytes(expr *string, names map[string]string, values map[string]types.AttributeValue) int {
	n := len(aws.ToString(expr)) + itemBytes(values)
	for k, v := range names {
		n += len(k) + len(v)
	}
	return n
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}
