package sdp

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// What the relay forwards. RTCP feedback we implement: NACK (retransmission
// from the forwarder's ring), PLI and FIR. abs-send-time is kept (cheap,
// useful to receivers); sdes:mid lets browsers demux BUNDLE by MID;
// audio-level is forwarded untouched.
//
// Bandwidth feedback is negotiated in both directions:
//   - With publishers, transport-wide congestion control (TWCC): a
//     publisher's session records the transport-cc sequence numbers it
//     receives and sends transport-cc feedback (package twcc), which a
//     browser's send-side estimator needs to ramp up and back off. goog-remb
//     is accepted as well, so that a receiver estimate (REMB) can reach a
//     browser that does not do TWCC; no package sends REMB yet.
//   - With players, transport-cc (rtcp-fb and the header extension) and
//     goog-remb: we stamp transport-cc sequence numbers on what we send and
//     consume the player's TWCC feedback for a per-player send-side estimate
//     (which layer and rate it can take); REMB is the fallback for players
//     that send no TWCC feedback. The estimator lives outside this package
//     (nothing consumes REMB yet).
//
// BuildOffer's sending tracks (an outbound relay push) still negotiate
// neither: that session does not consume the feedback.
//
// Simulcast (RFC 8853) is received from publishers: a video m-section with
// a=simulcast send and a=rid lines gets Track.RIDs, and the rtp-stream-id and
// repaired-rtp-stream-id extensions that tell the encodings (and their RTX
// packets) apart, as Chrome sends no a=ssrc lines for simulcast. RTX (RFC
// 4588) is negotiated for video in both directions when offered for the
// chosen codec (Track.RTX); towards players with its own SSRC (Track.RTXSSRC,
// an a=ssrc-group:FID).
var (
	supportedFeedback = []string{"nack", "nack pli", "ccm fir"}             //nolint:gochecknoglobals // read-only
	supportedExt      = []string{ExtSDESMid, ExtAbsSendTime, ExtAudioLevel} //nolint:gochecknoglobals // read-only
	// What we accept from a publisher (what we receive) on top.
	publishFeedback = append(slices.Clip(supportedFeedback), FeedbackTransportCC, FeedbackGoogREMB) //nolint:gochecknoglobals // read-only
	publishExt      = append(slices.Clip(supportedExt), ExtTransportCC)                             //nolint:gochecknoglobals // read-only
	// What a publisher's simulcast video track keeps on top of publishExt.
	simulcastExt = append(slices.Clip(publishExt), ExtRTPStreamID, ExtRepairedStreamID) //nolint:gochecknoglobals // read-only
	// What we negotiate with a player (what we send) on top.
	playFeedback = append(slices.Clip(supportedFeedback), FeedbackTransportCC, FeedbackGoogREMB) //nolint:gochecknoglobals // read-only
	playExt      = append(slices.Clip(supportedExt), ExtTransportCC)                             //nolint:gochecknoglobals // read-only
)

// RTCP feedback values (a=rtcp-fb).
const (
	// FeedbackTransportCC is transport-wide congestion control feedback.
	FeedbackTransportCC = "transport-cc"
	// FeedbackGoogREMB is receiver estimated maximum bitrate (draft-alvestrand-rmcat-remb).
	FeedbackGoogREMB = "goog-remb"
)

// NegotiatePublish chooses, for each offered m-section, the one codec the
// relay will receive and forward, keeping the offer's payload type and
// extension IDs. It returns one Track per offered m-section, in offer order:
// Direction recvonly when the offerer sends (sendonly or sendrecv), inactive
// otherwise or when the section has no common codec (then Codec is zero).
// Rejected and non-audio/video sections get an inactive Track that
// BuildAnswer answers with port 0. A receiving video track gets RTX when the
// offer has an rtx format for its codec, and RIDs (with the rtp-stream-id
// extensions) when the section offers simulcast. If no section has a common
// codec the error is ErrNoCommonCodec.
func NegotiatePublish(offer *Description) ([]Track, error) {
	if offer == nil {
		return nil, fmt.Errorf("%w: nil offer", ErrInvalid)
	}
	tracks := make([]Track, 0, len(offer.Media))
	found := false
	for i := range offer.Media {
		m := &offer.Media[i]
		t := Track{Mid: m.Mid, Kind: m.Kind, Direction: DirInactive}
		if usable(m) {
			if c, ok := chooseReceiveCodec(m); ok {
				found = true
				t.Codec = c
				t.Extensions = filterExtensions(m.Extensions, publishExt)
				if m.Direction == DirSendOnly || m.Direction == DirSendRecv {
					t.Direction = DirRecvOnly
					t.RTX = chooseRTX(m, c)
					if m.Kind == KindVideo && len(m.SimulcastSend) > 0 {
						t.RIDs = slices.Clone(m.SimulcastSend)
						t.Extensions = filterExtensions(m.Extensions, simulcastExt)
					}
				} else {
					// Nothing to receive, no feedback to send.
					t.Codec.Feedback = filterFeedback(t.Codec.Feedback, supportedFeedback)
					t.Extensions = filterExtensions(t.Extensions, supportedExt)
				}
			}
		}
		tracks = append(tracks, t)
	}
	if !found {
		return nil, ErrNoCommonCodec
	}
	return tracks, nil
}

