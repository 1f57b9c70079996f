package media

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/rtcrelay/rtcrelay/forwarder"
	"github.com/rtcrelay/rtcrelay/sdp"
	"github.com/rtcrelay/rtcrelay/session"
)

// Publish answers a publisher's offer: ICE-lite + DTLS server session, the stream registered under its name at
// once (so a second publisher of the name fails), media flowing into the forwarder once the transport is up.
//
// A stream whose publisher was lost (Interrupted) stays published for Config.PublisherGrace; a Publish of the
// same name with the same relay path and the same tracks within the grace takes it over: the players stay
// attached and see continuous SSRCs, sequence numbers and timestamps, and get a keyframe at once.
func (e *Engine) Publish(ctx context.Context, req PublishRequest) (Session, string, error) {
	if err := CheckName(req.Name); err != nil {
		return nil, "", fmt.Errorf("publish: %w", err)
	}
	if err := e.admit(ctx); err != nil {
		return nil, "", fmt.Errorf("publish %q: %w", req.Name, err)
	}
	if e.cfg.ServerID != "" && slices.Contains(req.Path, e.cfg.ServerID) {
		return nil, "", fmt.Errorf("publish %q via %v: %w", req.Name, req.Path, ErrRestricted)
	}
	offer, err := sdp.Parse(req.SDP)
	if err != nil {
		return nil, "", fmt.Errorf("publish %q: %w", req.Name, err)
	}
	tracks, err := sdp.NegotiatePublish(offer)
	if err != nil {
		return nil, "", classify(fmt.Errorf("publish %q: %w", req.Name, err))
	}
	log := e.log.With("stream", req.Name, "mediaSessionId", req.MediaSessionID, "role", "publish")
	s, err := session.NewAnswerer(e.sessionConfig(log), offer)
	if err != nil {
		return nil, "", fmt.Errorf("publish %q: %w", req.Name, err)
	}
	answer, err := sdp.BuildAnswer(offer, s.Transport(), tracks, "rtcrelay", "rtcrelay")
	if err != nil {
		s.Close(err)
		return nil, "", fmt.Errorf("publish %q: %w", req.Name, err)
	}
	src := &source{s: s}
	f, takeover, err := e.publishFeed(req.Name, trackInfos(offer, tracks), req.Path, src)
	if err != nil {
		s.Close(err)
		return nil, "", classify(fmt.Errorf("publish %q: %w", req.Name, err))
	}
	if id := transportCCID(tracks); id != 0 {
		s.EnableTWCC(id, f.stream.SSRC())
	}
	w := e.newWait(func(cause error) {
		s.Close(cause)
		e.publisherGone(f, src, cause)
	})
	src.close = w.Close
	if takeover {
		log.Info("publisher took the stream over within its grace")
	}
	e.wg.Go(func() { e.runPublisher(w, s, f.stream, takeover) })
	return w, answer, nil
}

