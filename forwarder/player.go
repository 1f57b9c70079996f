package forwarder

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/rtcrelay/rtcrelay/bwe"
	"github.com/rtcrelay/rtcrelay/packet"
	"github.com/rtcrelay/rtcrelay/sdp"
)

// Downstream is a player's transport. The writer rewrites each packet straight into a slot of a BatchSender of
// the player's Sender and hands it to WriteRTPBatch, which encrypts it in place and queues it; many datagrams
// leave per syscall (sendmmsg, GSO). WriteRTPBatch is called by one writer goroutine only; WriteRTCP is
// goroutine-safe.
type Downstream interface {
	// WriteRTPBatch encrypts buf (b.Buf() holding the plaintext, cap(buf) >= len(buf)+16) in place and queues it
	// on b.
	WriteRTPBatch(b BatchSender, buf []byte) error
	// Sender is what the player's datagrams leave on: players with equal Senders share each writer's
	// batch. It must be comparable and must not change.
	Sender() Sender
	WriteRTCP(plain []byte) error
}

// Sender makes the batches a writer sends through (ice.Socket's, through session.Session).
type Sender interface {
	NewBatch() BatchSender
}

// BatchSender queues outgoing datagrams of one goroutine and sends them together (*ice.Batch): the producer
// writes a datagram into Buf(), then calls Queue with its length and destination; Queue may flush when the
// batch is full; the owner calls Flush when it has nothing more to send right now.
type BatchSender interface {
	Buf() []byte // the next slot: length 0, capacity at least packet.Size+128
	Queue(n int, to netip.AddrPort) error
	Flush() error
	Len() int // datagrams queued
}

// Player is one subscriber of a stream. It is the Sink of the player's session: its RTCP (NACK, PLI/FIR, RR)
// arrives through HandleRTCP.
type Player struct {
	st     *Stream
	out    Downstream
	w      *writer
	dts    []*downTrack
	ctx    context.Context
	cancel context.CancelCauseFunc
	once   sync.Once
	closed atomic.Bool

	batch BatchSender // the writer's batch for out's Sender; writer goroutine only, set on first send
	twseq uint16      // transport-wide sequence number; writer goroutine only
	stats playerCounters

	id         atomic.Pointer[string] // SetID: the owner's name for the player (a media session ID)
	maxBitrate atomic.Int64           // SetMaxBitrate, 0 = none
	// est is the send-side estimate of the path to the player, made at its first feedback (transport-cc, REMB or
	// a receiver report): a player that never gives any costs no estimator memory (about 9 KB).
	est       atomic.Pointer[bwe.Estimator]
	twcc      bool // the player negotiated transport-cc: est is fed by its feedback, not its reports
	rembs     atomic.Uint64
	feedbacks atomic.Uint64
}

// SetID names the player (its media session ID) in PlayerStats.ID and Stream.PlayerStats.
func (p *Player) SetID(id string) { p.id.Store(&id) }

// SetMaxBitrate caps the bitrate the player's simulcast layer is chosen for (bits/s; 0 removes the cap). It
// takes effect at the next selection (within 250 ms), at the next keyframe of the new layer.
func (p *Player) SetMaxBitrate(bps int64) { p.maxBitrate.Store(max(bps, 0)) }

// estimator returns the player's estimator, making it at the first call; RTCP goroutine.
func (p *Player) estimator() *bwe.Estimator {
	if est := p.est.Load(); est != nil {
		return est
	}
	est := bwe.New(bwe.Config{Initial: initialEstimate})
	if !p.est.CompareAndSwap(nil, est) {
		return p.est.Load()
	}
	return est
}

// budget is what the player's video may use, bits/s: its estimate, capped by SetMaxBitrate; -1 = unknown.
func (p *Player) budget() int64 {
	b := int64(initialEstimate)
	if est := p.est.Load(); est != nil {
		b = est.Estimate()
	}
	if c := p.maxBitrate.Load(); c > 0 && (b < 0 || c < b) {
		b = c
	}
	return b
}

