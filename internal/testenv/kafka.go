package testenv

import (
	"net"
	"os"
	"testing"
)

// KafkaBrokers returns the Kafka bootstrap brokers, host:port each: IDEM_KAFKA_BROKERS
// (comma-separated) if set; else it skips t, or fails it when RequireServers. testenv/up.sh
// starts a single KRaft broker on 127.0.0.1:9092 (testenv/kafka.sh), and testenv/env.sh exports
// the variable while it runs.
func KafkaBrokers(t testing.TB) []string {
	t.Helper()
	if brokers := splitList(os.Getenv("IDEM_KAFKA_BROKERS")); len(brokers) > 0 {
		for _, b := range brokers {
			if _, _, err := net.SplitHostPort(b); err != nil {
				t.Fatalf("testenv: IDEM_KAFKA_BROKERS entry %q is not host:port: %v", b, err)
			}
		}
		return brokers
	}
	unavailable(t, `no Kafka: set IDEM_KAFKA_BROKERS (testenv/up.sh kafka, then eval "$(testenv/env.sh)")`)
	return nil
}
