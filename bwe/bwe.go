package bwe

import (
	"math"
	"sync"
	"sync/atomic"

	"github.com/pion/rtcp"
)

// Defaults for the zero fields of Config, bits per second.
const (
	DefaultInitial = 1_000_000
	DefaultMin     = 100_000
	DefaultMax     = 20_000_000
)

const (
	// ringSize is how many sent packets are remembered: at 500 packets a
	// second (5 Mbit/s), half a second, beyond a feedback interval (50–100 ms)
	// plus an RTT. It is most of an estimator's memory (about 9 KB in all),
	// which every player with feedback has.
	ringSize = 256

	// rateWindowNs is the arrival-time window of the acked receive rate.
	rateWindowNs = 1_000_000_000
	// minRateSpanNs is the span the window must cover before its rate is
	// trusted: a few packets say nothing about a rate.
	minRateSpanNs = 100_000_000
	// rateQueue bounds the packets in the rate window (1 s at 2.5 Mbit/s of
	// 1200-byte packets); when full the oldest is dropped and the span shrinks,
	// which keeps the rate right.
	rateQueue = 256

	// burstNs groups packets sent within 5 ms of a group's first one.
	burstNs = 5_000_000
	// arrivalJumpMs is the delay variation beyond which the delay history is
	// reset (GCC's arrival time offset threshold).
	arrivalJumpMs = 3000.0
	// trendWindow is the number of groups the trendline is fitted over.
	trendWindow = 20
	// smoothing is the weight of the previous smoothed accumulated delay.
	smoothing = 0.9
	// thresholdGain scales the slope into the modified trend.
	thresholdGain = 4.0
	// maxDeltas caps the group count factor of the modified trend.
	maxDeltas = 60
	// overuseTimeMs is how long the trend must stay above the threshold.
	overuseTimeMs = 10.0
	// initialThreshold, kUp, kDown and the bounds are GCC's adaptive threshold.
	initialThreshold = 12.5
	kUp              = 0.0087
	kDown            = 0.039
	minThreshold     = 6.0
	maxThreshold     = 600.0

	// increasePerSecond is the multiplicative increase rate (8 %/s).
	increasePerSecond = 1.08
	// maxElapsedNs caps the elapsed time one increase step may use, so a long
	// silence is not turned into a jump.
	maxElapsedNs = 1_000_000_000
	// decreaseFactor is the overuse back-off relative to the receive rate.
	decreaseFactor = 0.85
	// receiveRateHeadroom and receiveRateSlack bound the increase by what was
	// actually delivered: 1.5 × receive rate + 100 kbit/s.
	receiveRateHeadroom = 1.5
	receiveRateSlack    = 100_000

	// lossWindowPackets is the number of reported packets a loss fraction is
	// computed over; fewer make it noise.
	lossWindowPackets = 20
	// lossHigh and lossLow are the loss controller's thresholds.
	lossHigh = 0.10
	lossLow  = 0.02
	// lossDecreaseIntervalNs + RTT spaces the loss back-offs (as in GCC): the
	// losses of one episode keep being reported for about an RTT after the
	// back-off, and must not cut the estimate again.
	lossDecreaseIntervalNs = 300_000_000
	// maxRTTNs bounds the measured RTT, so a stale feedback cannot mute the
	// loss controller for long.
	maxRTTNs = 1_000_000_000

	// rembTTLNs is how long a REMB caps the estimate.
	rembTTLNs = 5_000_000_000
	// twccTTLNs is how long a transport-cc feedback mutes receiver reports.
	twccTTLNs = 5_000_000_000

	// refUnitNs is the transport-cc reference time unit, 64 ms.
	refUnitNs = 64_000_000
)

// Config bounds the estimator, bits per second. Zero fields take the defaults
// DefaultInitial, DefaultMin and DefaultMax.
type Config struct {
	Initial, Min, Max int64
}

// Stats is a snapshot of an Estimator for metrics and debugging.
type Stats struct {
	// Estimate is the current estimate, bits/s.
	Estimate int64
	// ReceiveRate is the acked receive rate, bits/s (0 until known).
	ReceiveRate int64
	// LossFraction is the loss fraction of the last complete loss window.
	LossFraction float64
	// Overuse is whether the delay-based detector is in overuse.
	Overuse bool
	// Feedbacks counts transport-cc feedbacks taken.
	Feedbacks uint64
	// Lost and Received count the reported packets the ring knew.
	Lost, Received uint64
	// State is the delay-based controller's last action: "increase", "hold"
	// or "decrease" ("" before the first feedback).
	State string
}

