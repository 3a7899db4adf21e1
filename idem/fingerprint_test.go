package idem_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"testing"

	"github.com/idemkit/idemkit/idem"
)

// TestFingerprintJSONUnambiguous: documents that denote different JSON
// values, or that parsers read differently, never share a fingerprint;
// FingerprintJSON refuses the ones it cannot tell apart, and a caller falls
// back to their bytes. Each pair collided when the document was decoded
// with encoding/json and re-encoded: the decoder stops after one value and
// lets a closing bracket after it pass, keeps the last of repeated members,
// and turns bad UTF-8 and lone surrogate escapes into U+FFFD.
func TestFingerprintJSONUnambiguous(t *testing.T) {
	tests := []struct {
		name string
		a, b string
	}{
		{"closing brace after the value", `{"amount":100}`, `{"amount":100}}`},
		{"closing bracket after the value", `[1,2]`, `[1,2]]`},
		{"closing bracket after a number", `100`, `100]`},
		{"repeated member, last wins", `{"to":"bob"}`, `{"to":"alice","to":"bob"}`},
		{"repeated member, same value", `{"to":"bob"}`, `{"to":"bob","to":"bob"}`},
		{"repeated member in a nested object", `{"a":{"to":"bob"}}`, `{"a":{"to":"eve","to":"bob"}}`},
		{"invalid UTF-8", "{\"to\":\"\xff\"}", "{\"to\":\"\xfe\"}"},
		{"invalid UTF-8 and U+FFFD", "{\"to\":\"\xff\"}", "{\"to\":\"\uFFFD\"}"},
		{"invalid UTF-8 in a name", "{\"\xff\":1}", "{\"\xfe\":1}"},
		{"lone high surrogate", `{"to":"\ud800"}`, `{"to":"\ufffd"}`},
		{"lone low surrogate", `{"to":"\udc00"}`, `{"to":"\ufffd"}`},
		{"two lone surrogates", `{"to":"\ud800"}`, `{"to":"\udbff"}`},
		{"high surrogate then a letter", `["\ud800x"]`, `["\ufffdx"]`},
		{"reversed pair", `["\ude00\ud83d"]`, `["\ufffd\ufffd"]`},
		{"number spelling", `{"amount":100}`, `{"amount":1e2}`},
		{"number and string", `{"amount":100}`, `{"amount":"100"}`},
		{"null and absent", `{"a":null}`, `{}`},
		{"array order", `[1,2]`, `[2,1]`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, errA := idem.FingerprintJSON([]byte(tc.a))
			b, errB := idem.FingerprintJSON([]byte(tc.b))
			if errA == nil && errB == nil && string(a) == string(b) {
				t.Errorf("%q and %q got the same fingerprint", tc.a, tc.b)
			}
		})
	}
}

