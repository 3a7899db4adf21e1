// Package dynamo is an idem.Store over Amazon DynamoDB conditional writes,
// with aws-sdk-go-v2. Everything idemkit builds on a Store (idem.Do, claims
// with leases, Update, Once, Counter) works on it unchanged.
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
// kernel is linearizable per key, lost responses included (see below).
// Attribute names are taken whole: a name with a dot, such as "idem.key",
// is one attribute, never a document path.
//
// PutIfAbsent creates an item at a fresh version, kernel.FreshVersion: the
// process's clock in microseconds (not WithClock's), above every version
// this process returned before.
// CompareAndSwap adds exactly one and Upsert keeps the caller's version. A
// version therefore never comes back for a key across a delete and a
// re-create, or an expiry, within the bound kernel.FreshVersion states.
//
// # Lost responses: settled by proof, never by a resend
//
// A write whose response is lost (a reset connection, a 5xx, a timeout or
// a cancelled context while the request is out, a connection cut after the
// request was written) may or may not have been applied. The SDK's retryer
// would send it again, and a resend is not harmless: between the two the
// key can be deleted and re-created, and the resend then applies a second
// time, or deletes an item it never targeted, and reports success. So the
// Store adds a middleware to every write that lets the retryer resend only
// after an attempt that provably applied nothing:
//
//   - DynamoDB answered with a 4xx: throttling, validation, a missing
//     table;
//   - the connection never opened: refused, a name that does not resolve, a
//     failed TLS handshake;
//   - writing the request failed on the socket, so the server never had all
//     of it (a DynamoDB request cut short is JSON that does not parse).
//
// After any other failure the SDK sends nothing more for the call, and the
// Store settles it. PutIfAbsent, CompareAndSwap and Upsert store a fresh
// random write token with the item (attribute "tok") and read the key once,
// strongly consistent: the item carries this call's token, so the write was
// applied and the call succeeds with it; or it does not, and the call
// returns an error matching idem.ErrUnknownOutcome, naming the key. An absent key or another writer's item proves
// nothing: our write may have been applied and then replaced or deleted.
// Another writer's identical value is never taken for ours, and an Upsert
// overtaken by a higher version is unknown, not "not applied". A
// CompareAndDelete leaves nothing to find, so it returns the unknown
// outcome without a read; so does every write whose context ended before
// the read. A refusal (a *idem.ConflictError, or Upsert's applied == false)
// is always DynamoDB's answer, after attempts that applied nothing: it is
// the outcome. Retrying an unknown outcome is safe, and idem's algorithms
// settle it through their own claim tokens.
//
// The middleware marks the error of an attempt that may have been applied
// as not retryable (a RetryableError method returning false, which the
// SDK's standard and adaptive retryers honour) and refuses to send any
// further attempt of that call itself. A Client that does not run the SDK's
// middleware stack must not resend writes on its own.
//
// The SDK closes a request's body once the response has arrived, and
// net/http may still be reading it then; the SDK's body then fails
// net/http's read, which closes the connection under the response and
// loses it (aws/aws-sdk-go-v2#2737, seen on every loaded machine). The
// Store hands net/http a body that simply ends instead.
//
// # Idle connections
//
// A request sent on a kept-alive connection at the moment the server closes
// it for being idle is written but never read, and its outcome is unknown
// to the client. Let the client close idle connections first: set the HTTP
// transport's IdleConnTimeout below the endpoint's keep-alive timeout. The
// SDK's default is 90 seconds; ministack (hypercorn) closes connections
// idle for 75 seconds, hypercorn's own default is 5, moto closes each
// connection after its response. A few seconds costs a new connection (and
// TLS handshake) per idle gap:
//
//	client := dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) {
//		o.HTTPClient = awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
//			tr.IdleConnTimeout = 4 * time.Second
//		})
//	})
//
// # Fencing your own items
//
// A claim's fence (idem.Lease.Fence, from idem.LeaseFrom inside Do's fn)
// strictly increases from claim to claim of a key: a takeover, a claim
// after a release, after a delete or an expiry. Write it into your own
// items with the same conditional write, and a worker that stalled past
// its lease cannot overwrite what a later claim wrote: condition the write
// on FenceCondition(attr, fence) (attr absent, or not above the fence),
// and set attr with FenceUpdate for an UpdateItem or FenceValue in the
// item for a PutItem. "Not above" lets one claim write its item more than
// once and resend a write after a lost response. With
// ReturnValuesOnConditionCheckFailure=ALL_OLD, Fenced tells a refusal by
// the fence (a later claim has written the item, at the fence it returns)
// from a refusal by the caller's own conditions combined with it:
//
//	fence := lease.Fence()
//	ex, err := expression.NewBuilder().
//		WithCondition(dynamo.FenceCondition("fence", fence)).
//		WithUpdate(dynamo.FenceUpdate(expression.Set(expression.Name("status"), expression.Value("shipped")), "fence", fence)).
//		Build()
//	// UpdateItem with ex; then dynamo.Fenced(err, "fence", fence)
//
// The fence orders writes, it does not undo them: a stale worker's write
// that lands before the new owner's first write stands until that write
// replaces it; once a later claim has written the item, no earlier claim's
// write lands. It protects only items every claim of the key writes
// through it. DoTx does better where it applies: a stale worker's writes
// never land at all.
//
// # Your own writes with the result: DoTx
//
// idem.Do guarantees the answer once; the work fn does to other tables is
// fn's business. DoTx closes that gap on DynamoDB: fn queues its own writes
// on a *Tx (Put, Update, Delete, ConditionCheck, the SDK's types, any table
// of the client) and DoTx commits them in one TransactWriteItems with the
// write that completes the claim, conditioned as CompareAndSwap is on the
// claim's version:
//
//	order, err := dynamo.DoTx(ctx, store, key, func(ctx context.Context, tx *dynamo.Tx) (Order, error) {
//		o := newOrder(req)
//		return o, tx.Put(types.Put{TableName: aws.String("orders"), Item: o.item()})
//	})
//
// What it guarantees, and how each case is tested (dynamo/tx_test.go, on
// moto and ministack):
//
//   - Once: fn's writes land together with the stored result or not at
//     all, so a duplicate (a replay: 1 round trip, no write) never finds
//     the result without the writes, nor writes twice. A first execution
//     is 2 round trips: the claim and the transaction.
//   - Fenced: a worker whose claim was taken over (its lease passed while
//     it stalled) commits nothing; it gets fn's result with an error
//     matching idem.ErrLeaseLost, and the new owner's writes stand.
//   - Nothing half-applies: a write whose condition fails cancels the whole
//     transaction; DoTx releases the key (a retry runs fn again) and
//     returns a *TxConditionError naming the write, with the item as the
//     condition found it. Other cancellations (a conflict with a
//     concurrent transaction, throttling) are sent again up to three times,
//     then give a *TxError; the key is released.
//   - Limits before sending: Tx refuses a write past MaxTxItems-1 (DoTx's
//     own completion is the hundredth) or past MaxTxBytes (4 MB); a
//     transaction that passes 4 MB only with the result stores a permanent
//     error (idem.CodeResultNotStored), as a result too large would.
//   - Lost responses: settled as other writes are, by one read that finds
//     the record's token or not; if not, the transaction is sent again and
//     its version condition lets at most one copy commit (a copy that finds
//     the record its predecessor committed succeeds). Each request carries a
//     ClientRequestToken too: DynamoDB (and ministack) answer a resend of the
//     same request with success without applying it again; moto ignores the
//     token, and its resend is refused on the version, which proves the
//     first copy committed.
//
// What it does not do: fn's reads are not part of the transaction (check
// what fn read with a ConditionCheck), and a permanent error (idem.Permanent)
// is stored without fn's writes. The Store's client must implement
// TxClient (*dynamodb.Client does). DynamoDB transactions cost twice the
// capacity of plain writes.
//
// # Limits
//
// Keys are at most MaxPartitionKeyBytes (2048) bytes, or MaxSortKeyBytes
// (1024) with WithSortKey. An item is at most MaxItemBytes (409,600 bytes),
// attribute names included; the Store counts 21 bytes for each number (the
// most DynamoDB can take) and 16 for the write token, so with the default
// names the largest value for a key of k bytes is 409,528 - k bytes. A
// larger one is refused with idem.ErrInvalid before anything is sent.
//
// idem.Do's record is a header of about 60 bytes followed by the encoded
// result as it is: with the default JSON codec a []byte result (base64)
// takes about 4/3 of its size, a string of ASCII letters its size plus 2.
// Measured with keys of 16 bytes (TestLargestResult), the largest result
// Do stores is 307,089 bytes for a []byte and 409,455 for such a string
// (on moto, which caps items at 405,000 bytes: 303,654 and 404,873); each
// byte more of key takes about one byte off a string, 3/4 off a []byte. Do
// stores a larger result's key as a permanent answer with code
// idem.CodeResultNotStored, so fn does not run again for it.
//
// # Failure modes
//
//   - Conflict: errors.Is(err, idem.ErrConflict); errors.As gives the
//     *idem.ConflictError and, further down the chain, the SDK's
//     *types.ConditionalCheckFailedException.
//   - Bad input (empty or non-UTF-8 key, a key or item over the limits
//     above, or a bad version): an error matching idem.ErrInvalid,
//     naming the key and the limit. Nothing is sent.
//   - Throttling after the SDK's retries: ErrThrottled. A missing table:
//     ErrTableNotFound. A request DynamoDB rejects (typically a table whose
//     key schema does not match the options): ErrValidation. All three wrap
//     the SDK's error and say that nothing was written.
//   - A refused connection or a request never fully written, after the
//     SDK's retries: the SDK's error, wrapping the *net.OpError. Nothing
//     was written.
//   - A write that may have been applied and whose token the read did not
//     find, or a CompareAndDelete that may have been applied:
//     an error matching idem.ErrUnknownOutcome, naming the key and
//     wrapping the SDK's error.
//   - A stored item this package cannot decode: an error matching
//     idem.ErrCorrupt.
//
// # Table schema
//
// CreateTable makes the table; dynamo/README.md has the same as
// CloudFormation and Terraform. Attribute names are options; the defaults are:
//
//	pk   String  partition key: the idem key (with WithSortKey: a static
//	             value, and the idem key goes in the sort key)
//	val  Binary  the value; omitted when empty
//	ver  Number  the version
//	exp  Number  expiry in epoch seconds, rounded up; the table's time-to-live
//	             attribute; omitted when the item never expires
//	tok  Binary  16 random bytes written by each write, by which the Store
//	             recognises its own write after a lost response
//
// Billing can be on-demand or provisioned. A PutItem or DeleteItem costs one
// write unit per started KB of the larger of the old and new item, whether
// its condition holds or not; a strongly consistent Get costs one read unit
// per started 4 KB (half with WithConsistentRead(false)). A first idem.Do is
// 2 writes, a duplicate is 1 refused write and no read. Settling a lost
// response costs one strongly consistent read.
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
//
// # Readiness
//
// New sends nothing, so a missing table would show only at the first
// request. Call Store.Check at startup or from a readiness probe: one
// DescribeTable and one DescribeTimeToLive (IAM dynamodb:DescribeTable and
// dynamodb:DescribeTimeToLive) confirm that the table is active, that its
// key schema is the one the options describe, and that time to live is on
// the expiry attribute. Its errors match ErrTableNotFound or
// ErrSchemaMismatch, name the table, region and endpoint, and say what to
// run (CreateTable with the Store's options). For unit tests on
// memstore, memstore.WithLimits(memstore.DynamoDBLimits) refuses the keys
// and items this Store refuses.
package dynamo
