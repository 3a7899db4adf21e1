//go:build !race

package main

// buildFlags: see race_test.go.
var buildFlags []string