// slot is one sent packet. meta is (uint32(seq)+1)<<32 | generation<<16 |
// size while at is valid, and 0 while the writer rewrites the slot: packing
// the size with the tag saves an atomic store per packet, and the generation
// (Sent calls / 65,536) tells a reused sequence number from the packet a
// feedback already reported.
type slot struct {
	meta atomic.Uint64
	at   atomic.Int64
}

// usage is the delay-based detector's hypothesis.
type usage int8

const (
	normal usage = iota
	overusing
	underusing
)

// Estimator estimates the bandwidth towards one player. Sent is called by one
// goroutine; all the other methods may be called from any goroutine.
type Estimator struct {
	min, max int64

	// estimate is the published estimate, bits/s.
	estimate atomic.Int64

	// ring is the send history Sent writes without a lock.
	ring [ringSize]slot
	// writes counts Sent calls; only the Sent goroutine touches it. The
	// padding keeps its per-packet writes off the cache line of mu and the
	// feedback state.
	writes uint64
	_      [56]byte

	mu sync.Mutex

	// reported is the slot word (meta) of the packet a feedback last reported
	// in each slot, reportedRecv whether it was received: duplicates are not
	// counted twice.
	reported     [ringSize]uint64
	reportedRecv [ringSize]bool

	delayEst, lossEst float64 // bits/s
	lastDelayUpdate   int64   // ns of the last delay-based rate update; 0 = none
	lastLossUpdate    int64   // ns of the last loss-based update; 0 = none
	lastLossDecrease  int64   // ns of the last loss back-off
	lossSeen          bool    // a loss back-off happened (lastLossDecrease valid)
	rembCap           int64   // bits/s, valid while rembSet
	rembSet           bool    // a REMB arrived (rembUntil valid)
	rembUntil         int64   // ns the REMB cap expires
	lastTWCC          int64   // ns of the last transport-cc feedback
	twccSeen          bool    // a transport-cc feedback was taken

	// Reference time unwrapping (24 bits of 64 ms).
	refSeen bool
	lastRef uint32
	refBase int64 // unwrapped reference time of lastRef, 64 ms units

	// Receive rate window: a ring queue of arrivals.
	rqAt               [rateQueue]int64  // arrival, ns
	rqSize             [rateQueue]uint16 // bytes (two arrays: no padding)
	rqHead, rqLen      int
	rqBytes            int64
	receiveRate        int64 // bits/s; 0 = unknown
	lastArrivalInQueue int64

	// Packet grouping.
	grp, prevGrp   group
	grpOpen        bool
	prevGrpValid   bool
	firstArrivalMs float64
	firstArrSet    bool

	// Trendline.
	accDelay, smoothDelay float64
	tx, ty                [trendWindow]float64 // arrival ms, smoothed delay ms
	tHead, tLen           int
	numDeltas             int
	trend, prevTrend      float64

	// Overuse detector.
	threshold      float64
	lastThrUpdate  float64
	thrSet         bool
	timeOverUsing  float64
	overuseCounter int
	hypothesis     usage

	// Loss window.
	winLost, winRecv int
	lossFraction     float64
	lossPending      bool // a loss window closed since the last rate update
	// rtt is the feedback delay of the newest reported packet (now − its send
	// time): an RTT that includes queuing and the feedback interval, 0 until
	// known. It spaces the loss back-offs.
	rtt        int64
	newestSent int64 // send time of the newest packet of the current feedback
	newestSet  bool

	feedbacks, lost, received uint64
	state                     string
}

// group is a burst of packets sent within burstNs of its first packet.
type group struct {
	firstSend, lastSend int64 // ns, sender clock
	lastArrival         int64 // ns, receiver clock
}

// New returns an Estimator starting at c.Initial.
func New(c Config) *Estimator {
	if c.Initial <= 0 {
		c.Initial = DefaultInitial
	}
	if c.Min <= 0 {
		c.Min = DefaultMin
	}
	if c.Max <= 0 {
		c.Max = DefaultMax
	}
	if c.Max < c.Min {
		c.Max = c.Min
	}
	c.Initial = clamp(c.Initial, c.Min, c.Max)
	e := &Estimator{
		min:           c.Min,
		max:           c.Max,
		delayEst:      float64(c.Initial),
		lossEst:       float64(c.Initial),
		threshold:     initialThreshold,
		timeOverUsing: -1,
	}
	e.estimate.Store(c.Initial)
	return e
}