// NegotiatePlay maps the publisher's codecs onto a player's offer: for each
// offered audio/video m-section that wants to receive (recvonly or sendrecv),
// the published codec of that kind that the player offered, under the
// player's payload type, on a sending Track with a fresh random SSRC and
// Direction sendonly. Sections the publisher cannot feed are inactive (zero
// Codec). A video track gets RTX, with a fresh random RTXSSRC, when the
// player offered an rtx format for its codec. If nothing matches, the error
// is ErrNoCommonCodec.
func NegotiatePlay(offer *Description, published []Codec) ([]Track, error) {
	if offer == nil {
		return nil, fmt.Errorf("%w: nil offer", ErrInvalid)
	}
	tracks := make([]Track, 0, len(offer.Media))
	found := false
	used := map[uint32]bool{}
	for i := range offer.Media {
		m := &offer.Media[i]
		t := Track{Mid: m.Mid, Kind: m.Kind, Direction: DirInactive}
		if usable(m) && (m.Direction == DirRecvOnly || m.Direction == DirSendRecv) {
			if c, ok := matchPublished(m, published); ok {
				found = true
				t.Codec = c
				t.Extensions = filterExtensions(m.Extensions, playExt)
				if m.Kind == KindVideo && len(m.SimulcastRecv) > 0 && hasExtension(m.Extensions, ExtRTPStreamID) {
					// The player takes simulcast (a relay pulling): the caller keeps as many of these RIDs
					// as the stream has layers, or none.
					t.RIDs = slices.Clone(m.SimulcastRecv)
					t.Extensions = filterExtensions(m.Extensions, append(slices.Clip(playExt), ExtRTPStreamID))
				}
				t.Direction = DirSendOnly
				t.SSRC = randomSSRC(used)
				if t.RTX = chooseRTX(m, c); t.RTX != nil {
					t.RTXSSRC = randomSSRC(used)
				}
			}
		}
		tracks = append(tracks, t)
	}
	if !found {
		return nil, ErrNoCommonCodec
	}
	return tracks, nil
}

func usable(m *Media) bool {
	return !m.Rejected && (m.Kind == KindAudio || m.Kind == KindVideo)
}

// chooseReceiveCodec: audio Opus 48000/2; video VP8, else H264
// packetization-mode=1 with a baseline profile (42e01f best).
func chooseReceiveCodec(m *Media) (Codec, bool) {
	best, bestScore := -1, 0
	for i, c := range m.Codecs {
		s := receiveScore(m.Kind, c)
		if s > bestScore {
			best, bestScore = i, s
		}
	}
	if best < 0 {
		return Codec{}, false
	}
	c := m.Codecs[best]
	c.Feedback = filterFeedback(c.Feedback, publishFeedback)
	return c, true
}

// receiveScore ranks a codec for publishing; 0 = unusable.
func receiveScore(kind string, c Codec) int {
	switch {
	case kind == KindAudio && strings.EqualFold(c.Name, "opus") && c.ClockRate == 48000 && c.Channels == 2:
		return 10
	case kind == KindVideo && strings.EqualFold(c.Name, "VP8") && c.ClockRate == 90000:
		return 10
	case kind == KindVideo && strings.EqualFold(c.Name, "H264") && c.ClockRate == 90000:
		if packetizationMode(c.Fmtp) != "1" {
			return 0
		}
		plid := profileLevelID(c.Fmtp)
		switch {
		case plid == "42e01f":
			return 5
		case strings.HasPrefix(plid, "42e0"):
			return 4
		case strings.HasPrefix(plid, "42"):
			return 3
		}
	}
	return 0
}

