// Package canon fingerprints requests for idem and its adapters: a JSON
// document by its canonical form, other requests by their parts.
package canon

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// JSON returns the SHA-256 of the canonical form of a JSON document already
// encoded, such as a request body (idem.Fingerprint encodes a value, then
// calls it): documents that denote the same JSON value (the same
// members in any order, any spacing, any escaping of the same characters)
// get the same fingerprint, and documents that do not get different ones.
// It fails if data is not exactly one valid JSON value, or if it is one
// whose meaning parsers disagree on: text that is not valid UTF-8, a
// \u escape of half a surrogate pair, or an object with a repeated member
// name. Fingerprint such data byte for byte (Parts).
func JSON(data []byte) ([]byte, error) {
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

// Parts returns the SHA-256 of parts, each prefixed with its
// length so that ("ab","c") and ("a","bc") differ. Use it for requests that
// are not JSON, such as method, path and raw body.
func Parts(parts ...[]byte) []byte {
	h := sha256.New()
	var n [8]byte
	for _, p := range parts {
		binary.BigEndian.PutUint64(n[:], uint64(len(p)))
		h.Write(n[:])
		h.Write(p)
	}
	return h.Sum(nil)
}
