package sdp

import (
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const testFingerprint = "AA:AB:63:4E:AB:CF:AA:73:92:4A:F8:A6:C5:30:8E:36:FD:1C:44:23:ED:7B:B6:16:07:15:5B:82:1B:DE:F3:BE"

func testTransport() Transport {
	return Transport{
		ICEUfrag: "ufrg", ICEPwd: "0123456789abcdefghijkl", Fingerprint: testFingerprint, Lite: true,
		Candidates: []string{"candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host", "a=candidate:2 1 udp 2130706175 ::1 5000 typ host"},
	}
}

// sections splits an SDP into the session part and its m-sections' lines.
func sections(s string) (session []string, media [][]string) {
	for _, l := range strings.Split(strings.TrimSuffix(s, "\r\n"), "\r\n") {
		if strings.HasPrefix(l, "m=") {
			media = append(media, nil)
		}
		if len(media) == 0 {
			session = append(session, l)
		} else {
			media[len(media)-1] = append(media[len(media)-1], l)
		}
	}
	return session, media
}

func withPrefix(lines []string, p string) []string {
	var out []string
	for _, l := range lines {
		if strings.HasPrefix(l, p) {
			out = append(out, l)
		}
	}
	return out
}

var rtpmapRE = regexp.MustCompile(`^a=rtpmap:(\d+) ([\w-]+)/(\d+)(/\d+)?$`)

func TestBuildAnswerPublish(t *testing.T) {
	offer := mustParse(t, readTestdata(t, "chromium-publish.sdp"))
	tracks, err := NegotiatePublish(offer)
	if err != nil {
		t.Fatal(err)
	}
	ans, err := BuildAnswer(offer, testTransport(), tracks, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(ans, "\r\n") || strings.Contains(strings.ReplaceAll(ans, "\r\n", ""), "\n") {
		t.Error("answer must use CRLF")
	}
	sess, media := sections(ans)
	if sess[0] != "v=0" || !regexp.MustCompile(`^o=- \d+ 2 IN IP4 127\.0\.0\.1$`).MatchString(sess[1]) || sess[2] != "s=-" || sess[3] != "t=0 0" {
		t.Errorf("session header %q", sess[:4])
	}
	for _, want := range []string{"a=group:BUNDLE 0 1", "a=ice-lite", "a=msid-semantic: WMS *"} {
		if !slices.Contains(sess, want) {
			t.Errorf("session lacks %q: %q", want, sess)
		}
	}
	if len(media) != 2 {
		t.Fatalf("%d m-sections", len(media))
	}
	for i, m := range media {
		kind := []string{"audio", "video"}[i]
		pt := []string{"111", "96"}[i]
		formats := []string{"111", "96 97"}[i] // video: VP8 and its RTX (apt=96)
		if m[0] != "m="+kind+" 9 UDP/TLS/RTP/SAVPF "+formats {
			t.Errorf("m-line %q", m[0])
		}
		for _, want := range []string{
			"c=IN IP4 0.0.0.0", "a=mid:" + []string{"0", "1"}[i], "a=ice-ufrag:ufrg", "a=ice-pwd:0123456789abcdefghijkl",
			"a=fingerprint:sha-256 " + testFingerprint, "a=setup:passive", "a=rtcp-mux", "a=rtcp-rsize", "a=recvonly",
			"a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host", "a=candidate:2 1 udp 2130706175 ::1 5000 typ host",
		} {
			if !slices.Contains(m, want) {
				t.Errorf("m %d lacks %q", i, want)
			}
		}
		if m[len(m)-1] != "a=end-of-candidates" {
			t.Errorf("last line %q", m[len(m)-1])
		}
		rtpmaps := withPrefix(m, "a=rtpmap:")
		if len(rtpmaps) != 1+i || !rtpmapRE.MatchString(rtpmaps[0]) || !strings.HasPrefix(rtpmaps[0], "a=rtpmap:"+pt+" ") {
			t.Errorf("rtpmap %q", rtpmaps)
		}
		if len(withPrefix(m, "a=msid:"))+len(withPrefix(m, "a=ssrc:")) != 0 {
			t.Error("receive-only section with msid/ssrc")
		}
		if !slices.Contains(m, "a=extmap:3 "+ExtTransportCC) || !slices.Contains(m, "a=rtcp-fb:"+pt+" transport-cc") {
			t.Errorf("m %d: transport-cc not accepted from the publisher", i)
		}
		if strings.Contains(strings.Join(m, "\n"), "rtcp-xr") || strings.Contains(strings.Join(m, "\n"), "rtp-stream-id") {
			t.Error("unsupported attribute echoed")
		}
	}
	// REMB is accepted from the publisher (Chrome offers it on video only), RTX follows VP8 without feedback.
	for _, want := range []string{"a=rtcp-fb:96 goog-remb", "a=rtpmap:97 rtx/90000", "a=fmtp:97 apt=96"} {
		if !slices.Contains(media[1], want) {
			t.Errorf("video lacks %q", want)
		}
	}
	if len(withPrefix(media[1], "a=rtcp-fb:97")) != 0 || len(withPrefix(media[1], "a=ssrc-group")) != 0 {
		t.Errorf("video %q", media[1])
	}
	if got := withPrefix(media[0], "a=rtpmap:"); got[0] != "a=rtpmap:111 opus/48000/2" {
		t.Errorf("opus rtpmap %q", got)
	}
	if !slices.Contains(media[0], "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid") || !slices.Contains(media[0], "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level") {
		t.Errorf("audio extmaps %q", withPrefix(media[0], "a=extmap"))
	}
	// The answer parses back to the same shape.
	d := mustParse(t, ans)
	if !d.ICELite || d.Setup != "passive" || d.Fingerprint != "sha-256 "+testFingerprint || len(d.Candidates) != 2 || !slices.Equal(d.Bundle, []string{"0", "1"}) {
		t.Errorf("reparsed %+v", d)
	}
}

func TestBuildAnswerPlay(t *testing.T) {
	offer := mustParse(t, readTestdata(t, "chromium-play.sdp"))
	tracks, err := NegotiatePlay(offer, []Codec{
		{Name: "opus", ClockRate: 48000, Channels: 2},
		{Name: "H264", ClockRate: 90000, Fmtp: "packetization-mode=1;profile-level-id=42e01f"},
	})
	if err != nil {
		t.Fatal(err)
	}
	tracks[1].ID = "cam"
	tr := testTransport()
	tr.Setup = "active"
	tr.Lite = false
	tr.Fingerprint = "sha-256 " + strings.ToLower(testFingerprint)
	ans, err := BuildAnswer(offer, tr, tracks, "stream-1", "relay")
	if err != nil {
		t.Fatal(err)
	}
	// Players now get transport-cc (we consume their TWCC feedback for a per-player send-side estimate),
	// and goog-remb as the fallback.
	for _, want := range []string{"a=extmap:3 " + ExtTransportCC, "a=rtcp-fb:108 transport-cc", "a=rtcp-fb:108 goog-remb", "a=rtcp-fb:111 transport-cc"} {
		if !strings.Contains(ans, want+"\r\n") {
			t.Errorf("player answer lacks %q", want)
		}
	}
	sess, media := sections(ans)
	if slices.Contains(sess, "a=ice-lite") || !slices.Contains(sess, "a=msid-semantic: WMS stream-1") {
		t.Errorf("session %q", sess)
	}
	for i, m := range media {
		if !slices.Contains(m, "a=sendonly") || !slices.Contains(m, "a=setup:active") || !slices.Contains(m, "a=fingerprint:sha-256 "+testFingerprint) {
			t.Errorf("m %d: %q", i, m)
		}
		ssrc := itoa32(tracks[i].SSRC)
		trackID := []string{"audio-0", "cam"}[i]
		for _, want := range []string{"a=msid:stream-1 " + trackID, "a=ssrc:" + ssrc + " cname:relay", "a=ssrc:" + ssrc + " msid:stream-1 " + trackID} {
			if !slices.Contains(m, want) {
				t.Errorf("m %d lacks %q", i, want)
			}
		}
	}
	if tracks[1].RTX == nil || tracks[1].RTX.PayloadType != 109 || tracks[1].RTXSSRC == 0 || tracks[1].RTXSSRC == tracks[1].SSRC || tracks[0].RTX != nil || tracks[0].RTXSSRC != 0 {
		t.Fatalf("rtx %+v / %+v", tracks[1], tracks[0])
	}
	rtx := itoa32(tracks[1].RTXSSRC)
	for _, want := range []string{"a=rtpmap:109 rtx/90000", "a=fmtp:109 apt=108", "a=ssrc-group:FID " + itoa32(tracks[1].SSRC) + " " + rtx,
		"a=ssrc:" + rtx + " cname:relay", "a=ssrc:" + rtx + " msid:stream-1 cam"} {
		if !slices.Contains(media[1], want) {
			t.Errorf("video lacks %q", want)
		}
	}
	if media[1][0] != "m=video 9 UDP/TLS/RTP/SAVPF 108 109" || !slices.Contains(media[1], "a=fmtp:108 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f") {
		t.Errorf("video %q", media[1])
	}
	d := mustParse(t, ans)
	if d.Media[0].SSRCs[0] != tracks[0].SSRC || d.Media[1].CNAME != "relay" || d.Media[0].MsidStream != d.Media[1].MsidStream {
		t.Errorf("reparsed %+v", d.Media)
	}
	if g := d.Media[1].SSRCGroups; len(g) != 1 || g[0].Semantics != "FID" || !slices.Equal(g[0].SSRCs, []uint32{tracks[1].SSRC, tracks[1].RTXSSRC}) ||
		!slices.Equal(d.Media[1].SSRCs, g[0].SSRCs) {
		t.Errorf("reparsed video ssrcs %v groups %v", d.Media[1].SSRCs, g)
	}
}

func itoa32(v uint32) string {
	var b [10]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			return string(b[i:])
		}
	}
}