// downTrack is one player's view of one track.
type downTrack struct {
	p  *Player
	t  *track
	rw rewriter

	// Owned by the writer goroutine.
	started bool
	initSeq uint16
	seqOff  uint16 // player seq = publisher seq + seqOff
	lastPub uint16 // highest publisher seq forwarded
	tsOff   uint32
	rtxSeq  uint16 // the next RTX sequence number

	seqMap  atomic.Uint32 // 1<<16 | seqOff once started: maps a player's NACK back to the publisher's numbers
	waiting atomic.Bool   // counted in t.waiting unless sim
	packets atomic.Uint64 // sent, for sender reports
	octets  atomic.Uint64
	lastSR  atomic.Uint64 // LSR value of the last SR sent << 32 | when, in 1/65536 s
	rr      atomic.Pointer[rrInfo]

	sim *layerState // nil unless the track is a simulcast group
}

type rrInfo struct {
	fractionLost uint8
	totalLost    uint32
	jitter       uint32
	rtt          time.Duration
}

// maxJump is the largest forward step of the publisher's sequence numbers taken as loss; a larger step (a
// restarted publisher) is re-based so that the player's numbers stay continuous.
const maxJump = 3000

func newDownTrack(p *Player, t *track, tr sdp.Track, layers []*track) *downTrack {
	dt := &downTrack{p: p, t: t, initSeq: uint16(rand.Uint32())}
	if len(layers) > 0 {
		dt.sim = newLayerState(layers)
	}
	ssrc := tr.SSRC
	for ssrc == 0 {
		ssrc = rand.Uint32()
	}
	dt.rw.ssrc, dt.rw.pt = ssrc, tr.Codec.PayloadType
	ids := func(uri string) uint8 {
		for _, e := range tr.Extensions {
			if e.URI == uri {
				return e.ID
			}
		}
		return 0
	}
	for _, e := range t.info.Extensions {
		switch e.URI {
		case extMid, extTransportCC, extAbsSendTime, extRTPStreamID, extRepairStreamID:
			continue
		}
		dt.rw.ext[e.ID] = ids(e.URI)
	}
	if tr.Mid != "" && len(tr.Mid) <= maxMidLen {
		dt.rw.midID, dt.rw.mid = ids(extMid), []byte(tr.Mid)
	}
	dt.rw.twccID = ids(extTransportCC)
	if tr.RTX != nil && tr.RTXSSRC != 0 && t.video {
		dt.rw.rtxSSRC, dt.rw.rtxPT = tr.RTXSSRC, tr.RTX.PayloadType
		dt.rtxSeq = uint16(rand.Uint32())
	}
	dt.rw.astID = ids(extAbsSendTime)
	return dt
}

// start makes pubSeq the first packet the player gets.
func (dt *downTrack) start(pubSeq uint16) {
	dt.started = true
	dt.seqOff = dt.initSeq - pubSeq
	dt.lastPub = pubSeq - 1
	dt.seqMap.Store(1<<16 | uint32(dt.seqOff))
	dt.stopWaiting()
}

// stopWaiting ends dt's wait for a first keyframe. Plain players and relays' layer passthroughs are counted in
// their track's waiting (the stream's tick asks for keyframes for them); simulcast players are not (their layer
// selection asks).
func (dt *downTrack) stopWaiting() {
	if dt.waiting.CompareAndSwap(true, false) && dt.sim == nil {
		dt.t.waiting.Add(-1)
	}
}

// follow advances the player's numbering with a packet about to be sent.
func (dt *downTrack) follow(pubSeq uint16) {
	switch d := pubSeq - dt.lastPub; {
	case d == 0 || d >= 0x8000 && -d < maxJump: // duplicate or reordered
	case d < maxJump:
		dt.lastPub = pubSeq
	default:
		next := dt.lastPub + dt.seqOff + 1
		dt.seqOff = next - pubSeq
		dt.lastPub = pubSeq
		dt.seqMap.Store(1<<16 | uint32(dt.seqOff))
	}
}

// SSRC is the SSRC the player receives kind on, 0 if it does not.
func (p *Player) SSRC(kind string) uint32 {
	for _, dt := range p.dts {
		if dt.t.info.Kind == kind {
			return dt.rw.ssrc
		}
	}
	return 0
}

// Done is closed when the player ends; Err says why (ErrPublisherStopped, ErrPlayerClosed).
func (p *Player) Done() <-chan struct{} { return p.ctx.Done() }