// publishFeed publishes name fed by src, or hands the stream in its grace to src. It reports a takeover.
func (e *Engine) publishFeed(name string, pts []pubTrack, path []string, src *source) (*feed, bool, error) {
	infos := make([]forwarder.TrackInfo, len(pts))
	for i := range pts {
		infos[i] = pts[i].info
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if p := e.streams[name]; p != nil {
		if p.grace == nil || p.pulled || !slices.Equal(p.path, path) || !sameTracks(p.stream.Tracks(), infos) {
			return nil, false, fmt.Errorf("%w: %q", forwarder.ErrNameInUse, name)
		}
		p.grace.Stop()
		p.grace = nil
		for i, t := range p.feed.tracks {
			t.ridID, t.rrID = ridExtID(infos[i]), repairedExtID(infos[i])
			t.pt.Store(uint32(infos[i].Codec.PayloadType))
			t.rtxPT.Store(pts[i].rtxPT)
			t.rtxSSRC.Store(0)
			t.awaiting.Store(true)
		}
		p.feed.attach(src)
		e.takeovers.Add(1)
		return p.feed, true, nil
	}
	if m := e.cfg.MaxStreams; m > 0 && len(e.streams) >= m {
		return nil, false, fmt.Errorf("%w: %d streams published here (--max-streams)", ErrCapacity, m)
	}
	f, infos := newFeed(name, pts, &e.feeds)
	st, err := e.reg.Publish(name, infos, f)
	if err != nil {
		return nil, false, err
	}
	f.stream = st
	e.streams[name] = &published{stream: st, feed: f, path: slices.Clone(path), since: time.Now()}
	f.attach(src)
	e.notify(StreamEvent{Name: name, Published: true, Path: slices.Clone(path)})
	e.wg.Go(func() {
		<-st.Done()
		e.mu.Lock()
		if p := e.streams[name]; p != nil && p.stream == st {
			if p.grace != nil {
				p.grace.Stop()
			}
			delete(e.streams, name)
		}
		e.mu.Unlock()
		e.notify(StreamEvent{Name: name, Path: slices.Clone(path)})
	})
	return f, false, nil
}

// newFeed makes the feed of a new stream and the forwarder's descriptions of its tracks, with our SSRCs.
func newFeed(name string, pts []pubTrack, ctr *feedCounters) (*feed, []forwarder.TrackInfo) {
	f := &feed{name: name, ctr: ctr}
	infos := make([]forwarder.TrackInfo, len(pts))
	for i := range pts {
		in := &infos[i]
		*in = pts[i].info
		t := &feedTrack{kind: in.Kind, clock: in.Codec.ClockRate, outSSRC: in.SSRC, outPT: in.Codec.PayloadType,
			rid: in.RID, ridID: ridExtID(*in), rrID: repairedExtID(*in)}
		if t.outSSRC == 0 {
			t.outSSRC = randomSSRC()
		}
		t.inSSRC.Store(in.SSRC)
		t.pt.Store(uint32(in.Codec.PayloadType))
		t.rtxPT.Store(pts[i].rtxPT)
		in.SSRC = t.outSSRC
		f.tracks = append(f.tracks, t)
	}
	return f, infos
}

// sameTracks reports whether a new publisher's tracks can continue a stream's: same kinds, codecs and header
// extensions with the same IDs, in any order (payload types may differ: the feed rewrites them).
func sameTracks(have, want []forwarder.TrackInfo) bool {
	if len(have) != len(want) {
		return false
	}
	for i := range have {
		a, b := have[i], want[i]
		if a.Kind != b.Kind || a.RID != b.RID || !strings.EqualFold(a.Codec.Name, b.Codec.Name) || a.Codec.ClockRate != b.Codec.ClockRate ||
			a.Codec.Channels != b.Codec.Channels || !sameExtensions(a.Extensions, b.Extensions) {
			return false
		}
	}
	return true
}

// ridExtID is the publisher's ID of the rtp-stream-id extension of a simulcast layer, 0 for other tracks.
func ridExtID(in forwarder.TrackInfo) uint8 {
	if in.RID == "" {
		return 0
	}
	for _, x := range in.Extensions {
		if x.URI == sdp.ExtRTPStreamID {
			return x.ID
		}
	}
	return 0
}

// repairedExtID is the publisher's ID of the repaired-rtp-stream-id extension of a simulcast layer, which tells
// its RTX stream, 0 for other tracks.
func repairedExtID(in forwarder.TrackInfo) uint8 {
	if in.RID == "" {
		return 0
	}
	for _, x := range in.Extensions {
		if x.URI == sdp.ExtRepairedStreamID {
			return x.ID
		}
	}
	return 0
}

// sameExtensions reports whether a and b hold the same header extensions (ID and URI), whatever their order.
func sameExtensions(a, b []sdp.Extension) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

// publisherGone runs when a publisher's session ended: unless another session already took the stream over, the
// stream ends now, or, when the publisher was Interrupted and a grace is configured, after the grace.
func (e *Engine) publisherGone(f *feed, src *source, cause error) {
	f.detach(src)
	e.mu.Lock()
	p := e.streams[f.name]
	if p == nil || p.feed != f || f.cur.Load() != nil {
		e.mu.Unlock()
		return
	}
	if grace := e.cfg.PublisherGrace; grace > 0 && !e.closed && Interrupted(cause) {
		var t *time.Timer
		t = time.AfterFunc(grace, func() {
			e.mu.Lock()
			expired := p.grace == t
			if expired {
				p.grace = nil
			}
			e.mu.Unlock()
			if expired {
				e.log.Info("publisher did not come back within its grace: stream ends", "stream", f.name, "grace", grace)
				p.stream.Close()
			}
		})
		p.grace = t
		e.mu.Unlock()
		e.log.Info("publisher lost: the stream waits for it", "stream", f.name, "grace", grace, "cause", cause)
		return
	}
	e.mu.Unlock()
	p.stream.Close()
}

func (e *Engine) runPublisher(w *wait, s *session.Session, st *forwarder.Stream, takeover bool) {
	err := s.Start(e.ctx)
	w.setReady(classify(err))
	if err != nil {
		w.Close(classify(err))
		return
	}
	if takeover {
		st.RequestKeyframe()
	}
	select {
	case <-s.Done():
		w.Close(classify(s.Err()))
	case <-st.Done():
		w.Close(classify(forwarder.ErrPublisherStopped))
	case <-w.Done():
	}
}

// Play answers a player's offer: the stream must be published; the player's codecs and payload types are matched
// to the publisher's; the player is attached once the transport is up.
func (e *Engine) Play(ctx context.Context, req PlayRequest) (Session, string, error) {
	if err := CheckName(req.Name); err != nil {
		return nil, "", fmt.Errorf("play: %w", err)
	}
	if err := e.admit(ctx); err != nil {
		return nil, "", fmt.Errorf("play %q: %w", req.Name, err)
	}
	st, ok := e.reg.Lookup(req.Name)
	if !ok {
		return nil, "", classify(fmt.Errorf("play %q: %w", req.Name, forwarder.ErrNotFound))
	}
	if m := e.cfg.MaxPlayers; m > 0 && e.players.Load() >= int64(m) {
		return nil, "", fmt.Errorf("play %q: %w: %d players here (--max-players)", req.Name, ErrCapacity, m)
	}
	if len(req.Path) > 0 {
		for _, id := range e.StreamPath(req.Name) {
			if slices.Contains(req.Path, id) {
				return nil, "", fmt.Errorf("play %q from %v: %w", req.Name, req.Path, ErrRestricted)
			}
		}
	}
	offer, err := sdp.Parse(req.SDP)
	if err != nil {
		return nil, "", fmt.Errorf("play %q: %w", req.Name, err)
	}
	tracks, err := sdp.NegotiatePlay(offer, publishedCodecs(st))
	if err != nil {
		return nil, "", classify(fmt.Errorf("play %q: %w", req.Name, err))
	}
	matchLayers(tracks, st.Tracks())
	log := e.log.With("stream", req.Name, "mediaSessionId", req.MediaSessionID, "role", "play")
	s, err := session.NewAnswerer(e.sessionConfig(log), offer)
	if err != nil {
		return nil, "", fmt.Errorf("play %q: %w", req.Name, err)
	}
	answer, err := sdp.BuildAnswer(offer, s.Transport(), tracks, "rtcrelay-"+randomID(4), "rtcrelay")
	if err != nil {
		s.Close(err)
		return nil, "", fmt.Errorf("play %q: %w", req.Name, err)
	}
	e.players.Add(1)
	w := e.newWait(func(cause error) {
		s.Close(cause)
		e.players.Add(-1)
	})
	e.wg.Go(func() { e.runPlayer(w, s, st, tracks, req.MediaSessionID) })
	return w, answer, nil
}

// matchLayers keeps, on a player's video track that asked for simulcast (a relay pulling), one of its RIDs per
// layer of the stream, in the publisher's order; none when the stream has no layers (then it plays one track).
func matchLayers(tracks []sdp.Track, infos []forwarder.TrackInfo) {
	n := 0
	for _, in := range infos {
		if in.RID != "" {
			n++
		}
	}
	for i := range tracks {
		if len(tracks[i].RIDs) > 0 {
			tracks[i].RIDs = tracks[i].RIDs[:min(n, len(tracks[i].RIDs))]
			if len(tracks[i].RIDs) == 0 {
				tracks[i].RIDs = nil
			}
		}
	}
}

func publishedCodecs(st *forwarder.Stream) []sdp.Codec {
	var cs []sdp.Codec
	for _, t := range st.Tracks() {
		cs = append(cs, t.Codec)
	}
	return cs
}

// runPlayer brings the player's transport up, subscribes it and ends it with the stream or the transport.
func (e *Engine) runPlayer(w *wait, s *session.Session, st *forwarder.Stream, tracks []sdp.Track, id string) {
	err := s.Start(e.ctx)
	if err != nil {
		w.setReady(classify(err))
		w.Close(classify(err))
		return
	}
	for _, t := range tracks {
		s.PrimeSend(t.SSRC, t.RTXSSRC)
	}
	p, err := st.Subscribe(s, tracks)
	if err != nil {
		w.setReady(classify(err))
		w.Close(classify(err))
		return
	}
	p.SetID(id)
	s.SetSink(p)
	w.setReady(nil)
	select {
	case <-s.Done():
		p.Close()
		w.Close(classify(s.Err()))
	case <-p.Done():
		w.Close(classify(p.Err()))
	case <-w.Done():
		p.Close()
	}
}

// Available reports whether name is published.
func (e *Engine) Available(name string) bool {
	_, ok := e.reg.Lookup(name)
	return ok
}

// transportCCID is the transport-cc extension ID of the first receiving track that negotiated it, 0 if none
// did. BUNDLE gives it one ID on all m-sections, and its sequence numbers span them.
func transportCCID(tracks []sdp.Track) uint8 {
	for _, t := range tracks {
		if t.Direction != sdp.DirRecvOnly && t.Direction != sdp.DirSendRecv {
			continue
		}
		for _, x := range t.Extensions {
			if x.URI == sdp.ExtTransportCC {
				return x.ID
			}
		}
	}
	return 0
}
