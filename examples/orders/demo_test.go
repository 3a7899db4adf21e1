package main

import (
	"context"
	"net/http"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/idemkit/idemkit/cassandra"
	"github.com/idemkit/idemkit/dynamo"
	"github.com/idemkit/idemkit/examples/internal/report"
	"github.com/idemkit/idemkit/internal/testenv"
)

// TestDemo plays every scenario on the embedded store (inside a synctest
// bubble: nothing in it waits on the clock, and a goroutine left behind
// would fail it), on each DynamoDB server (the DoTx scenarios, through the
// demo's own Wire) and on Cassandra (the fenced ledger), each on tables of
// its own, and requires every order written once.
func TestDemo(t *testing.T) {
	t.Run("memory", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) { play(t, NewMemoryBackend()) })
	})
	t.Run("dynamodb", func(t *testing.T) {
		t.Parallel()
		for _, srv := range testenv.DynamoDBServers(t) {
			t.Run(srv.Name, func(t *testing.T) {
				t.Parallel()
				if reason, lacks := srv.Lacks(testenv.CapTransactions); lacks {
					t.Skip(reason)
				}
				wire := NewWire(testenv.NewDynamoDBTransport())
				c := srv.Client(t, func(o *dynamodb.Options) { o.HTTPClient = &http.Client{Transport: wire} })
				table := testenv.UniqueName(t, "idem")
				testenv.DeleteTableOnCleanup(t, c, table)
				testenv.DeleteTableOnCleanup(t, c, table+"_orders")
				ctx := testCtx(t)
				if err := dynamo.CreateTable(ctx, c, table); err != nil {
					t.Fatal(err)
				}
				b, err := NewDynamoDBBackend(ctx, c, wire, table)
				if err != nil {
					t.Fatal(err)
				}
				play(t, b)
			})
		}
	})
	t.Run("cassandra", func(t *testing.T) {
		t.Parallel()
		session, ks := testenv.Cassandra(t)
		table := ks + ".idem"
		ctx := testCtx(t)
		if err := cassandra.CreateTable(ctx, session, table); err != nil {
			t.Fatal(err)
		}
		b, err := NewCassandraBackend(ctx, session, table)
		if err != nil {
			t.Fatal(err)
		}
		play(t, b)
	})
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// play runs the demo on b and checks its verdict, and that the scenarios
// happened as planned: how many calls ran fn and how many were replays.
func play(t *testing.T, b *Backend) {
	t.Helper()
	rep, err := Run(testCtx(t), b)
	if err != nil {
		t.Fatal(err)
	}
	out := report.Text(rep)
	if !rep.OK() {
		t.Fatalf("\n%s", out)
	}
	type counts struct{ scenarios, calls, runs, replays int }
	want := counts{2, 6, 3, 3} // the fenced ledger
	if b.Kind == "dynamodb" {
		want = counts{4, 11, 7, 4}
	}
	if got := (counts{len(rep.Scenarios), rep.Calls, rep.Runs, rep.Replays}); got != want {
		t.Errorf("scenarios, calls, runs, replays %v, want %v: the scenarios did not happen as planned\n%s", got, want, out)
	}
	t.Logf("\n%s", out)
}
