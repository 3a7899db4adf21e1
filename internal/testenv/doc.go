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
//     With a Docker engine, `eval "$(make -s docker-env)"` starts Cassandra and moto in
//     containers instead (testenv/docker, a module of its own, so testcontainers and the
//     Docker client never enter the library's module graph) and exports the same variables.
//  2. Neither: the test is skipped with the reason. With IDEM_REQUIRE_SERVERS=1 (set by CI) it
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
