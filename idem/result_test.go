package idem

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

// FuzzDecodeFast holds decodeFast to json.Unmarshal: whenever it takes a
// result, json.Unmarshal reads the very same value from it (nil and empty
// slices told apart).
func FuzzDecodeFast(f *testing.F) {
	for _, s := range []string{`0`, `-0`, `7`, `-42`, `007`, `+5`, ` 5`, `1e3`, `9223372036854775807`, `9223372036854775808`,
		`""`, `"ok"`, `"caf\u00e9"`, `"café"`, "\"\xff\"", `"a\"b"`, "\"\t\"", `null`,
		`"AAEC"`, `"AAE="`, `"AAE"`, `"A"`, `"////"`, `"-_"`, `"YQ==YQ=="`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		sameAsJSON[int](t, data)
		sameAsJSON[int64](t, data)
		sameAsJSON[string](t, data)
		sameAsJSON[[]byte](t, data)
	})
}

func sameAsJSON[T any](t *testing.T, data []byte) {
	t.Helper()
	var fast T
	if !decodeFast(data, &fast) {
		return
	}
	var want T
	if err := json.Unmarshal(data, &want); err != nil {
		t.Fatalf("%T from %q: decodeFast took what json.Unmarshal refuses (%v)", fast, data, err)
	}
	if !reflect.DeepEqual(fast, want) {
		t.Fatalf("%T from %q: decodeFast got %#v, json.Unmarshal %#v", fast, data, fast, want)
	}
}

// TestDecodeFastTakes: the results json.Marshal writes for the fast types
// are taken, so the fast path is the one a replay of them uses; a named
// type is not (it may have its own UnmarshalJSON).
func TestDecodeFastTakes(t *testing.T) {
	type named int
	for _, v := range []any{0, -1, 1 << 40, int64(-7), "", "order 7 ✓", []byte{}, []byte{0, 1, 0xfe, 0xff}, bytes.Repeat([]byte{0xa5}, 1000)} {
		data, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var ok bool
		switch v.(type) {
		case int:
			var x int
			ok = decodeFast(data, &x)
		case int64:
			var x int64
			ok = decodeFast(data, &x)
		case string:
			var x string
			ok = decodeFast(data, &x)
		case []byte:
			var x []byte
			ok = decodeFast(data, &x)
		}
		if !ok {
			t.Errorf("%T %q: not taken, want the fast path", v, data)
		}
	}
	var n named
	if decodeFast([]byte(`1`), &n) {
		t.Error("a named int was taken, want encoding/json")
	}
}