// TestFingerprintJSONEquivalent: documents that denote the same value get
// the same fingerprint, however they are spaced, ordered or escaped.
func TestFingerprintJSONEquivalent(t *testing.T) {
	tests := []struct {
		name string
		a, b string
	}{
		{"member order", `{"a":1,"b":{"c":2,"d":3}}`, `{"b":{"d":3,"c":2},"a":1}`},
		{"spacing", `{"a":[1,2]}`, " {\n\t\"a\" : [ 1 , 2 ] }\r\n"},
		{"escaped letter", `{"to":"bob"}`, `{"to":"\u0062ob"}`},
		{"escaped name", `{"to":1}`, `{"\u0074o":1}`},
		{"surrogate pair", `"😀"`, `"\ud83d\ude00"`},
		{"upper-case hex", `"😀"`, `"\uD83D\uDE00"`},
		{"escaped slash", `"a/b"`, `"a\/b"`},
		{"HTML characters", `"<a&b>"`, `"\u003ca\u0026b\u003e"`},
		{"U+FFFD itself", "\"\uFFFD\"", `"\ufffd"`},
		{"escaped backslash before u", `"\\ud800"`, `"\u005cud800"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := idem.FingerprintJSON([]byte(tc.a))
			if err != nil {
				t.Fatalf("%q: %v", tc.a, err)
			}
			b, err := idem.FingerprintJSON([]byte(tc.b))
			if err != nil {
				t.Fatalf("%q: %v", tc.b, err)
			}
			if string(a) != string(b) {
				t.Errorf("%q and %q got different fingerprints", tc.a, tc.b)
			}
		})
	}
}

// TestFingerprintStable: the fingerprint of a document is what it has
// always been, so records stored earlier still match their retries.
func TestFingerprintStable(t *testing.T) {
	fp, err := idem.FingerprintJSON([]byte(`{"currency":"EUR","amount":100,"items":[{"sku":"b\u00f6ok","qty":1.50}],"note":"<a&b>","gift":null,"paid":false}`))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := hex.EncodeToString(fp), "b29e863c4d467d7e3ac34d0779d6b49618bee0d8252ef5905295f48f30c94b49"; got != want {
		t.Errorf("FingerprintJSON: got %s, want %s", got, want)
	}
	fp, err = idem.Fingerprint(map[string]any{"amount": 100, "currency": "EUR"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := hex.EncodeToString(fp), "f50d36c1739463e571da8e929fdeb3bc35c5bf86051c653d6a61deedcb10944e"; got != want {
		t.Errorf("Fingerprint: got %s, want %s", got, want)
	}
}

// TestFingerprintInvalidUTF8: encoding/json writes every invalid byte of a
// Go string as U+FFFD, so "\xff" and "\xfe" encoded the same and shared a
// fingerprint. Fingerprint refuses such strings; []byte and real U+FFFD
// characters are fine.
func TestFingerprintInvalidUTF8(t *testing.T) {
	type payment struct {
		To     string `json:"to"`
		Amount int    `json:"amount,string"`
		Memo   string `json:"memo,string"`
		Raw    []byte `json:"raw"`
	}
	for name, v := range map[string]any{
		"field":            payment{To: "\xff"},
		"encoded twice":    payment{Memo: "\xff"},
		"map key":          map[string]int{"\xff": 1},
		"in a slice":       []string{"ok", "b\xfeb"},
		"raw escape":       json.RawMessage(`"\ufffd"`),
		"truncated rune":   "caf\xc3",
		"surrogate half":   "\xed\xa0\x80",
		"nested in an any": map[string]any{"a": []any{"\x80"}},
	} {
		if fp, err := idem.Fingerprint(v); err == nil {
			t.Errorf("%s: got fingerprint %x, want an error", name, fp)
		}
	}
	a, errA := idem.Fingerprint(payment{To: "\uFFFD", Raw: []byte{0xff}})
	b, errB := idem.Fingerprint(payment{To: "\uFFFD", Raw: []byte{0xfe}})
	if errA != nil || errB != nil || string(a) == string(b) {
		t.Errorf("[]byte fields: got %x (%v) and %x (%v), want two different fingerprints", a, errA, b, errB)
	}
}

// TestFingerprintPartsUnambiguous: every part is length-prefixed, so no two
// different lists of parts share a fingerprint, however their bytes line
// up.
func TestFingerprintPartsUnambiguous(t *testing.T) {
	p := func(parts ...string) [][]byte {
		out := make([][]byte, len(parts))
		for i, s := range parts {
			out[i] = []byte(s)
		}
		return out
	}
	prefix1 := "\x00\x00\x00\x00\x00\x00\x00\x01"
	tests := []struct {
		name string
		a, b [][]byte
	}{
		{"boundary moved", p("ab", "c"), p("a", "bc")},
		{"an empty part added", p("a"), p("a", "")},
		{"no parts and one empty part", p(), p("")},
		{"separators inside a part", p("a=1&b=2"), p("a=1", "b=2")},
		{"a part that looks like a prefix", p("a", "b"), p("a" + prefix1 + "b")},
		{"a whole encoding inside a part", p("x"), p(prefix1 + "x")},
	}
	for _, tc := range tests {
		if string(idem.FingerprintParts(tc.a...)) == string(idem.FingerprintParts(tc.b...)) {
			t.Errorf("%s: %q and %q got the same fingerprint", tc.name, tc.a, tc.b)
		}
	}
}

// FuzzFingerprintJSONUnchanged: every document FingerprintJSON accepts gets
// the fingerprint it always had, the SHA-256 of the document decoded by
// encoding/json and encoded again; the checks only refuse documents.
func FuzzFingerprintJSONUnchanged(f *testing.F) {
	for _, s := range []string{`{"b":1,"a":[2,"x"]}`, `"\ud83d\ude00"`, `{"a":1}}`, `{"a":1,"a":2}`, `["\ud800"]`, "\"\xff\"", `1.50`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fp, err := idem.FingerprintJSON(data)
		if err != nil {
			return
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var doc any
		if err := dec.Decode(&doc); err != nil {
			t.Fatalf("%q: accepted, but encoding/json fails: %v", data, err)
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(doc); err != nil {
			t.Fatal(err)
		}
		if want := sha256.Sum256(bytes.TrimSuffix(buf.Bytes(), []byte("\n"))); string(fp) != string(want[:]) {
			t.Fatalf("%q: fingerprint %x, want %x", data, fp, want)
		}
	})
}
