package idemtest

import "testing"

func (h *harness) algorithms(t *testing.T) {}