// Err is the cause of the end, nil while playing.
func (p *Player) Err() error { return context.Cause(p.ctx) }

// Close unsubscribes; when it returns, the writer no longer touches the Downstream. Idempotent.
func (p *Player) Close() { p.close(ErrPlayerClosed) }

func (p *Player) close(cause error) {
	p.once.Do(func() {
		p.closed.Store(true)
		p.st.removePlayer(p)
		p.w.barrier()
		p.cancel(cause)
	})
}

// HandleRTP drops media from a player: players only receive.
func (p *Player) HandleRTP(*packet.Buffer) { p.stats.ignoredRTP.Add(1) }

// HandleRTCP takes the player's (decrypted) RTCP: NACKs are answered from the ring, PLI/FIR are forwarded to
// the publisher (throttled), receiver reports are terminated and recorded.
func (p *Player) HandleRTCP(plain []byte) {
	if p.closed.Load() {
		return
	}
	pkts, err := rtcp.Unmarshal(plain)
	if err != nil {
		p.stats.badRTCP.Add(1)
		return
	}
	for _, pkt := range pkts {
		switch r := pkt.(type) {
		case *rtcp.TransportLayerNack:
			p.handleNACK(r)
		case *rtcp.PictureLossIndication:
			p.stats.plis.Add(1)
			p.keyframeRequest(r.MediaSSRC)
		case *rtcp.FullIntraRequest:
			p.stats.firs.Add(1)
			p.keyframeRequest(r.MediaSSRC)
		case *rtcp.ReceiverReport:
			p.handleRR(r.Reports)
		case *rtcp.SenderReport:
			p.handleRR(r.Reports)
		case *rtcp.TransportLayerCC:
			p.feedbacks.Add(1)
			if p.twcc {
				p.estimator().Feedback(r, p.st.mono())
			}
		case *rtcp.ReceiverEstimatedMaximumBitrate:
			p.rembs.Add(1)
			p.estimator().REMB(uint64(r.Bitrate), p.st.mono())
		}
	}
}

func (p *Player) downTrack(ssrc uint32) *downTrack {
	for _, dt := range p.dts {
		if dt.rw.ssrc == ssrc {
			return dt
		}
	}
	return nil
}

func (p *Player) handleNACK(n *rtcp.TransportLayerNack) {
	dt := p.downTrack(n.MediaSSRC)
	if dt == nil {
		return
	}
	m := dt.seqMap.Load()
	if m == 0 {
		return
	}
	off := uint16(m)
	var since uint32
	if dt.sim != nil {
		since = dt.sim.switchSeq.Load()
	}
	for i := range n.Nacks {
		n.Nacks[i].Range(func(seq uint16) bool {
			p.stats.nacks.Add(1)
			if since != 0 && int16(seq-uint16(since)) < 0 {
				// Sent from the layer the player was on before: that ring is not the one to answer from.
				p.stats.nacksMissed.Add(1)
				return true
			}
			if t := dt.current(); t != nil {
				t.media.nacks.Add(1)
			}
			p.st.postNACK(nackReq{dt: dt, seq: seq - off})
			return true
		})
	}
}

func (p *Player) keyframeRequest(mediaSSRC uint32) {
	dt := p.downTrack(mediaSSRC)
	if dt == nil {
		for _, d := range p.dts {
			if d.t.video {
				dt = d
				break
			}
		}
	}
	if dt != nil && dt.t.video {
		if t := dt.current(); t != nil {
			t.media.plis.Add(1)
			p.st.requestKeyframe(t)
		}
	}
}

func (p *Player) handleRR(reports []rtcp.ReceptionReport) {
	mono := p.st.mono()
	now := q16(mono)
	now64 := func(uint32) int64 { return mono }
	for _, r := range reports {
		dt := p.downTrack(r.SSRC)
		if dt == nil {
			continue
		}
		info := &rrInfo{fractionLost: r.FractionLost, totalLost: r.TotalLost, jitter: r.Jitter}
		if sr := dt.lastSR.Load(); r.LastSenderReport != 0 && uint32(sr>>32) == r.LastSenderReport {
			if d := now - uint32(sr) - r.Delay; d < 1<<31 {
				info.rtt = time.Duration(uint64(d) * uint64(time.Second) >> 16)
			}
		}
		dt.rr.Store(info)
		if !p.twcc {
			p.estimator().ReceiverReport(r.FractionLost, now64(now))
		}
	}
	p.stats.rrs.Add(1)
}

