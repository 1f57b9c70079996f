package forwarder

import (
	"encoding/binary"
	"slices"
	"sync/atomic"
	"time"

	"github.com/rtcrelay/rtcrelay/packet"
	"github.com/rtcrelay/rtcrelay/sdp"
)

// Simulcast: a publisher sends one video m-section as several encodings (layers), each with its own SSRC and
// RID. Every layer is a track of the stream (its own ring, receive statistics and keyframe requests). A
// player's video downTrack is registered with the writer for every layer; the writer forwards the layer the
// player is on and switches to the target layer at a keyframe of it, so that the player always sees one SSRC,
// continuous sequence numbers, continuous timestamps and (VP8) continuous picture IDs. The stream's
// housekeeping goroutine sets the target from the player's bandwidth estimate (selectLayer).

// noLayer: no layer forwarded (not started, or video paused because even the lowest layer does not fit).
const noLayer = 0xFF

// Layer selection policy.
const (
	upgradeHeadroom = 0.9              // a higher layer is taken when its bitrate fits 90 % of the estimate
	probeFraction   = 0.7              // ... or tried (a probe) when it fits 1/0.7 of the estimate and nothing is wrong
	probeWindow     = 4 * time.Second  // a downgrade this soon after a probe makes it a failed probe
	minBackoff      = 2 * time.Second  // wait after a failed probe, doubled per failure
	maxBackoff      = 8 * time.Second  // ... up to this
	pauseAfter      = 2 * time.Second  // video pauses when the lowest layer needed over twice the budget for this long
	stableAfter     = 10 * time.Second // on a layer that long, the backoff resets
)

// layerState is the simulcast part of a player's video downTrack.
type layerState struct {
	layers []*track // the group, in the publisher's order; immutable

	// Writer goroutine only.
	cur       uint8 // the track index forwarded now, noLayer for none
	lastTS    uint32
	lastAt    int64 // arrival time of the last packet sent
	sent      bool  // a packet was sent since start
	vp8       bool
	picRebase bool // the next VP8 packet re-bases the picture ID and TL0PICIDX offsets
	picOff    uint16
	tl0Off    uint8
	lastPic   uint16
	lastTL0   uint8

	curA      atomic.Uint32 // cur, for the other goroutines
	target    atomic.Uint32 // the track index wanted, noLayer: pause video
	tsOff     atomic.Uint32 // the downTrack's tsOff, for sender reports
	switchSeq atomic.Uint32 // 1<<16 | the player's first sequence number on the current layer
	switches  atomic.Uint64

	// Housekeeping goroutine only.
	upAt        int64 // no upgrade before (mono ns)
	backoff     time.Duration
	probeAt     int64 // when the last upgrade happened (0 = none pending)
	stableAt    int64 // when the current target was set
	lastBudge   int64
	starveSince int64 // since when not even the lowest layer fits (0: it does)
}

func newLayerState(layers []*track) *layerState {
	ls := &layerState{layers: layers, cur: noLayer, vp8: layers[0].codec == codecVP8, backoff: minBackoff}
	ls.curA.Store(noLayer)
	ls.target.Store(uint32(layers[len(layers)-1].idx))
	return ls
}

// accept decides, on the writer goroutine, whether a packet of layer idx goes to dt, and switches the layer at
// a keyframe of the target.
func (dt *downTrack) accept(idx uint8, p *packet.Buffer, keyframe bool, now int64) bool {
	ls := dt.sim
	tgt := uint8(ls.target.Load())
	if idx == ls.cur {
		if tgt == noLayer {
			ls.cur = noLayer
			ls.curA.Store(noLayer)
			return false
		}
		return true
	}
	if idx != tgt || !keyframe {
		return false
	}
	if dt.started && ls.sent {
		pubSeq := p.Header.SequenceNumber
		next := dt.lastPub + dt.seqOff + 1
		dt.seqOff = next - pubSeq
		dt.lastPub = pubSeq - 1
		dt.seqMap.Store(1<<16 | uint32(dt.seqOff))
		ls.switchSeq.Store(1<<16 | uint32(next))
		step := max((now-ls.lastAt)*int64(dt.t.info.Codec.ClockRate)/int64(time.Second), 1)
		dt.tsOff = ls.lastTS + uint32(step) - p.Header.Timestamp
		ls.tsOff.Store(dt.tsOff)
		ls.picRebase = true
	}
	ls.cur = idx
	ls.curA.Store(uint32(idx))
	ls.switches.Add(1)
	return true
}

