package torture

import "testing"

// startHTTPWire and startCQLWire: no fault proxy yet; children connect
// straight to the server.
func startHTTPWire(t *testing.T, p Plan, endpoint string) (Wire, string) { return nil, endpoint }

func startCQLWire(t *testing.T, p Plan, host string) (Wire, string) { return nil, host }
