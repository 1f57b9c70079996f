package forwarder

import (
	"bytes"
	"testing"

	"github.com/pion/rtp"
	"github.com/rtcrelay/rtcrelay/packet"
)

func TestKeyframeStart(t *testing.T) {
	for _, tc := range []struct {
		name  string
		codec codecKind
		p     []byte
		want  bool
	}{
		{"vp8 key, no X", codecVP8, []byte{0x10, 0x00}, true},
		{"vp8 delta, no X", codecVP8, []byte{0x10, 0x01}, false},
		{"vp8 key, 15-bit picture ID", codecVP8, []byte{0x90, 0x80, 0x81, 0x23, 0x9c}, true},
		{"vp8 key, I L T", codecVP8, []byte{0x90, 0xE0, 0x05, 0x07, 0x40, 0x10}, true},
		{"vp8 delta, I L T", codecVP8, []byte{0x90, 0xE0, 0x05, 0x07, 0x40, 0x11}, false},
		{"vp8 not start", codecVP8, []byte{0x80, 0x80, 0x05, 0x00}, false},
		{"vp8 start of partition 1", codecVP8, []byte{0x11, 0x00}, false},
		{"vp8 truncated", codecVP8, []byte{0x90, 0x80}, false},
		{"vp8 empty", codecVP8, nil, false},
		{"h264 IDR", codecH264, []byte{0x65, 0x88}, true},
		{"h264 SPS", codecH264, []byte{0x67, 0x42}, true},
		{"h264 non-IDR", codecH264, []byte{0x41, 0x9a}, false},
		{"h264 STAP-A SPS PPS", codecH264, []byte{0x78, 0, 2, 0x67, 0x42, 0, 2, 0x68, 0xce}, true},
		{"h264 STAP-A bad length", codecH264, []byte{0x78, 0, 9, 0x67}, false},
		{"h264 FU-A IDR start", codecH264, []byte{0x7c, 0x85, 0x88}, true},
		{"h264 FU-A IDR middle", codecH264, []byte{0x7c, 0x05, 0x88}, false},
		{"h264 FU-A non-IDR start", codecH264, []byte{0x7c, 0x81, 0x9a}, false},
		{"vp9 key start", codecVP9, []byte{0x08}, true},
		{"vp9 inter", codecVP9, []byte{0x48}, false},
		{"unknown codec", codecOther, []byte{0}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := keyframeStart(tc.codec, tc.p); got != tc.want {
				t.Fatalf("keyframeStart = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestRewrite(t *testing.T) {
	var rw rewriter
	rw.ssrc, rw.pt = 0xCAFEBABE, 45
	rw.ext[1] = 7 // audio level 1 → 7; 2 is dropped
	rw.midID, rw.mid = 3, []byte("video-0")
	rw.twccID, rw.astID = 4, 5
	for _, tc := range []struct {
		name    string
		profile uint16
		exts    map[uint8][]byte
		csrc    []uint32
		padding byte
		wantIDs []uint8
	}{
		{name: "one-byte", profile: 0xBEDE, exts: map[uint8][]byte{1: {0x85}, 2: {1, 2, 3}}, wantIDs: []uint8{7, 3, 4, 5}},
		{name: "two-byte", profile: 0x1000, exts: map[uint8][]byte{1: {0x85}, 2: {1, 2, 3}}, wantIDs: []uint8{7, 3, 4, 5}},
		{name: "no extensions in", wantIDs: []uint8{3, 4, 5}},
		{name: "csrc and padding", profile: 0xBEDE, exts: map[uint8][]byte{1: {0x85}}, csrc: []uint32{9, 10}, padding: 4,
			wantIDs: []uint8{7, 3, 4, 5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := rtp.Header{Version: 2, Marker: true, PayloadType: 96, SequenceNumber: 7, Timestamp: 99, SSRC: 1, CSRC: tc.csrc}
			if tc.profile != 0 {
				for id := uint8(1); id <= 2; id++ {
					if v, ok := tc.exts[id]; ok {
						if err := h.SetExtensionWithProfile(id, v, tc.profile); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
			payload := []byte("hello world payload")
			pkt := rtp.Packet{Header: h, Payload: payload}
			if tc.padding > 0 {
				pkt.Padding, pkt.PaddingSize = true, tc.padding
			}
			src, err := pkt.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			l, ok := parseLayout(src)
			if !ok {
				t.Fatal("parseLayout failed")
			}
			dst := make([]byte, len(src)+maxGrowth)
			n := rw.rewrite(dst, src, l, 1234, 5678, stamp{twseq: 0x0102, absSend: 0x030405})
			var out rtp.Packet
			if err := out.Unmarshal(dst[:n]); err != nil {
				t.Fatalf("unmarshal rewritten: %v (%x)", err, dst[:n])
			}
			if out.SSRC != 0xCAFEBABE || out.PayloadType != 45 || out.SequenceNumber != 1234 || out.Timestamp != 5678 ||
				!out.Marker || len(out.CSRC) != len(tc.csrc) || !bytes.Equal(out.Payload, payload) || out.PaddingSize != tc.padding {
				t.Fatalf("rewritten header %+v payload %q", out.Header, out.Payload)
			}
			ids := out.GetExtensionIDs()
			if !bytes.Equal(ids, tc.wantIDs) {
				t.Fatalf("extension IDs %v, want %v", ids, tc.wantIDs)
			}
			if string(out.GetExtension(3)) != "video-0" || !bytes.Equal(out.GetExtension(4), []byte{1, 2}) ||
				!bytes.Equal(out.GetExtension(5), []byte{3, 4, 5}) {
				t.Fatalf("stamped extensions wrong: %x %x %x", out.GetExtension(3), out.GetExtension(4), out.GetExtension(5))
			}
			if tc.exts[1] != nil && !bytes.Equal(out.GetExtension(7), []byte{0x85}) {
				t.Fatal("remapped extension lost")
			}
		})
	}
}

func TestRewriteDropsEverything(t *testing.T) {
	var rw rewriter
	rw.ssrc, rw.pt = 5, 100
	h := rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: 7, SSRC: 1}
	_ = h.SetExtension(2, []byte{1})
	src, _ := (&rtp.Packet{Header: h, Payload: []byte{1, 2, 3}}).Marshal()
	l, _ := parseLayout(src)
	dst := make([]byte, len(src)+maxGrowth)
	n := rw.rewrite(dst, src, l, 1, 2, stamp{})
	if n != 12+3 || dst[0]&0x10 != 0 {
		t.Fatalf("got %x, want a header without extension", dst[:n])
	}
}

func FuzzRewrite(f *testing.F) {
	h := rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: 7, SSRC: 1, CSRC: []uint32{3}}
	_ = h.SetExtension(1, []byte{1, 2})
	seed, _ := (&rtp.Packet{Header: h, Payload: []byte{0x90, 0x80, 1, 0}}).Marshal()
	f.Add(seed)
	f.Add([]byte{0x90, 0x60, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0x10, 0x00, 0, 1, 1, 0xff, 0, 0})
	var rw rewriter
	rw.ext[1], rw.ext[2], rw.ext[200] = 3, 14, 15
	rw.midID, rw.mid, rw.twccID, rw.astID = 4, []byte("0123456789abcdef"), 5, 6
	dst := make([]byte, packet.MTU+maxGrowth)
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > packet.MTU {
			return
		}
		l, ok := parseLayout(b)
		if !ok {
			return
		}
		keyframeStart(codecVP8, b[l.payload:l.payloadEnd])
		keyframeStart(codecH264, b[l.payload:l.payloadEnd])
		n := rw.rewrite(dst, b, l, 1, 2, stamp{})
		if n > len(b)+maxGrowth {
			t.Fatalf("grew by %d", n-len(b))
		}
		if _, ok := parseLayout(dst[:n]); !ok {
			t.Fatalf("rewrite produced an unparsable packet %x from %x", dst[:n], b)
		}
	})
}
