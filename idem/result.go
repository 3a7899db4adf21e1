package idem

import (
	"encoding/base64"
	"strconv"
	"unicode/utf8"
)

// decodeFast decodes a stored result of a few plain types (int, int64,
// string, []byte) without encoding/json, whose Unmarshal allocates its
// decoder's state, most of the time of a replay from a Cache. It takes
// only the bytes json.Marshal writes for such a value, and only where
// json.Unmarshal would read exactly the same value from them; for
// anything else (another type, named ones included, or other bytes:
// spaces, escapes, null, a number out of range) it reports false, and
// json.Unmarshal decodes, with its own errors. FuzzDecodeFast holds it
// to json.Unmarshal.
func decodeFast[T any](data []byte, v *T) bool {
	switch p := any(v).(type) {
	case *int:
		n, ok := canonicalInt(data, strconv.IntSize)
		*p = int(n)
		return ok
	case *int64:
		n, ok := canonicalInt(data, 64)
		*p = n
		return ok
	case *string:
		s, ok := plainString(data)
		*p = string(s)
		return ok
	case *[]byte:
		// json.Unmarshal reads a []byte from a string of base64
		// (encoding/base64's StdEncoding) into a slice of DecodedLen.
		s, ok := plainString(data)
		if !ok || !isBase64(s) {
			return false
		}
		b := make([]byte, base64.StdEncoding.DecodedLen(len(s)))
		n, err := base64.StdEncoding.Decode(b, s)
		*p = b[:n]
		return err == nil
	}
	return false
}

// canonicalInt parses data if it is an integer as strconv writes it (no
// sign but '-', no leading zeros, no "-0"), which JSON reads as the same
// number, and fits in bits.
func canonicalInt(data []byte, bits int) (int64, bool) {
	n, err := strconv.ParseInt(string(data), 10, bits)
	if err != nil {
		return 0, false
	}
	var buf [20]byte
	return n, string(strconv.AppendInt(buf[:0], n, 10)) == string(data)
}

// plainString returns the inside of a JSON string that needs no
// unquoting: no escape, no control character, valid UTF-8. JSON reads it
// as those very bytes.
func plainString(data []byte) ([]byte, bool) {
	if len(data) < 2 || data[0] != '"' || data[len(data)-1] != '"' {
		return nil, false
	}
	s := data[1 : len(data)-1]
	for _, c := range s {
		if c < ' ' || c == '"' || c == '\\' {
			return nil, false
		}
	}
	return s, utf8.Valid(s)
}

// isBase64 reports whether s holds only characters of base64's standard
// alphabet and its padding (encoding/base64 skips '\r' and '\n', which a
// plain string cannot hold anyway).
func isBase64(s []byte) bool {
	for _, c := range s {
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '/' || c == '=') {
			return false
		}
	}
	return true
}
