// Package testenv finds the real servers that idemkit's integration tests run against:
// DynamoDB-compatible emulators (moto, ministack) and Apache Cassandra 5.0.
//
// Every helper looks for a server in the same order:
//
//  1. The environment. IDEM_DYNAMODB_ENDPOINTS is a comma-separated list of name=url pairs
//     (moto=http://127.0.0.1:5000,ministack=http://127.0.0.1:4566); IDEM_DYNAMODB_ENDPOINT=url
//     adds one endpoint named "dynamodb". IDEM_CASSANDRA_HOSTS is a comma-separated list of
//     host:port. The scripts in testenv/ start such servers without Docker, and
//     `eval "$(testenv/env.sh)"` exports these variables.
//  2. A container, through testcontainers-go, when a Docker engine answers and the test is not
//     run with -short: IDEM_DYNAMODB_IMAGE (default motoserver/moto, an open-source emulator)
//     and IDEM_CASSANDRA_IMAGE (default cassandra:5.0). One container per image is shared by
//     all tests of a test binary; the testcontainers reaper (Ryuk) removes it when the binary
//     exits.
//  3. Neither: the test is skipped with the reason. With IDEM_REQUIRE_SERVERS=1 (set by CI) it
//     fails instead, so a missing server can never pass as green.
//
// Each test gets its own table or keyspace (UniqueName), removed when the test ends, so tests
// may run in parallel against one server and leave nothing behind.
//
// Emulators differ from DynamoDB in known ways. A test that depends on such a behaviour names
// it as a Capability and skips on a server that lacks it:
//
//	if reason, lacks := srv.Lacks(testenv.CapTTLDeletion); lacks {
//		t.Skip(reason)
//	}
package testenv