// Sent records a packet sent with transport-wide sequence number seq, size
// bytes (the whole UDP payload), at atNs (monotonic ns). Only one goroutine
// may call it; it takes no lock and allocates nothing, because it runs per
// packet per player.
func (e *Estimator) Sent(seq uint16, size int, atNs int64) {
	s := &e.ring[seq%ringSize]
	// Invalidate first so a concurrent reader never pairs the new send time
	// with the old sequence number.
	s.meta.Store(0)
	s.at.Store(atNs)
	// A UDP payload is at most 65,535 bytes; the clamp also keeps the rate
	// arithmetic far from overflow.
	gen := (e.writes >> 16) & 0xffff
	e.writes++
	s.meta.Store((uint64(seq)+1)<<32 | gen<<16 | uint64(min(max(size, 0), math.MaxUint16)))
}

// lookup returns the send time and size of seq, ok false when the ring does not
// hold it (never sent, overwritten, or being rewritten).
func (e *Estimator) lookup(seq uint16) (at int64, size int64, meta uint64, ok bool) {
	s := &e.ring[seq%ringSize]
	m := s.meta.Load()
	if m>>32 != uint64(seq)+1 {
		return 0, 0, 0, false
	}
	at = s.at.Load()
	if s.meta.Load() != m {
		return 0, 0, 0, false
	}
	return at, int64(m & math.MaxUint16), m, true
}

// Estimate is the current estimate in bits/s.
func (e *Estimator) Estimate() int64 { return e.estimate.Load() }

// Stats returns a snapshot of the estimator.
func (e *Estimator) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	return Stats{
		Estimate:     e.estimate.Load(),
		ReceiveRate:  e.receiveRate,
		LossFraction: e.lossFraction,
		Overuse:      e.hypothesis == overusing,
		Feedbacks:    e.feedbacks,
		Lost:         e.lost,
		Received:     e.received,
		State:        e.state,
	}
}

// REMB takes a receiver estimate (goog-remb) in bits/s: a cap on the estimate
// for the next 5 s. A REMB of 0 caps at Config.Min, as any cap below it does.
func (e *Estimator) REMB(bps uint64, nowNs int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.rembCap = int64(min(bps, math.MaxInt64))
	e.rembSet = true
	e.rembUntil = nowNs + rembTTLNs
	e.publish(nowNs)
}

// ReceiverReport takes a receiver report's fraction lost (in 1/256) for
// players without transport-cc: the loss-based controller alone. It is ignored
// while transport-cc feedback keeps arriving.
func (e *Estimator) ReceiverReport(fractionLost uint8, nowNs int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.twccSeen && nowNs-e.lastTWCC < twccTTLNs {
		return
	}
	e.lossFraction = float64(fractionLost) / 256
	e.updateLoss(e.lossFraction, nowNs)
	e.publish(nowNs)
}

// Feedback takes one transport-cc feedback from the player. It allocates
// nothing: the packets are walked in place.
func (e *Estimator) Feedback(fb *rtcp.TransportLayerCC, nowNs int64) {
	if fb == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.feedbacks++
	e.twccSeen = true
	e.lastTWCC = nowNs

	arrival := e.unwrapRef(fb.ReferenceTime) * refUnitNs
	e.newestSet = false
	seq := fb.BaseSequenceNumber
	remaining := int(fb.PacketStatusCount)
	deltas := fb.RecvDeltas
	// report handles one status symbol. A received symbol whose delta is
	// missing (hostile or truncated feedback) counts but carries no timing.
	report := func(symbol uint16) {
		switch symbol {
		case rtcp.TypeTCCPacketReceivedSmallDelta, rtcp.TypeTCCPacketReceivedLargeDelta:
			timed := false
			if len(deltas) > 0 {
				if d := deltas[0]; d != nil {
					arrival += d.Delta * 1000
					timed = true
				}
				deltas = deltas[1:]
			}
			e.onPacket(seq, true, timed, arrival)
		case rtcp.TypeTCCPacketReceivedWithoutDelta:
			e.onPacket(seq, true, false, 0)
		default:
			e.onPacket(seq, false, false, 0)
		}
		seq++
		remaining--
	}
	for _, c := range fb.PacketChunks {
		if remaining <= 0 {
			break
		}
		switch c := c.(type) {
		case *rtcp.RunLengthChunk:
			if c != nil {
				for n := min(int(c.RunLength), remaining); n > 0; n-- {
					report(c.PacketStatusSymbol)
				}
			}
		case *rtcp.StatusVectorChunk:
			if c != nil {
				e.vector(c.SymbolSize, c.SymbolList, &remaining, report)
			}
		}
	}

	if e.newestSet && nowNs >= e.newestSent {
		e.rtt = min(nowNs-e.newestSent, maxRTTNs)
	}
	e.updateRate()
	e.updateDelay(nowNs)
	e.publish(nowNs)
}