// sentLayer records, on the writer goroutine, the packet just written to out (the rewritten packet, whose
// payload starts at payload) and keeps VP8 picture IDs continuous across switches.
func (ls *layerState) sentLayer(out []byte, payload int, ts uint32, now int64, retransmit bool) {
	if !retransmit {
		ls.lastTS, ls.lastAt, ls.sent = ts, now, true
	}
	if !ls.vp8 || payload >= len(out) {
		return
	}
	d := out[payload:]
	if d[0]&0x80 == 0 || len(d) < 2 { // no X: no picture ID to keep continuous
		return
	}
	x, i := d[1], 2
	var picAt, tl0At int = -1, -1
	if x&0x80 != 0 {
		if len(d) < i+2 || d[i]&0x80 == 0 {
			return // 7-bit picture IDs are left alone
		}
		picAt = i
		i += 2
	}
	if x&0x40 != 0 && len(d) > i {
		tl0At = i
	}
	if picAt >= 0 {
		pic := binary.BigEndian.Uint16(d[picAt:]) & 0x7FFF
		if ls.picRebase {
			ls.picOff = ls.lastPic + 1 - pic
		}
		pic = (pic + ls.picOff) & 0x7FFF
		binary.BigEndian.PutUint16(d[picAt:], 0x8000|pic)
		if !retransmit {
			ls.lastPic = pic
		}
	}
	if tl0At >= 0 {
		tl0 := d[tl0At]
		if ls.picRebase {
			ls.tl0Off = ls.lastTL0 + 1 - tl0
		}
		tl0 += ls.tl0Off
		d[tl0At] = tl0
		if !retransmit {
			ls.lastTL0 = tl0
		}
	}
	if !retransmit {
		ls.picRebase = false
	}
}

// current returns the track of the layer dt is on, nil when none.
func (dt *downTrack) current() *track {
	if dt.sim == nil {
		return dt.t
	}
	idx := uint8(dt.sim.curA.Load())
	for _, t := range dt.sim.layers {
		if t.idx == idx {
			return t
		}
	}
	return nil
}

// tracks are the stream's tracks dt is registered for.
func (dt *downTrack) tracks() []*track {
	if dt.sim != nil {
		return dt.sim.layers
	}
	return []*track{dt.t}
}

// selectLayer sets the target layer of a simulcast downTrack from the player's budget; housekeeping goroutine.
//
// The policy: layers are ordered by their measured bitrate (not by RID: a publisher may drop a layer, or send
// them in any order). Down at once to the highest layer that fits the budget (the estimate minus the stream's
// audio rate and 10 %); pause video when the lowest has needed more than twice the budget for pauseAfter. Up one layer at a time: when the next layer fits 90 %
// of the budget, or, as a probe, when it fits 1/0.7 of it and the player has been on its layer without
// trouble: a send-side estimate only grows a little above what is sent, so without probing a player would
// never climb. A probe that ends in a downgrade within probeWindow doubles the wait before the next one.
func (st *Stream) selectLayer(dt *downTrack, now int64) {
	ls := dt.sim
	var buf [maxTracks]*track
	order := buf[:0]
	for _, t := range ls.layers {
		if t.known.Load() && t.media.bitrate.Load() > 0 {
			order = append(order, t)
		}
	}
	if len(order) == 0 {
		return // nothing measured yet: keep the initial target
	}
	for i := 1; i < len(order); i++ { // insertion sort by bitrate, ascending
		for j := i; j > 0 && order[j].media.bitrate.Load() < order[j-1].media.bitrate.Load(); j-- {
			order[j], order[j-1] = order[j-1], order[j]
		}
	}
	budget := dt.p.budget()
	if budget >= 0 {
		budget = max(budget-st.audioRate()*11/10, 0)
	}
	ls.lastBudge = budget
	cur := uint8(ls.target.Load())
	pos := -1 // the target's position in order
	for i, t := range order {
		if t.idx == cur {
			pos = i
		}
	}
	fit := -1 // the highest layer that fits
	for i, t := range order {
		if budget < 0 || float64(t.media.bitrate.Load()) <= float64(budget) {
			fit = i
		}
	}
	want := pos
	switch {
	case pos < 0 && cur != noLayer: // the target is not measured (the publisher stopped it): best that fits
		want = max(fit, 0)
	case fit < pos || pos < 0 && fit < 0: // down (or pause)
		want = fit
		if fit < 0 && pos >= 0 {
			// Nothing fits: stay on the lowest layer unless it needs more than twice the budget for pauseAfter. An
			// estimate that just fell often comes back, and a late picture is better than none.
			if float64(order[0].media.bitrate.Load()) <= 2*float64(budget) {
				ls.starveSince = 0
				want = 0
			} else {
				if ls.starveSince == 0 {
					ls.starveSince = now
				}
				if now-ls.starveSince < int64(pauseAfter) {
					want = 0
				}
			}
		}
		if ls.probeAt != 0 && now-ls.probeAt < int64(probeWindow) {
			ls.backoff = min(2*ls.backoff, maxBackoff)
			ls.upAt = now + int64(ls.backoff)
		}
		ls.probeAt = 0
	case pos+1 < len(order) && now >= ls.upAt:
		next := float64(order[pos+1].media.bitrate.Load())
		switch {
		case budget < 0 || next <= float64(budget)*upgradeHeadroom: // up, or resume video at the lowest layer
			want = pos + 1
		case pos >= 0 && next*probeFraction <= float64(budget) && now-ls.stableAt >= int64(minBackoff):
			want = pos + 1
			ls.probeAt = now
		}
	}
	if fit >= 0 {
		ls.starveSince = 0
	}
	if ls.probeAt != 0 && now-ls.probeAt >= int64(probeWindow) {
		ls.probeAt = 0 // the probe held
	}
	if now-ls.stableAt >= int64(stableAfter) {
		ls.backoff = minBackoff
	}
	next := uint8(noLayer)
	if want >= 0 {
		next = order[want].idx
	}
	if next != cur {
		ls.target.Store(uint32(next))
		ls.stableAt = now
	}
	if next != noLayer && uint32(next) != ls.curA.Load() {
		for _, t := range ls.layers {
			if t.idx == next {
				st.requestKeyframe(t)
			}
		}
	}
}

