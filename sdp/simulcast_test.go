package sdp

import (
	"slices"
	"strings"
	"testing"
)

// chromeSimulcastOffer is a Chrome (120+) simulcast publish offer, in the form
// of testdata/chromium-publish.sdp (Chromium 156) after
// addTransceiver(audio, {direction:'sendonly'}) and addTransceiver(video,
// {direction:'sendonly', sendEncodings:[{rid:'q', scaleResolutionDownBy:4},
// {rid:'h', scaleResolutionDownBy:2}, {rid:'f'}]}): a=rid:q/h/f send,
// a=simulcast:send q;h;f, the rtp-stream-id (10) and repaired-rtp-stream-id
// (11) extmaps, and no video a=ssrc lines (Chrome omits them for simulcast).
// Edited by hand from the captured offer, not captured itself. Lines are
// joined with CRLF.
var chromeSimulcastOffer = strings.Join([]string{ //nolint:gochecknoglobals // test data
	"v=0",
	"o=- 7436912304520968115 2 IN IP4 127.0.0.1",
	"s=-",
	"t=0 0",
	"a=group:BUNDLE 0 1",
	"a=extmap-allow-mixed",
	"a=msid-semantic: WMS 62dda013-1458-479a-ad6f-8ba4601bc464",
	"m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126",
	"c=IN IP4 0.0.0.0",
	"a=rtcp:9 IN IP4 0.0.0.0",
	"a=ice-ufrag:H2RJ",
	"a=ice-pwd:etWNsKS6N6JPgelGEjikK5SS",
	"a=ice-options:trickle",
	"a=fingerprint:sha-256 AA:AB:63:4E:AB:CF:AA:73:92:4A:F8:A6:C5:30:8E:36:FD:1C:44:23:ED:7B:B6:16:07:15:5B:82:1B:DE:F3:BE",
	"a=setup:actpass",
	"a=mid:0",
	"a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
	"a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
	"a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
	"a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
	"a=sendonly",
	"a=msid:62dda013-1458-479a-ad6f-8ba4601bc464 aef23a4a-a4a0-4b27-9894-bb13454d0bd4",
	"a=rtcp-mux",
	"a=rtcp-rsize",
	"a=rtcp-xr:rcvr-rtt=all",
	"a=rtpmap:111 opus/48000/2",
	"a=rtcp-fb:111 transport-cc",
	"a=fmtp:111 minptime=10;useinbandfec=1",
	"a=rtpmap:63 red/48000/2",
	"a=fmtp:63 111/111",
	"a=rtpmap:9 G722/8000",
	"a=rtpmap:0 PCMU/8000",
	"a=rtpmap:8 PCMA/8000",
	"a=rtpmap:13 CN/8000",
	"a=rtpmap:110 telephone-event/48000",
	"a=rtpmap:126 telephone-event/8000",
	"a=ssrc:1913650457 cname:L7yrtxuETEsUzae3",
	"a=ssrc:1913650457 msid:62dda013-1458-479a-ad6f-8ba4601bc464 aef23a4a-a4a0-4b27-9894-bb13454d0bd4",
	"m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103 104 107 108 109 114 115 116 117 39 40 45 46 98 99 100 101 118 119 120",
	"c=IN IP4 0.0.0.0",
	"a=rtcp:9 IN IP4 0.0.0.0",
	"a=ice-ufrag:H2RJ",
	"a=ice-pwd:etWNsKS6N6JPgelGEjikK5SS",
	"a=ice-options:trickle",
	"a=fingerprint:sha-256 AA:AB:63:4E:AB:CF:AA:73:92:4A:F8:A6:C5:30:8E:36:FD:1C:44:23:ED:7B:B6:16:07:15:5B:82:1B:DE:F3:BE",
	"a=setup:actpass",
	"a=mid:1",
	"a=extmap:14 urn:ietf:params:rtp-hdrext:toffset",
	"a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
	"a=extmap:13 urn:3gpp:video-orientation",
	"a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
	"a=extmap:5 http://www.webrtc.org/experiments/rtp-hdrext/playout-delay",
	"a=extmap:6 http://www.webrtc.org/experiments/rtp-hdrext/video-content-type",
	"a=extmap:7 http://www.webrtc.org/experiments/rtp-hdrext/video-timing",
	"a=extmap:8 http://www.webrtc.org/experiments/rtp-hdrext/color-space",
	"a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
	"a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
	"a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
	"a=sendonly",
	"a=msid:62dda013-1458-479a-ad6f-8ba4601bc464 9d07aec1-b54f-413a-996e-8f3c59b200c5",
	"a=rtcp-mux",
	"a=rtcp-rsize",
	"a=rtcp-xr:rcvr-rtt=all",
	"a=rtpmap:96 VP8/90000",
	"a=rtcp-fb:96 goog-remb",
	"a=rtcp-fb:96 transport-cc",
	"a=rtcp-fb:96 ccm fir",
	"a=rtcp-fb:96 nack",
	"a=rtcp-fb:96 nack pli",
	"a=rtpmap:97 rtx/90000",
	"a=fmtp:97 apt=96",
	"a=rtpmap:102 H264/90000",
	"a=rtcp-fb:102 goog-remb",
	"a=rtcp-fb:102 transport-cc",
	"a=rtcp-fb:102 ccm fir",
	"a=rtcp-fb:102 nack",
	"a=rtcp-fb:102 nack pli",
	"a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f",
	"a=rtpmap:103 rtx/90000",
	"a=fmtp:103 apt=102",
	"a=rtpmap:104 H264/90000",
	"a=rtcp-fb:104 goog-remb",
	"a=rtcp-fb:104 transport-cc",
	"a=rtcp-fb:104 ccm fir",
	"a=rtcp-fb:104 nack",
	"a=rtcp-fb:104 nack pli",
	"a=fmtp:104 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f",
	"a=rtpmap:107 rtx/90000",
	"a=fmtp:107 apt=104",
	"a=rtpmap:108 H264/90000",
	"a=rtcp-fb:108 goog-remb",
	"a=rtcp-fb:108 transport-cc",
	"a=rtcp-fb:108 ccm fir",
	"a=rtcp-fb:108 nack",
	"a=rtcp-fb:108 nack pli",
	"a=fmtp:108 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
	"a=rtpmap:109 rtx/90000",
	"a=fmtp:109 apt=108",
	"a=rtpmap:114 H264/90000",
	"a=rtcp-fb:114 goog-remb",
	"a=rtcp-fb:114 transport-cc",
	"a=rtcp-fb:114 ccm fir",
	"a=rtcp-fb:114 nack",
	"a=rtcp-fb:114 nack pli",
	"a=fmtp:114 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f",
	"a=rtpmap:115 rtx/90000",
	"a=fmtp:115 apt=114",
	"a=rtpmap:116 H264/90000",
	"a=rtcp-fb:116 goog-remb",
	"a=rtcp-fb:116 transport-cc",
	"a=rtcp-fb:116 ccm fir",
	"a=rtcp-fb:116 nack",
	"a=rtcp-fb:116 nack pli",
	"a=fmtp:116 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f",
	"a=rtpmap:117 rtx/90000",
	"a=fmtp:117 apt=116",
	"a=rtpmap:39 H264/90000",
	"a=rtcp-fb:39 goog-remb",
	"a=rtcp-fb:39 transport-cc",
	"a=rtcp-fb:39 ccm fir",
	"a=rtcp-fb:39 nack",
	"a=rtcp-fb:39 nack pli",
	"a=fmtp:39 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=4d001f",
	"a=rtpmap:40 rtx/90000",
	"a=fmtp:40 apt=39",
	"a=rtpmap:45 AV1/90000",
	"a=rtcp-fb:45 goog-remb",
	"a=rtcp-fb:45 transport-cc",
	"a=rtcp-fb:45 ccm fir",
	"a=rtcp-fb:45 nack",
	"a=rtcp-fb:45 nack pli",
	"a=fmtp:45 level-idx=5;profile=0;tier=0",
	"a=rtpmap:46 rtx/90000",
	"a=fmtp:46 apt=45",
	"a=rtpmap:98 VP9/90000",
	"a=rtcp-fb:98 goog-remb",
	"a=rtcp-fb:98 transport-cc",
	"a=rtcp-fb:98 ccm fir",
	"a=rtcp-fb:98 nack",
	"a=rtcp-fb:98 nack pli",
	"a=fmtp:98 profile-id=0",
	"a=rtpmap:99 rtx/90000",
	"a=fmtp:99 apt=98",
	"a=rtpmap:100 VP9/90000",
	"a=rtcp-fb:100 goog-remb",
	"a=rtcp-fb:100 transport-cc",
	"a=rtcp-fb:100 ccm fir",
	"a=rtcp-fb:100 nack",
	"a=rtcp-fb:100 nack pli",
	"a=fmtp:100 profile-id=2",
	"a=rtpmap:101 rtx/90000",
	"a=fmtp:101 apt=100",
	"a=rtpmap:118 red/90000",
	"a=rtpmap:119 rtx/90000",
	"a=fmtp:119 apt=118",
	"a=rtpmap:120 ulpfec/90000",
	"a=rid:q send",
	"a=rid:h send",
	"a=rid:f send",
	"a=simulcast:send q;h;f",
}, "\r\n") + "\r\n"

