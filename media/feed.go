package media

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"

	"github.com/rtcrelay/rtcrelay/forwarder"
	"github.com/rtcrelay/rtcrelay/packet"
	"github.com/rtcrelay/rtcrelay/sdp"
	"github.com/rtcrelay/rtcrelay/session"
)

// feed is the publisher side of a published stream. It outlives the sessions that feed it: a pull relay's
// reconnect, a push relay's or a browser's re-publish within the publisher grace attach a new session, and the
// feed keeps the stream's SSRCs, sequence numbers and timestamps continuous for the local players, who never
// notice the gap except as missing packets.
type feed struct {
	name   string
	stream *forwarder.Stream // set once, when the first session attached (under Engine.mu)
	cur    atomic.Pointer[source]
	tracks []*feedTrack  // fixed once the stream is published
	ctr    *feedCounters // the engine's (never nil once published)
}

// feedCounters count, over all feeds, the publisher packets that are not plain media: RTX (RFC 4588)
// retransmissions decoded and forwarded, padding-only RTX (bandwidth probes) dropped, and packets of no known
// track dropped.
type feedCounters struct {
	rtx, padding, unknown, redundant atomic.Uint64

	log     *slog.Logger // nil: no log
	lastLog atomic.Int64 // when the last drop was logged (Unix ns)
}

// unknownLogInterval bounds how often a dropped packet is logged, over all feeds.
const unknownLogInterval = 5 * time.Second

// dropped counts a packet of stream name that no track takes, and logs it at most once per unknownLogInterval.
func (c *feedCounters) dropped(name string, h *rtp.Header, why string) {
	n := c.unknown.Add(1)
	if c.log == nil {
		return
	}
	now, last := time.Now().UnixNano(), c.lastLog.Load()
	if now-last < int64(unknownLogInterval) || !c.lastLog.CompareAndSwap(last, now) {
		return
	}
	c.log.Debug("publisher packet dropped", "stream", name, "why", why, "pt", h.PayloadType, "ssrc", h.SSRC,
		"seq", h.SequenceNumber, "droppedTotal", n)
}

// source is one session feeding a feed.
type source struct {
	s     *session.Session
	close func(cause error) // ends the session's handle (a publisher's or an outbound's wait)
}

// feedTrack is one track of a feed. Its mutable fields are used only on the socket reader goroutine.
type feedTrack struct {
	kind    string
	clock   uint32
	outSSRC uint32

	outPT uint8  // the stream's payload type (the first session's)
	rid   string // a simulcast layer's RID ("" for a plain track)
	ridID uint8  // the current session's ID of the rtp-stream-id extension

	inSSRC   atomic.Uint32 // the current session's SSRC for this track (read by WriteRTCP on other goroutines)
	pt       atomic.Uint32 // the current session's payload type
	seqOff   uint16
	tsOff    uint32
	lastSeq  uint16
	lastTS   uint32
	lastWall int64
	started  bool
	seen     [seenWindow / 64]uint64 // which of the latest seenWindow sequence numbers arrived (markMedia)

	// The current session's RTX (RFC 4588): its payload type (noPT: none), the ID of the
	// repaired-rtp-stream-id extension that tells a simulcast layer's RTX stream on its first packets, and the
	// RTX SSRC learned from it (a layer's; 0 until learned, and unused for a plain track, which its RTX
	// payload type alone tells).
	rtxPT   atomic.Uint32
	rrID    uint8
	rtxSSRC atomic.Uint32
	// awaiting is set by a takeover until the new session's first media packet of the track: its RTX cannot
	// be numbered before (the new session's SSRC and offsets come from its media).
	awaiting atomic.Bool
}

