package sdp

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	pionsdp "github.com/pion/sdp/v3"
)

// staticCodecs are the RFC 3551 payload types a browser may list without an
// a=rtpmap.
var staticCodecs = map[uint8]Codec{ //nolint:gochecknoglobals // read-only table
	0:  {PayloadType: 0, Name: "PCMU", ClockRate: 8000},
	8:  {PayloadType: 8, Name: "PCMA", ClockRate: 8000},
	9:  {PayloadType: 9, Name: "G722", ClockRate: 8000},
	13: {PayloadType: 13, Name: "CN", ClockRate: 8000},
}

// Parse parses an offer or answer. Line ends may be CRLF, bare LF or mixed;
// trailing blanks and empty lines are ignored. Errors wrap ErrTooLarge or
// ErrInvalid.
func Parse(s string) (*Description, error) {
	if len(s) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes > %d", ErrTooLarge, len(s), MaxSize)
	}
	var ps pionsdp.SessionDescription
	if err := ps.UnmarshalString(normalize(s)); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	d := &Description{}
	sessionDir := ""
	for _, a := range ps.Attributes {
		switch a.Key {
		case "ice-ufrag":
			d.ICEUfrag = a.Value
		case "ice-pwd":
			d.ICEPwd = a.Value
		case "fingerprint":
			d.Fingerprint = pickFingerprint(d.Fingerprint, a.Value)
		case "setup":
			d.Setup = a.Value
		case "ice-lite":
			d.ICELite = true
		case "candidate":
			d.Candidates = append(d.Candidates, "candidate:"+a.Value)
		case "group":
			if f := strings.Fields(a.Value); len(f) > 0 && f[0] == "BUNDLE" && d.Bundle == nil {
				d.Bundle = append([]string{}, f[1:]...)
			}
		case DirSendRecv, DirSendOnly, DirRecvOnly, DirInactive:
			sessionDir = a.Key
		}
	}
	candidatesFrom := -1
	fpMedia := -1 // the m-section the fingerprint came from, -1 = session
	for i, md := range ps.MediaDescriptions {
		m, err := parseMedia(md, sessionDir)
		if err != nil {
			return nil, fmt.Errorf("%w: m-section %d: %w", ErrInvalid, i, err)
		}
		d.Media = append(d.Media, m)
		if m.Rejected {
			continue
		}
		// ICE/DTLS from the first usable m-section when the session lacks them.
		for _, a := range md.Attributes {
			switch a.Key {
			case "ice-ufrag":
				setIfEmpty(&d.ICEUfrag, a.Value)
			case "ice-pwd":
				setIfEmpty(&d.ICEPwd, a.Value)
			case "fingerprint":
				if d.Fingerprint == "" || fpMedia == i {
					fpMedia = i
					d.Fingerprint = pickFingerprint(d.Fingerprint, a.Value)
				}
			case "setup":
				setIfEmpty(&d.Setup, a.Value)
			}
		}
		// Candidates: those of the BUNDLE tag (the first bundled mid), else of
		// the first m-section that has any. Other m-sections' candidates belong
		// to transports that BUNDLE discards.
		if candidatesFrom < 0 && hasCandidates(md) && (len(d.Bundle) == 0 || d.Bundle[0] == m.Mid) {
			candidatesFrom = i
			for _, a := range md.Attributes {
				if a.Key == "candidate" {
					d.Candidates = append(d.Candidates, "candidate:"+a.Value)
				}
			}
		}
	}
	if len(d.Media) == 0 {
		return nil, fmt.Errorf("%w: no m-section", ErrInvalid)
	}
	if candidatesFrom < 0 && len(d.Bundle) > 0 {
		// The BUNDLE tag had none: take the first m-section that has some.
		for i, md := range ps.MediaDescriptions {
			if !d.Media[i].Rejected && hasCandidates(md) {
				for _, a := range md.Attributes {
					if a.Key == "candidate" {
						d.Candidates = append(d.Candidates, "candidate:"+a.Value)
					}
				}
				break
			}
		}
	}
	return d, nil
}

func setIfEmpty(dst *string, v string) {
	if *dst == "" {
		*dst = v
	}
}

func hasCandidates(md *pionsdp.MediaDescription) bool {
	return slices.ContainsFunc(md.Attributes, func(a pionsdp.Attribute) bool { return a.Key == "candidate" })
}

// pickFingerprint keeps the first fingerprint, but a sha-256 one wins.
func pickFingerprint(cur, v string) string {
	v = strings.TrimSpace(v)
	if cur == "" || (!strings.HasPrefix(strings.ToLower(cur), "sha-256 ") && strings.HasPrefix(strings.ToLower(v), "sha-256 ")) {
		return v
	}
	return cur
}