// simulcastVideo is a one-video-section offer with the given extra lines.
func simulcastVideo(dir string, extra ...string) string {
	return minimalOffer + "a=group:BUNDLE v\r\nm=video 9 UDP/TLS/RTP/SAVPF 96 97\r\na=mid:v\r\na=" + dir + "\r\n" +
		"a=extmap:4 " + ExtSDESMid + "\r\na=extmap:10 " + ExtRTPStreamID + "\r\na=extmap:11 " + ExtRepairedStreamID + "\r\n" +
		"a=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 nack\r\na=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n" +
		strings.Join(extra, "\r\n") + "\r\n"
}

func TestParseSimulcast(t *testing.T) {
	d := mustParse(t, chromeSimulcastOffer)
	a, v := d.Media[0], d.Media[1]
	if a.RIDs != nil || a.Simulcast != "" || a.SimulcastSend != nil {
		t.Errorf("audio rids %v simulcast %q %v", a.RIDs, a.Simulcast, a.SimulcastSend)
	}
	if want := []RID{{"q", "send", ""}, {"h", "send", ""}, {"f", "send", ""}}; !slices.Equal(v.RIDs, want) {
		t.Errorf("rids %+v", v.RIDs)
	}
	if v.Simulcast != "send q;h;f" || !slices.Equal(v.SimulcastSend, []string{"q", "h", "f"}) {
		t.Errorf("simulcast %q send %v", v.Simulcast, v.SimulcastSend)
	}
	if len(v.SSRCs) != 0 || len(v.SSRCGroups) != 0 || len(a.SSRCs) != 1 {
		t.Errorf("ssrcs %v %v %v", a.SSRCs, v.SSRCs, v.SSRCGroups)
	}

	qhf := []string{"a=rid:q send", "a=rid:h send", "a=rid:f send"}
	many := make([]string, 0, 20)
	list := make([]string, 0, 20)
	for i := range 20 {
		id := "r" + itoa32(uint32(i))
		many = append(many, "a=rid:"+id+" send")
		list = append(list, id)
	}
	tests := []struct {
		name  string
		lines []string
		rids  []string // ids of Media.RIDs
		send  []string
	}{
		{"high to low order kept", append(qhf, "a=simulcast:send f;h;q"), []string{"q", "h", "f"}, []string{"f", "h", "q"}},
		{"paused dropped", append(qhf, "a=simulcast:send ~q;h;~f"), []string{"q", "h", "f"}, []string{"h"}},
		{"first alternative", append(qhf, "a=simulcast:send q,h;f"), []string{"q", "h", "f"}, []string{"q", "f"}},
		{"paused first alternative skipped", append(qhf, "a=simulcast:send ~q,h;f"), []string{"q", "h", "f"}, []string{"h", "f"}},
		{"recv list first", append(qhf, "a=simulcast:recv x;y send h;f"), []string{"q", "h", "f"}, []string{"h", "f"}},
		{"recv list only", append(qhf, "a=simulcast:recv q;h"), []string{"q", "h", "f"}, nil},
		{"undeclared and duplicate rids dropped", append(qhf, "a=simulcast:send q;x;q;f"), []string{"q", "h", "f"}, []string{"q", "f"}},
		{"rid declared recv is not sent", []string{"a=rid:q recv", "a=rid:f send", "a=simulcast:send q;f"}, []string{"q", "f"}, []string{"f"}},
		{"no a=simulcast", qhf, []string{"q", "h", "f"}, nil},
		{"empty and truncated a=simulcast", append(qhf, "a=simulcast:send", "a=simulcast:send q"), []string{"q", "h", "f"}, nil},
		{"first a=simulcast wins", append(qhf, "a=simulcast:send h", "a=simulcast:send q"), []string{"q", "h", "f"}, []string{"h"}},
		{"malformed rids ignored", []string{"a=rid:q", "a=rid:q sideways", "a=rid:a/b send", "a=rid:" + strings.Repeat("x", MaxRIDLen+1) + " send",
			"a=rid:" + strings.Repeat("y", MaxRIDLen) + " send", "a=rid:q send", "a=rid:q recv", "a=simulcast:send q;a/b"}, []string{strings.Repeat("y", MaxRIDLen), "q"}, []string{"q"}},
		{"at most MaxRIDs", append(many, "a=simulcast:send "+strings.Join(list, ";")), list[:MaxRIDs], list[:MaxRIDs]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := mustParse(t, simulcastVideo(DirSendOnly, tc.lines...)).Media[0]
			var ids []string
			for _, r := range m.RIDs {
				ids = append(ids, r.ID)
			}
			if !slices.Equal(ids, tc.rids) || !slices.Equal(m.SimulcastSend, tc.send) {
				t.Errorf("rids %v send %v, want %v %v", ids, m.SimulcastSend, tc.rids, tc.send)
			}
		})
	}
	m := mustParse(t, simulcastVideo(DirSendOnly, "a=rid:f send pt=96;max-width=1280;max-height=720", "a=simulcast:send f")).Media[0]
	if m.RIDs[0] != (RID{ID: "f", Direction: "send", Params: "pt=96;max-width=1280;max-height=720"}) {
		t.Errorf("params %+v", m.RIDs)
	}
}