// vector reports the symbols of a status vector chunk. In a one-bit vector 1
// means received with a small delta.
func (e *Estimator) vector(size uint16, symbols []uint16, remaining *int, report func(uint16)) {
	for _, s := range symbols {
		if *remaining <= 0 {
			return
		}
		if size == rtcp.TypeTCCSymbolSizeOneBit && s != 0 {
			s = rtcp.TypeTCCPacketReceivedSmallDelta
		}
		report(s)
	}
}

// unwrapRef unwraps the 24-bit reference time (64 ms units) against the last
// one, so arrival times stay monotonic across its 12-day wrap.
func (e *Estimator) unwrapRef(ref uint32) int64 {
	ref &= 1<<24 - 1
	if !e.refSeen {
		e.refSeen = true
		e.lastRef = ref
		e.refBase = int64(ref)
		return e.refBase
	}
	d := int64((ref - e.lastRef) & (1<<24 - 1))
	if d >= 1<<23 {
		d -= 1 << 24
	}
	e.lastRef = ref
	e.refBase += d
	return e.refBase
}

// onPacket takes one reported packet. arrivalNs is meaningful when timed.
func (e *Estimator) onPacket(seq uint16, received, timed bool, arrivalNs int64) {
	sentAt, size, meta, ok := e.lookup(seq)
	if !ok {
		return
	}
	i := seq % ringSize
	if e.reported[i] == meta {
		// Reported before: a duplicate counts nothing, but a packet reported
		// lost that arrived after all (a late, re-reported one) is moved from
		// lost to received.
		if e.reportedRecv[i] || !received {
			return
		}
		e.lost--
		if e.winLost > 0 {
			e.winLost--
		}
	}
	e.reported[i], e.reportedRecv[i] = meta, received
	if !e.newestSet || sentAt > e.newestSent {
		e.newestSent, e.newestSet = sentAt, true
	}
	if !received {
		e.lost++
		e.winLost++
		e.closeLossWindow()
		return
	}
	e.received++
	e.winRecv++
	e.closeLossWindow()
	if !timed {
		return
	}
	e.pushArrival(arrivalNs, size)
	e.group(sentAt, arrivalNs)
}

// closeLossWindow evaluates the loss window once it holds enough packets.
func (e *Estimator) closeLossWindow() {
	n := e.winLost + e.winRecv
	if n < lossWindowPackets {
		return
	}
	e.lossFraction = float64(e.winLost) / float64(n)
	e.winLost, e.winRecv = 0, 0
	e.lossPending = true
}

// pushArrival adds a packet to the receive rate window.
func (e *Estimator) pushArrival(at, size int64) {
	if e.rqLen == rateQueue {
		e.popArrival()
	}
	i := (e.rqHead + e.rqLen) % rateQueue
	e.rqAt[i], e.rqSize[i] = at, uint16(size) // size ≤ 65,535: clamped by Sent
	e.rqLen++
	e.rqBytes += size
	if at > e.lastArrivalInQueue || e.rqLen == 1 {
		e.lastArrivalInQueue = at
	}
}

// popArrival drops the oldest packet of the receive rate window.
func (e *Estimator) popArrival() {
	e.rqBytes -= int64(e.rqSize[e.rqHead])
	e.rqHead = (e.rqHead + 1) % rateQueue
	e.rqLen--
}