// normalize makes line ends CRLF, drops empty lines and trailing blanks.
func normalize(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	var b strings.Builder
	b.Grow(len(s) + len(s)/16)
	for line := range strings.SplitSeq(s, "\n") {
		line = strings.TrimRight(line, " \t")
		if line == "" {
			continue
		}
		b.WriteString(line)
		b.WriteString("\r\n")
	}
	return b.String()
}

func hasAttribute(md *pionsdp.MediaDescription, key string) bool {
	for _, a := range md.Attributes {
		if a.Key == key {
			return true
		}
	}
	return false
}

func parseMedia(md *pionsdp.MediaDescription, sessionDir string) (Media, error) {
	m := Media{
		Kind:      md.MediaName.Media,
		Direction: sessionDir,
		// Port 0 rejects a section, except in an offer's a=bundle-only section (RFC 8843 §6; GStreamer's
		// webrtcbin offers every section after the first that way with max-bundle).
		Rejected: md.MediaName.Port.Value == 0 && !hasAttribute(md, "bundle-only"),
		Proto:    strings.Join(md.MediaName.Protos, "/"),
		Formats:  md.MediaName.Formats,
	}
	codecs := map[uint8]*Codec{}
	var wildcardFB []string
	codecFor := func(pt uint8) *Codec {
		c, ok := codecs[pt]
		if !ok {
			c = &Codec{PayloadType: pt}
			codecs[pt] = c
		}
		return c
	}
	seenSSRC := map[uint32]bool{}
	for _, a := range md.Attributes {
		switch a.Key {
		case "mid":
			m.Mid = a.Value
		case DirSendRecv, DirSendOnly, DirRecvOnly, DirInactive:
			m.Direction = a.Key
		case "rtcp-mux":
			m.RTCPMux = true
		case "rtcp-rsize":
			m.RTCPRsize = true
		case "rtpmap":
			pt, rest, err := splitPT(a.Value)
			if err != nil {
				return m, fmt.Errorf("a=rtpmap:%s: %w", a.Value, err)
			}
			name, clock, ch, err := parseRtpmap(rest)
			if err != nil {
				return m, fmt.Errorf("a=rtpmap:%s: %w", a.Value, err)
			}
			c := codecFor(pt)
			c.Name, c.ClockRate, c.Channels = name, clock, ch
		case "fmtp":
			pt, rest, err := splitPT(a.Value)
			if err != nil {
				return m, fmt.Errorf("a=fmtp:%s: %w", a.Value, err)
			}
			codecFor(pt).Fmtp = strings.TrimSpace(rest)
		case "rtcp-fb":
			ptStr, fb, _ := strings.Cut(strings.TrimSpace(a.Value), " ")
			fb = strings.Join(strings.Fields(fb), " ")
			if fb == "" {
				continue // malformed: ignore, feedback is optional
			}
			if ptStr == "*" {
				wildcardFB = appendUnique(wildcardFB, fb)
				continue
			}
			pt, err := parsePT(ptStr)
			if err != nil {
				return m, fmt.Errorf("a=rtcp-fb:%s: %w", a.Value, err)
			}
			c := codecFor(pt)
			c.Feedback = appendUnique(c.Feedback, fb)
		case "extmap":
			e, err := parseExtmap(a.Value)
			if err != nil {
				return m, fmt.Errorf("a=extmap:%s: %w", a.Value, err)
			}
			m.Extensions = append(m.Extensions, e)
		case "ssrc":
			ssrc, attr, err := parseSSRCLine(a.Value)
			if err != nil {
				return m, fmt.Errorf("a=ssrc:%s: %w", a.Value, err)
			}
			if !seenSSRC[ssrc] {
				seenSSRC[ssrc] = true
				m.SSRCs = append(m.SSRCs, ssrc)
			}
			if v, ok := strings.CutPrefix(attr, "cname:"); ok && m.CNAME == "" {
				m.CNAME = v
			}
			if v, ok := strings.CutPrefix(attr, "msid:"); ok && m.MsidStream == "" {
				m.MsidStream, m.MsidTrack, _ = strings.Cut(v, " ")
			}
		case "ssrc-group":
			f := strings.Fields(a.Value)
			if len(f) < 2 {
				continue
			}
			g := SSRCGroup{Semantics: f[0]}
			for _, v := range f[1:] {
				n, err := strconv.ParseUint(v, 10, 32)
				if err != nil {
					return m, fmt.Errorf("a=ssrc-group:%s: %w", a.Value, err)
				}
				g.SSRCs = append(g.SSRCs, uint32(n))
			}
			m.SSRCGroups = append(m.SSRCGroups, g)
		case "msid":
			m.MsidStream, m.MsidTrack, _ = strings.Cut(strings.TrimSpace(a.Value), " ")
		case "rid":
			if r, ok := parseRID(a.Value); ok && len(m.RIDs) < MaxRIDs &&
				!slices.ContainsFunc(m.RIDs, func(x RID) bool { return x.ID == r.ID }) {
				m.RIDs = append(m.RIDs, r)
			}
		case "simulcast":
			if m.Simulcast == "" {
				m.Simulcast = strings.TrimSpace(a.Value)
			}
		}
	}
	m.SimulcastSend = simulcastList(m.Simulcast, m.RIDs, "send")
	m.SimulcastRecv = simulcastList(m.Simulcast, m.RIDs, "recv")
	if m.Direction == "" {
		m.Direction = DirSendRecv
	}
	// Codecs in m= line order (the offerer's preference).
	for _, f := range m.Formats {
		pt, err := parsePT(f)
		if err != nil {
			continue // non-RTP formats ("webrtc-datachannel")
		}
		c, ok := codecs[pt]
		if !ok || c.Name == "" {
			s, isStatic := staticCodecs[pt]
			if !isStatic {
				continue
			}
			if ok {
				s.Fmtp, s.Feedback = c.Fmtp, c.Feedback
			}
			c = &s
		}
		for _, fb := range wildcardFB {
			c.Feedback = appendUnique(c.Feedback, fb)
		}
		if slices.ContainsFunc(m.Codecs, func(x Codec) bool { return x.PayloadType == pt }) {
			continue
		}
		m.Codecs = append(m.Codecs, *c)
	}
	return m, nil
}

