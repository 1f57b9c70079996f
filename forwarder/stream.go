package forwarder

import (
	"context"
	"log/slog"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/rtcrelay/rtcrelay/packet"
	"github.com/rtcrelay/rtcrelay/sdp"
)

// Upstream is the publisher's transport, for RTCP we send it (PLI/FIR, receiver reports). Goroutine-safe.
type Upstream interface {
	WriteRTCP(plain []byte) error
}

// DefaultMaxWriters bounds a stream's writer goroutines unless Registry.SetMaxWriters says otherwise: 8 per
// CPU (16 on 2 cores), at least 8 and at most 64. A stream runs about √players writers up to the bound. On 2
// cores, 16 writers forwarded to 1000 players with 22 % less CPU per packet than 32 and 30 % less than 8
// (bench/forward BenchmarkForwardSlab), and each writer owns a send batch and a queue.
func DefaultMaxWriters() int { return min(max(8*runtime.GOMAXPROCS(0), 8), 64) }

const (
	keyframeInterval = time.Second // at most one PLI/FIR per publisher per interval
	tickInterval     = 250 * time.Millisecond
	reportTicks      = 4 // receiver reports every reportTicks ticks
	dropLogInterval  = 5 * time.Second
	nackQueueSize    = 1024
	// initialEstimate is a new player's bandwidth estimate before any feedback (bits/s): a new player starts on
	// the highest simulcast layer under it and moves within a second or two of feedback.
	initialEstimate = 1_500_000
)

// Stream is one published stream: its tracks and its players.
type Stream struct {
	reg    *Registry
	name   string
	log    *slog.Logger
	up     Upstream
	tracks []*track
	infos  []TrackInfo
	ssrc   uint32 // ours, as the sender of RTCP to the publisher

	ctx    context.Context
	cancel context.CancelCauseFunc
	once   sync.Once
	wg     sync.WaitGroup

	// The packet path's guard against Close: HandleRTP runs only while inflight is raised and closed false.
	closed   atomic.Bool
	inflight atomic.Int32

	nackq chan nackReq // players' NACKs, served on the reader goroutine

	mu      sync.Mutex // control path: players, writers and the snapshots
	players []*Player
	writers []*writer

	firSeq atomic.Uint32

	remb      bool          // the publisher negotiated goog-remb on a (non-simulcast) video track
	rembsSent atomic.Uint64 // REMB caps sent to the publisher
	rembLast  atomic.Int64  // the last cap sent, bits/s

	unknown     atomic.Uint64 // packets of no track
	nackDrops   atomic.Uint64 // NACK requests lost because nackq was full
	nacksServed atomic.Uint64
	nacksMissed atomic.Uint64
	plisSent    atomic.Uint64
	firsSent    atomic.Uint64
	srsIn       atomic.Uint64
	badRTCP     atomic.Uint64
}

type nackReq struct {
	dt  *downTrack
	seq uint16 // the publisher's
}

func newStream(r *Registry, name string, infos []TrackInfo, up Upstream) *Stream {
	st := &Stream{
		reg: r, name: name, up: up,
		log:   r.log.With("stream", name),
		infos: slices.Clone(infos),
		nackq: make(chan nackReq, nackQueueSize),
		ssrc:  rand.Uint32() | 1,
	}
	for i, ti := range infos {
		st.tracks = append(st.tracks, newTrack(i, ti))
		st.remb = st.remb || ti.Kind == sdp.KindVideo && ti.RID == "" && slices.Contains(ti.Codec.Feedback, sdp.FeedbackGoogREMB)
	}
	st.ctx, st.cancel = context.WithCancelCause(context.Background())
	st.wg.Add(1)
	go st.run()
	return st
}

// Name is the stream's name.
func (st *Stream) Name() string { return st.name }

// Tracks describes the published tracks, with the SSRCs learned so far.
func (st *Stream) Tracks() []TrackInfo {
	out := slices.Clone(st.infos)
	for i, t := range st.tracks {
		if t.known.Load() {
			out[i].SSRC = t.ssrc.Load()
		}
	}
	return out
}

// SSRC is ours as the sender of RTCP to the publisher (PLI/FIR, receiver reports).
func (st *Stream) SSRC() uint32 { return st.ssrc }

// Done is closed when the stream stops.
func (st *Stream) Done() <-chan struct{} { return st.ctx.Done() }

func (st *Stream) mono() int64 { return int64(time.Since(st.reg.epoch)) + 1 }