// chooseRTX returns a copy of the rtx format m offers for c (same clock rate,
// fmtp apt=c's payload type), nil when none or m is not video.
func chooseRTX(m *Media, c Codec) *Codec {
	if m.Kind != KindVideo {
		return nil
	}
	for _, r := range m.Codecs {
		if !strings.EqualFold(r.Name, "rtx") || r.ClockRate != c.ClockRate || r.PayloadType == c.PayloadType {
			continue
		}
		if apt, ok := FmtpParam(r.Fmtp, "apt"); ok && apt == strconv.Itoa(int(c.PayloadType)) {
			r.Feedback = nil
			return &r
		}
	}
	return nil
}

func packetizationMode(fmtp string) string {
	v, ok := FmtpParam(fmtp, "packetization-mode")
	if !ok {
		return "0"
	}
	return v
}

// profileLevelID returns the lower-case H264 profile-level-id, defaulting to
// 42000a (RFC 6184 §8.1).
func profileLevelID(fmtp string) string {
	v, ok := FmtpParam(fmtp, "profile-level-id")
	if !ok || len(v) != 6 {
		return "42000a"
	}
	return strings.ToLower(v)
}

// matchPublished finds the first published codec of m's kind that m offers.
func matchPublished(m *Media, published []Codec) (Codec, bool) {
	for _, p := range published {
		if CodecKind(p) != m.Kind {
			continue
		}
		best, bestScore := -1, 0
		for i, o := range m.Codecs {
			if s := compatScore(m.Kind, p, o); s > bestScore {
				best, bestScore = i, s
			}
		}
		if best >= 0 {
			c := m.Codecs[best] // the player's PT and fmtp
			c.Feedback = filterFeedback(c.Feedback, playFeedback)
			return c, true
		}
	}
	return Codec{}, false
}

// compatScore says whether a player that offered o can receive the stream a
// publisher sends as p (higher is a better fit, 0 = no).
func compatScore(kind string, p, o Codec) int {
	if !strings.EqualFold(p.Name, o.Name) || p.ClockRate != o.ClockRate {
		return 0
	}
	if kind == KindAudio && normChannels(p.Channels) != normChannels(o.Channels) {
		return 0
	}
	switch strings.ToLower(p.Name) {
	case "h264":
		if packetizationMode(p.Fmtp) != packetizationMode(o.Fmtp) {
			return 0
		}
		pp, op := profileLevelID(p.Fmtp), profileLevelID(o.Fmtp)
		switch {
		case pp == op:
			return 3
		case pp[:4] == op[:4]: // same profile_idc and constraints, other level
			return 2
		case pp[:2] == op[:2]: // same profile_idc (e.g. constrained baseline → baseline)
			return 1
		}
		return 0
	case "vp9":
		pv, _ := FmtpParam(p.Fmtp, "profile-id")
		ov, _ := FmtpParam(o.Fmtp, "profile-id")
		if strings.TrimLeft(pv, "0") != strings.TrimLeft(ov, "0") {
			return 0
		}
	}
	return 1
}

func normChannels(ch uint16) uint16 {
	if ch == 0 {
		return 1
	}
	return ch
}

func filterFeedback(fb, supported []string) []string {
	var out []string
	for _, f := range fb {
		if slices.Contains(supported, f) {
			out = append(out, f)
		}
	}
	return out
}

func filterExtensions(exts []Extension, supported []string) []Extension {
	var out []Extension
	for _, e := range exts {
		if slices.Contains(supported, e.URI) {
			out = append(out, e)
		}
	}
	return out
}

// randomSSRC returns a non-zero SSRC not in used, and records it.
func randomSSRC(used map[uint32]bool) uint32 {
	var b [4]byte
	for {
		_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
		v := binary.BigEndian.Uint32(b[:])
		if v != 0 && !used[v] {
			used[v] = true
			return v
		}
	}
}

// randomUint63 is for o= session ids.
func randomUint63() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint64(b[:]) >> 1
}

func hasExtension(exts []Extension, uri string) bool {
	return slices.ContainsFunc(exts, func(e Extension) bool { return e.URI == uri })
}
