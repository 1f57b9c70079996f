// Package sdp parses WebRTC offers and answers, negotiates the codecs, header
// extensions and RTCP feedback the relay can forward, and builds the answers
// and offers the relay sends. It wraps github.com/pion/sdp/v3 (imported as
// pionsdp), which does the line-level syntax; this package owns the WebRTC
// semantics on top (BUNDLE, ICE/DTLS attributes, per-m-section codecs).
//
// Input is untrusted: Parse bounds its size and never panics on bad input.
package sdp

import (
	"errors"
	"strconv"
	"strings"
)

// MaxSize is the largest SDP Parse accepts. Real browser offers are 5–7 KiB.
const MaxSize = 64 << 10

// Sentinel errors, usable with errors.Is.
var (
	// ErrNoCommonCodec: no offered m-section has a codec the relay can forward.
	ErrNoCommonCodec = errors.New("sdp: no common codec")
	// ErrTooLarge: the SDP is larger than MaxSize.
	ErrTooLarge = errors.New("sdp: description too large")
	// ErrInvalid: the SDP is malformed or misses something WebRTC requires.
	ErrInvalid = errors.New("sdp: invalid description")
)

// Media kinds.
const (
	KindAudio = "audio"
	KindVideo = "video"
)

// Directions, as written in a=sendrecv etc.
const (
	DirSendRecv = "sendrecv"
	DirSendOnly = "sendonly"
	DirRecvOnly = "recvonly"
	DirInactive = "inactive"
)

// Header extension URIs the relay negotiates.
const (
	ExtSDESMid     = "urn:ietf:params:rtp-hdrext:sdes:mid"
	ExtAbsSendTime = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
	ExtAudioLevel  = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
	ExtTransportCC = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
	// ExtRTPStreamID carries the RID of a simulcast encoding (RFC 8852).
	ExtRTPStreamID = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
	// ExtRepairedStreamID carries, on RTX packets, the RID of the stream they repair (RFC 8852).
	ExtRepairedStreamID = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
)

// RID limits. Input is hostile: Parse keeps at most MaxRIDs a=rid lines per
// m-section (and as many a=simulcast streams), and ignores ids longer than
// MaxRIDLen or with characters other than letters, digits, '-' and '_'
// (RFC 8851 rid-id).
const (
	MaxRIDs   = 8
	MaxRIDLen = 32
)

// RID is one a=rid line (RFC 8851): "a=rid:<ID> <Direction> [Params]".
type RID struct {
	ID        string
	Direction string // "send" or "recv"
	Params    string // the restrictions (pt=, max-width=...), verbatim; "" if none
}

// Codec is one payload format of an m-section.
type Codec struct {
	PayloadType uint8
	Name        string // as in a=rtpmap: "opus", "VP8", "H264", ...
	ClockRate   uint32
	Channels    uint16 // 0 when a=rtpmap leaves it out
	Fmtp        string // the a=fmtp parameters, verbatim
	Feedback    []string
}

// Extension is one a=extmap.
type Extension struct {
	ID  uint8
	URI string
}

// SSRCGroup is one a=ssrc-group (e.g. FID: media SSRC, RTX SSRC).
type SSRCGroup struct {
	Semantics string
	SSRCs     []uint32
}

// Media is one m-section.
type Media struct {
	Mid        string
	Kind       string // "audio", "video", or another m= media such as "application"
	Direction  string // default sendrecv
	Codecs     []Codec
	Extensions []Extension
	SSRCs      []uint32 // in order of first appearance (media SSRC before RTX for browsers)
	CNAME      string
	Rejected   bool // port 0
	RTCPMux    bool

	// Additions to the contract.
	RTCPRsize  bool
	Proto      string   // "UDP/TLS/RTP/SAVPF"
	Formats    []string // the m= line formats, verbatim
	SSRCGroups []SSRCGroup
	MsidStream string // from a=msid (or a=ssrc msid:), "" if none
	MsidTrack  string

	// Simulcast (RFC 8853). RIDs are the valid a=rid lines, in order, at most
	// MaxRIDs, without duplicate ids. Simulcast is the raw value of the first
	// a=simulcast. SimulcastSend is its send list in order, as RID ids: each
	// stream's first alternative that is not paused ("~"), only ids declared
	// by an a=rid ... send line, without duplicates, at most MaxRIDs.
	RIDs          []RID
	Simulcast     string
	SimulcastSend []string
	// SimulcastRecv is the a=simulcast recv list, likewise: an offerer that
	// wants to receive simulcast (one rtcrelay pulling from another).
	SimulcastRecv []string
}

