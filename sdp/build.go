package sdp

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	pionsdp "github.com/pion/sdp/v3"
)

const rtpProto = "UDP/TLS/RTP/SAVPF"

// Default payload types BuildOffer uses for tracks without a codec (a
// recvonly "play" offer to a remote server): Chrome's own numbers.
const (
	DefaultOpusPT = 111
	DefaultVP8PT  = 96
	DefaultH264PT = 102
)

// Default header extension IDs BuildOffer uses for tracks without Extensions.
const (
	defaultAudioLevelID  = 1
	defaultAbsSendTimeID = 2
	defaultMidID         = 4
	// DefaultTransportCCID is the transport-cc extension ID of receiving tracks without Extensions.
	DefaultTransportCCID = 3
	// DefaultRTPStreamIDID is the rtp-stream-id extension ID of simulcast tracks (relays).
	DefaultRTPStreamIDID = 10
)

// BuildAnswer answers offer with the negotiated tracks (from NegotiatePublish
// or NegotiatePlay, matched to m-sections by Mid). Every offered m-section is
// answered in order with its mid; sections that are rejected in the offer,
// not audio/video, or have no track get port 0. The answer is BUNDLEd (when
// the offer is), carries explicit a=setup (t.Setup, default passive), our
// ICE credentials, fingerprint and candidates (in every accepted m-section,
// followed by a=end-of-candidates), and for sending tracks a=msid with the one
// shared streamID plus a=ssrc cname/msid lines (for the RTX SSRC too, with an
// a=ssrc-group:FID, when the track has RTX and an RTXSSRC). A track's RTX
// format follows its codec in the m= line. A receiving track with RIDs gets
// a=rid:<id> recv for each and a=simulcast:recv <id>;<id>... (RFC 8853).
func BuildAnswer(offer *Description, t Transport, tracks []Track, streamID, cname string) (string, error) {
	if offer == nil || len(offer.Media) == 0 {
		return "", fmt.Errorf("%w: empty offer", ErrInvalid)
	}
	setup := t.Setup
	if setup == "" {
		setup = "passive"
	}
	if setup != "active" && setup != "passive" {
		return "", fmt.Errorf("%w: answer setup must be active or passive, not %q", ErrInvalid, setup)
	}
	if offer.Setup == setup {
		return "", fmt.Errorf("%w: offer and answer both setup:%s", ErrInvalid, setup)
	}
	fp, err := checkTransport(t)
	if err != nil {
		return "", err
	}
	byMid := make(map[string]*Track, len(tracks))
	for i := range tracks {
		byMid[tracks[i].Mid] = &tracks[i]
	}

	sd := newSession(t.Lite)
	var bundle []string
	for i := range offer.Media {
		om := &offer.Media[i]
		tr := byMid[om.Mid]
		if !usable(om) || tr == nil || (tr.Codec.Name == "" && len(om.Formats) == 0) {
			sd.MediaDescriptions = append(sd.MediaDescriptions, rejectedMedia(om))
			continue
		}
		if len(offer.Bundle) == 0 || slices.Contains(offer.Bundle, om.Mid) {
			bundle = append(bundle, om.Mid)
		}
		codecs := withRTX(tr)
		if tr.Codec.Name == "" {
			// No common codec: inactive, echoing the offer's first format.
			codecs = []Codec{firstFormat(om)}
		}
		md := transportMedia(om.Kind, om.Mid, codecs, t, fp, setup)
		addRTPAttributes(md, direction(tr), om.RTCPRsize, codecs, tr.Extensions)
		if tr.Codec.Name != "" && (tr.Direction == DirRecvOnly || tr.Direction == DirSendRecv) {
			addSimulcast(md, tr.RIDs, DirRecvOnly)
		}
		switch {
		case tr.Codec.Name != "" && tr.Direction == DirSendOnly && len(tr.RIDs) > 0:
			// Simulcast to a relay that asked for it: the layers are told by their RIDs.
			addSimulcast(md, tr.RIDs, DirSendOnly)
			addSource(md, &Track{Kind: tr.Kind, Mid: tr.Mid, ID: tr.ID}, streamID, cname)
		case tr.Direction == DirSendOnly || tr.Direction == DirSendRecv:
			addSource(md, tr, streamID, cname)
		}
		addCandidates(md, t.Candidates)
		sd.MediaDescriptions = append(sd.MediaDescriptions, md)
	}
	if len(bundle) > 0 && len(offer.Bundle) > 0 {
		sd.Attributes = append([]pionsdp.Attribute{pionsdp.NewAttribute("group", "BUNDLE "+strings.Join(bundle, " "))}, sd.Attributes...)
	}
	sd.Attributes = append(sd.Attributes, msidSemantic(streamID))
	return marshal(sd)
}