// updateRate recomputes the receive rate over the last second of arrivals.
func (e *Estimator) updateRate() {
	for e.rqLen > 0 && e.rqAt[e.rqHead] <= e.lastArrivalInQueue-rateWindowNs {
		e.popArrival()
	}
	if e.rqLen < 2 {
		return
	}
	span := e.lastArrivalInQueue - e.rqAt[e.rqHead]
	if span < minRateSpanNs {
		return
	}
	// The first packet's bytes arrived before the span starts.
	e.receiveRate = (e.rqBytes - int64(e.rqSize[e.rqHead])) * 8 * 1_000_000_000 / span
}

// group adds a received packet to the send-time groups and, when it opens a
// new group, feeds the delay variation of the two previous ones.
func (e *Estimator) group(sentAt, arrivalNs int64) {
	if !e.grpOpen {
		e.grp = group{firstSend: sentAt, lastSend: sentAt, lastArrival: arrivalNs}
		e.grpOpen = true
		return
	}
	if sentAt < e.grp.firstSend {
		return // reordered from an older group: no timing value
	}
	if sentAt-e.grp.firstSend <= burstNs {
		e.grp.lastSend = max(e.grp.lastSend, sentAt)
		e.grp.lastArrival = max(e.grp.lastArrival, arrivalNs)
		return
	}
	if e.prevGrpValid {
		sendDelta := float64(e.grp.lastSend-e.prevGrp.lastSend) / 1e6
		arrDelta := float64(e.grp.lastArrival-e.prevGrp.lastArrival) / 1e6
		switch d := arrDelta - sendDelta; {
		case math.Abs(d) > arrivalJumpMs:
			// A receiver clock jump or a hostile feedback: start over rather
			// than let one absurd sample (or an Inf) poison the trendline.
			e.resetDelay()
		case arrDelta >= 0:
			// Groups that arrived in the wrong order (arrDelta < 0) carry
			// no queuing information and are skipped, as in GCC.
			e.trendline(d, sendDelta, float64(e.grp.lastArrival)/1e6)
		}
	}
	e.prevGrp, e.prevGrpValid = e.grp, true
	e.grp = group{firstSend: sentAt, lastSend: sentAt, lastArrival: arrivalNs}
}

// resetDelay forgets the trendline and the detector's history.
func (e *Estimator) resetDelay() {
	e.firstArrSet = false
	e.accDelay, e.smoothDelay = 0, 0
	e.tHead, e.tLen, e.numDeltas = 0, 0, 0
	e.trend, e.prevTrend = 0, 0
	e.timeOverUsing, e.overuseCounter = -1, 0
	e.hypothesis = normal
}

// trendline feeds one delay variation (ms) into the trendline and the overuse
// detector.
func (e *Estimator) trendline(delayMs, sendDeltaMs, arrivalMs float64) {
	if !e.firstArrSet {
		e.firstArrivalMs, e.firstArrSet = arrivalMs, true
	}
	e.numDeltas = min(e.numDeltas+1, 1000)
	e.accDelay += delayMs
	e.smoothDelay = smoothing*e.smoothDelay + (1-smoothing)*e.accDelay
	i := (e.tHead + e.tLen) % trendWindow
	if e.tLen == trendWindow {
		e.tHead = (e.tHead + 1) % trendWindow
	} else {
		e.tLen++
	}
	e.tx[i], e.ty[i] = arrivalMs-e.firstArrivalMs, e.smoothDelay
	if e.tLen == trendWindow {
		if s, ok := e.slope(); ok {
			e.trend = s
		}
	}
	e.detect(sendDeltaMs, arrivalMs)
}

// slope is the least-squares slope of the trendline window.
func (e *Estimator) slope() (float64, bool) {
	var sx, sy float64
	for k := range e.tLen {
		sx += e.tx[k]
		sy += e.ty[k]
	}
	mx, my := sx/float64(e.tLen), sy/float64(e.tLen)
	var num, den float64
	for k := range e.tLen {
		dx := e.tx[k] - mx
		num += dx * (e.ty[k] - my)
		den += dx * dx
	}
	if den == 0 {
		return 0, false
	}
	return num / den, true
}

