package bwe

import (
	"fmt"
	"math"
	"math/rand"
	"testing"

	"github.com/pion/rtcp"
)

const (
	ms = int64(1_000_000)
	s  = 1000 * ms
)

// link is a bottleneck of capacity bits/s with a drop-tail queue of queueNs,
// a one-way propagation delay and optional random loss.
type link struct {
	capacity int64
	queueNs  int64
	propNs   int64
	loss     float64
	rng      *rand.Rand
	prevDep  int64
}

// send returns the arrival time of a packet sent at t, ok false when dropped.
func (l *link) send(t int64, size int) (int64, bool) {
	if l.loss > 0 && l.rng.Float64() < l.loss {
		return 0, false
	}
	start := max(t, l.prevDep)
	if start-t > l.queueNs {
		return 0, false
	}
	dep := start + int64(size)*8*s/l.capacity
	l.prevDep = dep
	return dep + l.propNs, true
}

// pkt is one packet in flight or arrived.
type pkt struct {
	seq     uint16
	arrival int64
	ok      bool
}

// sim drives an Estimator through a link: a paced sender at Estimate(), a
// receiver that builds transport-cc feedback every feedbackNs.
type sim struct {
	t          *testing.T
	e          *Estimator
	l          *link
	now        int64
	seq        uint16
	budget     float64
	inflight   []pkt // sent, in seq order, not yet reported
	feedbackNs int64
	nextFb     int64
	fbCount    uint8
}

// newSim starts a simulation at time 0 with feedback every 50 ms.
func newSim(t *testing.T, e *Estimator, l *link) *sim {
	return &sim{t: t, e: e, l: l, feedbackNs: 50 * ms, nextFb: 50 * ms}
}

const pktSize = 1200

// run advances the simulation by d in 5 ms ticks.
func (m *sim) run(d int64) {
	end := m.now + d
	for m.now < end {
		m.now += 5 * ms
		m.budget += float64(m.e.Estimate()) * 0.005 / 8
		for m.budget >= pktSize {
			m.budget -= pktSize
			m.e.Sent(m.seq, pktSize, m.now)
			arr, ok := m.l.send(m.now, pktSize)
			m.inflight = append(m.inflight, pkt{seq: m.seq, arrival: arr, ok: ok})
			m.seq++
		}
		if m.now >= m.nextFb {
			m.nextFb += m.feedbackNs
			if fb := m.feedback(); fb != nil {
				m.e.Feedback(fb, m.now)
			}
		}
	}
}

// feedback reports every packet up to the highest seq that has arrived by now
// (the receiver cannot know about later ones), round-tripped through the wire
// format.
func (m *sim) feedback() *rtcp.TransportLayerCC {
	last := -1
	for i, p := range m.inflight {
		if p.ok && p.arrival <= m.now {
			last = i
		}
	}
	if last < 0 {
		return nil
	}
	// The link is FIFO, so every packet before last has arrived or was
	// dropped; the ones after it wait for the next feedback.
	report := m.inflight[:last+1]
	fb := buildFeedback(m.t, report, m.fbCount)
	m.fbCount++
	m.inflight = append(m.inflight[:0], m.inflight[last+1:]...)
	return fb
}

