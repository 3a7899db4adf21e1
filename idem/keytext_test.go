package idem_test

import (
	"context"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/memstore"
)

// TestErrorTextWholeCharacters: an error naming a long non-ASCII key cuts
// it before a character, never inside one.
func TestErrorTextWholeCharacters(t *testing.T) {
	for _, pad := range []string{"", "a", "ab"} { // every cut position inside a 2-byte character
		key := pad + strings.Repeat("ж", 200)
		_, err := idem.Do(context.Background(), memstore.New(), key, func(context.Context) (int, error) { return 1, nil },
			idem.WithLease(0))
		if err == nil {
			t.Fatal("want the invalid lease refused")
		}
		if msg := err.Error(); !utf8.ValidString(msg) || strings.Contains(msg, `\x`) || !strings.Contains(msg, "...") {
			t.Errorf("error text %q: want the key cut at a character, valid UTF-8", msg)
		}
	}
}