func TestNegotiatePublishSimulcast(t *testing.T) {
	tracks, err := NegotiatePublish(mustParse(t, chromeSimulcastOffer))
	if err != nil {
		t.Fatal(err)
	}
	a, v := tracks[0], tracks[1]
	if a.RIDs != nil || a.RTX != nil || slices.ContainsFunc(a.Extensions, func(e Extension) bool { return e.URI == ExtRTPStreamID }) {
		t.Errorf("audio %+v", a)
	}
	if v.Direction != DirRecvOnly || v.Codec.Name != "VP8" || v.Codec.PayloadType != 96 || !slices.Equal(v.RIDs, []string{"q", "h", "f"}) {
		t.Errorf("video %+v", v)
	}
	for _, e := range []Extension{{4, ExtSDESMid}, {10, ExtRTPStreamID}, {11, ExtRepairedStreamID}, {3, ExtTransportCC}, {2, ExtAbsSendTime}} {
		if !slices.Contains(v.Extensions, e) {
			t.Errorf("video extensions %v lack %v", v.Extensions, e)
		}
	}
	if len(v.Extensions) != 5 {
		t.Errorf("video extensions %v", v.Extensions)
	}
	if v.RTX == nil || v.RTX.PayloadType != 97 || v.RTX.Name != "rtx" || v.RTX.Fmtp != "apt=96" || v.RTXSSRC != 0 {
		t.Errorf("rtx %+v ssrc %d", v.RTX, v.RTXSSRC)
	}
	if !slices.Equal(v.Codec.Feedback, []string{"goog-remb", "transport-cc", "ccm fir", "nack", "nack pli"}) {
		t.Errorf("feedback %v", v.Codec.Feedback)
	}

	// Order is the offer's, whatever it is; H264 gets its own RTX.
	s := strings.Replace(chromeSimulcastOffer, "a=simulcast:send q;h;f", "a=simulcast:send f;h;q", 1)
	s = strings.Replace(s, "a=rtpmap:96 VP8/90000", "a=rtpmap:96 VP9/90000", 1)
	tracks, err = NegotiatePublish(mustParse(t, s))
	if err != nil {
		t.Fatal(err)
	}
	if v := tracks[1]; !slices.Equal(v.RIDs, []string{"f", "h", "q"}) || v.Codec.PayloadType != 108 || v.RTX == nil || v.RTX.PayloadType != 109 {
		t.Errorf("video %+v", v)
	}

	// Not a sending video section: no RIDs, and no rtp-stream-id extensions.
	for name, s := range map[string]string{
		"recvonly":     simulcastVideo(DirRecvOnly, "a=rid:q send", "a=simulcast:send q"),
		"no simulcast": simulcastVideo(DirSendOnly, "a=rid:q send"),
		"audio": minimalOffer + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=sendonly\r\na=extmap:10 " + ExtRTPStreamID + "\r\n" +
			"a=rtpmap:111 opus/48000/2\r\na=rid:q send\r\na=simulcast:send q\r\n",
	} {
		tracks, err := NegotiatePublish(mustParse(t, s))
		if err != nil {
			t.Fatal(err)
		}
		if tr := tracks[0]; tr.RIDs != nil || slices.ContainsFunc(tr.Extensions, func(e Extension) bool { return e.URI == ExtRTPStreamID || e.URI == ExtRepairedStreamID }) {
			t.Errorf("%s: %+v", name, tr)
		}
	}
}

