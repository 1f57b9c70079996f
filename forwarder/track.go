package forwarder

import (
	"slices"
	"sync/atomic"

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
	fir   bool // the publisher negotiated "ccm fir"

	ssrc  atomic.Uint32
	known atomic.Bool // ssrc is valid

	ring ring // reader goroutine only
	rx   rxStats

	// fan is the snapshot of writers that serve at least one player of this track (copy-on-write under the
	// stream's mutex).
	fan atomic.Pointer[[]*writer]
	// waiting counts players of this track that wait for a keyframe.
	waiting atomic.Int32
}

func newTrack(idx int, info TrackInfo) *track {
	t := &track{idx: uint8(idx), info: info, video: info.Kind == sdp.KindVideo, codec: codecKindOf(info.Codec.Name)}
	t.info.Extensions = slices.Clone(info.Extensions)
	t.fir = slices.Contains(info.Codec.Feedback, "ccm fir")
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
