package sdp

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func readTestdata(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mustParse(t testing.TB, s string) *Description {
	t.Helper()
	d, err := Parse(s)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return d
}

func findCodec(m Media, pt uint8) (Codec, bool) {
	for _, c := range m.Codecs {
		if c.PayloadType == pt {
			return c, true
		}
	}
	return Codec{}, false
}

func TestParseBrowserOffers(t *testing.T) {
	tests := []struct {
		file        string
		dirs        []string // per m-section
		kinds       []string
		ufrag       string
		fpPrefix    string
		nCandidates int
		opusPT      uint8
		vp8PT       uint8 // 0: absent
		audioSSRC   uint32
		cname       string
	}{
		{"chromium-publish.sdp", []string{"sendonly", "sendonly"}, []string{"audio", "video"}, "H2RJ", "sha-256 AA:AB:63", 0, 111, 96, 1913650457, "L7yrtxuETEsUzae3"},
		{"chromium-publish-lf.sdp", []string{"sendonly", "sendonly"}, []string{"audio", "video"}, "H2RJ", "sha-256 AA:AB:63", 0, 111, 96, 1913650457, "L7yrtxuETEsUzae3"},
		{"chromium-publish-sendrecv.sdp", []string{"sendrecv", "sendrecv"}, []string{"audio", "video"}, "", "sha-256 ", 0, 111, 96, 0, ""},
		{"chromium-publish-candidates.sdp", []string{"sendonly", "sendonly"}, []string{"audio", "video"}, "", "sha-256 ", 8, 111, 96, 0, ""},
		{"chromium-play.sdp", []string{"recvonly", "recvonly"}, []string{"audio", "video"}, "tYcw", "sha-256 D3:BE", 0, 111, 96, 0, ""},
		{"firefox.sdp", []string{"sendrecv", "sendrecv"}, []string{"audio", "video"}, "8c1d9e0a", "sha-256 5B:0A", 0, 109, 120, 3735928559, "{c0ffee00-1234-4abc-8def-0123456789ab}"},
		{"safari.sdp", []string{"sendonly", "sendonly"}, []string{"audio", "video"}, "Sf4r", "sha-256 0F:1E", 0, 111, 127, 2576322910, "Kx9pQ2wE7rT4yU1i"},
		{"firefox-h264-mixed.sdp", []string{"sendrecv", "sendrecv"}, []string{"audio", "video"}, "8c1d9e0a", "sha-256 5B:0A", 0, 109, 0, 3735928559, ""},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			d := mustParse(t, readTestdata(t, tc.file))
			if len(d.Media) != len(tc.dirs) {
				t.Fatalf("got %d m-sections", len(d.Media))
			}
			if !slices.Equal(d.Bundle, []string{"0", "1"}) {
				t.Errorf("bundle %v", d.Bundle)
			}
			if d.ICEUfrag == "" || d.ICEPwd == "" || (tc.ufrag != "" && d.ICEUfrag != tc.ufrag) {
				t.Errorf("ice %q/%q", d.ICEUfrag, d.ICEPwd)
			}
			if !strings.HasPrefix(d.Fingerprint, tc.fpPrefix) || d.Setup != "actpass" || d.ICELite {
				t.Errorf("fingerprint %q setup %q lite %v", d.Fingerprint, d.Setup, d.ICELite)
			}
			if len(d.Candidates) != tc.nCandidates {
				t.Errorf("candidates %d: %v", len(d.Candidates), d.Candidates)
			}
			for i, m := range d.Media {
				if m.Direction != tc.dirs[i] || m.Kind != tc.kinds[i] || m.Mid != []string{"0", "1"}[i] || !m.RTCPMux || m.Rejected {
					t.Errorf("m %d: %+v", i, m)
				}
			}
			if c, ok := findCodec(d.Media[0], tc.opusPT); !ok || c.Name != "opus" || c.ClockRate != 48000 || c.Channels != 2 || !strings.Contains(c.Fmtp, "useinbandfec=1") {
				t.Errorf("opus %+v", c)
			}
			if tc.vp8PT != 0 {
				c, ok := findCodec(d.Media[1], tc.vp8PT)
				if !ok || c.Name != "VP8" || c.ClockRate != 90000 || !slices.Contains(c.Feedback, "nack pli") {
					t.Errorf("vp8 %+v", c)
				}
			}
			if tc.audioSSRC != 0 && (len(d.Media[0].SSRCs) != 1 || d.Media[0].SSRCs[0] != tc.audioSSRC) {
				t.Errorf("ssrcs %v", d.Media[0].SSRCs)
			}
			if tc.cname != "" && d.Media[0].CNAME != tc.cname {
				t.Errorf("cname %q", d.Media[0].CNAME)
			}
		})
	}
}