func TestBuildAnswerRejectsAndInactive(t *testing.T) {
	s := minimalOffer + "a=group:BUNDLE 0 1 2\r\na=ice-ufrag:u\r\na=ice-pwd:p\r\na=setup:actpass\r\n" +
		"m=audio 9 UDP/TLS/RTP/SAVPF 0 8\r\na=mid:0\r\na=sendonly\r\n" +
		"m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=sendonly\r\na=rtpmap:96 VP8/90000\r\n" +
		"m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:2\r\n" +
		"m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=mid:3\r\na=rtpmap:96 VP8/90000\r\n"
	offer := mustParse(t, s)
	tracks, err := NegotiatePublish(offer)
	if err != nil {
		t.Fatal(err)
	}
	ans, err := BuildAnswer(offer, testTransport(), tracks, "", "")
	if err != nil {
		t.Fatal(err)
	}
	sess, media := sections(ans)
	if !slices.Contains(sess, "a=group:BUNDLE 0 1") {
		t.Errorf("bundle %q", sess)
	}
	wantM := []string{"m=audio 9 UDP/TLS/RTP/SAVPF 0", "m=video 9 UDP/TLS/RTP/SAVPF 96", "m=application 0 UDP/DTLS/SCTP webrtc-datachannel", "m=video 0 UDP/TLS/RTP/SAVPF 96"}
	for i, m := range media {
		if m[0] != wantM[i] {
			t.Errorf("m %d: %q", i, m[0])
		}
		if !slices.Contains(m, "a=mid:"+itoa32(uint32(i))) {
			t.Errorf("m %d lacks its mid", i)
		}
	}
	if !slices.Contains(media[0], "a=inactive") || !slices.Contains(media[0], "a=rtpmap:0 PCMU/8000") {
		t.Errorf("no-codec audio %q", media[0])
	}
	// The same offer without tracks for some mids: those are rejected.
	ans, err = BuildAnswer(offer, testTransport(), tracks[1:2], "", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, media = sections(ans); media[0][0] != "m=audio 0 UDP/TLS/RTP/SAVPF 0 8" {
		t.Errorf("untracked section %q", media[0][0])
	}
}

func TestBuildAnswerErrors(t *testing.T) {
	offer := mustParse(t, readTestdata(t, "chromium-publish.sdp"))
	tracks, _ := NegotiatePublish(offer)
	passiveOffer := *offer
	passiveOffer.Setup = "passive"
	tests := []struct {
		name  string
		offer *Description
		mod   func(*Transport)
	}{
		{"nil offer", nil, func(*Transport) {}},
		{"no ufrag", offer, func(t *Transport) { t.ICEUfrag = "" }},
		{"no pwd", offer, func(t *Transport) { t.ICEPwd = "" }},
		{"bad fingerprint", offer, func(t *Transport) { t.Fingerprint = "zz:01" }},
		{"sha-1 fingerprint", offer, func(t *Transport) { t.Fingerprint = "sha-1 AA:BB" }},
		{"actpass answer", offer, func(t *Transport) { t.Setup = "actpass" }},
		{"setup conflict", &passiveOffer, func(t *Transport) { t.Setup = "passive" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := testTransport()
			tc.mod(&tr)
			if _, err := BuildAnswer(tc.offer, tr, tracks, "s", "c"); !errors.Is(err, ErrInvalid) {
				t.Fatalf("err %v", err)
			}
		})
	}
}

func TestBuildOffer(t *testing.T) {
	tr := testTransport()
	tr.Lite = false
	t.Run("recvonly play offer with default codecs", func(t *testing.T) {
		off, err := BuildOffer(tr, []Track{{Kind: KindAudio}, {Kind: KindVideo}}, "", "")
		if err != nil {
			t.Fatal(err)
		}
		sess, media := sections(off)
		if slices.Contains(sess, "a=ice-lite") || !slices.Contains(sess, "a=group:BUNDLE 0 1") {
			t.Errorf("session %q", sess)
		}
		if media[0][0] != "m=audio 9 UDP/TLS/RTP/SAVPF 111" || media[1][0] != "m=video 9 UDP/TLS/RTP/SAVPF 96 102" {
			t.Errorf("m-lines %q %q", media[0][0], media[1][0])
		}
		for i, m := range media {
			for _, want := range []string{"a=setup:actpass", "a=recvonly", "a=rtcp-mux", "a=mid:" + itoa32(uint32(i)), "a=end-of-candidates"} {
				if !slices.Contains(m, want) {
					t.Errorf("m %d lacks %q", i, want)
				}
			}
		}
		for _, want := range []string{"a=rtpmap:102 H264/90000", "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f", "a=rtcp-fb:96 nack pli", "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
			"a=extmap:3 " + ExtTransportCC, "a=rtcp-fb:96 transport-cc", "a=rtcp-fb:102 transport-cc"} {
			if !slices.Contains(media[1], want) {
				t.Errorf("video lacks %q", want)
			}
		}
		for _, want := range []string{"a=extmap:3 " + ExtTransportCC, "a=rtcp-fb:111 transport-cc"} {
			if !slices.Contains(media[0], want) {
				t.Errorf("audio lacks %q", want)
			}
		}
	})
	t.Run("sendonly push offer", func(t *testing.T) {
		tracks := []Track{
			{Kind: KindAudio, SSRC: 11, Codec: Codec{PayloadType: 109, Name: "opus", ClockRate: 48000, Channels: 2}},
			{Kind: KindVideo, SSRC: 22, Codec: Codec{PayloadType: 120, Name: "VP8", ClockRate: 90000, Feedback: []string{"nack", "transport-cc"}}, Extensions: []Extension{{ID: 3, URI: ExtSDESMid}, {ID: 5, URI: ExtTransportCC}}},
		}
		off, err := BuildOffer(tr, tracks, "live", "relay")
		if err != nil {
			t.Fatal(err)
		}
		d := mustParse(t, off)
		if d.Setup != "actpass" || d.ICELite || len(d.Media) != 2 {
			t.Fatalf("%+v", d)
		}
		for i, m := range d.Media {
			if m.Direction != DirSendOnly || m.SSRCs[0] != tracks[i].SSRC || m.CNAME != "relay" || m.MsidStream != "live" || len(m.Codecs) != 1 || m.Codecs[0].PayloadType != tracks[i].Codec.PayloadType {
				t.Errorf("m %d: %+v", i, m)
			}
		}
		// A published codec's transport-cc never reaches a sending offer: we do not consume that feedback.
		if !slices.Equal(d.Media[1].Extensions, tracks[1].Extensions[:1]) {
			t.Errorf("extensions %v", d.Media[1].Extensions)
		}
		if !slices.Equal(d.Media[1].Codecs[0].Feedback, []string{"nack"}) || strings.Contains(off, "transport") {
			t.Errorf("feedback %v", d.Media[1].Codecs[0].Feedback)
		}
	})
	t.Run("errors", func(t *testing.T) {
		for name, tracks := range map[string][]Track{
			"none":             nil,
			"bad kind":         {{Kind: "application"}},
			"duplicate mid":    {{Kind: KindAudio, Mid: "a"}, {Kind: KindVideo, Mid: "a"}},
			"sendonly no ssrc": {{Kind: KindAudio, Direction: DirSendOnly}},
		} {
			if _, err := BuildOffer(tr, tracks, "", ""); !errors.Is(err, ErrInvalid) {
				t.Errorf("%s: %v", name, err)
			}
		}
	})
}

func BenchmarkPublishAnswer(b *testing.B) {
	s := readTestdata(b, "chromium-publish.sdp")
	tr := testTransport()
	b.ReportAllocs()
	for b.Loop() {
		d, err := Parse(s)
		if err != nil {
			b.Fatal(err)
		}
		tracks, err := NegotiatePublish(d)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := BuildAnswer(d, tr, tracks, "s", "c"); err != nil {
			b.Fatal(err)
		}
	}
}
