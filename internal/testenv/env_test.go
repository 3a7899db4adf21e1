package testenv

import (
	"regexp"
	"strings"
	"testing"
)

var validName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,47}$`)

func TestUniqueName(t *testing.T) {
	tests := []struct {
		name, prefix, wantPrefix string
	}{
		{"plain", "idem", "idem_"},
		{"upper and punctuation", "My-Table.V2", "my_table_v2_"},
		{"leading digit", "9lives", "t9lives_"},
		{"empty", "", "t_"},
		{"only punctuation", "--", "t_"},
		{"very long", strings.Repeat("abcdefghij", 10), "abcdefghij"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := UniqueName(t, tt.prefix)
			if !validName.MatchString(got) {
				t.Errorf("UniqueName(%q) = %q (len %d), want it to match %s", tt.prefix, got, len(got), validName)
			}
			if !strings.HasPrefix(got, tt.wantPrefix) {
				t.Errorf("UniqueName(%q) = %q, want prefix %q", tt.prefix, got, tt.wantPrefix)
			}
			if strings.Contains(got, "__") {
				t.Errorf("UniqueName(%q) = %q has a double underscore", tt.prefix, got)
			}
		})
	}
}

func TestUniqueNameHasTestNameAndIsUnique(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		n := UniqueName(t, "kv")
		if seen[n] {
			t.Fatalf("UniqueName returned %q twice", n)
		}
		seen[n] = true
	}
	if n := UniqueName(t, "kv"); !strings.HasPrefix(n, "kv_uniquenamehastestnameandisunique_") {
		t.Errorf("UniqueName = %q, want the test's name in it", n)
	}
	t.Run("A very long subtest name/with slashes and Spaces that goes on and on", func(t *testing.T) {
		n := UniqueName(t, "kv")
		if !validName.MatchString(n) {
			t.Errorf("UniqueName = %q (len %d), want it to match %s", n, len(n), validName)
		}
		if !strings.HasPrefix(n, "kv_with_slashes_and_spaces_that_") || !strings.Contains(n, "_"+runID) {
			t.Errorf("UniqueName = %q, want the subtest's name and the run id %q in it", n, runID)
		}
	})
}

func TestTestNamePart(t *testing.T) {
	tests := []struct {
		name string
		room int
		want string
	}{
		{"TestPut", 30, "put"},
		{"TestConformance/moto/PutIfAbsent", 40, "conformance_moto_putifabsent"},
		{"TestConformance/moto/PutIfAbsent", 20, "moto_putifabsent"},
		{"TestConformance/moto/PutIfAbsent", 12, "putifabsent"},
		{"TestConformance/moto/PutIfAbsent", 5, "putif"},
		{"TestX/#00", 30, "x_00"},
		{"Test", 30, ""},
	}
	for _, tt := range tests {
		if got := testNamePart(tt.name, tt.room); got != tt.want {
			t.Errorf("testNamePart(%q, %d) = %q, want %q", tt.name, tt.room, got, tt.want)
		}
	}
}

func TestDynamoDBServersFromEnv(t *testing.T) {
	tests := []struct {
		name, list, single string
		want               []DynamoDBServer
		wantErr            string
	}{
		{name: "unset"},
		{
			name: "two named",
			list: "moto=http://127.0.0.1:5000, ministack=http://127.0.0.1:4566/",
			want: []DynamoDBServer{
				{Name: "moto", Endpoint: "http://127.0.0.1:5000", kind: "moto"},
				{Name: "ministack", Endpoint: "http://127.0.0.1:4566", kind: "ministack"},
			},
		},
		{
			name:   "single",
			single: "http://localhost:8000",
			want:   []DynamoDBServer{{Name: "dynamodb", Endpoint: "http://localhost:8000"}},
		},
		{
			name:   "both",
			list:   "moto2=http://127.0.0.1:5001",
			single: "https://dynamodb.example:443",
			want: []DynamoDBServer{
				{Name: "moto2", Endpoint: "http://127.0.0.1:5001", kind: "moto"},
				{Name: "dynamodb", Endpoint: "https://dynamodb.example:443"},
			},
		},
		{name: "trailing comma", list: "moto=http://127.0.0.1:5000,", want: []DynamoDBServer{{Name: "moto", Endpoint: "http://127.0.0.1:5000", kind: "moto"}}},
		{name: "no name", list: "http://127.0.0.1:5000", wantErr: "not name=url"},
		{name: "no scheme", list: "moto=127.0.0.1:5000", wantErr: "not an http(s) URL"},
		{name: "duplicate", list: "moto=http://a:1,moto=http://b:2", wantErr: "given twice"},
		{name: "bad name", list: "my moto=http://a:1", wantErr: "server name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := dynamoDBServersFromEnv(tt.list, tt.single)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("server %d = %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestLacks(t *testing.T) {
	moto := DynamoDBServer{Name: "moto", kind: kindOf("moto")}
	if reason, lacks := moto.Lacks(CapTTLDeletion); !lacks || !strings.Contains(reason, "moto") {
		t.Errorf("moto.Lacks(CapTTLDeletion) = %q, %v; want a reason naming moto, true", reason, lacks)
	}
	if _, lacks := moto.Lacks(CapTransactions); lacks {
		t.Error("moto.Lacks(CapTransactions) = true, want false")
	}
	unknown := DynamoDBServer{Name: "dynamodb"}
	for _, c := range []Capability{CapTTLDeletion, CapFullItemSize, CapClientRequestToken, CapStrictValidation, CapTransactions, CapReturnValuesOnConditionCheckFailure} {
		if _, lacks := unknown.Lacks(c); lacks {
			t.Errorf("unknown server lacks %s, want every capability assumed", c)
		}
	}
}

func TestRequireServers(t *testing.T) {
	for v, want := range map[string]bool{"": false, "0": false, "1": true, "true": true, "no": false} {
		t.Setenv("IDEM_REQUIRE_SERVERS", v)
		if got := RequireServers(); got != want {
			t.Errorf("IDEM_REQUIRE_SERVERS=%q: RequireServers() = %v, want %v", v, got, want)
		}
	}
}
