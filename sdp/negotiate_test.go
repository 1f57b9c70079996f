package sdp

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestNegotiatePublish(t *testing.T) {
	tests := []struct {
		file    string
		audioPT uint8
		video   string // name
		videoPT uint8
		dir     string
	}{
		{"chromium-publish.sdp", 111, "VP8", 96, DirRecvOnly},
		{"chromium-publish-sendrecv.sdp", 111, "VP8", 96, DirRecvOnly},
		{"chromium-publish-lf.sdp", 111, "VP8", 96, DirRecvOnly},
		{"firefox.sdp", 109, "VP8", 120, DirRecvOnly},
		{"safari.sdp", 111, "VP8", 127, DirRecvOnly},
		{"firefox-h264-mixed.sdp", 109, "H264", 126, DirRecvOnly}, // 97 is packetization-mode 0
		{"chromium-play.sdp", 111, "VP8", 96, DirInactive},        // offerer does not send
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			tracks, err := NegotiatePublish(mustParse(t, readTestdata(t, tc.file)))
			if err != nil {
				t.Fatal(err)
			}
			if len(tracks) != 2 {
				t.Fatalf("%d tracks", len(tracks))
			}
			a, v := tracks[0], tracks[1]
			if a.Codec.Name != "opus" || a.Codec.PayloadType != tc.audioPT || a.Kind != KindAudio || a.Mid != "0" || a.SSRC != 0 || a.Direction != tc.dir {
				t.Errorf("audio %+v", a)
			}
			if v.Codec.Name != tc.video || v.Codec.PayloadType != tc.videoPT || v.Kind != KindVideo || v.Mid != "1" || v.SSRC != 0 || v.Direction != tc.dir {
				t.Errorf("video %+v", v)
			}
			offer := mustParse(t, readTestdata(t, tc.file))
			for i, tr := range tracks {
				om := offer.Media[i]
				var offered Codec
				for _, c := range om.Codecs {
					if c.PayloadType == tr.Codec.PayloadType {
						offered = c
					}
				}
				wantFB := []string{}
				for _, fb := range offered.Feedback {
					if slices.Contains([]string{"nack", "nack pli", "ccm fir"}, fb) ||
						(fb == "transport-cc" || fb == "goog-remb") && tc.dir == DirRecvOnly {
						wantFB = append(wantFB, fb)
					}
				}
				if !slices.Equal(append([]string{}, tr.Codec.Feedback...), wantFB) {
					t.Errorf("%s feedback %q, want %q", tr.Kind, tr.Codec.Feedback, wantFB)
				}
				var wantExt []Extension
				for _, e := range om.Extensions {
					if slices.Contains([]string{ExtSDESMid, ExtAbsSendTime, ExtAudioLevel}, e.URI) ||
						e.URI == ExtTransportCC && tc.dir == DirRecvOnly {
						wantExt = append(wantExt, e)
					}
				}
				if !slices.Equal(tr.Extensions, wantExt) {
					t.Errorf("%s extensions %v, want %v", tr.Kind, tr.Extensions, wantExt)
				}
			}
			if len(v.Codec.Feedback) < 3 {
				t.Errorf("feedback %v", v.Codec.Feedback)
			}
			// RTX: the offer's rtx format whose apt is the chosen video PT, only where we receive.
			var wantRTX *Codec
			for _, c := range offer.Media[1].Codecs {
				if c.Name == "rtx" && c.Fmtp == "apt="+strconv.Itoa(int(v.Codec.PayloadType)) && tc.dir == DirRecvOnly {
					wantRTX = &c
				}
			}
			if (wantRTX == nil) != (v.RTX == nil) || wantRTX != nil && (v.RTX.PayloadType != wantRTX.PayloadType || v.RTX.ClockRate != 90000) {
				t.Errorf("rtx %+v, want %+v", v.RTX, wantRTX)
			}
			if a.RTX != nil || a.RIDs != nil || v.RIDs != nil || v.RTXSSRC != 0 {
				t.Errorf("audio rtx %+v, rids %v %v", a.RTX, a.RIDs, v.RIDs)
			}
		})
	}
}

