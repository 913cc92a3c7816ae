package core

import "time"

// ackRepeatBatch is the least number of ack-eliciting packets an ACK-only
// packet acknowledges for which it is sent twice. A receiver acknowledges
// every second packet, unless its caller hands it a batch of datagrams read
// at once and asks for packets only after the batch (as the root package
// does): then one ACK answers a whole flight, and losing it stalls a
// window-limited sender until its probe timeout, which the system's timers
// stretch to a millisecond or more on a fast path. Two copies make that 2%
// loss 0.04% (netns 2% loss: probe timeouts per 64 MiB, median 33 -> 8).
const ackRepeatBatch = 8

// acks is what we owe the peer: the packet numbers we received from it (to
// acknowledge them, and to drop a packet received twice) and when the next
// ACK frame is due (PROTOCOL.md §11). Its job, and nothing more: record a
// packet (received, onPacket), say whether an ACK is owed and due (owed,
// due), append the ACK frame (appendFrame), and be asked for one sooner
// (sendNow, onTimer).
type acks struct {
	recvd pnRanges
	// largestAt is when the newest packet number arrived (the ACK
	// frame's delay counts from it).
	largestAt time.Time
	// eliciting counts the ack-eliciting packets received since the last
	// ACK frame went out.
	eliciting uint32
	pending   bool // ack-eliciting packets received and not yet acked
	now       bool // the ACK goes out without waiting for its delay
	// repeat: the last ACK-only packet answered ackRepeatBatch or more
	// packets; it goes out once more.
	repeat bool
}

// received reports whether packet pn arrived before (or is too old to
// tell: a duplicate either way).
func (a *acks) received(pn uint64) bool { return a.recvd.contains(pn) }

// largest returns the highest packet number received.
func (a *acks) largest() (uint64, bool) { return a.recvd.largest() }

// onPacket records packet pn, received at now: an ack-eliciting one is
// acknowledged within maxAckDelay (timerAck), at once if it is the second
// since the last ACK, arrived out of order, or maxAckDelay is 0.
func (a *acks) onPacket(now time.Time, pn uint64, eliciting bool, maxAckDelay time.Duration, timers *timerSet) {
	largest, had := a.recvd.largest()
	inOrder := a.recvd.add(pn)
	if !had || pn > largest {
		a.largestAt = now
	}
	if !eliciting {
		return
	}
	a.eliciting++
	if !a.pending {
		a.pending = true
		timers.setAfter(timerAck, now, maxAckDelay)
	}
	if !inOrder || a.eliciting >= 2 || maxAckDelay == 0 {
		a.now = true
	}
}

// sendNow asks for an ACK frame in the next packet (it carries new
// flow-control credit, or answers a CLOSE).
func (a *acks) sendNow() { a.pending, a.now = true, true }

// onTimer: the delayed ACK's time came.
func (a *acks) onTimer() { a.now = true }

// owed reports whether ack-eliciting packets wait for their ACK.
func (a *acks) owed() bool { return a.pending }

// due reports whether an ACK frame must go out now, in a packet of its own
// if nothing else goes.
func (a *acks) due(now time.Time, timers *timerSet) bool {
	return a.pending && (a.now || timers.passed(timerAck, now)) || a.repeat
}

// appendFrame appends to buf[:n] the ACK frame owed (or its repeat), if
// one is and it fits within limit, carrying maxData, the flow-control
// credit credit returns (called only if there is something to
// acknowledge). It returns the new length, the number of ack-eliciting
// packets the frame answers, and whether it was appended.
func (a *acks) appendFrame(buf []byte, n, limit int, now time.Time, timers *timerSet, credit func(time.Time) uint64) (int, int, bool) {
	if !a.pending && !a.repeat {
		return n, 0, false
	}
	repeat := !a.pending
	a.repeat = false
	largest, ok := a.recvd.largest()
	if !ok {
		return n, 0, false
	}
	// (Encoded in place: what does not fit is written over or cut off.)
	k, _ := a.encode(buf[n:n], largest, a.largestAt, now, credit(now))
	if k > limit-n {
		return n, 0, false
	}
	n += k
	if repeat {
		// The second copy: one byte longer, so that segmentation
		// offload does not send both as one unit (which a software
		// path, loopback or a VM's, loses or delivers whole).
		buf[n] = framePadding
		n++
	}
	answered := int(a.eliciting)
	a.pending, a.now, a.eliciting = false, false, 0
	timers.stop(timerAck)
	return n, answered, true
}

