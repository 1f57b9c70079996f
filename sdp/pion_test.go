package sdp

import (
	"net"
	"slices"
	"strings"
	"testing"

	pionice "github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"
)

// Interop with pion/webrtc v4 as an independent peer: its offers must parse
// and negotiate, our answers must pass its SetRemoteDescription, and its
// answers to our offers must parse.

func newPionPC(t *testing.T, register func(*webrtc.MediaEngine) error) *webrtc.PeerConnection {
	t.Helper()
	m := &webrtc.MediaEngine{}
	if register == nil {
		register = (*webrtc.MediaEngine).RegisterDefaultCodecs
	}
	if err := register(m); err != nil {
		t.Fatal(err)
	}
	var se webrtc.SettingEngine
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(pionice.MulticastDNSModeDisabled)
	api := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	return pc
}

func addSendTrack(t *testing.T, pc *webrtc.PeerConnection, mime, id string, dir webrtc.RTPTransceiverDirection) {
	t.Helper()
	tr, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: mime}, id, "pion-stream")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.AddTransceiverFromTrack(tr, webrtc.RTPTransceiverInit{Direction: dir}); err != nil {
		t.Fatal(err)
	}
}

func pionOffer(t *testing.T, pc *webrtc.PeerConnection) string {
	t.Helper()
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	return offer.SDP
}

// applyAnswer hands our answer to pion's SetRemoteDescription.
func applyAnswer(t *testing.T, pc *webrtc.PeerConnection, answer string) {
	t.Helper()
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatalf("pion rejected our answer: %v\n%s", err, answer)
	}
}

func TestPionPublishRoundTrip(t *testing.T) {
	for _, dir := range []webrtc.RTPTransceiverDirection{webrtc.RTPTransceiverDirectionSendonly, webrtc.RTPTransceiverDirectionSendrecv} {
		t.Run(dir.String(), func(t *testing.T) {
			pc := newPionPC(t, nil)
			addSendTrack(t, pc, webrtc.MimeTypeOpus, "a", dir)
			addSendTrack(t, pc, webrtc.MimeTypeVP8, "v", dir)
			offerSDP := pionOffer(t, pc)
			offer := mustParse(t, offerSDP)
			tracks, err := NegotiatePublish(offer)
			if err != nil {
				t.Fatal(err)
			}
			answer, err := BuildAnswer(offer, testTransport(), tracks, "", "")
			if err != nil {
				t.Fatal(err)
			}
			applyAnswer(t, pc, answer)
			checkAnswerMatchesOffer(t, offer, answer)
			for i, tr := range pc.GetTransceivers() {
				codecs := tr.Sender().GetParameters().Codecs
				if len(codecs) == 0 || uint8(codecs[0].PayloadType) != tracks[i].Codec.PayloadType {
					t.Errorf("transceiver %d sends %+v, negotiated %+v", i, codecs, tracks[i].Codec)
				}
			}
		})
	}
}

// checkAnswerMatchesOffer: same mids in the same order, BUNDLE in offer order,
// explicit setup, and every answer PT is one the offer had for that section.
func checkAnswerMatchesOffer(t *testing.T, offer *Description, answer string) {
	t.Helper()
	a := mustParse(t, answer)
	if len(a.Media) != len(offer.Media) {
		t.Fatalf("answer has %d m-sections, offer %d", len(a.Media), len(offer.Media))
	}
	var mids []string
	for i := range a.Media {
		am, om := a.Media[i], offer.Media[i]
		if am.Mid != om.Mid || am.Kind != om.Kind {
			t.Errorf("m %d: %s/%s vs offer %s/%s", i, am.Mid, am.Kind, om.Mid, om.Kind)
		}
		if !am.Rejected {
			mids = append(mids, am.Mid)
		}
		for _, c := range am.Codecs {
			oc, ok := findCodec(om, c.PayloadType)
			if !ok || !strings.EqualFold(oc.Name, c.Name) || oc.ClockRate != c.ClockRate {
				t.Errorf("m %d: answer codec %+v not offered as such (%+v)", i, c, oc)
			}
		}
	}
	if !slices.Equal(a.Bundle, mids) {
		t.Errorf("bundle %v, want %v", a.Bundle, mids)
	}
	if a.Setup != "passive" && a.Setup != "active" {
		t.Errorf("setup %q", a.Setup)
	}
}