// BuildOffer makes an offer for an outbound relay session: a=setup:actpass
// (or t.Setup), BUNDLE of all m-sections, rtcp-mux, one m-section per track
// (mid = Track.Mid or its index). A track's direction is Track.Direction, or
// sendonly when it has an SSRC and recvonly otherwise. A track with a Codec
// offers exactly that codec; a track without one offers, for audio, Opus
// (PT 111) and, for video, VP8 (PT 96) then H264 packetization-mode=1
// profile-level-id=42e01f (PT 102), each with nack, nack pli and ccm fir.
// Tracks without Extensions offer audio-level (1, audio only), abs-send-time
// (2) and sdes:mid (4). Receiving tracks also offer transport-cc (extension
// 3 and rtcp-fb transport-cc on every default codec); sending tracks never
// do, whatever their Codec and Extensions say. A track with a Codec and an
// RTX offers the RTX format after it; a sending one with an RTXSSRC declares
// it in an a=ssrc-group:FID. ice-lite is written only when t.Lite.
func BuildOffer(t Transport, tracks []Track, streamID, cname string) (string, error) {
	if len(tracks) == 0 {
		return "", fmt.Errorf("%w: no tracks to offer", ErrInvalid)
	}
	setup := t.Setup
	if setup == "" {
		setup = "actpass"
	}
	fp, err := checkTransport(t)
	if err != nil {
		return "", err
	}
	sd := newSession(t.Lite)
	mids := make([]string, 0, len(tracks))
	seen := map[string]bool{}
	for i := range tracks {
		tr := tracks[i]
		if tr.Kind != KindAudio && tr.Kind != KindVideo {
			return "", fmt.Errorf("%w: track %d: kind %q", ErrInvalid, i, tr.Kind)
		}
		if tr.Mid == "" {
			tr.Mid = strconv.Itoa(i)
		}
		if seen[tr.Mid] {
			return "", fmt.Errorf("%w: duplicate mid %q", ErrInvalid, tr.Mid)
		}
		seen[tr.Mid] = true
		mids = append(mids, tr.Mid)
		if tr.Direction == "" {
			tr.Direction = DirRecvOnly
			if tr.SSRC != 0 {
				tr.Direction = DirSendOnly
			}
		}
		recv := tr.Direction == DirRecvOnly || tr.Direction == DirSendRecv
		codecs := withRTX(&tr)
		if tr.Codec.Name == "" {
			codecs = defaultCodecs(tr.Kind, recv)
		}
		exts := tr.Extensions
		if exts == nil {
			exts = defaultExtensions(tr.Kind, recv)
		}
		if !recv {
			// Transport-cc only where we receive: we send its feedback, we do not consume it yet.
			for i := range codecs {
				codecs[i].Feedback = filterFeedback(codecs[i].Feedback, supportedFeedback)
			}
			keep := supportedExt
			if len(tr.RIDs) > 0 {
				keep = append(slices.Clip(supportedExt), ExtRTPStreamID) // the layers are told by their RID
			}
			exts = filterExtensions(exts, keep)
		}
		if recv && len(tr.RIDs) > 0 && tr.Kind == KindVideo && !hasExtension(exts, ExtRTPStreamID) {
			exts = append(slices.Clip(exts), Extension{ID: DefaultRTPStreamIDID, URI: ExtRTPStreamID})
		}
		md := transportMedia(tr.Kind, tr.Mid, codecs, t, fp, setup)
		addRTPAttributes(md, tr.Direction, true, codecs, exts)
		switch {
		case recv && len(tr.RIDs) > 0 && tr.Kind == KindVideo:
			// A relay pulling: it takes every layer the remote has, under these RIDs (RFC 8853 §5.3).
			addSimulcast(md, tr.RIDs, DirRecvOnly)
		case tr.Direction == DirSendOnly && len(tr.RIDs) > 0:
			// Simulcast (a relay sending a stream's layers): the layers' SSRCs are not declared, each is told
			// by the RID its packets carry (RFC 8853).
			addSimulcast(md, tr.RIDs, DirSendOnly)
			addSource(md, &Track{Kind: tr.Kind, Mid: tr.Mid, ID: tr.ID}, streamID, cname)
		case tr.Direction == DirSendOnly || tr.Direction == DirSendRecv:
			if tr.SSRC == 0 {
				return "", fmt.Errorf("%w: sending track %q without SSRC", ErrInvalid, tr.Mid)
			}
			addSource(md, &tr, streamID, cname)
		}
		addCandidates(md, t.Candidates)
		sd.MediaDescriptions = append(sd.MediaDescriptions, md)
	}
	sd.Attributes = append([]pionsdp.Attribute{pionsdp.NewAttribute("group", "BUNDLE "+strings.Join(mids, " "))}, sd.Attributes...)
	sd.Attributes = append(sd.Attributes, msidSemantic(streamID))
	return marshal(sd)
}

