package cassandra_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/idemkit/idemkit/cassandra"
	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/internal/testenv"
)

// TestLargestResult finds, through idem.Do on the real server, the largest
// result a Store with the default value limit (1 MiB) keeps, and checks the
// figure the documentation gives. One byte more and Do stores the permanent
// CodeResultNotStored answer instead: a duplicate gets it without running
// fn. The record keeps the encoded result as base64 inside JSON, so a
// []byte result (itself base64 in JSON) takes about 16/9 of its size and an
// ASCII string about 4/3.
func TestLargestResult(t *testing.T) {
	const (
		largestBytes  = 589_698
		largestString = 786_265
		slack         = 32
	)
	session, ks := testenv.Cassandra(t)
	s := newStore(t, session, newTable(t, session, ks))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, kind := range []struct {
		name   string
		result func(n int) any
		want   int
	}{
		{"bytes", func(n int) any { return bytes.Repeat([]byte{0xa5}, n) }, largestBytes},
		{"string", func(n int) any { return strings.Repeat("a", n) }, largestString},
	} {
		runs := 0
		do := func(n int) error {
			key := fmt.Sprintf("%s/%09d", kind.name[:1], n)
			_, err := idem.Do(ctx, s, key, func(context.Context) (any, error) { runs++; return kind.result(n), nil })
			return err
		}
		lo, hi := 100_000, cassandra.DefaultMaxValueSize // do(lo) stores, do(hi) does not
		if err := do(lo); err != nil {
			t.Fatalf("%s: a %d-byte result: %v", kind.name, lo, err)
		}
		if do(hi) == nil {
			t.Fatalf("%s: a %d-byte result was stored", kind.name, hi)
		}
		for hi-lo > 1 {
			mid := (lo + hi) / 2
			if do(mid) == nil {
				lo = mid
			} else {
				hi = mid
			}
		}
		t.Logf("the largest %s result idem.Do stores is %d bytes", kind.name, lo)
		if lo < kind.want-slack || lo > kind.want+slack {
			t.Errorf("%s: the largest result is %d bytes, the documentation says %d", kind.name, lo, kind.want)
		}
		runs = 0
		var pe *idem.PermanentError
		if err := do(hi); !errors.As(err, &pe) || pe.Code != idem.CodeResultNotStored || runs != 0 {
			t.Errorf("%s: a duplicate of the %d-byte result: %v (fn ran %d times); want the permanent %s answer", kind.name, hi, err, runs, idem.CodeResultNotStored)
		}
	}
}