// Chrome's publish offer gets transport-cc (extension 3, rtcp-fb on both codecs) in the answer; so does,
// since we consume the player's TWCC feedback for a per-player send-side estimate, a player's answer
// (this test used to assert it got neither), with goog-remb as the fallback on video.
func TestNegotiateTransportCC(t *testing.T) {
	pub, err := NegotiatePublish(mustParse(t, readTestdata(t, "chromium-publish.sdp")))
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range pub {
		if !slices.Contains(tr.Extensions, Extension{ID: 3, URI: ExtTransportCC}) {
			t.Errorf("publish %s: extensions %v", tr.Kind, tr.Extensions)
		}
		if !slices.Contains(tr.Codec.Feedback, FeedbackTransportCC) {
			t.Errorf("publish %s: feedback %v", tr.Kind, tr.Codec.Feedback)
		}
	}
	play, err := NegotiatePlay(mustParse(t, readTestdata(t, "chromium-play.sdp")), []Codec{pub[0].Codec, pub[1].Codec})
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range play {
		if !slices.Contains(tr.Extensions, Extension{ID: 3, URI: ExtTransportCC}) {
			t.Errorf("play %s: extensions %v", tr.Kind, tr.Extensions)
		}
		if !slices.Contains(tr.Codec.Feedback, FeedbackTransportCC) {
			t.Errorf("play %s: feedback %v", tr.Kind, tr.Codec.Feedback)
		}
		if want := tr.Kind == KindVideo; slices.Contains(tr.Codec.Feedback, FeedbackGoogREMB) != want {
			t.Errorf("play %s: feedback %v, goog-remb %v", tr.Kind, tr.Codec.Feedback, want)
		}
	}
}

// h264Offer builds a one-video-section offer from "pt:fmtp" codecs.
func h264Offer(dir string, codecs ...string) string {
	var b strings.Builder
	b.WriteString(minimalOffer + "a=group:BUNDLE v\r\nm=video 9 UDP/TLS/RTP/SAVPF")
	for _, c := range codecs {
		pt, _, _ := strings.Cut(c, ":")
		b.WriteString(" " + pt)
	}
	b.WriteString("\r\na=mid:v\r\na=" + dir + "\r\n")
	for _, c := range codecs {
		pt, fmtp, _ := strings.Cut(c, ":")
		name := "H264"
		if strings.HasPrefix(fmtp, "name=") {
			name = strings.TrimPrefix(fmtp, "name=")
			fmtp = ""
		}
		b.WriteString("a=rtpmap:" + pt + " " + name + "/90000\r\n")
		if fmtp != "" {
			b.WriteString("a=fmtp:" + pt + " " + fmtp + "\r\n")
		}
	}
	return b.String()
}

func TestNegotiatePublishVideoChoice(t *testing.T) {
	tests := []struct {
		name   string
		offer  string
		wantPT uint8
		err    error
	}{
		{"VP8 preferred over H264", h264Offer("sendonly", "102:packetization-mode=1;profile-level-id=42e01f", "96:name=VP8"), 96, nil},
		{"42e01f preferred", h264Offer("sendonly", "102:packetization-mode=1;profile-level-id=42001f", "108:packetization-mode=1;profile-level-id=42e01f"), 108, nil},
		{"constrained baseline other level", h264Offer("sendonly", "102:packetization-mode=1;profile-level-id=42001f", "104:packetization-mode=1;profile-level-id=42e034"), 104, nil},
		{"baseline accepted", h264Offer("sendonly", "116:packetization-mode=1;profile-level-id=4d001f", "102:packetization-mode=1;profile-level-id=42001f"), 102, nil},
		{"mode 0 refused", h264Offer("sendonly", "104:packetization-mode=0;profile-level-id=42e01f"), 0, ErrNoCommonCodec},
		{"main profile refused", h264Offer("sendonly", "116:packetization-mode=1;profile-level-id=4d001f"), 0, ErrNoCommonCodec},
		{"VP9 and AV1 only", h264Offer("sendonly", "98:name=VP9", "45:name=AV1"), 0, ErrNoCommonCodec},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tracks, err := NegotiatePublish(mustParse(t, tc.offer))
			if !errors.Is(err, tc.err) {
				t.Fatalf("err %v, want %v", err, tc.err)
			}
			if err == nil && tracks[0].Codec.PayloadType != tc.wantPT {
				t.Errorf("PT %d, want %d", tracks[0].Codec.PayloadType, tc.wantPT)
			}
		})
	}
}

func TestNegotiatePublishDirections(t *testing.T) {
	for offerDir, want := range map[string]string{
		DirSendOnly: DirRecvOnly, DirSendRecv: DirRecvOnly, DirRecvOnly: DirInactive, DirInactive: DirInactive,
	} {
		tracks, err := NegotiatePublish(mustParse(t, h264Offer(offerDir, "96:name=VP8")))
		if err != nil || tracks[0].Direction != want {
			t.Errorf("offer %s: %+v %v", offerDir, tracks, err)
		}
	}
}