func TestParseChromiumDetails(t *testing.T) {
	d := mustParse(t, readTestdata(t, "chromium-publish.sdp"))
	v := d.Media[1]
	if len(v.SSRCs) != 2 || len(v.SSRCGroups) != 1 || v.SSRCGroups[0].Semantics != "FID" || v.SSRCGroups[0].SSRCs[0] != v.SSRCs[0] {
		t.Errorf("video ssrcs %v groups %v", v.SSRCs, v.SSRCGroups)
	}
	if v.MsidStream != "62dda013-1458-479a-ad6f-8ba4601bc464" || !v.RTCPRsize {
		t.Errorf("msid %q rsize %v", v.MsidStream, v.RTCPRsize)
	}
	// m= line order is kept (preference order).
	if pts := codecPTs(v.Codecs); !slices.Equal(pts[:4], []uint8{96, 97, 102, 103}) {
		t.Errorf("order %v", pts)
	}
	if !slices.Contains(v.Extensions, Extension{ID: 4, URI: ExtSDESMid}) || !slices.Contains(v.Extensions, Extension{ID: 3, URI: ExtTransportCC}) {
		t.Errorf("extensions %v", v.Extensions)
	}
	c, _ := findCodec(v, 108)
	if c.Fmtp != "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f" {
		t.Errorf("fmtp %q", c.Fmtp)
	}
	// Candidates come from the BUNDLE tag (mid 0) only, without "a=".
	dc := mustParse(t, readTestdata(t, "chromium-publish-candidates.sdp"))
	for _, c := range dc.Candidates {
		if !strings.HasPrefix(c, "candidate:") {
			t.Errorf("candidate %q", c)
		}
	}
	// Firefox: extmap with direction, fmtp before rtpmap.
	f := mustParse(t, readTestdata(t, "firefox.sdp"))
	if !slices.Contains(f.Media[0].Extensions, Extension{ID: 2, URI: "urn:ietf:params:rtp-hdrext:csrc-audio-level"}) {
		t.Errorf("ff ext %v", f.Media[0].Extensions)
	}
	if c, _ := findCodec(f.Media[1], 126); c.Name != "H264" || !strings.Contains(c.Fmtp, "packetization-mode=1") {
		t.Errorf("ff h264 %+v", c)
	}
}

func codecPTs(cs []Codec) []uint8 {
	out := make([]uint8, len(cs))
	for i, c := range cs {
		out[i] = c.PayloadType
	}
	return out
}

const minimalOffer = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"

