package memstore_test

import (
	"testing"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/idemtest"
	"github.com/idemkit/idemkit/idem/memstore"
)

func TestConformance(t *testing.T) {
	idemtest.Run(t, func(t *testing.T) idem.Store { return memstore.New() })
}
