package media

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/rtcrelay/rtcrelay/forwarder"
	"github.com/rtcrelay/rtcrelay/relay"
	"github.com/rtcrelay/rtcrelay/sdp"
	"github.com/rtcrelay/rtcrelay/session"
	"github.com/rtcrelay/rtcrelay/signaling"
)

var _ signaling.Engine = (*Engine)(nil)

// Publish answers a publisher's offer: ICE-lite + DTLS server session, the stream registered under its name at
// once (so a second publisher of the name fails), media flowing into the forwarder once the transport is up.
func (e *Engine) Publish(_ context.Context, req signaling.PublishRequest) (signaling.MediaSession, string, error) {
	if e.cfg.ServerID != "" && relay.PathContains(req.Custom, e.cfg.ServerID) {
		return nil, "", ErrRestricted
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
	st, err := e.publish(req.Name, trackInfos(offer, tracks), s, req.Custom)
	if err != nil {
		s.Close(err)
		return nil, "", classify(fmt.Errorf("publish %q: %w", req.Name, err))
	}
	s.SetSink(st)
	w := newWait(func(cause error) { s.Close(cause); st.Close() })
	go e.runPublisher(w, s, st)
	return w, answer, nil
}

// publish registers a stream and the engine's record of it.
func (e *Engine) publish(name string, tracks []forwarder.TrackInfo, up forwarder.Upstream, custom []byte) (*forwarder.Stream, error) {
	st, err := e.reg.Publish(name, tracks, up)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	e.streams[name] = &published{stream: st, custom: slices.Clone(custom), since: time.Now()}
	e.mu.Unlock()
	go func() {
		<-st.Done()
		e.mu.Lock()
		if p := e.streams[name]; p != nil && p.stream == st {
			delete(e.streams, name)
		}
		e.mu.Unlock()
	}()
	return st, nil
}

func (e *Engine) runPublisher(w *wait, s *session.Session, st *forwarder.Stream) {
	err := s.Start(context.Background())
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
func (e *Engine) Play(_ context.Context, req signaling.PlayRequest) (signaling.MediaSession, string, error) {
	st, ok := e.reg.Lookup(req.Name)
	if !ok {
		return nil, "", classify(fmt.Errorf("play %q: %w", req.Name, forwarder.ErrNotFound))
	}
	if reqPath := relay.ParsePath(req.Custom); len(reqPath) > 0 {
		for _, id := range e.StreamPath(req.Name) {
			if slices.Contains(reqPath, id) {
				return nil, "", fmt.Errorf("play %q from %v: %w", req.Name, reqPath, ErrRestricted)
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
	w := newWait(func(cause error) { s.Close(cause) })
	go e.runPlayer(w, s, st, tracks)
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
	err := s.Start(context.Background())
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