func TestPionPublishH264CustomPTs(t *testing.T) {
	pc := newPionPC(t, func(m *webrtc.MediaEngine) error {
		fb := []webrtc.RTCPFeedback{{Type: "goog-remb"}, {Type: "nack"}, {Type: "nack", Parameter: "pli"}, {Type: "transport-cc"}}
		for _, c := range []webrtc.RTPCodecParameters{
			{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, PayloadType: 100},
		} {
			if err := m.RegisterCodec(c, webrtc.RTPCodecTypeAudio); err != nil {
				return err
			}
		}
		for _, c := range []webrtc.RTPCodecParameters{
			{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f", RTCPFeedback: fb}, PayloadType: 121},
			{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f", RTCPFeedback: fb}, PayloadType: 122},
			{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f", RTCPFeedback: fb}, PayloadType: 123},
		} {
			if err := m.RegisterCodec(c, webrtc.RTPCodecTypeVideo); err != nil {
				return err
			}
		}
		return nil
	})
	addSendTrack(t, pc, webrtc.MimeTypeOpus, "a", webrtc.RTPTransceiverDirectionSendonly)
	addSendTrack(t, pc, webrtc.MimeTypeH264, "v", webrtc.RTPTransceiverDirectionSendonly)
	offer := mustParse(t, pionOffer(t, pc))
	tracks, err := NegotiatePublish(offer)
	if err != nil {
		t.Fatal(err)
	}
	if tracks[0].Codec.PayloadType != 100 || tracks[1].Codec.PayloadType != 123 {
		t.Fatalf("chose %d and %d, want 100 and 123", tracks[0].Codec.PayloadType, tracks[1].Codec.PayloadType)
	}
	if !slices.Equal(tracks[1].Codec.Feedback, []string{"goog-remb", "nack", "nack pli", "transport-cc"}) {
		t.Errorf("feedback %v", tracks[1].Codec.Feedback)
	}
	answer, err := BuildAnswer(offer, testTransport(), tracks, "", "")
	if err != nil {
		t.Fatal(err)
	}
	applyAnswer(t, pc, answer)
	checkAnswerMatchesOffer(t, offer, answer)
	if got := pc.GetTransceivers()[1].Sender().GetParameters().Codecs; len(got) == 0 || got[0].PayloadType != 123 {
		t.Errorf("pion sends video with %+v", got)
	}
}

func TestPionPlayRoundTrip(t *testing.T) {
	pc := newPionPC(t, nil)
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	offer := mustParse(t, pionOffer(t, pc))
	tracks, err := NegotiatePlay(offer, []Codec{
		{Name: "opus", ClockRate: 48000, Channels: 2},
		{Name: "H264", ClockRate: 90000, Fmtp: "packetization-mode=1;profile-level-id=42e01f"},
	})
	if err != nil {
		t.Fatal(err)
	}
	answer, err := BuildAnswer(offer, testTransport(), tracks, "relay-stream", "relaycname")
	if err != nil {
		t.Fatal(err)
	}
	applyAnswer(t, pc, answer)
	checkAnswerMatchesOffer(t, offer, answer)
	a := mustParse(t, answer)
	if a.Media[0].MsidStream != "relay-stream" || a.Media[1].MsidStream != "relay-stream" {
		t.Errorf("msid streams %q %q", a.Media[0].MsidStream, a.Media[1].MsidStream)
	}
	// pion offers rtx for H264; the answer declares it with its own SSRC, and transport-cc on both sections.
	if v := a.Media[1]; tracks[1].RTX == nil || len(v.SSRCGroups) != 1 || !slices.Equal(v.SSRCGroups[0].SSRCs, []uint32{tracks[1].SSRC, tracks[1].RTXSSRC}) {
		t.Errorf("video rtx %+v, answer groups %v", tracks[1].RTX, v.SSRCGroups)
	}
	for i := range a.Media {
		if !slices.ContainsFunc(a.Media[i].Extensions, func(e Extension) bool { return e.URI == ExtTransportCC }) {
			t.Errorf("m %d: extensions %v", i, a.Media[i].Extensions)
		}
	}
	h, _ := findCodec(offer.Media[1], tracks[1].Codec.PayloadType)
	if h.Name != "H264" || profileLevelID(h.Fmtp) != "42e01f" || packetizationMode(h.Fmtp) != "1" {
		t.Errorf("video mapped onto %+v", h)
	}
	for i, tr := range pc.GetTransceivers() {
		codecs := tr.Receiver().GetParameters().Codecs
		if !slices.ContainsFunc(codecs, func(c webrtc.RTPCodecParameters) bool { return uint8(c.PayloadType) == tracks[i].Codec.PayloadType }) {
			t.Errorf("pion receiver %d codecs %+v lack PT %d", i, codecs, tracks[i].Codec.PayloadType)
		}
	}
}

func TestPionAnswersOurOffer(t *testing.T) {
	tr := testTransport()
	tr.Lite = false
	t.Run("recvonly play offer", func(t *testing.T) {
		off, err := BuildOffer(tr, []Track{{Kind: KindAudio}, {Kind: KindVideo}}, "", "")
		if err != nil {
			t.Fatal(err)
		}
		pc := newPionPC(t, nil)
		at, _ := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus}, "a", "s")
		vt, _ := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "v", "s")
		for _, lt := range []webrtc.TrackLocal{at, vt} {
			if _, err := pc.AddTrack(lt); err != nil {
				t.Fatal(err)
			}
		}
		ans := pionAnswerTo(t, pc, off)
		if ans.Setup != "active" || len(ans.Media) != 2 {
			t.Fatalf("%+v", ans)
		}
		for i, m := range ans.Media {
			want := []uint8{DefaultOpusPT, DefaultVP8PT}[i]
			if m.Direction != DirSendOnly || len(m.Codecs) == 0 || m.Codecs[0].PayloadType != want || len(m.SSRCs) == 0 || m.Mid != itoa32(uint32(i)) {
				t.Errorf("m %d: %+v", i, m)
			}
			// pion, as a sender, accepts the transport-cc we offer to receive.
			if !slices.Contains(m.Extensions, Extension{ID: DefaultTransportCCID, URI: ExtTransportCC}) {
				t.Errorf("m %d: extensions %v", i, m.Extensions)
			}
		}
	})
	t.Run("sendonly push offer", func(t *testing.T) {
		tracks := []Track{
			{Kind: KindAudio, SSRC: 1111, Codec: Codec{PayloadType: 111, Name: "opus", ClockRate: 48000, Channels: 2, Fmtp: "minptime=10;useinbandfec=1"}},
			{Kind: KindVideo, SSRC: 2222, Codec: Codec{PayloadType: 102, Name: "H264", ClockRate: 90000, Fmtp: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f", Feedback: []string{"nack", "nack pli"}}},
		}
		off, err := BuildOffer(tr, tracks, "push", "pushcname")
		if err != nil {
			t.Fatal(err)
		}
		pc := newPionPC(t, nil)
		ans := pionAnswerTo(t, pc, off)
		for i, m := range ans.Media {
			if m.Direction != DirRecvOnly || len(m.Codecs) == 0 || m.Codecs[0].PayloadType != tracks[i].Codec.PayloadType {
				t.Errorf("m %d: %+v", i, m)
			}
		}
	})
}

func pionAnswerTo(t *testing.T, pc *webrtc.PeerConnection, offer string) *Description {
	t.Helper()
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		t.Fatalf("pion rejected our offer: %v\n%s", err, offer)
	}
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.SetLocalDescription(ans); err != nil {
		t.Fatal(err)
	}
	return mustParse(t, ans.SDP)
}

// A pion publisher sending VP8 simulcast (rids q, h, f on one transceiver, plus audio): we answer with
// a=rid recv and a=simulcast:recv, and pion accepts the answer with all three encodings.
func TestPionPublishSimulcast(t *testing.T) {
	pc := newPionPC(t, func(m *webrtc.MediaEngine) error {
		if err := m.RegisterDefaultCodecs(); err != nil {
			return err
		}
		return webrtc.ConfigureSimulcastExtensionHeaders(m)
	})
	addSendTrack(t, pc, webrtc.MimeTypeOpus, "a", webrtc.RTPTransceiverDirectionSendonly)
	rids := []string{"q", "h", "f"}
	var tr *webrtc.RTPTransceiver
	for i, rid := range rids {
		lt, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "v", "pion-stream", webrtc.WithRTPStreamID(rid))
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if tr, err = pc.AddTransceiverFromTrack(lt, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := tr.Sender().AddEncoding(lt); err != nil {
			t.Fatal(err)
		}
	}
	offerSDP := pionOffer(t, pc)
	offer := mustParse(t, offerSDP)
	if !slices.Equal(offer.Media[1].SimulcastSend, rids) {
		t.Fatalf("pion offer simulcast %q rids %v\n%s", offer.Media[1].Simulcast, offer.Media[1].RIDs, offerSDP)
	}
	tracks, err := NegotiatePublish(offer)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tracks[1].RIDs, rids) || tracks[0].RIDs != nil {
		t.Fatalf("rids %v %v", tracks[0].RIDs, tracks[1].RIDs)
	}
	for _, uri := range []string{ExtRTPStreamID, ExtRepairedStreamID, ExtSDESMid} {
		if !slices.ContainsFunc(tracks[1].Extensions, func(e Extension) bool { return e.URI == uri }) {
			t.Errorf("video extensions %v lack %s", tracks[1].Extensions, uri)
		}
	}
	answer, err := BuildAnswer(offer, testTransport(), tracks, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(answer, "a=simulcast:recv q;h;f\r\n") {
		t.Fatalf("answer without simulcast\n%s", answer)
	}
	applyAnswer(t, pc, answer)
	checkAnswerMatchesOffer(t, offer, answer)
	var got []string
	for _, e := range tr.Sender().GetParameters().Encodings {
		got = append(got, e.RID)
	}
	if !slices.Equal(got, rids) {
		t.Errorf("pion sender encodings %v", got)
	}
	if codecs := tr.Sender().GetParameters().Codecs; len(codecs) == 0 || uint8(codecs[0].PayloadType) != tracks[1].Codec.PayloadType {
		t.Errorf("pion sends video with %+v, negotiated %+v", codecs, tracks[1].Codec)
	}
}
