// Package idemotel reports idem's events (idem.WithEvents) as OpenTelemetry
// metrics and span events. It uses the OpenTelemetry API only: bring your
// own SDK and exporters, and pass its providers to New.
//
//	rec, err := idemotel.New(meterProvider, tracerProvider, idemotel.WithBackend("dynamodb"))
//	...
//	v, err := idem.Do(ctx, store, key, fn, idem.WithEvents(rec.Events))
//
// # Metrics
//
//   - idem.events, a counter ({event}): one per event, with the attributes
//     idem.event (the kind: claimed, takeover, replayed, in_progress,
//     waited, mismatch, extended, lease_lost, completed,
//     failed_permanently, result_not_stored, released, unknown_settled,
//     unknown_unsettled, conflict), idem.op (Do, Once, Claim, Update, Add,
//     saga.Run, idemhttp, ...), idem.outcome (ok, or the class of the
//     event's error: lease_lost, unknown_outcome, mismatch, in_progress,
//     conflict, invalid, permanent, canceled, deadline_exceeded, error)
//     and, with WithBackend, idem.backend.
//   - idem.duration, a histogram (s) with the same attributes: how long
//     each step took (the claim, a wait, the hold of the key up to its
//     completion or release, an extension's write).
//
// Every attribute is bounded: the key is never one of them.
//
// # Traces
//
// Events carry the caller's context, so Events adds a span event
// ("idem.replayed", "idem.takeover", "idem.waited", ...; every kind but
// the heartbeat's extensions) to the span in it, if that span records. Do
// wraps idem.Do in a span of its own ("idem.Do", its error recorded), so
// fn's own spans are its children; Start starts such a span for other
// calls (Once, Claim, a saga). With WithKeyHash, the span gets the
// attribute idem.key_hash, a keyed hash of the full key, to find one
// key's calls without exporting the key itself.
package idemotel
