package main

import (
	"github.com/rtcrelay/rtcrelay/media"
	"github.com/rtcrelay/rtcrelay/relay"
	"github.com/rtcrelay/rtcrelay/rest"
	"github.com/rtcrelay/rtcrelay/signaling"
	"github.com/rtcrelay/rtcrelay/whip"
)

// streams is the REST view of every stream on the server: those of WebSocket sessions (signaling), those pull
// relays publish here, which have no WebSocket session of their own, and WHIP publishers and WHEP players.
type streams struct {
	sig    *signaling.Server
	engine *media.Engine
	relays *relay.Manager
	whip   *whip.Handler // nil: none
}

// whipStreams lists the WHIP/WHEP sessions in the form of /stream/find (sessionId "whip:<client address>", the
// resource ID as mediaSessionId).
func (s *streams) whipStreams() []signaling.StreamInfo {
	if s.whip == nil {
		return nil
	}
	var out []signaling.StreamInfo
	for _, ws := range s.whip.Sessions() {
		si := signaling.StreamInfo{SessionID: "whip:" + ws.Remote, MediaSessionID: ws.ID, Name: ws.Name,
			Published: ws.Kind == "publish", Status: signaling.StatusPlaying, MediaProvider: "WebRTC", MediaType: ws.Kind,
			CreateDate: ws.Created.UnixMilli()}
		if si.Published {
			si.Status = signaling.StatusPublishing
		}
		if st, ok := s.engine.Registry().Lookup(ws.Name); ok {
			for _, t := range st.Tracks() {
				si.HasAudio = si.HasAudio || t.Kind == "audio"
				si.HasVideo = si.HasVideo || t.Kind == "video"
			}
		}
		out = append(out, si)
	}
	return out
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
	for _, si := range append(s.pulled(), s.whipStreams()...) {
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
	for _, si := range s.whipStreams() {
		if f.Match(&si) && s.whip.Terminate(si.MediaSessionID, signaling.ErrRESTTerminate) {
			n++
		}
	}
	return n
}
