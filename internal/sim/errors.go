package sim

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors wrapped by the *RunError the run methods return. Match them with errors.Is.
var (
	// ErrLivelock means the clock stopped advancing: more than Network.MaxStepsPerInstant steps
	// happened at one virtual instant (a timer that stays due after HandleTimeout, or a
	// zero-latency ping-pong), or a node's PollTransmit kept returning datagrams without end.
	ErrLivelock = errors.New("livelock: virtual time does not advance")

	// ErrStepLimit means a run took more than Network.MaxSteps steps.
	ErrStepLimit = errors.New("step limit reached")

	// ErrTimeLimit means RunUntil's condition did not become true within its virtual-time limit.
	ErrTimeLimit = errors.New("condition not met within the time limit")

	// ErrIdle means RunUntil's condition is false and nothing is left to happen: no datagram
	// in flight and no timer armed.
	ErrIdle = errors.New("network idle and condition not met")

	// ErrBadLength means a node's PollTransmit returned a length outside [0, len(buf)].
	ErrBadLength = errors.New("PollTransmit returned a length outside the buffer")
)

// RunError is the error returned by RunUntil, RunFor and Err. It carries the
// seed, so a failing test prints what reruns it, and the virtual time at which the run stopped.
// It is an immutable value once returned.
type RunError struct {
	Seed    uint64        // the Network's seed
	Elapsed time.Duration // virtual time since Epoch when the run stopped
	Err     error         // one of the sentinels above, possibly wrapped with detail
}

// Error formats the seed, the virtual time and the cause.
func (e *RunError) Error() string {
	return fmt.Sprintf("sim: seed %d at Epoch+%v: %v", e.Seed, e.Elapsed, e.Err)
}

// Unwrap returns the cause, so errors.Is(err, ErrLivelock) and alike work.
func (e *RunError) Unwrap() error { return e.Err }
