package core

import (
	"fmt"
	"time"
)

// DebugState describes a Conn's internal send and close state, for
// simulation failure reports.
func DebugState(c *Conn) string {
	var timers [numTimers]time.Time
	for k := range timers {
		timers[k] = c.timer(timerKind(k))
	}
	return fmt.Sprintf("queue %d retransmit %d unackedDelivery %d sendBuffered %d liveFrags %d inflight %d/%d flowBlocked %v dataSent %d peerMaxData %d probesOwed %d ptoCount %d closing %+v pending %d none %d timers %v",
		c.queue.len(), c.retransmit.len(), c.unackedDelivery, c.sendBuffered, c.liveFrags, c.elicitingInFlight, c.bytesInFlight,
		c.flowBlocked, c.dataSent, c.peerMaxData, c.probesOwed, c.ptoCount, c.closing, len(c.pending), len(c.noneMsgs), timers)
}
