package dynamo_test

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/idemkit/idemkit/dynamo"
	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/internal/storetest"
	"github.com/idemkit/idemkit/internal/testenv"
)

// TestLimits checks DynamoDB's limits at their edges: the largest key and
// item are accepted by the server, one byte more is rejected before any
// request is sent, with an error naming the key and the limit, and nothing
// is written.
func TestLimits(t *testing.T) {
	layouts := []struct {
		name   string
		opts   []dynamo.Option
		maxKey int
		// overhead is every byte of the item besides the value: attribute
		// names, key, and the 21 bytes the Store assumes for each number.
		overhead func(key string) int
	}{
		{"PartitionKey", nil, dynamo.MaxPartitionKeyBytes,
			func(key string) int {
				return len("pk") + len(key) + len("ver") + 21 + len("exp") + 21 + len("tok") + 16 + len("val")
			}},
		{"SortKey", []dynamo.Option{dynamo.WithSortKey("sk", "p")}, dynamo.MaxSortKeyBytes,
			func(key string) int {
				return len("pk") + len("p") + len("sk") + len(key) + len("ver") + 21 + len("exp") + 21 + len("tok") + 16 + len("val")
			}},
	}
	for _, srv := range testenv.DynamoDBServers(t) {
		for _, l := range layouts {
			t.Run(srv.Name+"/"+l.name, func(t *testing.T) {
				t.Parallel()
				raw, name := table(t, srv, l.opts...)
				c, w := wired(raw)
				s := mustStore(t, c, name, l.opts...)
				ctx := ctxT(t)

				longest := strings.Repeat("k", l.maxKey)
				if _, err := s.PutIfAbsent(ctx, longest, []byte("v"), 0); err != nil {
					t.Fatalf("PutIfAbsent with a %d-byte key: %v", len(longest), err)
				}
				if _, err := s.Get(ctx, longest); err != nil {
					t.Fatalf("Get with a %d-byte key: %v", len(longest), err)
				}

				key := "big"
				biggest := bytes.Repeat([]byte{0xa5}, dynamo.MaxItemBytes-l.overhead(key))
				first := biggest
				if reason, lacks := srv.Lacks(testenv.CapFullItemSize); lacks {
					t.Logf("%s: not checking that the server accepts a %d-byte value: %s", srv.Name, len(biggest), reason)
					first = biggest[:300_000]
				}
				created, err := s.PutIfAbsent(ctx, key, first, time.Hour)
				if err != nil {
					t.Fatalf("PutIfAbsent with the largest value (%d bytes): %v", len(first), err)
				}
				it, err := s.Get(ctx, key)
				if err != nil || !bytes.Equal(it.Value, first) {
					t.Fatalf("Get of the largest value: %d bytes, %v", len(it.Value), err)
				}

				tooLong := longest + "k"
				tooBig := append(biggest, 0)
				w.take()
				for _, tc := range []struct {
					name  string
					key   string
					limit int
					call  func() error
				}{
					{"Get long key", tooLong, l.maxKey, func() error { _, err := s.Get(ctx, tooLong); return err }},
					{"PutIfAbsent long key", tooLong, l.maxKey, func() error { _, err := s.PutIfAbsent(ctx, tooLong, nil, 0); return err }},
					{"CompareAndSwap long key", tooLong, l.maxKey, func() error { _, err := s.CompareAndSwap(ctx, tooLong, 1, nil, 0); return err }},
					{"CompareAndDelete long key", tooLong, l.maxKey, func() error { return s.CompareAndDelete(ctx, tooLong, 1) }},
					{"Upsert long key", tooLong, l.maxKey, func() error { _, _, err := s.Upsert(ctx, tooLong, nil, 1, 0); return err }},
					{"PutIfAbsent big item", "big2", dynamo.MaxItemBytes, func() error { _, err := s.PutIfAbsent(ctx, "big2", tooBig, 0); return err }},
					{"CompareAndSwap big item", key, dynamo.MaxItemBytes, func() error { _, err := s.CompareAndSwap(ctx, key, created.Version, tooBig, 0); return err }},
					{"Upsert big item", "big2", dynamo.MaxItemBytes, func() error { _, _, err := s.Upsert(ctx, "big2", tooBig, 5, 0); return err }},
				} {
					err := tc.call()
					if !errors.Is(err, idem.ErrInvalid) {
						t.Errorf("%s: got %v, want one matching idem.ErrInvalid", tc.name, err)
						continue
					}
					if named := tc.key[:min(len(tc.key), 256)]; !strings.Contains(err.Error(), named) {
						t.Errorf("%s: error %q does not name (a prefix of) the key %q", tc.name, err, named)
					}
					if !strings.Contains(err.Error(), strconv.Itoa(tc.limit)) {
						t.Errorf("%s: error %q does not name the limit %d", tc.name, err, tc.limit)
					}
				}
				if got := w.take(); len(got) != 0 {
					t.Errorf("rejected input sent requests: %v", got)
				}
				// Nothing was written or changed.
				plain := mustStore(t, raw, name, l.opts...)
				if _, err := plain.Get(ctx, "big2"); !errors.Is(err, idem.ErrNotFound) {
					t.Errorf("Get big2: got %v, want ErrNotFound", err)
				}
				if it, err := plain.Get(ctx, key); err != nil || it.Version != created.Version || !bytes.Equal(it.Value, first) {
					t.Errorf("Get %s after rejected writes: version %d, %v; want the first item unchanged", key, it.Version, err)
				}
			})
		}
	}
}

