package media

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/rtcrelay/rtcrelay/forwarder"
	"github.com/rtcrelay/rtcrelay/sdp"
	"github.com/rtcrelay/rtcrelay/session"
)

// Publish answers a publisher's offer: ICE-lite + DTLS server session, the stream registered under its name at
// once (so a second publisher of the name fails), media flowing into the forwarder once the transport is up.
func (e *Engine) Publish(ctx context.Context, req PublishRequest) (Session, string, error) {
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
	st, err := e.publish(req.Name, trackInfos(offer, tracks), s, req.Path)
	if err != nil {
		s.Close(err)
		return nil, "", classify(fmt.Errorf("publish %q: %w", req.Name, err))
	}
	s.SetSink(st)
	w := e.newWait(func(cause error) { s.Close(cause); st.Close() })
	e.wg.Go(func() { e.runPublisher(w, s, st) })
	return w, answer, nil
}

// publish registers a stream and the engine's record of it.
func (e *Engine) publish(name string, tracks []forwarder.TrackInfo, up forwarder.Upstream, path []string) (*forwarder.Stream, error) {
	st, err := e.reg.Publish(name, tracks, up)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	e.streams[name] = &published{stream: st, path: slices.Clone(path), since: time.Now()}
	e.mu.Unlock()
	e.wg.Go(func() {
		<-st.Done()
		e.mu.Lock()
		if p := e.streams[name]; p != nil && p.stream == st {
			delete(e.streams, name)
		}
		e.mu.Unlock()
	})
	return st, nil
}

func (e *Engine) runPublisher(w *wait, s *session.Session, st *forwarder.Stream) {
	err := s.Start(e.ctx)
	w.setReady(classify(err))
	if err != nil {
		w.Close(classify(err))
		return
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
	if err := e.admit(ctx); err != nil {
		return nil, "", fmt.Errorf("play %q: %w", req.Name, err)
	}
	st, ok := e.reg.Lookup(req.Name)
	if !ok {
		return nil, "", classify(fmt.Errorf("play %q: %w", req.Name, forwarder.ErrNotFound))
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
	w := e.newWait(func(cause error) { s.Close(cause) })
	e.wg.Go(func() { e.runPlayer(w, s, st, tracks) })
	return w, answer, nil
}

func publishedCodecs(st *forwarder.Stream) []sdp.Codec {
	var cs []sdp.Codec
	for _, t := range st.Tracks() {
		cs = append(cs, t.Codec)
	}
	return cs
}

// runPlayer brings the player's transport up, subscribes it and ends it with the stream or the transport.
func (e *Engine) runPlayer(w *wait, s *session.Session, st *forwarder.Stream, tracks []sdp.Track) {
	err := s.Start(e.ctx)
	if err != nil {
		w.setReady(classify(err))
		w.Close(classify(err))
		return
	}
	p, err := st.Subscribe(s, tracks)
	if err != nil {
		w.setReady(classify(err))
		w.Close(classify(err))
		return
	}
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
