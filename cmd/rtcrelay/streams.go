package main

import (
	"github.com/rtcrelay/rtcrelay/media"
	"github.com/rtcrelay/rtcrelay/relay"
	"github.com/rtcrelay/rtcrelay/rest"
	"github.com/rtcrelay/rtcrelay/signaling"
)

// streams is the REST view of every stream on the server: those of WebSocket sessions (signaling) and those pull
// relays publish here, which have no WebSocket session of their own.
type streams struct {
	sig    *signaling.Server
	engine *media.Engine
	relays *relay.Manager
}

var _ rest.StreamsAPI = (*streams)(nil)

// pulled lists the streams of pull relays in the form of /stream/find, with the pull agent's localMediaSessionId.
func (s *streams) pulled() []signaling.StreamInfo {
	var out []signaling.StreamInfo
	for _, p := range s.engine.PulledStreams() {
		si := signaling.StreamInfo{
			SessionID: "relay", Name: p.Name, Published: true, HasAudio: p.HasAudio, HasVideo: p.HasVideo,
			Status: "PUBLISHING", MediaProvider: "WebRTC", MediaType: "publish", CreateDate: p.Since.UnixMilli(),
		}
		if ags := s.relays.Find(relay.Filter{LocalStreamName: p.Name, Direction: relay.DirectionPull}); len(ags) > 0 {
			si.MediaSessionID = ags[0].LocalMediaSessionID
			si.SessionID = "relay:" + ags[0].URI
		}
		out = append(out, si)
	}
	return out
}

// Streams lists the streams that match f.
func (s *streams) Streams(f *signaling.StreamFilter) []signaling.StreamInfo {
	out := s.sig.Streams(f)
	for _, si := range s.pulled() {
		if f.Match(&si) {
			out = append(out, si)
		}
	}
	return out
}

// TerminateStream ends the matching streams; a pulled stream ends with its pull agent.
func (s *streams) TerminateStream(f signaling.StreamFilter, info string) int {
	n := s.sig.TerminateStream(f, info)
	for _, si := range s.pulled() {
		if !f.Match(&si) {
			continue
		}
		if k, _ := s.relays.Terminate(relay.Filter{LocalStreamName: si.Name, Direction: relay.DirectionPull}); k == 0 {
			s.engine.EndPulled(si.Name)
		}
		n++
	}
	return n
}
