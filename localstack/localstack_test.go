// Package localstack_test checks that localstack/ creates what idemkit's
// Stores expect. Docker is not needed: the schema files the containers
// load are applied to the real servers internal/testenv finds, compared
// with what dynamo.CreateTable and cassandra.CreateTable make, and used.
package localstack_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/idemkit/idemkit/cassandra"
	"github.com/idemkit/idemkit/dynamo"
	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/internal/testenv"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestComposeFile checks what the compose file promises without Docker:
// pinned images, the mounts it names exist, the init script is executable.
func TestComposeFile(t *testing.T) {
	b, err := os.ReadFile("docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	compose := string(b)
	for _, want := range []string{
		"image: localstack/localstack:4.14.0", // the last tag that needs no auth token
		"image: cassandra:5.0",
		"SERVICES: dynamodb",
		"./init/ready.d:/etc/localstack/init/ready.d:ro",
		"./dynamodb:/idem/dynamodb:ro",
		"./cassandra:/idem:ro",
		"/idem/schema.cql",
	} {
		if !strings.Contains(compose, want) {
			t.Errorf("docker-compose.yml lacks %q", want)
		}
	}
	if strings.Contains(compose, ":latest") {
		t.Error("docker-compose.yml uses a :latest image; pin it")
	}
	for _, dir := range []string{"init/ready.d", "dynamodb", "cassandra"} {
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			t.Errorf("mounted directory %s: %v", dir, err)
		}
	}
	fi, err := os.Stat("init/ready.d/10-idem-table.sh")
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&0o111 == 0 {
		t.Error("init/ready.d/10-idem-table.sh is not executable; LocalStack would skip it")
	}
	script, _ := os.ReadFile("init/ready.d/10-idem-table.sh")
	for _, want := range []string{"#!/bin/bash", "file://$DIR/table.json", "file://$DIR/ttl.json"} {
		if !strings.Contains(string(script), want) {
			t.Errorf("init script lacks %q", want)
		}
	}
}

// TestDynamoDBSchema creates the table from dynamodb/table.json and
// dynamodb/ttl.json on each DynamoDB server, as the init script does, then
// has dynamo.CreateTable check it (same key schema, time to live on the
// same attribute) and a Store use it.
func TestDynamoDBSchema(t *testing.T) {
	var table dynamodb.CreateTableInput
	readJSON(t, "dynamodb/table.json", &table)
	var ttl dynamodb.UpdateTimeToLiveInput
	readJSON(t, "dynamodb/ttl.json", &ttl)
	if aws.ToString(table.TableName) != "idem" || aws.ToString(ttl.TableName) != "idem" {
		t.Errorf("table names %q, %q: want idem in both files", aws.ToString(table.TableName), aws.ToString(ttl.TableName))
	}
	if ttl.TimeToLiveSpecification == nil || aws.ToString(ttl.TimeToLiveSpecification.AttributeName) != dynamo.DefaultExpiryAttribute {
		t.Errorf("ttl.json: time to live on %v, want %q", ttl.TimeToLiveSpecification, dynamo.DefaultExpiryAttribute)
	}
	for _, srv := range testenv.DynamoDBServers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			ctx := ctxT(t)
			c := srv.Client(t)
			name := testenv.UniqueName(t, "localstack")
			in, tin := table, ttl
			in.TableName, tin.TableName = aws.String(name), aws.String(name)
			// The name is this subtest's alone, so "already exists" can only
			// be this create's own earlier attempt, landed before the SDK
			// resent it (seen once on a loaded machine).
			var inUse *types.ResourceInUseException
			if _, err := c.CreateTable(ctx, &in); err != nil && !errors.As(err, &inUse) {
				t.Fatalf("create-table --cli-input-json table.json: %v", err)
			}
			testenv.DeleteTableOnCleanup(t, c, name)
			if err := dynamodb.NewTableExistsWaiter(c).Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(name)}, time.Minute); err != nil {
				t.Fatal(err)
			}
			if _, err := c.UpdateTimeToLive(ctx, &tin); err != nil {
				t.Fatalf("update-time-to-live --cli-input-json ttl.json: %v", err)
			}
			if err := dynamo.CreateTable(ctx, c, name); err != nil {
				t.Fatalf("dynamo.CreateTable finds the init script's table different: %v", err)
			}
			s, err := dynamo.New(c, name)
			if err != nil {
				t.Fatal(err)
			}
			useStore(t, s)
		})
	}
}

