package dynamo_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/idemkit/idemkit/dynamo"
	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/memstore"
	"github.com/idemkit/idemkit/internal/testenv"
)

// sink is a Client that takes every request and answers as if the key were
// absent: a call that reaches it is one the Store did not refuse.
type sink struct{}

func (sink) GetItem(context.Context, *dynamodb.GetItemInput, ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	return &dynamodb.GetItemOutput{}, nil
}

func (sink) PutItem(context.Context, *dynamodb.PutItemInput, ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	return &dynamodb.PutItemOutput{}, nil
}

func (sink) DeleteItem(context.Context, *dynamodb.DeleteItemInput, ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error) {
	return &dynamodb.DeleteItemOutput{}, nil
}

// largestValue returns the largest value PutIfAbsent of key accepts on a
// fresh store from newStore, by bisection, and checks that one byte more
// is refused with idem.ErrInvalid.
func largestValue(t *testing.T, newStore func() idem.Store, key string) int {
	t.Helper()
	accepts := func(n int) bool {
		_, err := newStore().PutIfAbsent(context.Background(), key, make([]byte, n), time.Minute)
		if err != nil && !errors.Is(err, idem.ErrInvalid) {
			t.Fatalf("PutIfAbsent of a %d-byte value: %v", n, err)
		}
		return err == nil
	}
	lo, hi := 0, dynamo.MaxItemBytes+1
	if !accepts(lo) || accepts(hi) {
		t.Fatalf("key of %d bytes: an empty value refused or a %d-byte one accepted", len(key), hi)
	}
	for hi-lo > 1 {
		if mid := (lo + hi) / 2; accepts(mid) {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo
}

// TestLimitsMatchMemstore: memstore.DynamoDBLimits, copied into memstore
// (which cannot import dynamo), refuse exactly what a dynamo.Store with the
// default options refuses: the largest key and value one takes the other
// takes, and one byte more is refused by both.
func TestLimitsMatchMemstore(t *testing.T) {
	l := memstore.DynamoDBLimits
	if l.MaxKeyBytes != dynamo.MaxPartitionKeyBytes || l.MaxItemBytes != dynamo.MaxItemBytes || l.MaxValueBytes != 0 || l.MaxTTL != 0 {
		t.Errorf("memstore.DynamoDBLimits = %+v, want MaxKeyBytes %d, MaxItemBytes %d and no value or ttl limit",
			l, dynamo.MaxPartitionKeyBytes, dynamo.MaxItemBytes)
	}
	d, err := dynamo.New(sink{}, "t")
	if err != nil {
		t.Fatal(err)
	}
	newDynamo := func() idem.Store { return d }
	newMem := func() idem.Store { return memstore.New(memstore.WithLimits(l)) }
	ctx := context.Background()

	t.Run("key", func(t *testing.T) {
		for _, tc := range []struct {
			name    string
			key     string
			refused bool
		}{
			{"largest", strings.Repeat("k", dynamo.MaxPartitionKeyBytes), false},
			{"one byte more", strings.Repeat("k", dynamo.MaxPartitionKeyBytes+1), true},
			{"largest, non-ASCII", strings.Repeat("ж", dynamo.MaxPartitionKeyBytes/2), false},
			{"one byte more, non-ASCII", "k" + strings.Repeat("ж", dynamo.MaxPartitionKeyBytes/2), true},
		} {
			for name, s := range map[string]idem.Store{"dynamo": d, "memstore": newMem()} {
				_, gerr := s.Get(ctx, tc.key)
				_, perr := s.PutIfAbsent(ctx, tc.key, nil, time.Minute)
				derr := s.CompareAndDelete(ctx, tc.key, 1)
				for op, err := range map[string]error{"Get": gerr, "PutIfAbsent": perr, "CompareAndDelete": derr} {
					if got := errors.Is(err, idem.ErrInvalid); got != tc.refused {
						t.Errorf("%s: %s %s of a %d-byte key: got %v, want refused %v", tc.name, name, op, len(tc.key), err, tc.refused)
					}
				}
			}
		}
	})
	t.Run("value", func(t *testing.T) {
		for _, key := range []string{"k", strings.Repeat("k", dynamo.MaxPartitionKeyBytes), strings.Repeat("€", 100)} {
			want := largestValue(t, newDynamo, key)
			if got := largestValue(t, newMem, key); got != want {
				t.Errorf("key of %d bytes: memstore's largest value is %d bytes, dynamo's %d", len(key), got, want)
			}
		}
	})
}

// TestLimitsOnServer: the largest key and value the Store (and so
// memstore.DynamoDBLimits) accepts, DynamoDB accepts too.
func TestLimitsOnServer(t *testing.T) {
	for _, srv := range testenv.DynamoDBServers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			t.Parallel()
			if reason, lacks := srv.Lacks(testenv.CapFullItemSize); lacks {
				t.Skip(reason)
			}
			c, name := table(t, srv)
			s := mustStore(t, c, name)
			d, err := dynamo.New(sink{}, "t")
			if err != nil {
				t.Fatal(err)
			}
			ctx := ctxT(t)
			for _, key := range []string{"k", strings.Repeat("k", dynamo.MaxPartitionKeyBytes)} {
				n := largestValue(t, func() idem.Store { return d }, key)
				if _, err := s.PutIfAbsent(ctx, key, make([]byte, n), time.Minute); err != nil {
					t.Errorf("key of %d bytes, the largest value (%d bytes): %v", len(key), n, err)
				}
			}
		})
	}
}