// defaultCodecs are the codecs of a track without one; recv adds transport-cc feedback.
func defaultCodecs(kind string, recv bool) []Codec {
	fb := append([]string(nil), supportedFeedback...)
	if recv {
		fb = append(fb, FeedbackTransportCC)
	}
	if kind == KindAudio {
		var afb []string
		if recv {
			afb = []string{FeedbackTransportCC}
		}
		return []Codec{{PayloadType: DefaultOpusPT, Name: "opus", ClockRate: 48000, Channels: 2, Fmtp: "minptime=10;useinbandfec=1", Feedback: afb}}
	}
	return []Codec{
		{PayloadType: DefaultVP8PT, Name: "VP8", ClockRate: 90000, Feedback: fb},
		{PayloadType: DefaultH264PT, Name: "H264", ClockRate: 90000, Feedback: fb,
			Fmtp: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"},
	}
}

// defaultExtensions are the extensions of a track without any; recv adds transport-cc.
func defaultExtensions(kind string, recv bool) []Extension {
	e := []Extension{{ID: defaultAbsSendTimeID, URI: ExtAbsSendTime}, {ID: defaultMidID, URI: ExtSDESMid}}
	if recv {
		e = append(e, Extension{ID: DefaultTransportCCID, URI: ExtTransportCC})
	}
	if kind == KindAudio {
		e = append([]Extension{{ID: defaultAudioLevelID, URI: ExtAudioLevel}}, e...)
	}
	return e
}

// checkTransport validates t and returns the bare fingerprint value.
func checkTransport(t Transport) (string, error) {
	if t.ICEUfrag == "" || t.ICEPwd == "" {
		return "", fmt.Errorf("%w: missing ICE credentials", ErrInvalid)
	}
	fp := strings.TrimSpace(t.Fingerprint)
	if alg, v, ok := strings.Cut(fp, " "); ok {
		if !strings.EqualFold(alg, "sha-256") {
			return "", fmt.Errorf("%w: fingerprint algorithm %q, want sha-256", ErrInvalid, alg)
		}
		fp = strings.TrimSpace(v)
	}
	if !validFingerprintValue(fp) {
		return "", fmt.Errorf("%w: bad fingerprint %q", ErrInvalid, t.Fingerprint)
	}
	return strings.ToUpper(fp), nil
}

func newSession(lite bool) *pionsdp.SessionDescription {
	sd := &pionsdp.SessionDescription{
		Version: 0,
		Origin: pionsdp.Origin{
			Username: "-", SessionID: randomUint63(), SessionVersion: 2,
			NetworkType: "IN", AddressType: "IP4", UnicastAddress: "127.0.0.1",
		},
		SessionName:      "-",
		TimeDescriptions: []pionsdp.TimeDescription{{Timing: pionsdp.Timing{}}},
	}
	if lite {
		sd.Attributes = append(sd.Attributes, pionsdp.NewPropertyAttribute("ice-lite"))
	}
	return sd
}

func msidSemantic(streamID string) pionsdp.Attribute {
	if streamID == "" {
		streamID = "*"
	}
	return pionsdp.NewAttribute("msid-semantic", " WMS "+streamID)
}

func connection() *pionsdp.ConnectionInformation {
	return &pionsdp.ConnectionInformation{NetworkType: "IN", AddressType: "IP4", Address: &pionsdp.Address{Address: "0.0.0.0"}}
}

func rejectedMedia(om *Media) *pionsdp.MediaDescription {
	protos := strings.Split(om.Proto, "/")
	formats := om.Formats
	if len(formats) == 0 {
		formats = []string{"0"}
	}
	if om.Proto == "" {
		protos = strings.Split(rtpProto, "/")
	}
	md := &pionsdp.MediaDescription{
		MediaName:             pionsdp.MediaName{Media: om.Kind, Port: pionsdp.RangedPort{Value: 0}, Protos: protos, Formats: formats},
		ConnectionInformation: connection(),
	}
	if om.Mid != "" {
		md.Attributes = append(md.Attributes, pionsdp.NewAttribute("mid", om.Mid))
	}
	md.Attributes = append(md.Attributes, pionsdp.NewPropertyAttribute(DirInactive))
	return md
}

// firstFormat is the offer's first RTP codec (or first format) for an
// inactive section.
func firstFormat(om *Media) Codec {
	if len(om.Codecs) > 0 {
		c := om.Codecs[0]
		c.Feedback = nil
		return c
	}
	pt, _ := parsePT(om.Formats[0])
	return Codec{PayloadType: pt}
}

func transportMedia(kind, mid string, codecs []Codec, t Transport, fp, setup string) *pionsdp.MediaDescription {
	formats := make([]string, len(codecs))
	for i, c := range codecs {
		formats[i] = strconv.Itoa(int(c.PayloadType))
	}
	return &pionsdp.MediaDescription{
		MediaName: pionsdp.MediaName{
			Media: kind, Port: pionsdp.RangedPort{Value: 9},
			Protos: strings.Split(rtpProto, "/"), Formats: formats,
		},
		ConnectionInformation: connection(),
		Attributes: []pionsdp.Attribute{
			pionsdp.NewAttribute("ice-ufrag", t.ICEUfrag),
			pionsdp.NewAttribute("ice-pwd", t.ICEPwd),
			pionsdp.NewAttribute("fingerprint", "sha-256 "+fp),
			pionsdp.NewAttribute("setup", setup),
			pionsdp.NewAttribute("mid", mid),
		},
	}
}

func direction(tr *Track) string {
	if tr.Codec.Name == "" || tr.Direction == "" {
		return DirInactive
	}
	return tr.Direction
}

func addRTPAttributes(md *pionsdp.MediaDescription, dir string, rsize bool, codecs []Codec, exts []Extension) {
	for _, e := range exts {
		md.Attributes = append(md.Attributes, pionsdp.NewAttribute("extmap", strconv.Itoa(int(e.ID))+" "+e.URI))
	}
	md.Attributes = append(md.Attributes, pionsdp.NewPropertyAttribute(dir), pionsdp.NewPropertyAttribute("rtcp-mux"))
	if rsize {
		md.Attributes = append(md.Attributes, pionsdp.NewPropertyAttribute("rtcp-rsize"))
	}
	for _, c := range codecs {
		pt := strconv.Itoa(int(c.PayloadType))
		if c.Name != "" {
			md.Attributes = append(md.Attributes, pionsdp.NewAttribute("rtpmap", pt+" "+c.rtpmapString()))
		}
		for _, fb := range c.Feedback {
			md.Attributes = append(md.Attributes, pionsdp.NewAttribute("rtcp-fb", pt+" "+fb))
		}
		if c.Fmtp != "" {
			md.Attributes = append(md.Attributes, pionsdp.NewAttribute("fmtp", pt+" "+c.Fmtp))
		}
	}
}

// withRTX is the track's codec followed by its RTX format, if any.
func withRTX(tr *Track) []Codec {
	if tr.RTX == nil || tr.Codec.Name == "" || tr.RTX.PayloadType == tr.Codec.PayloadType {
		return []Codec{tr.Codec}
	}
	rtx := *tr.RTX
	rtx.Feedback = nil
	return []Codec{tr.Codec, rtx}
}

// addSimulcast writes a=rid:<id> recv (or send) per valid rid and
// a=simulcast:recv (send) with them, in order: our answer to a publisher's
// simulcast, or our offer of the layers a relay sends.
func addSimulcast(md *pionsdp.MediaDescription, rids []string, dir string) {
	d := "recv"
	if dir == DirSendOnly {
		d = "send"
	}
	var ids []string
	for _, id := range rids {
		if validRID(id) && !slices.Contains(ids, id) && len(ids) < MaxRIDs {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return
	}
	for _, id := range ids {
		md.Attributes = append(md.Attributes, pionsdp.NewAttribute("rid", id+" "+d))
	}
	md.Attributes = append(md.Attributes, pionsdp.NewAttribute("simulcast", d+" "+strings.Join(ids, ";")))
}

func addSource(md *pionsdp.MediaDescription, tr *Track, streamID, cname string) {
	id := tr.ID
	if id == "" {
		id = tr.Kind + "-" + tr.Mid
	}
	if streamID == "" {
		streamID = "-"
	}
	msid := streamID + " " + id
	md.Attributes = append(md.Attributes, pionsdp.NewAttribute("msid", msid))
	if tr.SSRC == 0 {
		return
	}
	ssrcs := []string{strconv.FormatUint(uint64(tr.SSRC), 10)}
	if tr.RTX != nil && tr.RTXSSRC != 0 && tr.RTXSSRC != tr.SSRC {
		ssrcs = append(ssrcs, strconv.FormatUint(uint64(tr.RTXSSRC), 10))
		md.Attributes = append(md.Attributes, pionsdp.NewAttribute("ssrc-group", "FID "+ssrcs[0]+" "+ssrcs[1]))
	}
	for _, ssrc := range ssrcs {
		if cname != "" {
			md.Attributes = append(md.Attributes, pionsdp.NewAttribute("ssrc", ssrc+" cname:"+cname))
		}
		md.Attributes = append(md.Attributes, pionsdp.NewAttribute("ssrc", ssrc+" msid:"+msid))
	}
}

func addCandidates(md *pionsdp.MediaDescription, cands []string) {
	for _, c := range cands {
		c = strings.TrimPrefix(strings.TrimSpace(c), "a=")
		c = strings.TrimPrefix(c, "candidate:")
		if c == "" {
			continue
		}
		md.Attributes = append(md.Attributes, pionsdp.NewAttribute("candidate", c))
	}
	if len(cands) > 0 {
		md.Attributes = append(md.Attributes, pionsdp.NewPropertyAttribute("end-of-candidates"))
	}
}

func marshal(sd *pionsdp.SessionDescription) (string, error) {
	b, err := sd.Marshal()
	if err != nil {
		return "", fmt.Errorf("sdp: marshal: %w", err)
	}
	return string(b), nil
}
