// Package dynamo is an idem.Store over Amazon DynamoDB conditional writes,
// with aws-sdk-go-v2. Everything idemkit builds on a Store (idem.Do, claims
// with leases, Update, Once, Add) works on it unchanged.
//
// # Guarantees
//
// Each kernel operation is one request, a conditional write built with
// feature/dynamodb/expression:
//
//	Get               GetItem (strongly consistent by default)
//	PutIfAbsent       PutItem   if attribute_not_exists(pk) OR exp <= :now
//	CompareAndSwap    PutItem   if ver = :v AND (attribute_not_exists(exp) OR exp > :now)
//	CompareAndDelete  DeleteItem if ver = :v AND (attribute_not_exists(exp) OR exp > :now)
//	Upsert            PutItem   if attribute_not_exists(pk) OR exp <= :now OR ver < :v
//
// An expired item is absent inside the condition itself, whether or not
// DynamoDB's time to live has deleted it yet (that takes up to days); Get
// filters expired items out too. Every write asks for
// ReturnValuesOnConditionCheckFailure=ALL_OLD, so a refused write returns a
// *idem.ConflictError carrying the current item (Exists false when the key
// is absent or expired) at the cost of that one request, never a second
// read. Conditional writes on one item are serialised by DynamoDB, so the
// kernel is linearizable per key.
//
// # Lost responses and own writes
//
// The SDK's retryer resends a request whose response was lost: a reset
// connection, a 5xx, a timeout, or aws-sdk-go-v2's own "use of closed
// network connection" on a kept-alive connection (aws/aws-sdk-go-v2#1825,
// #2737), which the SDK has retried since 2025. The first attempt may have
// been applied, so the resend's condition fails because of it. Every write
// stores a random write token (attribute "tok"); when a refusal's ALL_OLD
// item carries the token of this very call, it is the call's own first
// attempt and the call succeeds. Another writer's identical value is never
// mistaken for our own.
//
// A middleware on each request watches the retry loop. When an attempt may
// have been applied (no answer, or a 5xx) and the resend is refused by an
// item that is not ours, the first attempt may have been applied and then
// overtaken, so the call returns an error matching idem.ErrUnknownOutcome
// instead of a conflict. CompareAndDelete leaves nothing behind to
// recognise: a resend that finds the key absent cannot tell our deletion
// from another, so it too is an unknown outcome. Retrying such a call is
// safe, and idem's algorithms settle unknown outcomes by reading the claim
// token. An attempt refused with a 4xx (throttling, validation) or a
// connection that never opened proves nothing was applied and does not make
// a later refusal ambiguous. Upsert is the exception: a monotonic write
// overtaken by a higher version has the same outcome as one never applied,
// so it returns the current item with applied == false.
//
// # Failure modes
//
//   - Conflict: errors.Is(err, idem.ErrConflict); errors.As gives the
//     *idem.ConflictError and, further down the chain, the SDK's
//     *types.ConditionalCheckFailedException.
//   - Bad input (empty or non-UTF-8 key, a key over MaxPartitionKeyBytes or,
//     with WithSortKey, MaxSortKeyBytes, an item over MaxItemBytes counting
//     attribute names, or a bad version): *idem.InputError matching
//     idem.ErrInvalid, naming the key and the limit. Nothing is sent.
//   - Throttling after the SDK's retries: ErrThrottled. A missing table:
//     ErrTableNotFound. A request DynamoDB rejects (typically a table whose
//     key schema does not match the options): ErrValidation. All three wrap
//     the SDK's error and say that nothing was written.
//   - A write whose outcome is unknown (every attempt lost, or the ambiguous
//     refusals above): *idem.UnknownOutcomeError matching
//     idem.ErrUnknownOutcome, wrapping the SDK's error.
//   - A stored item this package cannot decode: *idem.CorruptError.
//
// # Table schema
//
// CreateTable makes the table; the README has the same as CloudFormation
// and Terraform. Attribute names are options; the defaults are:
//
//	pk   String  partition key: the idem key (with WithSortKey: a static
//	             value, and the idem key goes in the sort key)
//	val  Binary  the value; omitted when empty
//	ver  Number  the version
//	exp  Number  expiry in epoch seconds, rounded up; the table's time-to-live
//	             attribute; omitted when the item never expires
//	tok  Binary  16 random bytes written by each write, for own-write
//	             recognition
//
// Billing can be on-demand or provisioned. A PutItem or DeleteItem costs one
// write unit per started KB of the larger of the old and new item, whether
// its condition holds or not; a strongly consistent Get costs one read unit
// per started 4 KB (half with WithConsistentRead(false)). A first idem.Do is
// 2 writes, a duplicate is 1 refused write and no read.
//
// The IAM actions needed are dynamodb:GetItem, dynamodb:PutItem and
// dynamodb:DeleteItem on the table; CreateTable also needs
// dynamodb:CreateTable, dynamodb:DescribeTable, dynamodb:DescribeTimeToLive
// and dynamodb:UpdateTimeToLive.
//
// # Clocks
//
// Expiry is judged by the clock of the client making each request (see
// WithClock): clients whose clocks disagree see an item expire at moments
// that differ by their skew. Keep clocks synchronised (as on AWS compute) and
// leases long compared with the skew.
package dynamo