// buildFeedback builds a transport-cc feedback for ps (consecutive seqs) with
// two-bit status vectors, marshals and parses it.
func buildFeedback(t testing.TB, ps []pkt, count uint8) *rtcp.TransportLayerCC {
	t.Helper()
	var first int64 = -1
	for _, p := range ps {
		if p.ok {
			first = p.arrival
			break
		}
	}
	ref := first / refUnitNs
	fb := &rtcp.TransportLayerCC{
		SenderSSRC:         1,
		MediaSSRC:          2,
		BaseSequenceNumber: ps[0].seq,
		PacketStatusCount:  uint16(len(ps)),
		ReferenceTime:      uint32(ref),
		FbPktCount:         count,
	}
	cur := ref * refUnitNs / 1000 // µs
	for i := 0; i < len(ps); i += 7 {
		c := &rtcp.StatusVectorChunk{Type: rtcp.TypeTCCStatusVectorChunk, SymbolSize: rtcp.TypeTCCSymbolSizeTwoBit}
		for j := i; j < i+7; j++ {
			if j >= len(ps) || !ps[j].ok {
				c.SymbolList = append(c.SymbolList, rtcp.TypeTCCPacketNotReceived)
				continue
			}
			d := (ps[j].arrival/1000 - cur) / rtcp.TypeTCCDeltaScaleFactor
			typ := uint16(rtcp.TypeTCCPacketReceivedSmallDelta)
			if d < 0 || d > 255 {
				typ = rtcp.TypeTCCPacketReceivedLargeDelta
			}
			cur += d * rtcp.TypeTCCDeltaScaleFactor
			c.SymbolList = append(c.SymbolList, typ)
			fb.RecvDeltas = append(fb.RecvDeltas, &rtcp.RecvDelta{Type: typ, Delta: d * rtcp.TypeTCCDeltaScaleFactor})
		}
		fb.PacketChunks = append(fb.PacketChunks, c)
	}
	return roundTrip(t, fb)
}

// roundTrip sets fb's header, marshals it and parses it back as a compound
// RTCP packet, the way the SFU receives it.
func roundTrip(t testing.TB, fb *rtcp.TransportLayerCC) *rtcp.TransportLayerCC {
	t.Helper()
	n := fb.MarshalSize()
	raw := 20 + 2*len(fb.PacketChunks) // header, SSRCs, base, count, reference time
	for _, d := range fb.RecvDeltas {
		raw++
		if d.Type == rtcp.TypeTCCPacketReceivedLargeDelta {
			raw++
		}
	}
	fb.Header = rtcp.Header{
		Padding: n != raw,
		Count:   rtcp.FormatTCC,
		Type:    rtcp.TypeTransportSpecificFeedback,
		Length:  uint16(n/4 - 1),
	}
	b, err := fb.Marshal()
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	pkts, err := rtcp.Unmarshal(b)
	if err != nil {
		t.Fatalf("unmarshal: %v", err)
	}
	out, ok := pkts[0].(*rtcp.TransportLayerCC)
	if !ok {
		t.Fatalf("unmarshal: %T", pkts[0])
	}
	return out
}

// mbps is v bits/s in Mbit/s, for messages.
func mbps(v int64) float64 { return float64(v) / 1e6 }

// TestConvergeDropRecover is assertions (1)–(3): converge to a 2 Mbit/s
// link, follow it down to 500 kbit/s and back up; for shallow and deep
// bottleneck queues and two feedback intervals.
func TestConvergeDropRecover(t *testing.T) {
	for _, queue := range []int64{50, 100, 200, 300, 500} {
		for _, interval := range []int64{50, 100} {
			t.Run(fmt.Sprintf("queue%dms/feedback%dms", queue, interval), func(t *testing.T) {
				convergeDropRecover(t, queue*ms, interval*ms)
			})
		}
	}
}