// detect compares the modified trend with the adaptive threshold.
func (e *Estimator) detect(sendDeltaMs, nowMs float64) {
	modified := float64(min(e.numDeltas, maxDeltas)) * e.trend * thresholdGain
	switch {
	case modified > e.threshold:
		if e.timeOverUsing == -1 {
			// Assume the overuse started half-way through this group.
			e.timeOverUsing = sendDeltaMs / 2
		} else {
			e.timeOverUsing += sendDeltaMs
		}
		e.overuseCounter++
		if e.timeOverUsing > overuseTimeMs && e.overuseCounter > 1 && e.trend >= e.prevTrend {
			e.timeOverUsing, e.overuseCounter = 0, 0
			e.hypothesis = overusing
		}
	case modified < -e.threshold:
		e.timeOverUsing, e.overuseCounter = -1, 0
		e.hypothesis = underusing
	default:
		e.timeOverUsing, e.overuseCounter = -1, 0
		e.hypothesis = normal
	}
	e.prevTrend = e.trend
	e.adaptThreshold(modified, nowMs)
}

// adaptThreshold moves the threshold towards |modified|: quickly down, slowly
// up, so that competing TCP-like flows do not starve the estimate, while an
// outlier (a delay spike well above it) does not move it.
func (e *Estimator) adaptThreshold(modified, nowMs float64) {
	if !e.thrSet {
		e.lastThrUpdate, e.thrSet = nowMs, true
	}
	a := math.Abs(modified)
	if a > e.threshold+15 {
		e.lastThrUpdate = nowMs
		return
	}
	k := kUp
	if a < e.threshold {
		k = kDown
	}
	dt := min(max(nowMs-e.lastThrUpdate, 0), 100)
	e.threshold += k * (a - e.threshold) * dt
	e.threshold = min(max(e.threshold, minThreshold), maxThreshold)
	e.lastThrUpdate = nowMs
}

// growth is the multiplicative increase for the time since last (ns).
func growth(last, now int64) float64 {
	if last == 0 || now <= last {
		return 1
	}
	return math.Pow(increasePerSecond, float64(min(now-last, maxElapsedNs))/1e9)
}

// updateDelay applies the detector's hypothesis to the delay-based estimate.
func (e *Estimator) updateDelay(now int64) {
	switch e.hypothesis {
	case overusing:
		base := float64(e.receiveRate)
		if base == 0 {
			base = e.delayEst
		}
		// Only ever lower: repeated overuse feedback for one episode must not
		// raise the estimate back towards a receive rate that lags behind.
		e.delayEst = min(e.delayEst, decreaseFactor*base)
		e.state = "decrease"
	case underusing:
		e.state = "hold"
	default:
		// The receive rate limits the increase, as in libwebrtc's AimdRateControl: an application-limited
		// sender (a player waiting for a keyframe gets audio only; a low simulcast layer) must not make the
		// estimate run away, nor collapse it to what happens to be sent.
		limit := math.Inf(1)
		if e.receiveRate > 0 {
			limit = receiveRateHeadroom*float64(e.receiveRate) + receiveRateSlack
		}
		if e.delayEst < limit {
			e.delayEst = min(e.delayEst*growth(e.lastDelayUpdate, now), limit)
		}
		e.state = "increase"
	}
	e.delayEst = min(max(e.delayEst, float64(e.min)), float64(e.max))
	e.lastDelayUpdate = now

	if e.lossPending {
		e.lossPending = false
		e.updateLoss(e.lossFraction, now)
	}
}

// updateLoss applies one loss fraction to the loss-based estimate.
func (e *Estimator) updateLoss(loss float64, now int64) {
	switch {
	case loss > lossHigh:
		if !e.lossSeen || now-e.lastLossDecrease >= lossDecreaseIntervalNs+e.rtt {
			// Back off from what is actually used, not from a loss-based
			// estimate that grew unconstrained while the delay-based one
			// was the lower.
			e.lossEst = min(e.lossEst, float64(e.estimate.Load())) * (1 - 0.5*loss)
			e.lastLossDecrease, e.lossSeen = now, true
		}
	case loss < lossLow:
		e.lossEst *= growth(e.lastLossUpdate, now)
	}
	e.lossEst = min(max(e.lossEst, float64(e.min)), float64(e.max))
	e.lastLossUpdate = now
}

// publish combines the estimates and the REMB cap into the published
// estimate.
func (e *Estimator) publish(now int64) {
	est := e.lossEst
	if e.twccSeen {
		est = min(est, e.delayEst)
	}
	if e.rembSet && now < e.rembUntil {
		est = min(est, float64(e.rembCap))
	}
	e.estimate.Store(clamp(int64(est), e.min, e.max))
}

// clamp bounds v to [lo, hi].
func clamp(v, lo, hi int64) int64 { return min(max(v, lo), hi) }
