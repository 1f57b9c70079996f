package forwarder

import (
	"math"
	"slices"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/rtcrelay/rtcrelay/packet"
	"github.com/rtcrelay/rtcrelay/sdp"
)

// TrackInfo describes one published track (one m-section of the publisher's offer).
type TrackInfo struct {
	Kind       string // "audio" or "video"
	Codec      sdp.Codec
	Extensions []sdp.Extension
	SSRC       uint32 // the publisher's SSRC when the offer declared it; 0: learned from the payload type
	// RID is the rtp-stream-id of one simulcast encoding ("" for a plain track). The video tracks of a stream
	// that have a RID are the layers of one simulcast group: each is a track with its own ring, its SSRC learned
	// from the RID header extension of its first packet, and a player receives one of them at a time.
	RID string
}

// The rings are a track's NACK cache: each slot holds one pooled packet.Buffer (about 1.8 kB, whatever the
// packet's size), so a full video ring costs about 0.9 MB and an audio ring 0.1 MB per stream. 512 video
// packets are 3.5 s of history at 1.5 Mbit/s and still 1.3 s at 4 Mbit/s, far more than a retransmission can
// usefully come late (a few round trips); 64 audio packets are 1.3 s of 20 ms Opus frames.
const (
	maxTracks     = 8
	videoRingSize = 512
	audioRingSize = 64
)

// track is one published track.
type track struct {
	idx   uint8
	info  TrackInfo
	video bool
	codec codecKind
	fir   bool  // the publisher negotiated "ccm fir"
	ridID uint8 // the publisher's ID of the rtp-stream-id extension, for a simulcast layer
	layer bool  // a simulcast layer (info.RID != "")

	lastKeyReq atomic.Int64 // mono time of the last PLI/FIR sent for this track, 0 = never

	ssrc  atomic.Uint32
	known atomic.Bool // ssrc is valid

	ring ring // reader goroutine only
	rx   rxStats

	// fan is the snapshot of writers that serve at least one player of this track (copy-on-write under the
	// stream's mutex).
	fan atomic.Pointer[[]*writer]
	// waiting counts the players of this track that wait for a keyframe (not simulcast players: their layer
	// selection asks for their keyframes; a relay's passthrough of a layer is counted).
	waiting atomic.Int32

	media mediaStats
}

// mediaStats are a track's metrics counters (REST display:["metrics"], Prometheus). The reader goroutine owns
// the plain fields and bumps the atomics; the stream's housekeeping goroutine turns counter deltas into rates
// once a second (sampleRates), so the packet path only ever does a few atomic adds.
type mediaStats struct {
	lastKeyTS    uint32 // reader only: RTP timestamp of the last keyframe counted
	keySeen      bool
	framesAtKey  uint64
	frames       atomic.Uint64 // video frames (packets with the marker bit)
	keyframes    atomic.Uint64
	gop          atomic.Uint32 // frames between the last two keyframes
	size         atomic.Uint32 // width<<16 | height from the last keyframe, 0 = unknown (VP8 only)
	nacks        atomic.Uint64 // sequence numbers players asked for (RTCP path)
	plis         atomic.Uint64 // keyframe requests (PLI/FIR) received from players (RTCP path)
	bitrate      atomic.Uint64 // bits/s over the last second (housekeeping goroutine)
	fpsX100      atomic.Uint32 // frames/s × 100 over the last second
	prevBytes    uint64        // housekeeping goroutine only
	prevFrames   uint64
	prevSampleNs int64
}

// countFrame records the frame accounting of one packet; reader goroutine only, no allocation.
func (t *track) countFrame(marker, keyframe bool, ts uint32, payload []byte) {
	m := &t.media
	if marker {
		m.frames.Add(1)
	}
	if !keyframe || t.codec == codecOther || (m.keySeen && m.lastKeyTS == ts) {
		return
	}
	frames := m.frames.Load()
	if m.keySeen {
		m.gop.Store(uint32(min(frames-m.framesAtKey, math.MaxUint32)))
	}
	m.keySeen, m.lastKeyTS, m.framesAtKey = true, ts, frames
	m.keyframes.Add(1)
	if t.codec == codecVP8 {
		if w, h, ok := vp8Size(payload); ok {
			m.size.Store(uint32(w)<<16 | uint32(h))
		}
	}
}

// sampleRates turns the byte and frame counters into per-second rates; housekeeping goroutine only.
func (t *track) sampleRates(nowNs int64) {
	m := &t.media
	bytes, frames := t.rx.bytes.Load(), m.frames.Load()
	if m.prevSampleNs != 0 {
		if dt := nowNs - m.prevSampleNs; dt > 0 {
			m.bitrate.Store((bytes - m.prevBytes) * 8 * uint64(time.Second) / uint64(dt))
			m.fpsX100.Store(uint32((frames - m.prevFrames) * 100 * uint64(time.Second) / uint64(dt)))
		}
	}
	m.prevBytes, m.prevFrames, m.prevSampleNs = bytes, frames, nowNs
}

// TrackStats is a snapshot of one published track's metrics.
type TrackStats struct {
	Kind          string // "audio" or "video"
	RID           string // a simulcast layer's RID, "" for a plain track
	Codec         string // e.g. "VP8", "opus"
	PayloadType   uint8
	Packets       uint64
	Bytes         uint64 // RTP payload and header octets received
	Lost          uint64 // packets expected (by sequence number) but not received, never negative
	Bitrate       uint64 // bits/s over the last second
	FPS           float64
	Frames        uint64 // video: frames received (marker bits)
	Keyframes     uint64
	GOP           uint32 // video: frames between the last two keyframes
	Width, Height uint16 // video: from the last keyframe (VP8 only), 0 = unknown
	NACKs         uint64 // sequence numbers players asked to retransmit
	PLIs          uint64 // keyframe requests players sent
}