// trackFor finds the track of a packet: by SSRC, or, for a track whose SSRC was not declared, by payload type
// on its first packet.
func (st *Stream) trackFor(h *rtp.Header) *track {
	ssrc, pt := h.SSRC, h.PayloadType
	for _, t := range st.tracks {
		if t.known.Load() && t.ssrc.Load() == ssrc {
			return t
		}
	}
	for _, t := range st.tracks {
		if !t.known.Load() && t.info.Codec.PayloadType == pt {
			if t.layer && (t.ridID == 0 || string(h.GetExtension(t.ridID)) != t.info.RID) {
				continue // a simulcast layer is told by its RID, which the first packets carry
			}
			t.ssrc.Store(ssrc)
			t.known.Store(true)
			st.log.Debug("learned publisher SSRC", "kind", t.info.Kind, "rid", t.info.RID, "ssrc", ssrc)
			return t
		}
	}
	return nil
}

// HandleRTP takes one decrypted packet of the publisher (p.Header parsed), lent for the call. It must be
// called from one goroutine at a time: the publisher session's reader.
func (st *Stream) HandleRTP(p *packet.Buffer) {
	st.inflight.Add(1)
	defer st.inflight.Add(-1)
	if st.closed.Load() {
		return
	}
	if len(st.nackq) > 0 {
		st.serveNACKs()
	}
	h := &p.Header
	t := st.trackFor(h)
	if t == nil {
		st.unknown.Add(1)
		return
	}
	arrival := p.Arrival
	if arrival == 0 {
		arrival = st.mono()
	}
	t.rx.update(h.SequenceNumber, h.Timestamp, p.Len(), arrival, t.info.Codec.ClockRate)
	keyframe := false
	if t.video {
		if l, ok := parseLayout(p.Bytes()); ok {
			payload := p.Bytes()[l.payload:l.payloadEnd]
			keyframe = keyframeStart(t.codec, payload)
			t.countFrame(h.Marker, keyframe, h.Timestamp, payload)
		}
	}
	t.store(p, keyframe)
	fan := t.fan.Load()
	if fan == nil {
		return
	}
	e := entry{p: p, track: t.idx, keyframe: keyframe}
	for _, w := range *fan {
		p.Retain()
		if !w.enqueue(e) {
			p.Release()
			st.dropped(w, t.idx)
		}
	}
}

// dropped counts a packet a writer's queue had no room for, for each of its players of the track.
func (st *Stream) dropped(w *writer, idx uint8) {
	w.drops.Add(1)
	if list := w.dts[idx].Load(); list != nil {
		for _, dt := range *list {
			dt.p.stats.drops.Add(1)
		}
	}
}

// postNACK queues a retransmission request for the reader goroutine; requests beyond the queue are dropped
// (counted): the player will ask again.
func (st *Stream) postNACK(r nackReq) {
	select {
	case st.nackq <- r:
	default:
		st.nackDrops.Add(1)
	}
}

// serveNACKs runs on the reader goroutine, the owner of the rings.
func (st *Stream) serveNACKs() {
	for n := len(st.nackq); n > 0; n-- {
		r := <-st.nackq
		dt := r.dt
		if dt.p.closed.Load() {
			continue
		}
		t := dt.current()
		var p *packet.Buffer
		if t != nil {
			p = t.ring.get(r.seq)
		}
		if p == nil {
			dt.p.stats.nacksMissed.Add(1)
			st.nacksMissed.Add(1)
			continue
		}
		p.Retain()
		if !dt.p.w.enqueue(entry{p: p, dt: dt, track: t.idx}) {
			p.Release()
			dt.p.stats.drops.Add(1)
			continue
		}
		dt.p.stats.nacksServed.Add(1)
		st.nacksServed.Add(1)
	}
}

// RequestKeyframe asks the publisher for a keyframe of every video track now, whatever the rate limit (a new
// publisher session took the stream over: players' decoders need a fresh reference). Control path.
func (st *Stream) RequestKeyframe() {
	for _, t := range st.tracks {
		if t.video {
			t.lastKeyReq.Store(0)
			st.requestKeyframe(t)
		}
	}
}

