package idem

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"

	"github.com/google/uuid"
)

// Fingerprint returns the SHA-256 of v's canonical JSON: v is encoded with
// encoding/json, decoded, and encoded again with object keys sorted and
// numbers kept as written, so two requests that differ only in field order
// or whitespace get the same fingerprint. Pass it to WithFingerprint.
func Fingerprint(v any) ([]byte, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("idem: fingerprint: %w", err)
	}
	return FingerprintJSON(raw)
}

// FingerprintJSON is Fingerprint for a JSON document already encoded, such
// as a request body. It fails if data is not a single valid JSON value.
func FingerprintJSON(data []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("idem: fingerprint: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("idem: fingerprint: trailing data after the JSON value")
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(doc); err != nil { // maps encode with sorted keys
		return nil, fmt.Errorf("idem: fingerprint: %w", err)
	}
	sum := sha256.Sum256(bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
	return sum[:], nil
}

// FingerprintParts returns the SHA-256 of parts, each prefixed with its
// length so that ("ab","c") and ("a","bc") differ. Use it for requests that
// are not JSON, such as method, path and raw body.
func FingerprintParts(parts ...[]byte) []byte {
	h := sha256.New()
	var n [8]byte
	for _, p := range parts {
		binary.BigEndian.PutUint64(n[:], uint64(len(p)))
		h.Write(n[:])
		h.Write(p)
	}
	return h.Sum(nil)
}

// NewKey returns a random idempotency key (a UUIDv4), for clients that
// generate a key per logical operation and reuse it on every retry.
func NewKey() string { return uuid.NewString() }

// NewKeyV7 returns a time-ordered idempotency key (a UUIDv7), which keeps
// keys created together close in sorted indexes.
func NewKeyV7() string { return uuid.Must(uuid.NewV7()).String() }

// Key builds a key from parts joined by "/", each part escaped so that a
// "/" inside a part cannot make two different part lists collide:
// Key("charge", "cus_42", "ord/7") is "charge/cus_42/ord%2F7".
func Key(parts ...string) string {
	esc := make([]string, len(parts))
	for i, p := range parts {
		esc[i] = url.PathEscape(p)
	}
	return strings.Join(esc, "/")
}