// convergeDropRecover runs the three phases on a link with a queue of queue
// ns and feedback every interval ns.
func convergeDropRecover(t *testing.T, queue, interval int64) {
	e := New(Config{})
	l := &link{capacity: 2_000_000, queueNs: queue, propNs: 20 * ms}
	m := newSim(t, e, l)
	m.feedbackNs, m.nextFb = interval, interval

	m.run(10 * s)
	if got := e.Estimate(); got < 1_400_000 || got > 2_200_000 {
		t.Fatalf("after 10 s on 2 Mbit/s: estimate %.2f Mbit/s, want 1.4–2.2 (%+v)", mbps(got), e.Stats())
	}
	at10 := e.Stats()

	// within runs the simulation in 50 ms steps for at most limit and
	// returns how long it took until ok held, -1 if it never did.
	within := func(limit int64, ok func() bool) int64 {
		for d := int64(0); d < limit; {
			m.run(50 * ms)
			d += 50 * ms
			if ok() {
				return d
			}
		}
		return -1
	}

	l.capacity = 500_000
	down := within(3*s, func() bool { return e.Estimate() < 600_000 })
	if down < 0 {
		t.Fatalf("3 s after the drop to 500 kbit/s: estimate %.2f Mbit/s, want < 0.6 (%+v)", mbps(e.Estimate()), e.Stats())
	}
	m.run(3*s - down)
	at3 := e.Stats()

	l.capacity = 2_000_000
	up := within(15*s, func() bool { return e.Estimate() > 1_200_000 })
	if up < 0 {
		t.Fatalf("15 s after restoring 2 Mbit/s: estimate %.2f Mbit/s, want > 1.2 (%+v)", mbps(e.Estimate()), e.Stats())
	}
	t.Logf("10 s: %.2f Mbit/s; below 0.6 Mbit/s %d ms after the drop, %.2f Mbit/s 3 s after; above 1.2 Mbit/s %d ms after the restore",
		mbps(at10.Estimate), down/ms, mbps(at3.Estimate), up/ms)
}

// TestRandomLoss is assertion (4): 20 % random loss on an uncongested link
// lowers the estimate.
func TestRandomLoss(t *testing.T) {
	e := New(Config{Initial: 2_000_000})
	l := &link{capacity: 50_000_000, queueNs: 100 * ms, propNs: 20 * ms, loss: 0.2, rng: rand.New(rand.NewSource(1))}
	m := newSim(t, e, l)
	m.run(3 * s)
	st := e.Stats()
	if st.Estimate >= 2_000_000 {
		t.Fatalf("estimate %.2f Mbit/s after 3 s at 20%% loss, want below 2 (%+v)", mbps(st.Estimate), st)
	}
	if st.Lost == 0 || st.LossFraction < 0.05 {
		t.Fatalf("loss not seen: %+v", st)
	}
	t.Logf("%+v", st)
}

// TestREMBCaps is assertion (5): a REMB caps the estimate until it expires.
func TestREMBCaps(t *testing.T) {
	e := New(Config{Initial: 3_000_000})
	e.REMB(800_000, 0)
	if got := e.Estimate(); got != 800_000 {
		t.Fatalf("estimate %d after REMB 800k, want 800000", got)
	}
	l := &link{capacity: 10_000_000, queueNs: 100 * ms, propNs: 20 * ms}
	m := newSim(t, e, l)
	for range 8 {
		m.run(500 * ms)
		e.REMB(800_000, m.now)
		if got := e.Estimate(); got > 800_000 {
			t.Fatalf("estimate %d above the REMB cap", got)
		}
	}
	e.REMB(0, m.now) // below Min: the clamp wins
	if got := e.Estimate(); got != DefaultMin {
		t.Fatalf("estimate %d after a tiny REMB, want Min %d", got, DefaultMin)
	}
	// Without another REMB the cap expires and the estimate may grow again.
	e.REMB(800_000, m.now)
	m.run(10 * s)
	if got := e.Estimate(); got <= 800_000 {
		t.Fatalf("estimate %d still capped 10 s after the last REMB", got)
	}
}