// ridOf returns the RID of the track at idx among layers, "" if none.
func ridOf(layers []*track, idx uint32) string {
	for _, t := range layers {
		if uint32(t.idx) == idx {
			return t.info.RID
		}
	}
	return ""
}

// layers are the stream's simulcast layers, in the publisher's order.
func (st *Stream) layers() []*track {
	var out []*track
	for _, t := range st.tracks {
		if t.layer {
			out = append(out, t)
		}
	}
	return out
}

// target returns the track of dt's target layer (the group's first when paused).
func (dt *downTrack) target() *track {
	idx := uint8(dt.sim.target.Load())
	for _, t := range dt.sim.layers {
		if t.idx == idx {
			return t
		}
	}
	return dt.sim.layers[0]
}

// initialLayer picks a new player's first layer: the highest that fits its budget, the top one when the
// budget is unknown (a player's estimate starts from its initial value, which is refined within a second).
// Under the stream's mutex.
func (st *Stream) initialLayer(dt *downTrack) {
	ls := dt.sim
	now := st.mono()
	ls.stableAt = now
	st.selectLayer(dt, now)
}

// selectLayers runs selectLayer for every simulcast player, then updates which writers get which layer;
// housekeeping goroutine.
func (st *Stream) selectLayers() {
	st.mu.Lock()
	players := slices.Clone(st.players)
	st.mu.Unlock()
	now := st.mono()
	any := false
	for _, p := range players {
		for _, dt := range p.dts {
			if dt.sim != nil && !p.closed.Load() {
				st.selectLayer(dt, now)
				any = true
			}
		}
	}
	if any {
		st.mu.Lock()
		st.refreshFans()
		st.mu.Unlock()
	}
}

// refreshFans sets, for each simulcast layer, the writers that get its packets: those with a player on the
// layer or switching to it, or a relay that takes every layer. A layer nobody wants costs the packet path nothing past its ring. Under mu.
func (st *Stream) refreshFans() {
	for _, t := range st.tracks {
		if !t.layer {
			continue
		}
		var fan []*writer
		for _, w := range st.writers {
			list := w.dts[t.idx].Load()
			if list == nil {
				continue
			}
			for _, dt := range *list {
				// A relay's downTrack of this very layer (no layerState) always wants it.
				if dt.sim == nil || dt.sim.target.Load() == uint32(t.idx) || dt.sim.curA.Load() == uint32(t.idx) {
					fan = append(fan, w)
					break
				}
			}
		}
		if old := t.fan.Load(); old == nil || !slices.Equal(*old, fan) {
			t.fan.Store(&fan)
		}
	}
}

// layerPassthrough makes a relay's downTracks for the stream's layers: plain downTracks, one per layer, the
// first on tr.SSRC; the i-th layer (in the publisher's order) is stamped with tr.RIDs[i] under the relay's
// rtp-stream-id extension ID (a push offers the layers' own RIDs; a pull names its own). Under mu.
func (st *Stream) layerPassthrough(p *Player, tr sdp.Track, used *[maxTracks]bool) []*downTrack {
	var ridID uint8
	for _, e := range tr.Extensions {
		if e.URI == extRTPStreamID {
			ridID = e.ID
		}
	}
	var out []*downTrack
	for _, t := range st.tracks {
		if !t.layer || used[t.idx] || len(out) == len(tr.RIDs) {
			continue
		}
		rid := tr.RIDs[len(out)]
		used[t.idx] = true
		lt := tr
		if len(out) > 0 {
			lt.SSRC, lt.RTXSSRC = 0, 0 // newDownTrack draws one
		}
		dt := newDownTrack(p, t, lt, nil)
		if ridID != 0 && len(rid) <= maxMidLen {
			dt.rw.ridID, dt.rw.rid = ridID, []byte(rid)
		}
		out = append(out, dt)
	}
	return out
}

// audioRate is the bitrate of the stream's audio tracks (bits/s over the last second).
func (st *Stream) audioRate() int64 {
	var r int64
	for _, t := range st.tracks {
		if !t.video {
			r += int64(t.media.bitrate.Load())
		}
	}
	return r
}
