//go:build race

package main

// buildFlags makes the idemctl binary with the race detector when the test
// itself runs with it: it then shares the race-built packages the test
// build just compiled.
var buildFlags = []string{"-race"}