// q16 converts a monotonic nanosecond time into the 1/65536 s units of RTCP delays.
func q16(ns int64) uint32 { return uint32(uint64(ns/1000) << 16 / 1e6) }

type playerCounters struct {
	drops, skipped, retransmits, rtxSent, nacks, nacksServed, nacksMissed atomic.Uint64
	plis, firs, rrs, writeErrors, badRTCP, ignoredRTP                     atomic.Uint64
}

// PlayerStats is a snapshot of a player's counters.
type PlayerStats struct {
	ID                    string // SetID's
	PacketsOut, BytesOut  uint64 // media sent (payload octets in BytesOut)
	Drops                 uint64 // packets dropped because the player's writer queue was full
	SkippedBeforeKeyframe uint64 // video packets not sent while waiting for the first keyframe
	NACKs                 uint64 // sequence numbers the player asked for
	NACKsServed           uint64 // of those, retransmitted
	NACKsMissed           uint64 // of those, no longer (or never) in the ring
	Retransmits           uint64
	RTXSent               uint64 // of the retransmissions, sent as RTX (RFC 4588)
	PLIs, FIRs            uint64 // keyframe requests received from the player
	ReceiverReports       uint64
	WriteErrors, BadRTCP  uint64
	FractionLost          uint8 // the worst of the player's last reports, /256
	TotalLost             uint32
	Jitter                uint32 // in timestamp units
	RTT                   time.Duration
	WaitingForKeyframe    bool
	// Simulcast (zero for a plain stream): the RID forwarded now ("" when video is paused), the one wanted,
	// the switches so far, the budget the layer was chosen for (bits/s, -1 unknown).
	Layer, TargetLayer string
	LayerSwitches      uint64
	VideoPaused        bool
	Budget             int64
	// Bandwidth estimation: the estimator's view (zero without one), transport-cc feedbacks and REMBs received.
	Estimator     bwe.Stats
	TWCCFeedbacks uint64
	REMBs         uint64
}

// Stats returns the player's counters.
func (p *Player) Stats() PlayerStats {
	s := PlayerStats{
		Budget: p.budget(), TWCCFeedbacks: p.feedbacks.Load(), REMBs: p.rembs.Load(),
		Drops: p.stats.drops.Load(), SkippedBeforeKeyframe: p.stats.skipped.Load(),
		NACKs: p.stats.nacks.Load(), NACKsServed: p.stats.nacksServed.Load(), NACKsMissed: p.stats.nacksMissed.Load(),
		Retransmits: p.stats.retransmits.Load(), RTXSent: p.stats.rtxSent.Load(), PLIs: p.stats.plis.Load(), FIRs: p.stats.firs.Load(),
		ReceiverReports: p.stats.rrs.Load(), WriteErrors: p.stats.writeErrors.Load(), BadRTCP: p.stats.badRTCP.Load(),
	}
	if est := p.est.Load(); est != nil {
		s.Estimator = est.Stats()
	} else {
		s.Estimator.Estimate = initialEstimate
	}
	if id := p.id.Load(); id != nil {
		s.ID = *id
	}
	for _, dt := range p.dts {
		s.PacketsOut += dt.packets.Load()
		s.BytesOut += dt.octets.Load()
		s.WaitingForKeyframe = s.WaitingForKeyframe || dt.waiting.Load()
		if ls := dt.sim; ls != nil {
			s.Layer, s.TargetLayer = ridOf(ls.layers, ls.curA.Load()), ridOf(ls.layers, ls.target.Load())
			s.LayerSwitches, s.VideoPaused = ls.switches.Load(), ls.target.Load() == noLayer
		}
		if r := dt.rr.Load(); r != nil {
			s.FractionLost = max(s.FractionLost, r.fractionLost)
			s.TotalLost = max(s.TotalLost, r.totalLost)
			s.Jitter = max(s.Jitter, r.jitter)
			s.RTT = max(s.RTT, r.rtt)
		}
	}
	return s
}