func TestParseVariants(t *testing.T) {
	t.Run("media-level wins when session lacks, session first otherwise", func(t *testing.T) {
		s := minimalOffer + "a=ice-lite\r\na=ice-ufrag:sess\r\n" +
			"m=audio 0 UDP/TLS/RTP/SAVPF 111\r\na=ice-ufrag:rejected\r\na=ice-pwd:rejectedpwd\r\n" +
			"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:a\r\na=ice-ufrag:media\r\na=ice-pwd:mediapwd\r\n" +
			"a=fingerprint:sha-1 00:11\r\na=fingerprint:sha-256 AB:CD\r\na=setup:passive\r\na=rtpmap:111 opus/48000/2\r\n" +
			"a=rtcp-fb:* nack\r\na=rtcp-fb:111 transport-cc\r\n"
		d := mustParse(t, s)
		if d.ICEUfrag != "sess" || d.ICEPwd != "mediapwd" || d.Fingerprint != "sha-256 AB:CD" || d.Setup != "passive" || !d.ICELite {
			t.Errorf("%+v", d)
		}
		if !d.Media[0].Rejected || d.Media[1].Rejected {
			t.Error("rejected flags")
		}
		if d.Media[1].Direction != DirSendRecv {
			t.Errorf("default direction %q", d.Media[1].Direction)
		}
		if fb := d.Media[1].Codecs[0].Feedback; !slices.Equal(fb, []string{"transport-cc", "nack"}) {
			t.Errorf("feedback %v", fb)
		}
	})
	t.Run("candidates of the BUNDLE tag, else of the first section with some", func(t *testing.T) {
		base := minimalOffer + "a=group:BUNDLE 1 0\r\n" +
			"m=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=candidate:1 1 udp 1 127.0.0.1 1000 typ host\r\n" +
			"m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\n"
		d := mustParse(t, base+"a=candidate:2 1 udp 1 127.0.0.1 2000 typ host\r\n")
		if !slices.Equal(d.Candidates, []string{"candidate:2 1 udp 1 127.0.0.1 2000 typ host"}) {
			t.Errorf("tagged: %v", d.Candidates)
		}
		d = mustParse(t, base)
		if !slices.Equal(d.Candidates, []string{"candidate:1 1 udp 1 127.0.0.1 1000 typ host"}) {
			t.Errorf("fallback: %v", d.Candidates)
		}
	})
	t.Run("bundle-only section with port 0 is not rejected", func(t *testing.T) {
		d := mustParse(t, minimalOffer+"a=group:BUNDLE v a\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:v\r\na=rtpmap:96 VP8/90000\r\n"+
			"m=audio 0 UDP/TLS/RTP/SAVPF 111\r\na=mid:a\r\na=bundle-only\r\na=rtpmap:111 OPUS/48000/2\r\n"+
			"m=audio 0 UDP/TLS/RTP/SAVPF 111\r\na=mid:r\r\n")
		if d.Media[0].Rejected || d.Media[1].Rejected || !d.Media[2].Rejected {
			t.Errorf("rejected flags %v %v %v", d.Media[0].Rejected, d.Media[1].Rejected, d.Media[2].Rejected)
		}
	})
	t.Run("static payload types without rtpmap", func(t *testing.T) {
		d := mustParse(t, minimalOffer+"m=audio 9 RTP/AVP 0 8 96\n")
		if pts := codecPTs(d.Media[0].Codecs); !slices.Equal(pts, []uint8{0, 8}) || d.Media[0].Codecs[0].Name != "PCMU" {
			t.Errorf("%+v", d.Media[0].Codecs)
		}
	})
	t.Run("session-level direction", func(t *testing.T) {
		d := mustParse(t, minimalOffer+"a=sendonly\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n")
		if d.Media[0].Direction != DirSendOnly {
			t.Error(d.Media[0].Direction)
		}
	})
	t.Run("bare CR, blank lines and trailing blanks", func(t *testing.T) {
		s := strings.ReplaceAll(readTestdata(t, "chromium-play.sdp"), "\r\n", " \r\r\n")
		d := mustParse(t, s)
		if len(d.Media) != 2 || d.Media[1].Codecs[0].Name != "VP8" {
			t.Errorf("%+v", d.Media)
		}
	})
	t.Run("datachannel section", func(t *testing.T) {
		d := mustParse(t, minimalOffer+"m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:2\r\n")
		if m := d.Media[0]; m.Kind != "application" || m.Proto != "UDP/DTLS/SCTP" || len(m.Codecs) != 0 || m.Formats[0] != "webrtc-datachannel" {
			t.Errorf("%+v", m)
		}
	})
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"empty", "", ErrInvalid},
		{"garbage", "hello world", ErrInvalid},
		{"no media", minimalOffer, ErrInvalid},
		{"too large", minimalOffer + strings.Repeat("a=x:y\r\n", MaxSize/7+1), ErrTooLarge},
		{"bad rtpmap pt", minimalOffer + "m=audio 9 RTP/AVP 0\r\na=rtpmap:300 opus/48000/2\r\n", ErrInvalid},
		{"bad rtpmap clock", minimalOffer + "m=audio 9 RTP/AVP 0\r\na=rtpmap:111 opus/x/2\r\n", ErrInvalid},
		{"bad extmap id", minimalOffer + "m=audio 9 RTP/AVP 0\r\na=extmap:0 urn:x\r\n", ErrInvalid},
		{"bad ssrc", minimalOffer + "m=audio 9 RTP/AVP 0\r\na=ssrc:-1 cname:x\r\n", ErrInvalid},
		{"bad media", minimalOffer + "m=foo 9 RTP/AVP 0\r\n", ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.in)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func BenchmarkParseChromiumOffer(b *testing.B) {
	s := readTestdata(b, "chromium-play.sdp")
	b.ReportAllocs()
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		if _, err := Parse(s); err != nil {
			b.Fatal(err)
		}
	}
}