// TestCassandraSchema runs cassandra/schema.cql (in a keyspace of the
// test's own), compares its table column for column with the one
// cassandra.CreateTable makes, and uses it through a Store.
func TestCassandraSchema(t *testing.T) {
	b, err := os.ReadFile("cassandra/schema.cql")
	if err != nil {
		t.Fatal(err)
	}
	stmts := cqlStatements(string(b))
	if len(stmts) != 2 || !strings.HasPrefix(stmts[0], "CREATE KEYSPACE IF NOT EXISTS idem ") || !strings.HasPrefix(stmts[1], "CREATE TABLE IF NOT EXISTS idem.idem ") {
		t.Fatalf("schema.cql: want CREATE KEYSPACE idem, then CREATE TABLE idem.idem; got %q", stmts)
	}
	session, ks := testenv.Cassandra(t)
	ctx := ctxT(t)
	for _, st := range stmts {
		// In the test's keyspace (which exists already).
		st = strings.Replace(st, "KEYSPACE IF NOT EXISTS idem ", "KEYSPACE IF NOT EXISTS "+ks+" ", 1)
		st = strings.Replace(st, "TABLE IF NOT EXISTS idem.idem ", "TABLE IF NOT EXISTS "+ks+".idem ", 1)
		if err := session.Query(st).ExecContext(ctx); err != nil {
			t.Fatalf("%s: %v", st, err)
		}
	}
	if err := cassandra.CreateTable(ctx, session, ks+".reference"); err != nil {
		t.Fatal(err)
	}
	got, want := columns(t, session, ks, "idem"), columns(t, session, ks, "reference")
	if !slices.Equal(got, want) {
		t.Errorf("schema.cql's table: %q\ncassandra.CreateTable's: %q", got, want)
	}
	if g, w := comment(t, session, ks, "idem"), comment(t, session, ks, "reference"); g != w {
		t.Errorf("table comment: got %q, want %q", g, w)
	}
	s, err := cassandra.New(session, ks+".idem")
	if err != nil {
		t.Fatal(err)
	}
	useStore(t, s)
}

// cqlStatements splits a CQL file into statements, without comments.
func cqlStatements(src string) []string {
	var lines []string
	for _, l := range strings.Split(src, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "--") {
			lines = append(lines, l)
		}
	}
	var out []string
	// A statement ends with ';' at the end of a line (a ';' inside a string
	// literal does not end it).
	for _, st := range regexp.MustCompile(`;[ \t]*(\n|$)`).Split(strings.Join(lines, "\n"), -1) {
		if st = strings.TrimSpace(st); st != "" {
			out = append(out, strings.Join(strings.Fields(st), " "))
		}
	}
	return out
}

func columns(t *testing.T, s *gocql.Session, ks, table string) []string {
	t.Helper()
	iter := s.Query(`SELECT column_name, type, kind FROM system_schema.columns WHERE keyspace_name = ? AND table_name = ?`, ks, table).Iter()
	var name, typ, kind string
	var out []string
	for iter.Scan(&name, &typ, &kind) {
		out = append(out, fmt.Sprintf("%s %s %s", name, typ, kind))
	}
	if err := iter.Close(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func comment(t *testing.T, s *gocql.Session, ks, table string) string {
	t.Helper()
	var c string
	if err := s.Query(`SELECT comment FROM system_schema.tables WHERE keyspace_name = ? AND table_name = ?`, ks, table).Scan(&c); err != nil {
		t.Fatal(err)
	}
	return c
}

// useStore makes each of the five kernel operations succeed once on s.
func useStore(t *testing.T, s idem.Store) {
	t.Helper()
	ctx := ctxT(t)
	key := "localstack/" + rand.Text()
	it, err := s.PutIfAbsent(ctx, key, []byte("a"), time.Hour)
	if err != nil {
		t.Fatalf("PutIfAbsent: %v", err)
	}
	if it, err = s.CompareAndSwap(ctx, key, it.Version, []byte("b"), time.Hour); err != nil {
		t.Fatalf("CompareAndSwap: %v", err)
	}
	if got, err := s.Get(ctx, key); err != nil || string(got.Value) != "b" {
		t.Fatalf("Get: %q, %v", got.Value, err)
	}
	if err := s.CompareAndDelete(ctx, key, it.Version); err != nil {
		// The contract allows an unknown outcome for a deletion whose
		// response was lost (nothing is left to recognise it by); here
		// nobody else touches the key, so it must really be gone.
		if !errors.Is(err, idem.ErrUnknownOutcome) {
			t.Fatalf("CompareAndDelete: %v", err)
		}
		if got, gerr := s.Get(ctx, key); !errors.Is(gerr, idem.ErrNotFound) {
			t.Fatalf("CompareAndDelete: %v; and the key is still there: %+v, %v", err, got, gerr)
		}
		t.Logf("CompareAndDelete: %v (the key is gone)", err)
	}
	if _, applied, err := s.Upsert(ctx, key, []byte("c"), 7, time.Hour); err != nil || !applied {
		t.Fatalf("Upsert: applied %v, %v", applied, err)
	}
	if _, err := s.PutIfAbsent(ctx, key, []byte("d"), time.Hour); !errors.Is(err, idem.ErrConflict) {
		t.Fatalf("PutIfAbsent on a live key: %v, want ErrConflict", err)
	}
}