func TestNegotiateRTX(t *testing.T) {
	tests := []struct {
		name   string
		lines  []string // after VP8 96
		wantPT uint8    // 0: none
	}{
		{"apt of the chosen codec", []string{"a=rtpmap:98 rtx/90000", "a=fmtp:98 apt=100", "a=rtpmap:99 rtx/90000", "a=fmtp:99 apt=96;rtx-time=3000"}, 99},
		{"no apt", []string{"a=rtpmap:99 rtx/90000"}, 0},
		{"other clock rate", []string{"a=rtpmap:99 rtx/48000", "a=fmtp:99 apt=96"}, 0},
		{"apt not a number", []string{"a=rtpmap:99 rtx/90000", "a=fmtp:99 apt=96x"}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := minimalOffer + "m=video 9 UDP/TLS/RTP/SAVPF 96 98 99\r\na=mid:v\r\na=sendrecv\r\na=rtpmap:96 VP8/90000\r\n" + strings.Join(tc.lines, "\r\n") + "\r\n"
			offer := mustParse(t, s)
			pub, err := NegotiatePublish(offer)
			if err != nil {
				t.Fatal(err)
			}
			play, err := NegotiatePlay(offer, []Codec{{Name: "VP8", ClockRate: 90000}})
			if err != nil {
				t.Fatal(err)
			}
			for _, tr := range []Track{pub[0], play[0]} {
				got := uint8(0)
				if tr.RTX != nil {
					got = tr.RTX.PayloadType
				}
				if got != tc.wantPT || (tr.Direction == DirSendOnly && (tr.RTXSSRC != 0) != (got != 0)) || (tr.Direction == DirRecvOnly && tr.RTXSSRC != 0) {
					t.Errorf("%s: rtx %+v ssrc %d, want PT %d", tr.Direction, tr.RTX, tr.RTXSSRC, tc.wantPT)
				}
			}
		})
	}
	// Audio never gets RTX.
	s := minimalOffer + "m=audio 9 UDP/TLS/RTP/SAVPF 111 112\r\na=mid:a\r\na=sendrecv\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:112 rtx/48000\r\na=fmtp:112 apt=111\r\n"
	pub, err := NegotiatePublish(mustParse(t, s))
	if err != nil || pub[0].RTX != nil {
		t.Errorf("audio rtx %+v %v", pub, err)
	}
}