// TestReceiverReportOnly is assertion (6): without transport-cc, 30 % loss
// backs off and 0 % grows.
func TestReceiverReportOnly(t *testing.T) {
	e := New(Config{})
	now := int64(0)
	prev := e.Estimate()
	for range 5 {
		now += s
		e.ReceiverReport(77, now) // 30 %
		got := e.Estimate()
		if got >= prev && got != DefaultMin {
			t.Fatalf("estimate %d after 30%% loss, previous %d", got, prev)
		}
		prev = got
	}
	low := prev
	for range 10 {
		now += s
		e.ReceiverReport(0, now)
	}
	if got := e.Estimate(); got <= low {
		t.Fatalf("estimate %d after 10 s at 0%% loss, was %d", got, low)
	}
	// Between 2 % and 10 %: hold.
	held := e.Estimate()
	now += s
	e.ReceiverReport(13, now) // 5 %
	if got := e.Estimate(); got != held {
		t.Fatalf("estimate %d at 5%% loss, want held %d", got, held)
	}
	if st := e.Stats(); st.Feedbacks != 0 || st.LossFraction < 0.04 {
		t.Fatalf("stats %+v", st)
	}
}

// TestReceiverReportIgnoredWithTWCC: transport-cc is the better loss signal.
func TestReceiverReportIgnoredWithTWCC(t *testing.T) {
	e := New(Config{})
	e.Sent(0, 1000, 0)
	e.Feedback(buildFeedback(t, []pkt{{seq: 0, arrival: 30 * ms, ok: true}}, 0), 50*ms)
	before := e.Estimate()
	e.ReceiverReport(255, 100*ms)
	if got := e.Estimate(); got != before {
		t.Fatalf("RR moved the estimate from %d to %d despite transport-cc", before, got)
	}
}

// TestHostileFeedback is assertion (7).
func TestHostileFeedback(t *testing.T) {
	e := New(Config{})
	for i := range 100 {
		e.Sent(uint16(i), 1200, int64(i)*ms)
	}
	cases := []*rtcp.TransportLayerCC{
		nil,
		{},
		{PacketStatusCount: 65535},
		{PacketStatusCount: 65535, PacketChunks: []rtcp.PacketStatusChunk{
			&rtcp.RunLengthChunk{PacketStatusSymbol: rtcp.TypeTCCPacketReceivedSmallDelta, RunLength: 8191},
			&rtcp.RunLengthChunk{PacketStatusSymbol: rtcp.TypeTCCPacketReceivedLargeDelta, RunLength: 8191},
		}},
		{BaseSequenceNumber: 5000, PacketStatusCount: 100, PacketChunks: []rtcp.PacketStatusChunk{
			&rtcp.RunLengthChunk{PacketStatusSymbol: rtcp.TypeTCCPacketReceivedSmallDelta, RunLength: 100},
		}, RecvDeltas: []*rtcp.RecvDelta{{Delta: 1}}},
		{PacketStatusCount: 50, PacketChunks: []rtcp.PacketStatusChunk{
			nil,
			(*rtcp.RunLengthChunk)(nil),
			(*rtcp.StatusVectorChunk)(nil),
			&rtcp.StatusVectorChunk{SymbolSize: 7, SymbolList: []uint16{9, 3, 2, 1, 0}},
			&rtcp.StatusVectorChunk{SymbolSize: rtcp.TypeTCCSymbolSizeOneBit, SymbolList: []uint16{1, 1, 0, 1}},
		}, RecvDeltas: []*rtcp.RecvDelta{nil, {Delta: -1 << 40}, {Delta: 1 << 40}}},
		{ReferenceTime: 1<<24 - 1, PacketStatusCount: 10, PacketChunks: []rtcp.PacketStatusChunk{
			&rtcp.RunLengthChunk{PacketStatusSymbol: rtcp.TypeTCCPacketReceivedWithoutDelta, RunLength: 10},
		}},
		{ReferenceTime: 0xffffffff, PacketStatusCount: 100, PacketChunks: []rtcp.PacketStatusChunk{
			&rtcp.RunLengthChunk{PacketStatusSymbol: rtcp.TypeTCCPacketReceivedSmallDelta, RunLength: 100},
		}},
	}
	// Absurd but well-formed arrival jumps across the send groups.
	jumps := &rtcp.TransportLayerCC{PacketStatusCount: 100, PacketChunks: []rtcp.PacketStatusChunk{
		&rtcp.RunLengthChunk{PacketStatusSymbol: rtcp.TypeTCCPacketReceivedLargeDelta, RunLength: 100},
	}}
	for i := range 100 {
		jumps.RecvDeltas = append(jumps.RecvDeltas, &rtcp.RecvDelta{Type: rtcp.TypeTCCPacketReceivedLargeDelta, Delta: int64(1-2*(i%2)) << 52})
	}
	cases = append(cases, jumps)
	for i, fb := range cases {
		e.Feedback(fb, int64(200+i)*ms)
		if est := e.Estimate(); est < DefaultMin || est > DefaultMax {
			t.Fatalf("case %d: estimate %d out of bounds", i, est)
		}
	}
	_ = e.Stats()
	for _, v := range []float64{e.accDelay, e.smoothDelay, e.trend, e.threshold, e.delayEst, e.lossEst} {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			t.Fatalf("hostile feedback left a non-finite state: %v", v)
		}
	}

	// The estimator still works afterwards: it follows a 500 kbit/s link.
	l := &link{capacity: 500_000, queueNs: 100 * ms, propNs: 20 * ms}
	m := newSim(t, e, l)
	m.now, m.nextFb, m.seq = s, s+50*ms, 1000
	m.run(5 * s)
	if got := e.Estimate(); got > 600_000 {
		t.Fatalf("after hostile feedback the estimate %d does not follow a 500 kbit/s link (%+v)", got, e.Stats())
	}
}