// TestBadInput: input idem rejects for every backend never reaches the
// wire, and nothing is written.
func TestBadInput(t *testing.T) {
	srv := testenv.DynamoDBServers(t)[0]
	raw, name := table(t, srv)
	c, w := wired(raw)
	s := mustStore(t, c, name)
	ctx := ctxT(t)
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"Get empty key", func() error { _, err := s.Get(ctx, ""); return err }},
		{"PutIfAbsent empty key", func() error { _, err := s.PutIfAbsent(ctx, "", []byte("x"), 0); return err }},
		{"PutIfAbsent invalid UTF-8", func() error { _, err := s.PutIfAbsent(ctx, "k\xff", []byte("x"), 0); return err }},
		{"CompareAndSwap version 0", func() error { _, err := s.CompareAndSwap(ctx, "k", 0, []byte("x"), 0); return err }},
		{"CompareAndDelete version -1", func() error { return s.CompareAndDelete(ctx, "k", -1) }},
		{"Upsert version -1", func() error { _, _, err := s.Upsert(ctx, "k", []byte("x"), -1, 0); return err }},
	} {
		if err := tc.call(); !errors.Is(err, idem.ErrInvalid) {
			t.Errorf("%s: got %v, want idem.ErrInvalid", tc.name, err)
		}
	}
	if got := w.take(); len(got) != 0 {
		t.Errorf("rejected input sent requests: %v", got)
	}
	if _, err := s.Get(ctx, "k"); !errors.Is(err, idem.ErrNotFound) {
		t.Errorf("Get k: got %v, want ErrNotFound", err)
	}
}

// TestErrors checks the sentinels for DynamoDB's own refusals.
func TestErrors(t *testing.T) {
	for _, srv := range testenv.DynamoDBServers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			t.Parallel()
			ctx := ctxT(t)
			raw, name := table(t, srv)

			missing := mustStore(t, raw, fmt.Sprintf("%s-missing", name))
			_, err := missing.Get(ctx, "k")
			if !errors.Is(err, dynamo.ErrTableNotFound) {
				t.Errorf("Get on a missing table: got %v, want dynamo.ErrTableNotFound", err)
			}
			_, err = missing.PutIfAbsent(ctx, "k", nil, 0)
			if !errors.Is(err, dynamo.ErrTableNotFound) || errors.Is(err, idem.ErrUnknownOutcome) {
				t.Errorf("PutIfAbsent on a missing table: got %v, want dynamo.ErrTableNotFound (a definite failure)", err)
			}

			// Stores whose options do not match the table's key schema. A
			// PutItem with an extra attribute named like the missing sort key
			// is valid DynamoDB (it writes the partition's one item), so the
			// mismatch shows on reads and on tables that have a sort key.
			wrong := mustStore(t, raw, name, dynamo.WithSortKey("sk", "p"))
			_, err = wrong.Get(ctx, "k")
			if !errors.Is(err, dynamo.ErrValidation) {
				t.Errorf("Get with a sort key the table lacks: got %v, want dynamo.ErrValidation", err)
			} else if !strings.Contains(err.Error(), `"k"`) {
				t.Errorf("error does not name the key: %v", err)
			}
			raw2, name2 := table(t, srv, dynamo.WithSortKey("sk", "p"))
			_, err = mustStore(t, raw2, name2).PutIfAbsent(ctx, "k", nil, 0)
			if !errors.Is(err, dynamo.ErrValidation) || errors.Is(err, idem.ErrUnknownOutcome) {
				t.Errorf("PutIfAbsent without the table's sort key: got %v, want dynamo.ErrValidation", err)
			}
		})
	}
}

// TestLargestResult measures, through idem.Do, the largest result a Store
// keeps, by storing growing results under keys of 16 bytes on a table of
// the default layout. idem's record is a small header and then the encoded
// result as it is, in a Binary value, so a []byte result (JSON makes it
// base64) takes about 4/3 of its size and a string result its size plus 2. One byte more than the largest, the Store refuses the item
// before sending it and Do stores a permanent "result not stored" answer,
// so that fn never runs again for the key.
//
// The figures the package documentation gives are those of a server with
// DynamoDB's full item size (ministack), within a few bytes: the record's
// timestamps vary in length.
func TestLargestResult(t *testing.T) {
	const (
		largestBytes  = 307_089
		largestString = 409_455
		slack         = 32
	)
	for _, srv := range testenv.DynamoDBServers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			t.Parallel()
			c, name := table(t, srv)
			s := mustStore(t, c, name)
			ctx := ctxT(t)
			_, lacksFullSize := srv.Lacks(testenv.CapFullItemSize)
			for _, kind := range []struct {
				name   string
				result func(n int) any
				want   int // the largest result on a server with DynamoDB's full item size
			}{
				{"bytes", func(n int) any { return bytes.Repeat([]byte{0xa5}, n) }, largestBytes},
				{"string", func(n int) any { return strings.Repeat("a", n) }, largestString},
			} {
				lo := storetest.LargestResult(t, ctx, s, kind.name, 100_000, dynamo.MaxItemBytes, kind.result)
				t.Logf("%s: the largest %s result idem.Do stores is %d bytes", srv.Name, kind.name, lo)
				if lacksFullSize {
					continue // the server's own limit came first; nothing to compare
				}
				if lo < kind.want-slack || lo > kind.want+slack {
					t.Errorf("%s: the largest result is %d bytes, the documentation says %d", kind.name, lo, kind.want)
				}
				storetest.ResultNotStored(t, ctx, s, kind.name, lo+1)
			}
		})
	}
}