func TestNegotiatePlayRTX(t *testing.T) {
	tracks, err := NegotiatePlay(mustParse(t, readTestdata(t, "chromium-play.sdp")), []Codec{
		{Name: "opus", ClockRate: 48000, Channels: 2}, {Name: "VP8", ClockRate: 90000},
	})
	if err != nil {
		t.Fatal(err)
	}
	a, v := tracks[0], tracks[1]
	if a.RTX != nil || a.RTXSSRC != 0 {
		t.Errorf("audio %+v", a)
	}
	if v.RTX == nil || v.RTX.PayloadType != 97 || v.RTX.Fmtp != "apt=96" || v.RTXSSRC == 0 || v.RTXSSRC == v.SSRC || v.RTXSSRC == a.SSRC {
		t.Errorf("video %+v", v)
	}
	for _, fb := range []string{"nack", "nack pli", "ccm fir", "transport-cc", "goog-remb"} {
		if !slices.Contains(v.Codec.Feedback, fb) {
			t.Errorf("video feedback %v lacks %q", v.Codec.Feedback, fb)
		}
	}
}

func TestBuildAnswerSimulcast(t *testing.T) {
	offer := mustParse(t, chromeSimulcastOffer)
	tracks, err := NegotiatePublish(offer)
	if err != nil {
		t.Fatal(err)
	}
	ans, err := BuildAnswer(offer, testTransport(), tracks, "", "")
	if err != nil {
		t.Fatal(err)
	}
	_, media := sections(ans)
	v := media[1]
	if v[0] != "m=video 9 UDP/TLS/RTP/SAVPF 96 97" {
		t.Errorf("m-line %q", v[0])
	}
	want := []string{"a=rid:q recv", "a=rid:h recv", "a=rid:f recv", "a=simulcast:recv q;h;f"}
	if got := append(withPrefix(v, "a=rid:"), withPrefix(v, "a=simulcast:")...); !slices.Equal(got, want) {
		t.Errorf("simulcast lines %q", got)
	}
	for _, w := range []string{"a=extmap:10 " + ExtRTPStreamID, "a=extmap:11 " + ExtRepairedStreamID, "a=extmap:4 " + ExtSDESMid, "a=extmap:3 " + ExtTransportCC,
		"a=recvonly", "a=rtpmap:97 rtx/90000", "a=fmtp:97 apt=96", "a=rtcp-fb:96 goog-remb", "a=rtcp-fb:96 transport-cc"} {
		if !slices.Contains(v, w) {
			t.Errorf("video lacks %q", w)
		}
	}
	if len(withPrefix(v, "a=ssrc")) != 0 || len(withPrefix(media[0], "a=rid")) != 0 || len(withPrefix(media[0], "a=simulcast")) != 0 {
		t.Errorf("unexpected ssrc/rid lines: %q %q", v, media[0])
	}
	d := mustParse(t, ans)
	if m := d.Media[1]; len(m.RIDs) != 3 || m.RIDs[2] != (RID{ID: "f", Direction: "recv"}) || m.Simulcast != "recv q;h;f" || m.SimulcastSend != nil {
		t.Errorf("reparsed %+v", m)
	}

	// RIDs that did not come from Parse are checked again.
	tracks[1].RIDs = []string{"ok", "bad id", "ok", "", "a\r\nb"}
	ans, err = BuildAnswer(offer, testTransport(), tracks, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, media = sections(ans); !slices.Equal(withPrefix(media[1], "a=rid"), []string{"a=rid:ok recv"}) || !slices.Contains(media[1], "a=simulcast:recv ok") {
		t.Errorf("video %q", media[1])
	}
}

func TestBuildOfferRTX(t *testing.T) {
	tr := testTransport()
	vp8 := Codec{PayloadType: 96, Name: "VP8", ClockRate: 90000, Feedback: []string{"nack"}}
	rtx := &Codec{PayloadType: 97, Name: "rtx", ClockRate: 90000, Fmtp: "apt=96", Feedback: []string{"nack"}}
	off, err := BuildOffer(tr, []Track{
		{Kind: KindVideo, SSRC: 1000, RTX: rtx, RTXSSRC: 1001, Codec: vp8},
		{Kind: KindVideo, Direction: DirRecvOnly, RTX: rtx, Codec: vp8},
	}, "s", "c")
	if err != nil {
		t.Fatal(err)
	}
	_, media := sections(off)
	for i, m := range media {
		for _, w := range []string{"m=video 9 UDP/TLS/RTP/SAVPF 96 97", "a=rtpmap:97 rtx/90000", "a=fmtp:97 apt=96"} {
			if !slices.Contains(m, w) {
				t.Errorf("m %d lacks %q", i, w)
			}
		}
		if len(withPrefix(m, "a=rtcp-fb:97")) != 0 {
			t.Errorf("m %d: feedback on rtx", i)
		}
	}
	for _, w := range []string{"a=ssrc-group:FID 1000 1001", "a=ssrc:1001 cname:c", "a=ssrc:1001 msid:s video-0"} {
		if !slices.Contains(media[0], w) {
			t.Errorf("sending m lacks %q", w)
		}
	}
	if len(withPrefix(media[1], "a=ssrc")) != 0 {
		t.Errorf("receiving m %q", media[1])
	}
	d := mustParse(t, off)
	if c := d.Media[0].Codecs; len(c) != 2 || c[1].Name != "rtx" || !slices.Equal(d.Media[0].SSRCs, []uint32{1000, 1001}) {
		t.Errorf("reparsed %+v", d.Media[0])
	}
}