// requestKeyframe sends a PLI (and a FIR when negotiated) for t to the publisher unless one was sent for t less
// than keyframeInterval ago (per track: simulcast layers are encoded, and asked for, apart). It reports whether
// it sent.
func (st *Stream) requestKeyframe(t *track) bool {
	if !t.known.Load() || st.closed.Load() {
		return false
	}
	now := st.mono()
	last := t.lastKeyReq.Load()
	if last != 0 && now-last < int64(keyframeInterval) {
		return false
	}
	if !t.lastKeyReq.CompareAndSwap(last, now) {
		return false
	}
	media := t.ssrc.Load()
	pkts := []rtcp.Packet{&rtcp.PictureLossIndication{SenderSSRC: st.ssrc, MediaSSRC: media}}
	if t.fir {
		pkts = append(pkts, &rtcp.FullIntraRequest{SenderSSRC: st.ssrc, MediaSSRC: media,
			FIR: []rtcp.FIREntry{{SSRC: media, SequenceNumber: uint8(st.firSeq.Add(1))}}})
	}
	buf, err := rtcp.Marshal(pkts)
	if err == nil {
		err = st.up.WriteRTCP(buf)
	}
	if err != nil {
		st.log.Debug("keyframe request", "err", err)
		return false
	}
	st.plisSent.Add(1)
	if t.fir {
		st.firsSent.Add(1)
	}
	return true
}

// HandleRTCP takes the publisher's decrypted RTCP: sender reports are rewritten for every player (so they
// keep lip sync) and remembered for our receiver reports; the rest is terminated.
func (st *Stream) HandleRTCP(plain []byte) {
	if st.closed.Load() {
		return
	}
	pkts, err := rtcp.Unmarshal(plain)
	if err != nil {
		st.badRTCP.Add(1)
		return
	}
	for _, pkt := range pkts {
		sr, ok := pkt.(*rtcp.SenderReport)
		if !ok {
			continue
		}
		st.srsIn.Add(1)
		var t *track
		for _, x := range st.tracks {
			if x.known.Load() && x.ssrc.Load() == sr.SSRC {
				t = x
			}
		}
		if t == nil {
			continue
		}
		now := q16(st.mono())
		t.rx.lastSR.Store(uint64(uint32(sr.NTPTime>>16))<<32 | uint64(now))
		st.forwardSR(t, sr, now)
	}
}

func (st *Stream) forwardSR(t *track, sr *rtcp.SenderReport, now uint32) {
	fan := t.fan.Load()
	if fan == nil {
		return
	}
	for _, w := range *fan {
		list := w.dts[t.idx].Load()
		if list == nil {
			continue
		}
		for _, dt := range *list {
			if dt.seqMap.Load() == 0 {
				continue // not started: the player knows nothing of this SSRC yet
			}
			var tsOff uint32
			if dt.sim != nil {
				if dt.sim.curA.Load() != uint32(t.idx) {
					continue // a layer the player is not on
				}
				tsOff = dt.sim.tsOff.Load()
			}
			out := rtcp.SenderReport{
				SSRC:        dt.rw.ssrc,
				NTPTime:     sr.NTPTime,
				RTPTime:     sr.RTPTime + tsOff,
				PacketCount: uint32(dt.packets.Load()),
				OctetCount:  uint32(dt.octets.Load()),
			}
			buf, err := out.Marshal()
			if err != nil {
				continue
			}
			dt.lastSR.Store(uint64(uint32(sr.NTPTime>>16))<<32 | uint64(now))
			if err := dt.p.out.WriteRTCP(buf); err != nil {
				dt.p.stats.writeErrors.Add(1)
			}
		}
	}
}

// run is the stream's housekeeping goroutine: keyframe requests for waiting players, receiver reports to the
// publisher, rate-limited drop logging.
func (st *Stream) run() {
	defer st.wg.Done()
	tk := time.NewTicker(tickInterval)
	defer tk.Stop()
	var ticks int
	var loggedDrops uint64
	var loggedAt int64
	for {
		select {
		case <-st.ctx.Done():
			return
		case <-tk.C:
		}
		ticks++
		for _, t := range st.tracks {
			// Plain players and relays' layer passthroughs; the request is sent once the track is known (a
			// layer's SSRC is learned from its first packets), so a relay that subscribed early gets its keyframe.
			if t.video && t.waiting.Load() > 0 {
				st.requestKeyframe(t)
			}
		}
		st.selectLayers()
		if ticks%reportTicks == 0 {
			st.sendReceiverReport()
			st.sendREMB()
			now := st.mono()
			for _, t := range st.tracks {
				t.sampleRates(now)
			}
		}
		if now := st.mono(); now-loggedAt >= int64(dropLogInterval) {
			if d := st.Stats().Drops; d != loggedDrops {
				st.log.Warn("players too slow: packets dropped", "drops", d-loggedDrops, "total", d)
				loggedDrops, loggedAt = d, now
			}
		}
	}
}

