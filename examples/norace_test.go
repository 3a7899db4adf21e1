//go:build !race

package examples_test

// buildFlags: see race_test.go.
var buildFlags []string