// encode appends to buf an ACK frame of the packets received up to bound,
// its delay counted from at, carrying maxData; it returns the frame's
// length, 0 and false if no packet up to bound was received.
func (a *acks) encode(buf []byte, bound uint64, at, now time.Time, maxData uint64) (int, bool) {
	f := ackFrame{delay: uint64(max(now.Sub(at), 0) / time.Microsecond), maxData: maxData}
	var ranges [maxAckRanges]ackRange
	f.ranges = ranges[:0]
	var largest uint64
	for _, run := range a.recvd.runs {
		if run.lo > bound {
			continue
		}
		if len(f.ranges) == 0 {
			largest = min(run.hi, bound)
		}
		f.ranges = append(f.ranges, ackRange{lo: largest - min(run.hi, bound), hi: largest - run.lo})
	}
	if len(f.ranges) == 0 {
		return 0, false
	}
	f.largest = uint32(largest)
	return len(appendAck(buf, &f)), true
}

// sentAckOnly: a packet carrying only an ACK that answered answered
// ack-eliciting packets went out; a large batch's is sent twice.
func (a *acks) sentAckOnly(answered int) { a.repeat = answered >= ackRepeatBatch }

// trim gives back the runs' spare storage (an idle connection's trimIdle).
func (a *acks) trim() { a.recvd.runs = slicesClip(a.recvd.runs) }

// pnRange is a run lo..hi of received packet numbers.
type pnRange struct{ lo, hi uint64 }

// pnRanges records received packet numbers as at most maxAckRanges runs,
// newest first. Numbers below floor (dropped oldest runs) count as seen:
// a packet that old is dropped as a duplicate and, if it mattered, resent.
type pnRanges struct {
	runs  []pnRange
	floor uint64
}

// contains reports whether pn was already received (or is below the floor).
func (r *pnRanges) contains(pn uint64) bool {
	if pn < r.floor {
		return true
	}
	for _, run := range r.runs {
		if pn > run.hi {
			return false
		}
		if pn >= run.lo {
			return true
		}
	}
	return false
}

// maxAckSpan is how far below the newest received packet number the runs
// reach: an ACK frame's ranges span at most 2^32 (decodeAck rejects more),
// and a packet sent 2^31 packets ago is long given up on by its sender.
const maxAckSpan = 1 << 31

// add records pn and reports whether it arrived in order (extends the newest run).
func (r *pnRanges) add(pn uint64) (inOrder bool) {
	if len(r.runs) == 0 {
		r.runs = append(r.runs, pnRange{pn, pn})
		return true
	}
	if pn == r.runs[0].hi+1 {
		r.runs[0].hi = pn
		r.forgetOld()
		return true
	}
	i := 0
	for i < len(r.runs) && r.runs[i].lo > pn {
		i++
	}
	// runs[i] is the first run with lo <= pn (or i == len): pn > runs[i].hi.
	switch {
	case i < len(r.runs) && r.runs[i].hi+1 == pn:
		r.runs[i].hi = pn
		if i > 0 && r.runs[i-1].lo == pn+1 {
			r.runs[i-1].lo = r.runs[i].lo
			r.runs = append(r.runs[:i], r.runs[i+1:]...)
		}
	case i > 0 && r.runs[i-1].lo == pn+1:
		r.runs[i-1].lo = pn
	default:
		r.runs = append(r.runs, pnRange{})
		copy(r.runs[i+1:], r.runs[i:])
		r.runs[i] = pnRange{pn, pn}
	}
	if len(r.runs) > maxAckRanges {
		last := r.runs[len(r.runs)-1]
		r.floor = last.hi + 1
		r.runs = r.runs[:len(r.runs)-1]
	}
	r.forgetOld()
	return false
}

// forgetOld moves the floor up to maxAckSpan below the newest run, dropping
// or cutting the runs below it: unbounded, one early loss would one day put
// a range in the ACK frame that the peer must reject.
func (r *pnRanges) forgetOld() {
	newest := r.runs[0].hi
	if newest < maxAckSpan {
		return
	}
	bound := newest - maxAckSpan
	for last := &r.runs[len(r.runs)-1]; last.lo < bound; last = &r.runs[len(r.runs)-1] {
		if last.hi >= bound {
			last.lo = bound
			r.floor = max(r.floor, bound)
			return
		}
		r.floor = max(r.floor, last.hi+1)
		r.runs = r.runs[:len(r.runs)-1]
	}
}

// largest returns the highest received packet number.
func (r *pnRanges) largest() (uint64, bool) {
	if len(r.runs) == 0 {
		return 0, false
	}
	return r.runs[0].hi, true
}
