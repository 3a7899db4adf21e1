package keyproto

import (
	"reflect"

	"github.com/idemkit/idemkit/idem"
)

// NilStore reports whether s is nil, or a nil pointer that would panic at
// the first request or event: both adapters reject it when they are built.
func NilStore(s idem.Store) bool {
	if s == nil {
		return true
	}
	v := reflect.ValueOf(s)
	return v.Kind() == reflect.Pointer && v.IsNil()
}
