package cassandra

import "testing"

// TestTableName: Check finds the table New was given in the Store's
// statements.
func TestTableName(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"ks.tbl", `ks."MixedCase"`, "KS.Upper_1"} {
		s, err := New(nil, name, withExecutor(&scripted{t: t}))
		if err != nil {
			t.Fatal(err)
		}
		if got := s.tableName(); got != name {
			t.Errorf("tableName: got %q, want %q", got, name)
		}
	}
}

// TestCheckWithoutSession: a Store without a gocql session cannot read the
// schema, and Check says so instead of passing.
func TestCheckWithoutSession(t *testing.T) {
	t.Parallel()
	s, err := New(nil, "ks.tbl", withExecutor(&scripted{t: t}))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Check(t.Context()); err == nil {
		t.Error("Check without a session: got no error")
	}
}
