//go:build !race

package rudp_test

// raceEnabled: the tests run under the race detector.
const raceEnabled = false