func appendUnique(list []string, v string) []string {
	if slices.Contains(list, v) {
		return list
	}
	return append(list, v)
}

func parsePT(s string) (uint8, error) {
	n, err := strconv.ParseUint(s, 10, 8)
	if err != nil || n > 127 {
		return 0, fmt.Errorf("bad payload type %q", s)
	}
	return uint8(n), nil
}

func splitPT(v string) (uint8, string, error) {
	ptStr, rest, _ := strings.Cut(strings.TrimSpace(v), " ")
	pt, err := parsePT(ptStr)
	return pt, rest, err
}

// parseRtpmap parses "name/clock[/channels]".
func parseRtpmap(v string) (name string, clock uint32, ch uint16, err error) {
	parts := strings.Split(strings.TrimSpace(v), "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" {
		return "", 0, 0, fmt.Errorf("want name/clock[/channels]")
	}
	c, err := strconv.ParseUint(parts[1], 10, 32)
	if err != nil || c == 0 {
		return "", 0, 0, fmt.Errorf("bad clock rate %q", parts[1])
	}
	if len(parts) == 3 {
		n, err := strconv.ParseUint(parts[2], 10, 16)
		if err != nil {
			return "", 0, 0, fmt.Errorf("bad channel count %q", parts[2])
		}
		ch = uint16(n)
	}
	return parts[0], uint32(c), ch, nil
}

// parseExtmap parses "id[/direction] uri [attributes]".
func parseExtmap(v string) (Extension, error) {
	f := strings.Fields(v)
	if len(f) < 2 {
		return Extension{}, fmt.Errorf("want id uri")
	}
	idStr, _, _ := strings.Cut(f[0], "/")
	id, err := strconv.ParseUint(idStr, 10, 8)
	if err != nil || id == 0 {
		return Extension{}, fmt.Errorf("bad extension id %q", f[0])
	}
	return Extension{ID: uint8(id), URI: f[1]}, nil
}

// parseSSRCLine parses "ssrc attribute[:value]".
func parseSSRCLine(v string) (uint32, string, error) {
	s, attr, _ := strings.Cut(strings.TrimSpace(v), " ")
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, "", fmt.Errorf("bad ssrc %q", s)
	}
	return uint32(n), strings.TrimSpace(attr), nil
}

// parseRID parses "id send|recv [params]"; ok is false for a malformed line,
// which is ignored (simulcast is optional).
func parseRID(v string) (RID, bool) {
	f := strings.Fields(v)
	if len(f) < 2 || !validRID(f[0]) || (f[1] != "send" && f[1] != "recv") {
		return RID{}, false
	}
	return RID{ID: f[0], Direction: f[1], Params: strings.Join(f[2:], " ")}, true
}

// simulcastList returns the send (or recv) list of an a=simulcast value
// ("send q;h;f recv x", RFC 8853 §5.1): per stream the first alternative
// ("a,b") that is not paused ("~a"), kept only when rids declares it with
// that direction.
func simulcastList(v string, rids []RID, dir string) []string {
	f := strings.Fields(v)
	var out []string
	for i := 0; i+1 < len(f); i += 2 {
		if f[i] != dir {
			continue
		}
		for stream := range strings.SplitSeq(f[i+1], ";") {
			for alt := range strings.SplitSeq(stream, ",") {
				if strings.HasPrefix(alt, "~") {
					continue
				}
				if slices.Contains(out, alt) || !slices.ContainsFunc(rids, func(r RID) bool { return r.ID == alt && r.Direction == dir }) {
					break
				}
				out = append(out, alt)
				break
			}
			if len(out) == MaxRIDs {
				return out
			}
		}
		break // one list per direction
	}
	return out
}