// TestSentOverwritten: a seq whose slot was reused is ignored.
func TestSentOverwritten(t *testing.T) {
	e := New(Config{})
	e.Sent(1, 1200, 0)
	e.Sent(1+ringSize, 1200, ms)
	fb := buildFeedback(t, []pkt{{seq: 1, arrival: 30 * ms}}, 0) // seq 1: lost
	e.Feedback(fb, 50*ms)
	if st := e.Stats(); st.Lost != 0 || st.Received != 0 {
		t.Fatalf("an overwritten seq was counted: %+v", st)
	}
}

// TestDuplicateReports: a packet reported twice counts once; one reported
// lost and then received moves to received; a reused seq counts again.
func TestDuplicateReports(t *testing.T) {
	e := New(Config{})
	e.Sent(0, 1200, 0)
	e.Sent(1, 1200, ms)
	lost := []pkt{{seq: 0, arrival: 30 * ms, ok: true}, {seq: 1}}
	e.Feedback(buildFeedback(t, lost, 0), 50*ms)
	e.Feedback(buildFeedback(t, lost, 1), 100*ms)
	if st := e.Stats(); st.Received != 1 || st.Lost != 1 {
		t.Fatalf("after a duplicate: %+v", st)
	}
	late := []pkt{{seq: 1, arrival: 60 * ms, ok: true}}
	e.Feedback(buildFeedback(t, late, 2), 150*ms)
	e.Feedback(buildFeedback(t, late, 3), 200*ms)
	if st := e.Stats(); st.Received != 2 || st.Lost != 0 {
		t.Fatalf("after a late arrival: %+v", st)
	}
	// 65,536 packets later seq 1 is a new packet (same size).
	for i := 2; i <= 1<<16+1; i++ {
		e.Sent(uint16(i), 1200, int64(i)*ms)
	}
	e.Feedback(buildFeedback(t, late, 4), int64(1<<16+100)*ms)
	if st := e.Stats(); st.Received != 3 {
		t.Fatalf("a reused seq was taken for a duplicate: %+v", st)
	}
}

// TestConfigDefaults: zero fields take the defaults, Initial and Max are
// clamped.
func TestConfigDefaults(t *testing.T) {
	e := New(Config{})
	if e.Estimate() != DefaultInitial || e.min != DefaultMin || e.max != DefaultMax {
		t.Fatalf("defaults: %d %d %d", e.Estimate(), e.min, e.max)
	}
	e = New(Config{Initial: 50, Min: 1000, Max: 500})
	if e.Estimate() != 1000 || e.max != 1000 {
		t.Fatalf("clamped config: %d %d", e.Estimate(), e.max)
	}
}

