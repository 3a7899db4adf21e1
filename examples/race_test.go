//go:build race

package examples_test

// buildFlags makes the example binaries with the race detector when the
// test itself runs with it: they then share the race-built packages the
// test build just compiled, instead of compiling every dependency again.
var buildFlags = []string{"-race"}
