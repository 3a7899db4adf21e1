package idemsqs_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/idemsqs"
	"github.com/idemkit/idemkit/internal/testenv"
	"github.com/idemkit/idemkit/internal/torture"
)

// killChildEnv carries a killSpec, as JSON, to the child process of
// TestKilledBeforeDelete.
const killChildEnv = "IDEM_SQS_KILL_CHILD"

// killSpec is what the child is told: the queue, the store, and the file
// its side effects go to.
type killSpec struct {
	SQS     testenv.SQSServer
	Queue   string
	Backend torture.Backend
	Effects string
}

// TestKilledBeforeDelete: a consumer in a child process (this test binary
// run again) applies events and is SIGKILLed after the first outcome is
// stored and before its delete: its HTTP transport kills the process when
// it is handed the first DeleteMessage request, so the request never
// leaves. The child appends each side effect to a file, which outlives it.
// After the visibility timeout the queue delivers the child's messages
// again, and a consumer in this process replays them: every event is
// applied once in all (with events sent after the kill), the one replay is
// the event whose delete was cut, and the queue drains.
//
// It runs on the stores a second process can reach: a fresh table of each
// DynamoDB server and of Cassandra.
func TestKilledBeforeDelete(t *testing.T) {
	if spec := os.Getenv(killChildEnv); spec != "" {
		killChild(t, spec)
		return
	}
	for _, srv := range testenv.SQSServers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			torture.EachShared(t, func(t *testing.T, s idem.Store, b torture.Backend) {
				c := srv.Client(t)
				url := testenv.Queue(t, c, map[string]string{"VisibilityTimeout": "1"})
				killedBeforeDelete(t, &queueTest{t: t, client: c, url: url, store: s, applied: map[string]int{}},
					killSpec{SQS: srv, Queue: url, Backend: b, Effects: filepath.Join(t.TempDir(), "effects")})
			})
		})
	}
}

func killedBeforeDelete(t *testing.T, q *queueTest, spec killSpec) {
	before := []string{"e1", "e2", "e3", "e4"}
	q.send(before...)
	if !torture.RunKilled(t, "TestKilledBeforeDelete", killChildEnv, spec) {
		t.Fatal("the child was not killed by SIGKILL")
	}
	byChild := torture.ReadLines(t, spec.Effects)
	// A batch is handled in order, each message deleted after its outcome
	// is stored: the first delete comes right after the first event.
	if len(byChild) != 1 {
		t.Fatalf("the child applied %v before it was killed, want one event", byChild)
	}
	q.mu.Lock()
	for _, id := range byChild {
		q.applied[id]++
	}
	q.mu.Unlock()

	after := []string{"e5", "e6"}
	q.send(after...)
	var replays atomic.Int32
	q.consume(q.client, func(ctx context.Context, m types.Message) error {
		q.apply(m)
		return nil
	}, idemsqs.WithKey(idemsqs.Attribute("event-id")),
		idemsqs.WithOnReplay(func(context.Context, string) { replays.Add(1) }))
	all := append(before, after...)
	q.waitFor(20*time.Second, "every event applied", func() bool { return q.total() >= len(all) })
	q.drained()
	q.checkOnce(all...)
	if n := replays.Load(); n != 1 {
		t.Errorf("%d replays, want 1: the message whose delete was cut comes back and is skipped", n)
	}
	t.Logf("the child applied %v and was killed at its first delete; the next consumer replayed %d and applied %d", byChild, replays.Load(), len(all)-len(byChild))
}

// killChild is the child's body: a consumer whose side effects go to the
// effects file and whose process dies when it first sends a DeleteMessage.
func killChild(t *testing.T, js string) {
	var spec killSpec
	if err := json.Unmarshal([]byte(js), &spec); err != nil {
		t.Fatal(err)
	}
	s, err := spec.Backend.Open(t)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(spec.Effects, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	c := spec.SQS.Client(t, func(o *sqs.Options) {
		o.HTTPClient = &http.Client{Transport: dieAtDelete{testenv.NewDynamoDBTransport()}}
	})
	ctx, cancel := context.WithTimeout(t.Context(), 45*time.Second)
	defer cancel()
	err = idemsqs.Consume(ctx, c, spec.Queue, s, func(ctx context.Context, m types.Message) error {
		id := aws.ToString(m.MessageAttributes["event-id"].StringValue)
		if _, err := f.WriteString(id + "\n"); err != nil { // the side effect
			return err
		}
		return f.Sync()
	}, idemsqs.WithKey(idemsqs.Attribute("event-id")), idemsqs.WithVisibility(visibility),
		idemsqs.WithWaitTime(0), idemsqs.WithLogger(quiet))
	t.Fatalf("the child was never killed (Consume: %v)", err)
}

// dieAtDelete is a transport that kills its process with SIGKILL when it
// is handed a DeleteMessage request, before a byte of it is sent.
type dieAtDelete struct{ next http.RoundTripper }

func (d dieAtDelete) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Header.Get("X-Amz-Target") == "AmazonSQS.DeleteMessage" {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	}
	return d.next.RoundTrip(r)
}