func TestNegotiatePublishPartial(t *testing.T) {
	// Audio with only PCMU, video VP8, a data channel and a rejected section.
	s := minimalOffer + "a=group:BUNDLE 0 1 2\r\n" +
		"m=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=sendonly\r\n" +
		"m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=sendonly\r\na=rtpmap:96 VP8/90000\r\n" +
		"m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:2\r\n" +
		"m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=mid:3\r\na=rtpmap:96 VP8/90000\r\n"
	tracks, err := NegotiatePublish(mustParse(t, s))
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		dir  string
		name string
	}{{DirInactive, ""}, {DirRecvOnly, "VP8"}, {DirInactive, ""}, {DirInactive, ""}}
	for i, w := range want {
		if tracks[i].Direction != w.dir || tracks[i].Codec.Name != w.name {
			t.Errorf("track %d: %+v", i, tracks[i])
		}
	}
}

func TestNegotiatePlay(t *testing.T) {
	opus := Codec{PayloadType: 109, Name: "opus", ClockRate: 48000, Channels: 2}
	vp8 := Codec{PayloadType: 120, Name: "VP8", ClockRate: 90000}
	h264 := Codec{PayloadType: 126, Name: "H264", ClockRate: 90000, Fmtp: "profile-level-id=42e01f;packetization-mode=1"}
	h264b := Codec{PayloadType: 126, Name: "H264", ClockRate: 90000, Fmtp: "profile-level-id=42001f;packetization-mode=1"}
	tests := []struct {
		name      string
		file      string
		published []Codec
		want      []string // "dir:PT" per m-section
		err       error
	}{
		{"chromium opus+vp8", "chromium-play.sdp", []Codec{opus, vp8}, []string{"sendonly:111", "sendonly:96"}, nil},
		{"chromium opus+h264 42e01f", "chromium-play.sdp", []Codec{opus, h264}, []string{"sendonly:111", "sendonly:108"}, nil},
		{"chromium h264 42001f", "chromium-play.sdp", []Codec{h264b}, []string{"inactive:0", "sendonly:102"}, nil},
		{"video only publisher", "chromium-play.sdp", []Codec{vp8}, []string{"inactive:0", "sendonly:96"}, nil},
		{"safari publisher onto chromium player", "chromium-play.sdp", []Codec{{PayloadType: 98, Name: "H264", ClockRate: 90000, Fmtp: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"}}, []string{"inactive:0", "sendonly:108"}, nil},
		{"firefox sendrecv offer", "firefox.sdp", []Codec{opus, h264}, []string{"sendonly:109", "sendonly:126"}, nil},
		{"publisher codec not offered", "firefox-h264-mixed.sdp", []Codec{vp8}, nil, ErrNoCommonCodec},
		{"offer does not receive", "chromium-publish.sdp", []Codec{opus, vp8}, nil, ErrNoCommonCodec},
		{"nothing published", "chromium-play.sdp", nil, nil, ErrNoCommonCodec},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tracks, err := NegotiatePlay(mustParse(t, readTestdata(t, tc.file)), tc.published)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err %v, want %v", err, tc.err)
			}
			if err != nil {
				return
			}
			ssrcs := map[uint32]bool{}
			for i, w := range tc.want {
				tr := tracks[i]
				dir, pt, _ := strings.Cut(w, ":")
				if tr.Direction != dir || strconv.Itoa(int(tr.Codec.PayloadType)) != pt {
					t.Errorf("track %d: %+v, want %s", i, tr, w)
				}
				if dir == DirSendOnly {
					if tr.SSRC == 0 || ssrcs[tr.SSRC] {
						t.Errorf("ssrc %d", tr.SSRC)
					}
					ssrcs[tr.SSRC] = true
				} else if tr.SSRC != 0 {
					t.Errorf("inactive track with SSRC %d", tr.SSRC)
				}
			}
		})
	}
}

func TestCodecKind(t *testing.T) {
	for _, tc := range []struct {
		c    Codec
		want string
	}{
		{Codec{Name: "opus", ClockRate: 48000}, KindAudio}, {Codec{Name: "VP8", ClockRate: 90000}, KindVideo},
		{Codec{Name: "H264", ClockRate: 90000}, KindVideo}, {Codec{Name: "x-new", ClockRate: 90000}, KindVideo},
		{Codec{Name: "PCMU", ClockRate: 8000}, KindAudio},
	} {
		c, want := tc.c, tc.want
		if got := CodecKind(c); got != want {
			t.Errorf("%v: %s", c.Name, got)
		}
	}
}
