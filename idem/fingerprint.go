package idem

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"
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
	return FingerprintJSON(raw)
}

// FingerprintJSON is Fingerprint for a JSON document already encoded, such
// as a request body: documents that denote the same JSON value (the same
// members in any order, any spacing, any escaping of the same characters)
// get the same fingerprint, and documents that do not get different ones.
// It fails if data is not exactly one valid JSON value, or if it is one
// whose meaning parsers disagree on: text that is not valid UTF-8, a
// \u escape of half a surrogate pair, or an object with a repeated member
// name. Fingerprint such data byte for byte (FingerprintParts).
func FingerprintJSON(data []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("idem: fingerprint: %w", err)
	}
	if len(bytes.TrimLeft(data[dec.InputOffset():], " \t\r\n")) > 0 {
		return nil, errors.New("idem: fingerprint: data after the JSON value")
	}
	if !utf8.Valid(data) {
		return nil, errors.New("idem: fingerprint: the document is not valid UTF-8")
	}
	members, lone := scan(data)
	if lone {
		return nil, errors.New("idem: fingerprint: a \\u escape is half a surrogate pair")
	}
	if countMembers(doc) != members { // a repeated name kept one member
		return nil, errors.New("idem: fingerprint: an object names a member twice")
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

// scan reads the valid JSON document data and returns how many object
// members it writes (its colons outside strings), and whether a string
// holds a \u escape of a UTF-16 surrogate that is not part of a pair,
// which encoding/json decodes to U+FFFD.
func scan(data []byte) (members int, lone bool) {
	inString := false
	for i := 0; i < len(data); i++ {
		switch c := data[i]; {
		case c == '"':
			inString = !inString
		case !inString:
			if c == ':' {
				members++
			}
		case c != '\\':
		case data[i+1] != 'u':
			i++ // a one-character escape
		default:
			r := hex4(data[i+2 : i+6])
			i += 5
			switch {
			case r >= 0xdc00 && r < 0xe000:
				return members, true // a low half with no high half before it
			case r >= 0xd800 && r < 0xdc00:
				if i+6 >= len(data) || data[i+1] != '\\' || data[i+2] != 'u' {
					return members, true
				}
				if lo := hex4(data[i+3 : i+7]); lo < 0xdc00 || lo >= 0xe000 {
					return members, true
				}
				i += 6
			}
		}
	}
	return members, false
}

// countMembers counts the members of every object in a decoded document.
func countMembers(v any) int {
	n := 0
	switch v := v.(type) {
	case map[string]any:
		n = len(v)
		for _, e := range v {
			n += countMembers(e)
		}
	case []any:
		for _, e := range v {
			n += countMembers(e)
		}
	}
	return n
}

// hex4 decodes four hex digits, which a valid JSON \u escape has.
func hex4(b []byte) rune {
	var r rune
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		default:
			c -= 'A' - 10
		}
		r = r<<4 | rune(c)
	}
	return r
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