// attachPull makes o the session that feeds its stream, publishing the stream on the first attach.
func (e *Engine) attachPull(o *outbound, ans *sdp.Description) error {
	f := o.pull
	var infos []forwarder.TrackInfo
	var media []sdp.Media
	for _, m := range ans.Media {
		if m.Rejected || len(m.Codecs) == 0 || (m.Direction != "sendonly" && m.Direction != "sendrecv") {
			continue
		}
		media = append(media, m)
	}
	if len(media) == 0 {
		return fmt.Errorf("pull %q: the remote sends nothing: %w", f.name, sdp.ErrNoCommonCodec)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.streams[f.name]
	switch {
	case p == nil:
		f.tracks = nil
		for _, m := range media {
			rids := []string{""}
			if m.Kind == sdp.KindVideo && len(m.SimulcastSend) > 0 {
				rids = m.SimulcastSend // the remote sends its layers under the RIDs we asked for
			}
			for _, rid := range rids {
				in := forwarder.TrackInfo{Kind: m.Kind, Codec: m.Codecs[0], Extensions: m.Extensions, RID: rid}
				t := &feedTrack{kind: m.Kind, clock: m.Codecs[0].ClockRate, outSSRC: randomSSRC(), outPT: m.Codecs[0].PayloadType,
					rid: rid, ridID: ridExtID(in)}
				in.SSRC = t.outSSRC
				f.tracks = append(f.tracks, t)
				infos = append(infos, in)
			}
		}
		st, err := e.reg.Publish(f.name, infos, f)
		if err != nil {
			return err
		}
		f.stream = st
		e.streams[f.name] = &published{stream: st, feed: f, pulled: true, since: time.Now()}
		e.notify(StreamEvent{Name: f.name, Published: true, Pulled: true})
		e.wg.Go(func() {
			<-st.Done()
			e.mu.Lock()
			if q := e.streams[f.name]; q != nil && q.stream == st {
				delete(e.streams, f.name)
			}
			e.mu.Unlock()
			e.notify(StreamEvent{Name: f.name, Pulled: true})
			if c := f.cur.Load(); c != nil {
				c.close(classify(forwarder.ErrPublisherStopped))
			}
		})
	case p.feed != f:
		return fmt.Errorf("pull %q: published by someone else: %w", f.name, ErrNameInUse)
	}
	for _, t := range f.tracks {
		t.rtxPT.Store(noPT) // our offer asks for no RTX
		t.pt.Store(noPT)
		for _, m := range media {
			if m.Kind == t.kind {
				t.pt.Store(uint32(m.Codecs[0].PayloadType))
			}
		}
	}
	f.attach(o.src)
	// The remote sends what we receive; feedback if it accepted the transport-cc of our offer.
	var sent []sdp.Track
	for _, m := range media {
		sent = append(sent, sdp.Track{Direction: sdp.DirRecvOnly, Extensions: m.Extensions})
	}
	if id := transportCCID(sent); id != 0 {
		o.s.EnableTWCC(id, f.stream.SSRC())
	}
	return nil
}

// attach makes src the session that feeds f, and asks for a keyframe at once for the players (under Engine.mu,
// after f.tracks' payload types were set for src).
func (f *feed) attach(src *source) {
	old := f.cur.Swap(src)
	src.s.SetSink(&feedSink{f: f, src: src})
	if old != nil && old != src && f.stream != nil {
		f.stream.RequestKeyframe()
	}
}

// endPull ends the pulled stream unless a newer session took it over.
func (e *Engine) endPull(o *outbound) {
	f := o.pull
	if c := f.cur.Load(); c != nil && c != o.src {
		return
	}
	e.mu.Lock()
	st := f.stream
	e.mu.Unlock()
	if st != nil {
		st.Close()
	}
}

// detach forgets src as the feeding session.
func (f *feed) detach(src *source) { f.cur.CompareAndSwap(src, nil) }

// WriteRTCP sends the forwarder's RTCP for the publisher (PLI/FIR, receiver reports) to the current remote,
// with our stable SSRCs mapped back to the remote's.
func (f *feed) WriteRTCP(plain []byte) error {
	src := f.cur.Load()
	if src == nil {
		return errors.New("feed: no session attached (publisher grace)")
	}
	pkts, err := rtcp.Unmarshal(plain)
	if err != nil {
		return fmt.Errorf("pull rtcp: %w", err)
	}
	m := func(ssrc uint32) uint32 {
		for _, t := range f.tracks {
			if t.outSSRC == ssrc {
				return t.inSSRC.Load()
			}
		}
		return ssrc
	}
	for _, p := range pkts {
		switch p := p.(type) {
		case *rtcp.PictureLossIndication:
			p.MediaSSRC = m(p.MediaSSRC)
		case *rtcp.FullIntraRequest:
			p.MediaSSRC = m(p.MediaSSRC)
			for i := range p.FIR {
				p.FIR[i].SSRC = m(p.FIR[i].SSRC)
			}
		case *rtcp.TransportLayerNack:
			p.MediaSSRC = m(p.MediaSSRC)
		case *rtcp.ReceiverEstimatedMaximumBitrate:
			for i := range p.SSRCs {
				p.SSRCs[i] = m(p.SSRCs[i])
			}
		case *rtcp.ReceiverReport:
			for i := range p.Reports {
				p.Reports[i].SSRC = m(p.Reports[i].SSRC)
			}
		}
	}
	out, err := rtcp.Marshal(pkts)
	if err != nil {
		return fmt.Errorf("pull rtcp: %w", err)
	}
	return src.s.WriteRTCP(out)
}

// feedSink takes one session's decrypted media and hands it to the stream with the feed's stable numbering.
type feedSink struct {
	f   *feed
	src *source
}

// noPT is a payload type no packet has: the track has none (yet) in the current session.
const noPT = 0xffff

// track finds the feed track of a packet: by payload type, and, for the layers of a simulcast track (which
// share theirs), by SSRC, or on a layer's first packets by the RID they carry.
func (k *feedSink) track(h *rtp.Header) *feedTrack {
	pt := uint32(h.PayloadType)
	var layer bool
	for _, t := range k.f.tracks {
		if t.pt.Load() != pt {
			continue
		}
		if t.rid == "" {
			return t
		}
		layer = true
		if t.inSSRC.Load() == h.SSRC && t.started {
			return t
		}
	}
	if !layer {
		return nil
	}
	for _, t := range k.f.tracks {
		if t.rid != "" && t.pt.Load() == pt && t.ridID != 0 && string(h.GetExtension(t.ridID)) == t.rid {
			return t
		}
	}
	return nil
}

// seenWindow is how many of a track's latest sequence numbers the feed remembers as received (feedTrack.seen).
const seenWindow = 512

// markMedia records media packet seq (our numbering) as received, forgetting the numbers skipped over (lost);
// reader goroutine. It runs before lastSeq moves to seq.
func (t *feedTrack) markMedia(seq uint16) {
	d := seq - t.lastSeq
	switch {
	case !t.started || d > seenWindow && d < 0x8000:
		t.seen = [seenWindow / 64]uint64{}
	case d > 0 && d < 0x8000:
		for s := t.lastSeq + 1; s != seq; s++ {
			t.seen[s%seenWindow/64] &^= 1 << (s % 64)
		}
	}
	t.mark(seq)
}

func (t *feedTrack) mark(seq uint16) { t.seen[seq%seenWindow/64] |= 1 << (seq % 64) }

// received reports whether seq (our numbering) arrived already, or is too old (or too new) to be told.
func (t *feedTrack) received(seq uint16) bool {
	if back := t.lastSeq - seq; back >= seenWindow {
		return true
	}
	return t.seen[seq%seenWindow/64]&(1<<(seq%64)) != 0
}

// rtxTrack finds the feed track an RTX packet repairs: by its RTX payload type for a plain track, and for the
// layers of a simulcast track by the RTX SSRC learned from the repaired-rtp-stream-id extension of the layer's
// first RTX packets. rtx reports whether the payload type is any track's RTX one.
func (k *feedSink) rtxTrack(h *rtp.Header) (t *feedTrack, rtx bool) {
	pt := uint32(h.PayloadType)
	for _, t := range k.f.tracks {
		if t.rtxPT.Load() != pt {
			continue
		}
		rtx = true
		if t.rid == "" || t.rtxSSRC.Load() == h.SSRC {
			return t, true
		}
	}
	if !rtx {
		return nil, false
	}
	for _, t := range k.f.tracks {
		if t.rid != "" && t.rtxPT.Load() == pt && t.rrID != 0 && string(h.GetExtension(t.rrID)) == t.rid {
			t.rtxSSRC.Store(h.SSRC)
			return t, true
		}
	}
	return nil, true
}

// rtpHeaderLen is the length of b's RTP header with its CSRCs and header extension, or -1 if b is too short.
func rtpHeaderLen(b []byte) int {
	if len(b) < 12 {
		return -1
	}
	n := 12 + 4*int(b[0]&0x0f)
	if b[0]&0x10 != 0 {
		if len(b) < n+4 {
			return -1
		}
		n += 4 + 4*int(binary.BigEndian.Uint16(b[n+2:n+4]))
	}
	if n > len(b) {
		return -1
	}
	return n
}

// rtxPayload finds the payload of RTX packet b without its padding: b[hl:end]; ok is false if b is malformed.
func rtxPayload(b []byte) (hl, end int, ok bool) {
	hl = rtpHeaderLen(b)
	if hl < 0 {
		return 0, 0, false
	}
	end = len(b)
	if b[0]&0x20 != 0 {
		pad := int(b[end-1])
		if pad == 0 || hl+pad > end {
			return 0, 0, false
		}
		end -= pad
	}
	return hl, end, true
}

// decodeRTX turns an RTX packet (RFC 4588: the original sequence number, then the original payload) of track
// t, whose payload b[hl:end] is at least 2 bytes long, back into the original media packet in place: payload
// type t's, sequence number the original one, SSRC t's current one, padding dropped (and the P bit cleared).
func decodeRTX(p *packet.Buffer, t *feedTrack, hl, end int) {
	b := p.Bytes()
	h := &p.Header
	osn := binary.BigEndian.Uint16(b[hl : hl+2])
	copy(b[hl:], b[hl+2:end])
	b = b[:end-2]
	b[0] &^= 0x20
	pt := uint8(t.pt.Load())
	b[1] = b[1]&0x80 | pt
	ssrc := t.inSSRC.Load()
	binary.BigEndian.PutUint16(b[2:4], osn)
	binary.BigEndian.PutUint32(b[8:12], ssrc)
	h.Padding, h.PaddingSize = false, 0
	h.PayloadType, h.SequenceNumber, h.SSRC = pt, osn, ssrc
	p.SetBytes(b)
}

// handleRTX decodes an RTX packet of track t (nil: of a simulcast layer not learned yet) in place, and reports
// whether it is now a media packet of t to forward; otherwise it counted it.
func (k *feedSink) handleRTX(p *packet.Buffer, t *feedTrack) bool {
	hl, end, ok := rtxPayload(p.Bytes())
	switch {
	case !ok:
		k.f.ctr.dropped(k.f.name, &p.Header, "malformed RTX")
		return false
	case end-hl < 2:
		k.f.ctr.padding.Add(1)
		return false
	case t == nil || !t.started || t.awaiting.Load() || t.pt.Load() == noPT:
		// Nothing to repair yet: the track's media SSRC and numbering come from its media packets.
		k.f.ctr.dropped(k.f.name, &p.Header, "RTX of no known track")
		return false
	}
	decodeRTX(p, t, hl, end)
	k.f.ctr.rtx.Add(1)
	return true
}

// HandleRTP rewrites SSRC, sequence number and timestamp in place and forwards (socket reader goroutine). RTX
// packets are decoded into the media packets they carry, which reach the forwarder as late copies of the
// originals; padding-only RTX packets (probes) and packets of no known track are counted and dropped.
func (k *feedSink) HandleRTP(p *packet.Buffer) {
	if k.f.cur.Load() != k.src {
		return
	}
	if p.Len() < 12 {
		return
	}
	h := &p.Header
	t := k.track(h)
	repaired := false
	if t == nil {
		rt, rtx := k.rtxTrack(h)
		if !rtx {
			k.f.ctr.dropped(k.f.name, h, "unknown payload type or SSRC")
			return
		}
		if !k.handleRTX(p, rt) {
			return
		}
		t, repaired = rt, true
	} else if t.awaiting.Load() {
		t.awaiting.Store(false)
	}
	b := p.Bytes()
	now := time.Now().UnixNano() // packet.Buffer.Arrival is per socket, and a takeover changes sockets
	if h.SSRC != t.inSSRC.Load() {
		// A new remote session: continue our numbering where the last one stopped.
		if t.started {
			t.seqOff = t.lastSeq + 1 - h.SequenceNumber
			elapsed := max(now-t.lastWall, 0)
			t.tsOff = t.lastTS + uint32(uint64(elapsed)*uint64(t.clock)/uint64(time.Second)) - h.Timestamp
		}
		t.inSSRC.Store(h.SSRC)
	}
	h.SequenceNumber += t.seqOff
	h.Timestamp += t.tsOff
	h.SSRC = t.outSSRC
	if h.PayloadType != t.outPT {
		h.PayloadType = t.outPT
		b[1] = b[1]&0x80 | t.outPT
	}
	binary.BigEndian.PutUint16(b[2:4], h.SequenceNumber)
	binary.BigEndian.PutUint32(b[4:8], h.Timestamp)
	binary.BigEndian.PutUint32(b[8:12], h.SSRC)
	if repaired {
		if t.received(h.SequenceNumber) {
			// A copy of a packet we have, or one too late to matter: Chrome probes with RTX copies of recent
			// packets. Forwarded, it would count twice in the layer's rate and cost the players.
			k.f.ctr.rtx.Add(^uint64(0))
			k.f.ctr.redundant.Add(1)
			return
		}
		t.mark(h.SequenceNumber)
	} else { // a late copy does not move the numbering on: it continues after the newest packet
		t.markMedia(h.SequenceNumber)
		t.lastSeq, t.lastTS, t.lastWall, t.started = h.SequenceNumber, h.Timestamp, now, true
	}
	k.f.stream.HandleRTP(p)
}

// HandleRTCP forwards the remote's sender reports with our SSRCs and timestamps; the rest ends here.
func (k *feedSink) HandleRTCP(plain []byte) {
	if k.f.cur.Load() != k.src {
		return
	}
	pkts, err := rtcp.Unmarshal(plain)
	if err != nil {
		return
	}
	var keep []rtcp.Packet
	for _, p := range pkts {
		sr, ok := p.(*rtcp.SenderReport)
		if !ok {
			continue
		}
		for _, t := range k.f.tracks {
			if t.inSSRC.Load() == sr.SSRC {
				sr.SSRC = t.outSSRC
				sr.RTPTime += t.tsOff
				sr.Reports = nil
				keep = append(keep, sr)
			}
		}
	}
	if len(keep) == 0 {
		return
	}
	if out, err := rtcp.Marshal(keep); err == nil {
		k.f.stream.HandleRTCP(out)
	}
}