// TestConcurrent runs Sent against Feedback and Stats under the race
// detector.
func TestConcurrent(t *testing.T) {
	e := New(Config{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 20000 {
			e.Sent(uint16(i), 1200, int64(i)*ms)
		}
	}()
	for i := range 200 {
		ps := make([]pkt, 20)
		for j := range ps {
			ps[j] = pkt{seq: uint16(i*20 + j), arrival: int64(i*20+j)*ms + 30*ms, ok: j%5 != 0}
		}
		e.Feedback(buildFeedback(t, ps, uint8(i)), int64(i*20)*ms)
		_ = e.Stats()
		_ = e.Estimate()
	}
	<-done
}

// FuzzFeedback: arbitrary bytes through rtcp.Unmarshal into Feedback never
// panic nor push the estimate out of bounds.
func FuzzFeedback(f *testing.F) {
	seed := buildFeedback(f, []pkt{{seq: 0, arrival: 30 * ms, ok: true}, {seq: 1}, {seq: 2, arrival: 40 * ms, ok: true}}, 0)
	b, err := seed.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		e := New(Config{})
		for i := range 64 {
			e.Sent(uint16(i), 1200, int64(i)*ms)
		}
		pkts, err := rtcp.Unmarshal(data)
		if err != nil {
			return
		}
		for i, p := range pkts {
			if fb, ok := p.(*rtcp.TransportLayerCC); ok {
				e.Feedback(fb, int64(i)*ms)
			}
		}
		if est := e.Estimate(); est < DefaultMin || est > DefaultMax {
			t.Fatalf("estimate %d out of bounds", est)
		}
	})
}

// TestAllocs enforces what the benchmarks show: Sent and Feedback allocate
// nothing.
func TestAllocs(t *testing.T) {
	e := New(Config{})
	var seq uint16
	if n := testing.AllocsPerRun(1000, func() { e.Sent(seq, 1200, int64(seq)*ms); seq++ }); n != 0 {
		t.Errorf("Sent: %v allocs/op", n)
	}
	ps := make([]pkt, 100)
	for i := range ps {
		ps[i] = pkt{seq: uint16(i), arrival: int64(i) * ms, ok: i%7 != 0}
	}
	fb := buildFeedback(t, ps, 0)
	now := int64(0)
	if n := testing.AllocsPerRun(100, func() { now += 50 * ms; e.Feedback(fb, now) }); n != 0 {
		t.Errorf("Feedback: %v allocs/op", n)
	}
}

// BenchmarkSent is the per-packet cost on the send path: 0 allocs/op.
func BenchmarkSent(b *testing.B) {
	e := New(Config{})
	b.ReportAllocs()
	var seq uint16
	for i := 0; b.Loop(); i++ {
		e.Sent(seq, 1200, int64(i))
		seq++
	}
}

// BenchmarkFeedback measures one feedback of 100 packets (about 50 ms at
// 20 Mbit/s), parsed once, plus the 100 Sent calls that refill the ring so
// every iteration sees fresh packets (about 100 × BenchmarkSent of it).
func BenchmarkFeedback(b *testing.B) {
	e := New(Config{})
	ps := make([]pkt, 100)
	for i := range ps {
		ps[i] = pkt{seq: uint16(i), arrival: int64(i) * ms / 2, ok: i%10 != 0}
	}
	fb := buildFeedback(b, ps, 0)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		base := uint16(i * 100)
		for j := range 100 {
			e.Sent(base+uint16(j), 1200, int64(i)*50*ms+int64(j)*ms/2)
		}
		fb.BaseSequenceNumber = base
		fb.ReferenceTime = uint32(int64(i) * 50 * ms / refUnitNs)
		e.Feedback(fb, int64(i)*50*ms+80*ms)
	}
}
