// Package idemlambda makes AWS Lambda handlers (github.com/aws/aws-lambda-go)
// safe to invoke twice: Lambda retries asynchronous invocations, SQS
// delivers messages at least once, and clients retry API calls that timed
// out after the work was done.
//
//   - Wrap runs any func(ctx, In) (Out, error) handler at most once per
//     key, a function of the event, and replays its result to duplicates.
//   - SQS runs a per-record handler at most once per message, and returns
//     partial batch failures (events.SQSEventResponse) for the records that
//     failed or are being handled by another invocation.
//   - APIGateway gives API Gateway proxy handlers the Idempotency-Key
//     semantics of idemhttp: replay, 409 while in flight, 422 for a reused
//     key, 400 for a malformed one. ErrorResponse maps idem's errors to
//     those responses for handlers wrapped with Wrap.
//
// All three keep their records in any idem.Store: dynamo.New for DynamoDB
// in production, memstore.New in unit tests.
//
//	store, err := dynamo.New(dynamodb.NewFromConfig(cfg), "idem")
//	handler, err := idemlambda.WrapValidated(store,
//		func(e OrderEvent) (string, error) { return e.OrderID, nil },
//		func(e OrderEvent) (any, error) { return e.Items, nil }, // same key, other items: ErrMismatch
//		processOrder,
//		idemlambda.WithKeyPrefix("orders/process/"))
//	lambda.Start(handler)
//
// # Leases and timeouts
//
// By default a claim's lease runs until the invocation's deadline (the
// context's), and is not extended: no duplicate can start while the first
// invocation may still be running, and a retry after a timeout or a crash
// takes the key over at once. That is Powertools' behaviour, and the
// opposite of what some users want (a timed-out withdrawal must not re-run
// by itself): WithLease sets a fixed lease instead, extended in the
// background while the handler runs, so only a dead invocation loses its
// key. Either way, a retry that takes a key over runs the handler again:
// make its side effects idempotent where that would hurt, with the key
// passed on (idem.LeaseFrom(ctx).Key()).
//
// # Failures
//
// An error from the handler releases the key, so the retry runs it again;
// a permanent error (idem.Permanent) is stored and replayed instead. A
// duplicate that arrives while the first invocation runs gets
// idem.ErrInProgress (Wrap), a 409 (APIGateway) or a batch item failure
// (SQS). The store failing before the handler runs fails the invocation (a
// 503 for APIGateway) without running it. If the invocation's context ends
// while its key is being claimed, the claim is released again and the
// handler does not run, so the retry runs it at once.
package idemlambda