func (st *Stream) sendReceiverReport() {
	rr := rtcp.ReceiverReport{SSRC: st.ssrc}
	now := q16(st.mono())
	for _, t := range st.tracks {
		if !t.known.Load() {
			continue
		}
		if r, ok := t.rx.report(t.ssrc.Load(), now); ok {
			rr.Reports = append(rr.Reports, r)
		}
	}
	if len(rr.Reports) == 0 {
		return
	}
	buf, err := rr.Marshal()
	if err == nil {
		err = st.up.WriteRTCP(buf)
	}
	if err != nil {
		st.log.Debug("receiver report", "err", err)
	}
}

// Subscribe adds a player whose negotiated tracks (sdp.NegotiatePlay) are matched to the stream's by kind.
// Video starts at the next keyframe; one is requested from the publisher at once.
func (st *Stream) Subscribe(out Downstream, tracks []sdp.Track) (*Player, error) {
	st.mu.Lock()
	if st.closed.Load() {
		st.mu.Unlock()
		return nil, ErrStreamClosed
	}
	p := &Player{st: st, out: out}
	var used [maxTracks]bool
	for _, tr := range tracks {
		if tr.Codec.Name == "" || tr.Direction == sdp.DirInactive || tr.Direction == sdp.DirRecvOnly {
			continue
		}
		if tr.Kind == sdp.KindVideo && len(tr.RIDs) > 0 {
			// A relay: it takes every layer it offered, each on an SSRC of its own, stamped with its RID.
			p.dts = append(p.dts, st.layerPassthrough(p, tr, &used)...)
			continue
		}
		for _, t := range st.tracks {
			if !used[t.idx] && t.info.Kind == tr.Kind {
				var layers []*track
				if t.layer {
					layers = st.layers()
				}
				used[t.idx] = true
				for _, l := range layers {
					used[l.idx] = true
				}
				p.dts = append(p.dts, newDownTrack(p, t, tr, layers))
				break
			}
		}
	}
	if len(p.dts) == 0 {
		st.mu.Unlock()
		return nil, ErrNoTracks
	}
	for _, dt := range p.dts {
		p.twcc = p.twcc || dt.rw.twccID != 0
	}
	p.ctx, p.cancel = context.WithCancelCause(st.ctx)
	p.w = st.pickWriter()
	p.w.nplayers++
	var video []*track
	for _, dt := range p.dts {
		if dt.t.video {
			dt.waiting.Store(true) // ended by stopWaiting
			if dt.sim != nil {
				st.initialLayer(dt)
				video = append(video, dt.target())
			} else {
				dt.t.waiting.Add(1)
				video = append(video, dt.t)
			}
		}
		for _, t := range dt.tracks() {
			old := p.w.dts[t.idx].Load()
			var list []*downTrack
			if old != nil {
				list = slices.Clone(*old)
			}
			p.w.dts[t.idx].Store(ptr(append(list, dt)))
			if (old == nil || len(*old) == 0) && !t.layer {
				var fan []*writer
				if f := t.fan.Load(); f != nil {
					fan = slices.Clone(*f)
				}
				t.fan.Store(ptr(append(fan, p.w)))
			}
		}
	}
	st.refreshFans()
	st.players = append(st.players, p)
	st.mu.Unlock()
	for _, t := range video {
		st.requestKeyframe(t)
	}
	return p, nil
}

func ptr[T any](v T) *T { return &v }

// pickWriter returns the writer for one more player: about √N writers for N players, each new player on the
// least loaded. Under mu.
func (st *Stream) pickWriter() *writer {
	want := min(int(math.Ceil(math.Sqrt(float64(len(st.players)+1)))), st.reg.writerCap())
	if len(st.writers) < want {
		w := newWriter(st)
		st.writers = append(st.writers, w)
		st.wg.Add(1)
		go func() {
			defer st.wg.Done()
			w.run()
		}()
		return w
	}
	best := st.writers[0]
	for _, w := range st.writers[1:] {
		if w.nplayers < best.nplayers {
			best = w
		}
	}
	return best
}