// Description is a parsed offer or answer. ICE and DTLS attributes are taken
// from the session level or, when missing there, from the first m-section that
// has them (BUNDLE makes them equal in every m-section).
type Description struct {
	Media       []Media
	ICEUfrag    string
	ICEPwd      string
	Fingerprint string // "sha-256 AA:BB:..."
	Setup       string // actpass, active, passive
	ICELite     bool
	Candidates  []string // "candidate:..." (no "a="), of the session and the first bundled m-section
	Bundle      []string // mids of the first a=group:BUNDLE
}

// Transport is our side of an ICE+DTLS association, as put into SDP.
type Transport struct {
	ICEUfrag    string
	ICEPwd      string
	Fingerprint string // "AA:BB:..." sha-256; a "sha-256 " prefix is accepted
	Setup       string // answers: active|passive ("" → passive); offers: "" → actpass
	Lite        bool
	Candidates  []string // "candidate:..." with or without "a="
}

// Track is the outcome of negotiating one m-section, or one m-section we offer.
// Direction is OUR direction: recvonly for a publisher's track we receive,
// sendonly for a track we send to a player, inactive when nothing flows.
// A Track with an empty Codec.Name has no common codec (Direction inactive).
type Track struct {
	Mid        string
	Kind       string
	Codec      Codec
	Extensions []Extension
	SSRC       uint32 // the SSRC we send with; 0 for receive tracks
	Direction  string

	// ID is the a=msid track id for sending tracks; "" → "<kind>-<mid>".
	ID string

	// RIDs are, for a publisher's simulcast video track, the RIDs of the
	// encodings it sends, in its a=simulcast order (not necessarily low to
	// high). BuildAnswer answers them with a=rid:<id> recv and a=simulcast:recv.
	RIDs []string
	// RTX is the retransmission format (RFC 4588) negotiated with Codec (its
	// fmtp apt= is Codec.PayloadType), nil when none. Video only.
	RTX *Codec
	// RTXSSRC is the SSRC we send retransmissions with, for sending tracks
	// with RTX; 0 for none. With SSRC it forms the a=ssrc-group:FID.
	RTXSSRC uint32
}

// validRID reports whether id is a usable rid-id: 1..MaxRIDLen letters, digits, '-' or '_'.
func validRID(id string) bool {
	if id == "" || len(id) > MaxRIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Fingerprint value check: "AA:BB:..." hex pairs.
func validFingerprintValue(v string) bool {
	if len(v) < 2 || (len(v)+1)%3 != 0 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if i%3 == 2 {
			if c != ':' {
				return false
			}
			continue
		}
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// CodecKind guesses the media kind of a codec from its name (and clock rate for
// unknown names): "audio" or "video".
func CodecKind(c Codec) string {
	switch strings.ToLower(c.Name) {
	case "opus", "pcmu", "pcma", "g722", "telephone-event", "cn", "isac", "ilbc", "g729":
		return KindAudio
	case "vp8", "vp9", "h264", "h265", "av1", "av1x":
		return KindVideo
	}
	if c.ClockRate == 90000 {
		return KindVideo
	}
	return KindAudio
}

// FmtpParam returns the value of key in an a=fmtp parameter string
// ("a=b;c=d"), case-insensitively on the key.
func FmtpParam(fmtp, key string) (string, bool) {
	for _, p := range strings.Split(fmtp, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		if ok && strings.EqualFold(strings.TrimSpace(k), key) {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}

// rtpmapString is the standard "name/clock[/channels]" form.
func (c Codec) rtpmapString() string {
	s := c.Name + "/" + strconv.FormatUint(uint64(c.ClockRate), 10)
	if c.Channels > 1 {
		s += "/" + strconv.FormatUint(uint64(c.Channels), 10)
	}
	return s
}