func (t *track) stats() TrackStats {
	m := &t.media
	s := TrackStats{
		Kind: t.info.Kind, RID: t.info.RID, Codec: t.info.Codec.Name, PayloadType: t.info.Codec.PayloadType,
		Packets: t.rx.packets.Load(), Bytes: t.rx.bytes.Load(), Bitrate: m.bitrate.Load(),
		FPS: float64(m.fpsX100.Load()) / 100, Frames: m.frames.Load(), Keyframes: m.keyframes.Load(),
		GOP: m.gop.Load(), NACKs: m.nacks.Load(), PLIs: m.plis.Load(),
	}
	if s.Packets > 0 {
		expected := uint64(t.rx.extMax.Load()-t.rx.baseSeq.Load()) + 1
		if expected > s.Packets {
			s.Lost = expected - s.Packets
		}
	}
	if sz := m.size.Load(); sz != 0 {
		s.Width, s.Height = uint16(sz>>16), uint16(sz)
	}
	return s
}

func newTrack(idx int, info TrackInfo) *track {
	t := &track{idx: uint8(idx), info: info, video: info.Kind == sdp.KindVideo, codec: codecKindOf(info.Codec.Name)}
	t.info.Extensions = slices.Clone(info.Extensions)
	t.fir = slices.Contains(info.Codec.Feedback, "ccm fir")
	if info.RID != "" && t.video {
		t.layer = true
		for _, e := range info.Extensions {
			if e.URI == extRTPStreamID {
				t.ridID = e.ID
			}
		}
	}
	size := audioRingSize
	if t.video {
		size = videoRingSize
	}
	t.ring = newRing(size)
	if info.SSRC != 0 {
		t.ssrc.Store(info.SSRC)
		t.known.Store(true)
	}
	return t
}

// rxStats is the RFC 3550 receive state of a track. The reader goroutine owns the plain fields and publishes
// what the report goroutine reads in atomics.
type rxStats struct {
	started     bool
	maxSeq      uint16
	cycles      uint32
	lastTransit int64
	jitterQ4    uint32 // jitter × 16, in timestamp units

	packets  atomic.Uint64
	bytes    atomic.Uint64
	extMax   atomic.Uint32
	baseSeq  atomic.Uint32
	jitter   atomic.Uint32
	lastSR   atomic.Uint64 // middle 32 bits of the SR's NTP time << 32 | arrival in 1/65536 s units
	reported struct {      // report goroutine only
		expected, received uint64
	}
}

// update records one received packet; arrivalNs is any monotonic nanosecond clock.
func (rx *rxStats) update(seq uint16, ts uint32, size int, arrivalNs int64, clockRate uint32) {
	rx.packets.Add(1)
	rx.bytes.Add(uint64(size))
	if !rx.started {
		rx.started = true
		rx.maxSeq = seq
		rx.baseSeq.Store(uint32(seq))
		rx.extMax.Store(uint32(seq))
	} else if d := seq - rx.maxSeq; d != 0 && d < 0x8000 {
		if seq < rx.maxSeq {
			rx.cycles += 1 << 16
		}
		rx.maxSeq = seq
		rx.extMax.Store(rx.cycles | uint32(seq))
	}
	if clockRate == 0 {
		return
	}
	arrival := arrivalNs / 1000 * int64(clockRate) / 1e6
	transit := arrival - int64(ts)
	if rx.lastTransit != 0 {
		d := transit - rx.lastTransit
		if d < 0 {
			d = -d
		}
		if d < 1<<31 {
			rx.jitterQ4 += uint32(d) - (rx.jitterQ4+8)>>4
			rx.jitter.Store(rx.jitterQ4 >> 4)
		}
	}
	rx.lastTransit = transit
}

// report builds the reception report block for the publisher; nowQ16 is the time in 1/65536 s units on the
// clock lastSR was stamped with.
func (rx *rxStats) report(ssrc uint32, nowQ16 uint32) (rtcp.ReceptionReport, bool) {
	received := rx.packets.Load()
	if received == 0 {
		return rtcp.ReceptionReport{}, false
	}
	extMax := rx.extMax.Load()
	expected := uint64(extMax-rx.baseSeq.Load()) + 1
	lost := int64(expected) - int64(received)
	lost = max(min(lost, 0x7FFFFF), -0x800000)
	expInt := expected - rx.reported.expected
	recInt := received - rx.reported.received
	rx.reported.expected, rx.reported.received = expected, received
	var fraction uint8
	if lostInt := int64(expInt) - int64(recInt); expInt > 0 && lostInt > 0 {
		fraction = uint8(min(lostInt<<8/int64(expInt), 255))
	}
	rr := rtcp.ReceptionReport{
		SSRC:               ssrc,
		FractionLost:       fraction,
		TotalLost:          uint32(lost) & 0xFFFFFF,
		LastSequenceNumber: extMax,
		Jitter:             rx.jitter.Load(),
	}
	if sr := rx.lastSR.Load(); sr != 0 {
		rr.LastSenderReport = uint32(sr >> 32)
		rr.Delay = nowQ16 - uint32(sr)
	}
	return rr, true
}

// store keeps a packet in the ring with a reference of its own; reader goroutine only.
func (t *track) store(p *packet.Buffer, keyframe bool) {
	p.Retain()
	t.ring.put(p, keyframe)
}
