package idemkafka_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/idemkafka"
	"github.com/idemkit/idemkit/idem/memstore"
	"github.com/idemkit/idemkit/internal/testenv"
	"github.com/idemkit/idemkit/internal/torture"
)

// crashChildEnv carries a crashSpec, as JSON, to the child process of
// TestCrashBeforeCommit.
const crashChildEnv = "IDEM_KAFKA_CRASH_CHILD"

// crashSpec is what the child is told: where the topic and the store are,
// and the file its side effects go to.
type crashSpec struct {
	Brokers []string
	Topic   string
	Group   string
	Backend torture.Backend
	Effects string
}

// TestCrashBeforeCommit: a consumer in a child process (this test binary
// run again) applies events and is SIGKILLed after the side effects and
// before its commit: its connection to the broker kills the process when
// it is asked to write the first OffsetCommit request, so the request
// never leaves. The child appends each side effect to a file, which
// outlives it. A consumer started after it in the same group is delivered
// the child's records again (nothing was committed) and replays them: every
// event is applied once in all (with six more produced after the crash),
// the replays are exactly the child's events, and the lag drains to 0.
//
// The child runs on the stores a second process can reach: a fresh table
// of each DynamoDB server and of Cassandra. A memstore dies with its
// process, so on memstore the consumer that dies is in this process: its
// broker connection refuses to write its first OffsetCommit and ends its
// context there, and the restarted consumer shares its memstore.
func TestCrashBeforeCommit(t *testing.T) {
	if spec := os.Getenv(crashChildEnv); spec != "" {
		crashChild(t, spec)
		return
	}
	brokers := testenv.KafkaBrokers(t)
	t.Run("memory", func(t *testing.T) {
		crashBeforeCommit(t, brokers, memstore.New(), torture.Backend{Kind: "memory"})
	})
	torture.EachShared(t, func(t *testing.T, s idem.Store, b torture.Backend) {
		crashBeforeCommit(t, brokers, s, b)
	})
}

func crashBeforeCommit(t *testing.T, brokers []string, s idem.Store, b torture.Backend) {
	k := newKafkaTest(t, brokers, s)
	evs := events(9)
	k.produce(evs...)
	spec := crashSpec{Brokers: brokers, Topic: k.topic, Group: k.group, Backend: b, Effects: filepath.Join(t.TempDir(), "effects")}
	if b.Kind == "memory" {
		dieInProcess(k, spec.Effects)
	} else if !torture.RunKilled(t, "TestCrashBeforeCommit", crashChildEnv, spec) {
		t.Fatal("the child was not killed by SIGKILL")
	}
	byChild := torture.ReadLines(t, spec.Effects)
	if len(byChild) == 0 {
		t.Fatal("the consumer that died applied no event before it died")
	}
	if got := k.committed(0) + k.committed(1) + k.committed(2); got != -3 {
		t.Fatalf("the child committed (offsets sum %d), want no commit", got)
	}
	k.mu.Lock()
	for _, id := range byChild {
		k.applied[id]++
	}
	k.mu.Unlock()

	more := events(15)[len(evs):] // produced after the crash
	k.produce(more...)
	var replays atomic.Int32
	k.consume(k.consumer(), func(ctx context.Context, r *kgo.Record) error {
		k.apply(r)
		return nil
	}, idemkafka.WithOnReplay(func(context.Context, *kgo.Record, string) { replays.Add(1) }))
	evs = append(evs, more...)
	k.drained(ids(evs)...)
	// The replays come before the lag drains: each is a record to commit.
	if got := int(replays.Load()); got != len(byChild) {
		t.Errorf("%d replays, want %d (the child's events %v)", got, len(byChild), byChild)
	}
	t.Logf("the consumer that died (%s) applied %d events before its commit; the restarted consumer replayed %d and applied %d", b.Kind, len(byChild), replays.Load(), len(evs)-len(byChild))
}

// crashChild is the child's body: a consumer whose side effects go to the
// effects file and whose process dies when it first writes an
// OffsetCommit request.
func crashChild(t *testing.T, js string) {
	var spec crashSpec
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
	dial := func(ctx context.Context, network, host string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, host)
		if err != nil {
			return nil, err
		}
		return dieAtCommit{c}, nil
	}
	// A short session: the dead member leaves the group 6 s (the broker's
	// minimum) after its last heartbeat, and the next consumer joins.
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(spec.Brokers...), kgo.ConsumerGroup(spec.Group), kgo.ConsumeTopics(spec.Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.Dialer(dial),
		kgo.SessionTimeout(6 * time.Second), kgo.HeartbeatInterval(500 * time.Millisecond),
	}, idemkafka.ClientOpts()...)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 45*time.Second)
	defer cancel()
	err = idemkafka.Consume(ctx, cl, s, func(ctx context.Context, r *kgo.Record) error {
		_, err := f.Write(append(r.Value, '\n')) // the side effect
		return err
	}, idemkafka.WithLogger(quiet))
	t.Fatalf("the child was never killed (Consume: %v)", err)
}

// dieAtCommit is a broker connection that kills its process with SIGKILL
// when asked to write an OffsetCommit request (API key 8, after the
// request's 4-byte length), before a byte of it is sent.
type dieAtCommit struct{ net.Conn }

func (c dieAtCommit) Write(b []byte) (int, error) {
	if len(b) >= 6 && binary.BigEndian.Uint16(b[4:6]) == 8 {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	}
	return c.Conn.Write(b)
}

// dieInProcess runs a consumer on k's store whose broker connection
// refuses to write its first OffsetCommit (nothing of it is sent) and ends
// the consumer there, after its side effects (appended to the effects
// file, as the child's).
func dieInProcess(k *kafkaTest, effects string) {
	f, err := os.OpenFile(effects, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		k.t.Fatal(err)
	}
	defer f.Close()
	ctx, die := context.WithCancel(k.t.Context())
	defer die()
	dial := func(ctx context.Context, network, host string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, host)
		if err != nil {
			return nil, err
		}
		return refuseCommit{Conn: c, die: die}, nil
	}
	cl := k.consumer(kgo.Dialer(dial), kgo.RequestRetries(0))
	errc := make(chan error, 1)
	go func() {
		errc <- idemkafka.Consume(ctx, cl, k.store, func(ctx context.Context, r *kgo.Record) error {
			_, err := f.Write(append(r.Value, '\n'))
			return err
		}, idemkafka.WithLogger(quiet))
	}()
	await(k.t, ctx.Done(), "the consumer to reach its commit")
	if err := <-errc; err != nil {
		k.t.Fatalf("Consume: %v", err)
	}
	cl.Close()
}

// refuseCommit is a broker connection that fails a write of an
// OffsetCommit request without sending a byte of it, and calls die.
type refuseCommit struct {
	net.Conn
	die func()
}

func (c refuseCommit) Write(b []byte) (int, error) {
	if len(b) >= 6 && binary.BigEndian.Uint16(b[4:6]) == 8 {
		c.die()
		return 0, errors.New("the consumer died before its commit")
	}
	return c.Conn.Write(b)
}
