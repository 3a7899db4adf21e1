package testenv_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idemkit/idemkit/internal/testenv"
)

// TestKafkaSmoke is the smoke test of the testenv broker: a fresh topic (kadm), 10 records
// produced and acknowledged, consumed in a consumer group, committed, and the group's lag 0.
func TestKafkaSmoke(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()

	admCl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admCl.Close) // after the topic's deletion below: cleanups run last-in, first-out
	adm := kadm.NewClient(admCl)

	topic := testenv.UniqueName(t, "smoke")
	group := topic + "_g"
	const partitions, n = 3, 10
	resp, err := adm.CreateTopic(ctx, partitions, 1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("creating topic %s: %v", topic, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := adm.DeleteGroups(ctx, group); err != nil {
			t.Logf("deleting group %s: %v", group, err)
		}
		if _, err := adm.DeleteTopics(ctx, topic); err != nil {
			t.Errorf("deleting topic %s: %v", topic, err)
		}
	})

	prod, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = kgo.StringRecord(fmt.Sprintf("v%d", i))
		recs[i].Key = []byte(fmt.Sprintf("k%d", i))
	}
	if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("producing %d records: %v", n, err)
	}

	cons, err := kgo.NewClient(
		kgo.SeedBrokers(brokers...),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	seen := map[string]bool{}
	for len(seen) < n {
		fs := cons.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d records before the deadline: %v", len(seen), n, err)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			if want := "v" + string(r.Key[1:]); string(r.Value) != want {
				t.Errorf("record %s = %q, want %q", r.Key, r.Value, want)
			}
			seen[string(r.Key)] = true
		})
		if err := cons.CommitUncommittedOffsets(ctx); err != nil {
			t.Fatalf("committing: %v", err)
		}
	}
	if len(seen) != n {
		t.Fatalf("consumed %d distinct records, want %d", len(seen), n)
	}

	lags, err := adm.Lag(ctx, group)
	if err != nil {
		t.Fatalf("group lag: %v", err)
	}
	l, ok := lags[group]
	if !ok || l.Error() != nil {
		t.Fatalf("group %s lag: ok=%v err=%v", group, ok, l.Error())
	}
	if total := l.Lag.Total(); total != 0 {
		t.Fatalf("group %s lag = %d after committing every record, want 0 (%v)", group, total, l.Lag.Sorted())
	}
	t.Logf("topic %s: %d records produced, consumed and committed by group %s, lag 0", topic, n, group)
}
