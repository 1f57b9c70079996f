package forwarder

import (
	"testing"
	"time"

	"github.com/rtcrelay/rtcrelay/sdp"
)

// vp8Keyframe is a VP8 payload: descriptor with X, I (15-bit picture ID), S=1, PID=0, then a keyframe header
// of 640×360 (RFC 6386 §9.1).
func vp8Keyframe() []byte {
	return []byte{0x90, 0x80, 0x81, 0x23, 0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01, 0xff}
}

func TestMetricsVP8Size(t *testing.T) {
	w, h, ok := vp8Size(vp8Keyframe())
	if !ok || w != 640 || h != 360 {
		t.Fatalf("vp8Size = %d×%d %v", w, h, ok)
	}
	inter := vp8Keyframe()
	inter[4] |= 1 // P bit: an interframe
	if _, _, ok := vp8Size(inter); ok {
		t.Fatal("size from an interframe")
	}
	if !vp8KeyframeStart(vp8Keyframe()) || vp8KeyframeStart(inter) {
		t.Fatal("keyframe detection changed")
	}
}

func TestMetricsTrackCounters(t *testing.T) {
	tr := newTrack(0, TrackInfo{Kind: sdp.KindVideo, Codec: sdp.Codec{Name: "VP8", PayloadType: 96, ClockRate: 90000}})
	key := vp8Keyframe()
	start := int64(time.Second)
	tr.sampleRates(start)
	seq := uint16(0)
	// 2 GOPs of 30 frames, 2 packets a frame, 100 bytes a packet, one packet lost in the middle
	for f := range 60 {
		ts := uint32(f * 3000)
		for pk := range 2 {
			seq++
			if seq == 7 {
				continue
			}
			tr.rx.update(seq, ts, 100, start+int64(f)*int64(time.Second)/30, 90000)
			tr.countFrame(pk == 1, pk == 0 && f%30 == 0, ts, key)
		}
	}
	tr.sampleRates(start + 2*int64(time.Second))
	s := tr.stats()
	if s.Frames != 60 || s.Keyframes != 2 || s.GOP != 30 || s.Lost != 1 || s.Packets != 119 {
		t.Errorf("counters %+v", s)
	}
	if s.Width != 640 || s.Height != 360 {
		t.Errorf("size %d×%d", s.Width, s.Height)
	}
	if s.FPS != 30 || s.Bitrate != 119*100*8/2 {
		t.Errorf("rates fps %v bitrate %v", s.FPS, s.Bitrate)
	}
}
