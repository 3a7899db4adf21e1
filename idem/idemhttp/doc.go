// Package idemhttp is net/http middleware for the Idempotency-Key request
// header (IETF httpapi draft "The Idempotency-Key HTTP Header Field"): a
// client that retries a POST after a timeout gets the first answer again
// instead of a second payment, order or booking.
//
//	store, _ := dynamo.New(client, "idem")           // or cassandra.New, memstore.New
//	mux.Handle("POST /orders", idemhttp.Middleware(store)(createOrder))
//
// # What happens to a request
//
// Only POST and PATCH are affected by default (WithMethods). A request
// without the header passes through untouched, unless WithRequired makes
// the key mandatory: then it gets 400. Otherwise:
//
//   - The key is validated (ParseKey): empty, longer than 255 bytes
//     (WithMaxKeyLength), badly quoted or containing control or delimiter
//     characters gets 400; so does a request with two key headers.
//   - The body is read, at most 1 MiB (WithMaxBodyBytes); a larger body
//     gets 413 and the handler does not run.
//   - The key is scoped to the caller (WithScope; by default a hash of the
//     Authorization header; a request without one shares the empty scope,
//     reported as event.Unscoped, or refused with 401 with
//     WithScopeRequired) and claimed in the store with a fingerprint of the
//     request (WithFingerprint; by default method, path, query and body,
//     a JSON body by its canonical form).
//   - First request: the handler runs with the body restored. Its response
//     is buffered, stored (status, the headers KeepHeader selects, body)
//     and only then sent, so a client that saw the answer always gets that
//     same answer on a retry. While the handler runs, the claim's lease is
//     extended in the background; if it is lost anyway, the request's
//     context is cancelled with a cause matching idem.ErrLeaseLost.
//   - Retry of a completed request, same fingerprint: the stored response,
//     byte for byte, with "Idempotent-Replayed: true". The handler does not
//     run.
//   - Same key, different request: 422 Unprocessable Content.
//   - Retry while the first request still runs: 409 Conflict with
//     Retry-After, or with WithWait, the first request's response once it
//     is ready.
//   - A 5xx or 429 response (WithRelease), or a panic, releases the key:
//     the response goes to the client unchanged and a retry runs the
//     handler again. Every other response, 4xx included, is the final
//     answer for the key for 24 hours (WithRetention) after completion.
//   - The store failing or timing out: 503 with Retry-After, and the
//     handler does not run.
//   - A client that hangs up while its key is being claimed: the claim is
//     released again (idem.Claim) and the handler does not run, so the
//     client's retry runs it at once instead of getting 409 for a lease.
//
// Every error the middleware writes itself is an RFC 9457
// application/problem+json document (Problem) whose code member says what
// happened; WithProblemHandler replaces the writer.
//
// # Costs and failure modes
//
// A first request costs two conditional writes (claim, complete) plus one
// per lease extension; a replay costs one. If the server dies while the
// handler runs, the key stays claimed until its lease (30s, WithLease)
// passes; then a retry takes it over and the handler runs again, so the
// handler's own side effects should be idempotent where a second run would
// hurt (pass the key on to your payment provider). If the response cannot
// be stored after the handler ran, the client still gets it and the
// failure is logged (WithLogger).
//
// Responses larger than 256 KiB (WithMaxResponseBytes) are streamed to
// the client and stored without their body: a retry gets the status and
// headers, an empty body and "Idempotent-Body-Omitted: true", never a
// second execution.
package idemhttp