// removePlayer takes p out of the snapshots; the caller then waits for a writer barrier.
func (st *Stream) removePlayer(p *Player) {
	st.mu.Lock()
	defer st.mu.Unlock()
	i := slices.Index(st.players, p)
	if i < 0 {
		return
	}
	st.players = slices.Delete(st.players, i, i+1)
	p.w.nplayers--
	defer st.refreshFans()
	for _, dt := range p.dts {
		dt.stopWaiting()
		for _, t := range dt.tracks() {
			old := p.w.dts[t.idx].Load()
			if old == nil {
				continue
			}
			list := slices.DeleteFunc(slices.Clone(*old), func(x *downTrack) bool { return x == dt })
			p.w.dts[t.idx].Store(&list)
			if len(list) == 0 && !t.layer {
				if f := t.fan.Load(); f != nil {
					fan := slices.DeleteFunc(slices.Clone(*f), func(x *writer) bool { return x == p.w })
					t.fan.Store(&fan)
				}
			}
		}
	}
}

// PlayerStats returns every player's counters, in subscription order.
func (st *Stream) PlayerStats() []PlayerStats {
	st.mu.Lock()
	players := slices.Clone(st.players)
	st.mu.Unlock()
	out := make([]PlayerStats, 0, len(players))
	for _, p := range players {
		out = append(out, p.Stats())
	}
	return out
}

// Players is the number of players.
func (st *Stream) Players() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return len(st.players)
}

// Close ends the stream (the publisher is gone): every player ends with ErrPublisherStopped, the writers stop,
// the rings are released and the name is free again. Idempotent; returns when everything has stopped.
func (st *Stream) Close() {
	st.once.Do(func() {
		st.mu.Lock()
		st.closed.Store(true)
		players := st.players
		st.players = nil
		writers := slices.Clone(st.writers)
		st.mu.Unlock()
		for st.inflight.Load() != 0 {
			runtime.Gosched() // a HandleRTP in progress finishes its packet
		}
		st.reg.remove(st)
		st.cancel(ErrPublisherStopped)
		for _, p := range players {
			p.closed.Store(true)
		}
		for _, w := range writers {
			close(w.quit)
		}
		st.wg.Wait()
		for _, t := range st.tracks {
			t.ring.release()
		}
		st.log.Info("stream closed", "players", len(players))
	})
}

// StreamStats is a snapshot of a stream's counters.
type StreamStats struct {
	PacketsIn, BytesIn   uint64 // from the publisher, all tracks
	PacketsOut, BytesOut uint64 // to players, all players
	Drops                uint64 // packet×writer queue entries dropped because a writer queue was full
	UnknownPackets       uint64 // packets of no published track (unknown SSRC/PT)
	NACKsServed          uint64
	NACKsMissed          uint64
	NACKsDropped         uint64 // requests lost because the NACK queue was full
	PLIsSent, FIRsSent   uint64 // keyframe requests sent to the publisher
	REMBsSent            uint64 // receiver estimates (caps) sent to the publisher
	REMBBitrate          int64  // the last one, bits/s (0: none sent)
	SenderReports        uint64 // from the publisher
	BadRTCP              uint64
	Players              int
	Writers              int
	Tracks               []TrackStats // per published track, in offer order
}

// Stats returns the stream's counters.
func (st *Stream) Stats() StreamStats {
	s := StreamStats{
		UnknownPackets: st.unknown.Load(), NACKsServed: st.nacksServed.Load(), NACKsMissed: st.nacksMissed.Load(),
		NACKsDropped: st.nackDrops.Load(), PLIsSent: st.plisSent.Load(), FIRsSent: st.firsSent.Load(),
		SenderReports: st.srsIn.Load(), BadRTCP: st.badRTCP.Load(),
		REMBsSent: st.rembsSent.Load(), REMBBitrate: st.rembLast.Load(),
	}
	s.Tracks = make([]TrackStats, 0, len(st.tracks))
	for _, t := range st.tracks {
		s.PacketsIn += t.rx.packets.Load()
		s.BytesIn += t.rx.bytes.Load()
		s.Tracks = append(s.Tracks, t.stats())
	}
	st.mu.Lock()
	s.Players, s.Writers = len(st.players), len(st.writers)
	for _, w := range st.writers {
		s.PacketsOut += w.packetsOut.Load()
		s.BytesOut += w.bytesOut.Load()
		s.Drops += w.drops.Load()
	}
	st.mu.Unlock()
	return s
}
