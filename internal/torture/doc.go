// Package torture runs idem's algorithms (Do, Once, Counter.Add) under crashes,
// lost responses and duplicate deliveries on a real backend, records what
// every caller and every execution of fn saw, and checks the records
// against the guarantees.
//
// # The run
//
// A Plan fixes a workload from a seed: Do keys and Once events, each
// delivered Plan.Submissions times (two deliveries close together, dealt
// to different processes so they are in flight at once, the others
// later), and counters whose operations are each delivered
// Plan.AddDeliver times. The chaos phase submits it from Plan.Children
// child processes (the test binary run again as TestTortureChild), each
// with Plan.Workers concurrent callers, building its own Store on the same
// table or keyspace:
//
//   - fn fails at random (the key is released; a later delivery runs it
//     again), runs for about a lease now and then (the heartbeat must keep
//     the key), and kills its own process with SIGKILL, either mid-work or
//     after finishing and before returning (the window between fn and the
//     stored result);
//   - the parent SIGKILLs a random child at seeded random intervals and
//     starts a new generation of every slot that did not finish; the new
//     generation submits what its predecessors left unanswered, including
//     the calls the kill cut (duplicate deliveries);
//   - children reach the server through a fault proxy
//     (idem/idemtest/faultproxy) that drops responses, cuts connections,
//     and holds requests or responses for longer than the client's timeout
//     (so a write may land after its caller gave up on it); on the
//     three-node cluster, where children connect to the nodes directly, a
//     nemesis kills a node and starts it again;
//   - leases are short (two seconds, a heartbeat every 400 ms) so that
//     takeovers after crashes happen within the run.
//
// Then, once every lease of a dead process has passed, the recovery pass
// delivers every key, event and operation once more, without any fault,
// and reads the counters' totals: the end state must be exact.
//
// On memstore, whose data cannot outlive its process, the chaos phase runs
// in process: a crash ends the call's goroutine (runtime.Goexit) instead
// of its process, so neither Do's completion nor its release runs and the
// lease passes, as after a SIGKILL; there is no proxy and no kill.
//
// # The evidence
//
// Each process appends records to a log file of its own with one write(2)
// per record (O_APPEND, unbuffered), so what a process wrote before a
// SIGKILL survives it: fn started (key, process, nonce, and the lease's
// attempt, takeover flag and deadline), fn finished ok (its result: the
// process and the nonce, so no two executions ever produce the same
// result) or failed, and each call's answer (result or error kind). Check
// reads them all; its doc comment defines double executions, split
// answers, lost completions, stuck keys and the counter checks precisely.
//
// # Running it
//
//	go test -race ./internal/torture/   # the CI size, every backend found
//	IDEM_TORTURE_SCALE=full go test -run 'TestTorture(Memstore|DynamoDB|Cassandra)$' -v -timeout 60m ./internal/torture/
//
// IDEM_TORTURE_SEED replays a run's workload, kill schedule and fault
// choices (the timing of the processes still varies). IDEM_TORTURE_KEYS
// sets the number of Do keys, IDEM_TORTURE_FAULTS multiplies every fault
// probability (a harsher run), and IDEM_TORTURE_KEEP keeps the logs of a
// passing run too (a failing one always keeps them and says where). Each
// run prints a Markdown row of figures on stdout, prefixed "torture: ",
// and the full figures with t.Log.
package torture
