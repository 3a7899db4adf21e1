package cassandra_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/idemkit/idemkit/cassandra"
	"github.com/idemkit/idemkit/internal/storetest"
	"github.com/idemkit/idemkit/internal/testenv"
)

// TestLargestResult finds, through idem.Do on the real server, the largest
// result a Store with the default value limit (1 MiB) keeps, and checks the
// figure the documentation gives. One byte more and Do stores the permanent
// CodeResultNotStored answer instead: a duplicate gets it without running
// fn. The record is a small header and then the encoded result as it is, so
// a []byte result (base64 in JSON) takes about 4/3 of its size and an ASCII
// string its size plus 2.
func TestLargestResult(t *testing.T) {
	t.Parallel()
	const (
		largestBytes  = 786_384
		largestString = 1_048_514
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
		got := storetest.LargestResult(t, ctx, s, kind.name, 100_000, cassandra.DefaultMaxValueSize, kind.result)
		t.Logf("the largest %s result idem.Do stores is %d bytes", kind.name, got)
		if got < kind.want-slack || got > kind.want+slack {
			t.Errorf("%s: the largest result is %d bytes, the documentation says %d", kind.name, got, kind.want)
		}
		storetest.ResultNotStored(t, ctx, s, kind.name, got+1)
	}
}
