package idem

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/idemkit/idemkit/idem/internal/canon"
)

// Fingerprint returns the SHA-256 of v's canonical JSON: v is encoded with
// encoding/json, decoded, and encoded again with object keys sorted and
// numbers kept as written, so two requests that differ only in field order
// or whitespace get the same fingerprint. Pass it to WithFingerprint.
//
// Values that encode to the same JSON get the same fingerprint (fields
// encoding/json leaves out are not compared). A string that is not valid
// UTF-8 is an error: encoding/json would write its bad bytes as U+FFFD, so
// different strings would look equal; give binary data as []byte. So is
// JSON that spells out the escape \ufffd itself (a json.RawMessage or
// json.Marshaler may), which cannot be told from such a string.
func Fingerprint(v any) ([]byte, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("idem: fingerprint: %w", err)
	}
	// encoding/json writes each invalid byte of a string as the escape
	// \ufffd and a real U+FFFD as itself, so the escape marks the loss,
	// also in a string encoded twice (the ",string" option).
	if bytes.Contains(raw, []byte(`\ufffd`)) {
		return nil, errors.New("idem: fingerprint: a string is not valid UTF-8 (give binary data as []byte)")
	}
	return canon.JSON(raw)
}

// JoinKey builds a key from parts joined by "/", each part escaped so that
// a "/" inside a part cannot make two different part lists collide:
// JoinKey("charge", "cus_42", "ord/7") is "charge/cus_42/ord%2F7".
func JoinKey(parts ...string) string {
	esc := make([]string, len(parts))
	for i, p := range parts {
		esc[i] = url.PathEscape(p)
	}
	return strings.Join(esc, "/")
}
