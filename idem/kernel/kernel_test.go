package kernel_test

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/kernel"
)

// TestShortWholeCharacters: a long key is cut before a character, never
// inside one, so the message shows whole characters and no "\x" bytes.
func TestShortWholeCharacters(t *testing.T) {
	for _, tc := range []struct {
		name string
		key  string
		want string
	}{
		{"short ascii", "abc", "abc"},
		{"exactly max", strings.Repeat("a", 8), strings.Repeat("a", 8)},
		{"long ascii", strings.Repeat("a", 9), strings.Repeat("a", 8) + "..."},
		// "é" is 2 bytes: byte 8 is the second byte of the fifth "é".
		{"2-byte split", strings.Repeat("é", 5), strings.Repeat("é", 4) + "..."},
		// "€" is 3 bytes: bytes 6..8 are the third, max 8 falls inside it.
		{"3-byte split", strings.Repeat("€", 4), strings.Repeat("€", 2) + "..."},
		// "𝄞" is 4 bytes: max 8 ends on a boundary, then 7 does not.
		{"4-byte boundary", strings.Repeat("𝄞", 3), strings.Repeat("𝄞", 2) + "..."},
		{"4-byte split", "a" + strings.Repeat("𝄞", 3), "a𝄞..."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := kernel.Short(tc.key, 8)
			if got != tc.want {
				t.Errorf("Short(%q, 8): got %q, want %q", tc.key, got, tc.want)
			}
			if !utf8.ValidString(got) {
				t.Errorf("Short(%q, 8) = %q splits a character", tc.key, got)
			}
		})
	}
}

// TestInvalidNonASCIIKey: the error for a long non-ASCII key, whose 256th
// byte falls inside a character, quotes whole characters only.
func TestInvalidNonASCIIKey(t *testing.T) {
	key := "k" + strings.Repeat("ж", 300) // "ж" is 2 bytes: byte 256 is inside one
	err := kernel.CheckSize(key, "key", len(key), 10)
	if !errors.Is(err, idem.ErrInvalid) {
		t.Fatalf("got %v, want idem.ErrInvalid", err)
	}
	msg := err.Error()
	if strings.Contains(msg, `\x`) || !utf8.ValidString(msg) {
		t.Errorf("message splits a character: %s", msg)
	}
	if want := `"k` + strings.Repeat("ж", 127) + `..."`; !strings.Contains(msg, want) {
		t.Errorf("message: got %s, want it to quote %s", msg, want)
	}
}
