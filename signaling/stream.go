package signaling

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/rtcrelay/rtcrelay/media"
	"github.com/rtcrelay/rtcrelay/relayauth"
)

// stream is one publish or play of a connection. Its mutable state is guarded
// by Server.mu.
type stream struct {
	c       *conn
	id      string
	name    string
	publish bool
	sdp     string
	custom  json.RawMessage
	fields  map[string]json.RawMessage // the request, without sdp, for echoing
	// trustPath: the relay path in custom may be believed (false: relay authentication is on and the connection
	// did not authenticate).
	trustPath bool
	created   time.Time

	ctx    context.Context // ends with the stream
	cancel context.CancelCauseFunc

	media      media.Session
	release    func() // gives back what Edge.Acquire took for a player (nil: nothing)
	answered   bool   // setRemoteSDP sent
	ended      bool
	status     string
	info       string
	audioMuted bool
	videoMuted bool
}

type muteState struct {
	Muted bool `json:"muted"`
}

// stopStatus is the normal terminal status: UNPUBLISHED for a publisher,
// STOPPED for a player.
func (st *stream) stopStatus() string {
	if st.publish {
		return StatusUnpublished
	}
	return StatusStopped
}

// statusObject is the notifyStreamStatusEvent payload: the request's fields
// echoed plus id, status, info and mute states.
func statusObject(fields map[string]json.RawMessage, id, status, info string, audioMuted, videoMuted bool) map[string]any {
	o := make(map[string]any, len(fields)+5)
	for k, v := range fields {
		o[k] = v
	}
	o["mediaSessionId"] = id
	o["status"] = status
	o["info"] = info
	o["audioState"] = muteState{audioMuted}
	o["videoState"] = muteState{videoMuted}
	return o
}

func (st *stream) sendStatusLocked() {
	o := statusObject(st.fields, st.id, st.status, st.info, st.audioMuted, st.videoMuted)
	st.c.sendMsg(MsgNotifyStreamStatusEvent, o)
	st.c.notifyStatusLocked(o, st.publish)
}

// notifyStatusLocked sends a StreamStatusEvent to the Authorizer (if any).
func (c *conn) notifyStatusLocked(o map[string]any, publish bool) {
	if c.srv.cfg.Authorizer == nil || c.appKey == "" {
		return
	}
	mediaType := "play"
	if publish {
		mediaType = "publish"
	}
	extra := make(map[string]any, len(o)+1)
	for k, v := range o {
		extra[k] = v
	}
	extra["mediaType"] = mediaType
	c.notifyLocked("StreamStatusEvent", nil, extra)
}

func (st *stream) infoLocked() StreamInfo {
	si := StreamInfo{
		SessionID:      st.c.id,
		MediaSessionID: st.id,
		Name:           st.name,
		Published:      st.publish,
		Status:         st.status,
		Info:           st.info,
		Custom:         st.custom,
		CreateDate:     st.created.UnixMilli(),
		MediaType:      "play",
	}
	if st.publish {
		si.MediaType = "publish"
	}
	_ = json.Unmarshal(st.c.fields["appKey"], &si.AppKey)
	_ = json.Unmarshal(st.fields["hasAudio"], &si.HasAudio)
	_ = json.Unmarshal(st.fields["hasVideo"], &si.HasVideo)
	_ = json.Unmarshal(st.fields["mediaProvider"], &si.MediaProvider)
	return si
}

// onStart handles publishStream (publish=true) and playStream.
func (c *conn) onStart(m *Message, publish bool) {
	s := c.srv
	p := m.Payload()
	if p == nil {
		s.malformed.Add(1)
		c.log.Info("stream request without data", "message", m.Name)
		c.badMessage(m.Name, malformedData(m.Name, nil))
		return
	}
	var req streamRequest
	if err := m.DecodePayload(&req); err != nil {
		s.malformed.Add(1)
		c.log.Info("malformed stream request", "message", m.Name, "err", err)
		c.badMessage(m.Name, malformedData(m.Name, err))
		return
	}
	fields := parseFields(p)
	delete(fields, "sdp")
	delete(fields, "localMediaInfo")

	s.mu.Lock()
	defer s.mu.Unlock()
	fail := func(info string) {
		c.log.Info("stream request refused", "message", m.Name, "name", req.Name, "mediaSessionId", req.MediaSessionID, "info", info)
		o := statusObject(fields, req.MediaSessionID, StatusFailed, info, false, false)
		c.sendMsg(MsgNotifyStreamStatusEvent, o)
		c.notifyStatusLocked(o, publish)
	}
	switch {
	case req.MediaSessionID == "":
		fail(InfoMediaSessionIDNull)
		return
	case !c.established:
		fail(InfoSessionNotReady)
		return
	case c.streams[req.MediaSessionID] != nil:
		fail(InfoMediaSessionIDInUse)
		return
	case s.closing:
		fail(InfoRequestedShutdown)
		return
	}
	if err := media.CheckName(req.Name); err != nil {
		s.badNames.Add(1)
		fail(InfoFor(err))
		return
	}
	trustPath := true // without relay authentication every path is believed (a cluster without a secret)
	if s.cfg.RelayAuth != nil {
		var err error
		if trustPath, err = relayauth.CheckStart(c.relay, s.cfg.RelayRequireAuth, len(ParsePath(req.Custom)) > 0, req.SDP); err != nil {
			s.relayAuthFailures.Add(1)
			fail(InfoFor(err))
			return
		}
	}
	if l := s.cfg.PublishLimit; publish && l != nil && c.relay == nil {
		if err := l.Allow(remoteIP(c.remote)); err != nil {
			s.limited.Add(1)
			c.log.Info("publish refused", "err", err)
			fail(InfoTooMany)
			return
		}
	}
	st := &stream{
		c: c, id: req.MediaSessionID, name: req.Name, publish: publish,
		sdp: req.SDP, custom: req.Custom, fields: fields, created: time.Now(), status: StatusPending, trustPath: trustPath,
	}
	st.ctx, st.cancel = context.WithCancelCause(context.Background())
	c.streams[st.id] = st
	s.streamsWG.Add(1)
	go st.run()
}

// stopGrace is how long a stream whose media ended waits for a racing stop message before it reports FAILED.
const stopGrace = time.Second

// run drives one stream: engine call, answer, Ready, then watches Done.
func (st *stream) run() {
	s := st.c.srv
	defer s.streamsWG.Done()
	log := st.c.log.With("stream", st.name, "mediaSessionId", st.id, "publish", st.publish)

	var (
		ms     media.Session
		answer string
		err    error
	)
	// The relay path comes from the client's own custom, whatever a backend answers (loop detection); with
	// relay authentication on, only from an authenticated relay.
	path := ParsePath(st.custom)
	if len(path) > 0 && !st.trustPath {
		log.Info("relay path of an unauthenticated connection ignored", "path", path)
		path = nil
	}
	if st.c.relay == nil && !st.authorize(log) {
		return
	}
	if !st.publish && s.cfg.Edge != nil {
		release, aerr := s.cfg.Edge.Acquire(st.ctx, st.name, path)
		switch {
		case aerr == nil:
			s.mu.Lock()
			if st.ended {
				s.mu.Unlock()
				release()
				return
			}
			st.release = release
			s.mu.Unlock()
		case errors.Is(aerr, media.ErrNotFound):
			log.Debug("not in the cluster", "err", aerr) // the play below says "Stream not found"
		default:
			var cl closers
			s.mu.Lock()
			if !st.ended {
				log.Info("edge pull refused", "err", aerr)
				s.endLocked(st, StatusFailed, InfoFor(aerr), aerr, true, &cl)
			}
			s.mu.Unlock()
			cl.run()
			return
		}
	}
	if st.publish {
		ms, answer, err = s.cfg.Engine.Publish(st.ctx, media.PublishRequest{Name: st.name, MediaSessionID: st.id, SDP: st.sdp, Path: path})
	} else {
		ms, answer, err = s.cfg.Engine.Play(st.ctx, media.PlayRequest{Name: st.name, MediaSessionID: st.id, SDP: st.sdp, Path: path})
	}
	if err == nil && ms == nil {
		err = errors.New("signaling: engine returned no media session")
	}
	var cl closers
	s.mu.Lock()
	if st.ended {
		s.mu.Unlock()
		if ms != nil {
			ms.Close(context.Cause(st.ctx))
		}
		return
	}
	if err != nil {
		log.Info("stream refused by engine", "err", err)
		s.endLocked(st, StatusFailed, InfoFor(err), err, true, &cl)
		s.mu.Unlock()
		cl.run()
		return
	}
	st.media = ms
	st.answered = true
	st.c.sendMsg(MsgSetRemoteSDP, st.id, answer)
	if st.publish {
		if old := s.publishers[st.name]; old == nil || old.ended {
			s.publishers[st.name] = st
		}
	} else {
		set := s.players[st.name]
		if set == nil {
			set = map[*stream]struct{}{}
			s.players[st.name] = set
		}
		set[st] = struct{}{}
		if pub := s.publishers[st.name]; pub != nil {
			st.audioMuted, st.videoMuted = pub.audioMuted, pub.videoMuted
		}
	}
	s.mu.Unlock()

	rctx, cancel := context.WithTimeout(st.ctx, s.cfg.ReadyTimeout)
	err = ms.Ready(rctx)
	cancel()

	s.mu.Lock()
	if st.ended {
		s.mu.Unlock()
		return
	}
	if err != nil {
		log.Info("media session failed before ready", "err", err)
		s.endLocked(st, StatusFailed, InfoFor(err), err, true, &cl)
		s.mu.Unlock()
		cl.run()
		return
	}
	st.status = StatusPlaying
	if st.publish {
		st.status = StatusPublishing
	}
	st.sendStatusLocked()
	status := st.status
	s.mu.Unlock()
	log.Info("stream up", "status", status)

	select {
	case <-st.ctx.Done():
		return
	case <-ms.Done():
	}
	err = ms.Err()
	if err == nil {
		err = errors.New("signaling: media session ended")
		if !st.publish {
			err = media.ErrPublisherStopped
		}
	}
	if !errors.Is(err, media.ErrPublisherStopped) {
		// The Web SDK sends unPublishStream/stopStream and closes its peer connection at the same moment, so the
		// transport often ends first: give the stop message a moment to arrive, so that the client gets
		// UNPUBLISHED/STOPPED rather than FAILED.
		t := time.NewTimer(stopGrace)
		select {
		case <-st.ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
	s.mu.Lock()
	if !st.ended {
		log.Info("media session ended", "err", err)
		s.endLocked(st, StatusFailed, InfoFor(err), err, true, &cl)
	}
	s.mu.Unlock()
	cl.run()
}

// authorize runs the publishStream/playStream hook of the Authorizer (if any): on a denial the stream ends
// FAILED ("Restricted access" or the backend's reason) and authorize reports false; on an allow a custom the
// backend returned replaces the stream's.
func (st *stream) authorize(log *slog.Logger) bool {
	s := st.c.srv
	a := s.cfg.Authorizer
	if a == nil {
		return true
	}
	method := "playStream"
	if st.publish {
		method = "publishStream"
	}
	s.mu.Lock()
	mediaType := "play"
	if st.publish {
		mediaType = "publish"
	}
	body := hookBody(st.fields, st.c.id, map[string]any{"mediaSessionId": st.id, "name": st.name, "mediaType": mediaType,
		"createDate": st.created.UnixMilli()})
	appKey := st.c.appKey
	s.mu.Unlock()
	out, err := a.Call(st.ctx, appKey, method, body)
	var cl closers
	s.mu.Lock()
	defer func() {
		s.mu.Unlock()
		cl.run()
	}()
	if st.ended {
		return false
	}
	if err != nil {
		log.Info("stream refused by the application backend", "err", err)
		s.endLocked(st, StatusFailed, InfoFor(err), err, true, &cl)
		return false
	}
	if custom, ok := out["custom"]; ok {
		st.custom = custom
		st.fields["custom"] = custom
	}
	return true
}

// endLocked ends st once: status sent (if notify), media closed after the
// lock (via cl), and, for the publisher owning the name, its players end with
// FAILED "Stopped by publisher stop" — unless the publisher was only
// interrupted (media.Interrupted: WebSocket or transport lost), when the media
// engine keeps the stream for its publisher grace and ends the players itself
// if nobody takes the stream over.
func (s *Server) endLocked(st *stream, status, info string, cause error, notify bool, cl *closers) {
	if st.ended {
		return
	}
	st.ended = true
	st.status, st.info = status, info
	st.cancel(cause)
	delete(st.c.streams, st.id)
	if notify {
		st.sendStatusLocked()
	}
	if ms := st.media; ms != nil {
		cl.add(func() { ms.Close(cause) })
	}
	if r := st.release; r != nil {
		st.release = nil
		cl.add(r)
	}
	if !st.publish {
		if set := s.players[st.name]; set != nil {
			delete(set, st)
			if len(set) == 0 {
				delete(s.players, st.name)
			}
		}
		return
	}
	if s.publishers[st.name] != st {
		return
	}
	delete(s.publishers, st.name)
	if media.Interrupted(cause) {
		return
	}
	for p := range s.players[st.name] {
		s.endLocked(p, StatusFailed, InfoPublisherStop, media.ErrPublisherStopped, true, cl)
	}
}

// onStop handles unPublishStream and stopStream.
func (c *conn) onStop(m *Message) {
	s := c.srv
	p := m.Payload()
	var req streamRequest
	if err := m.DecodePayload(&req); err != nil || p == nil {
		s.malformed.Add(1)
		c.log.Info("malformed stop request", "message", m.Name, "err", err)
		c.badMessage(m.Name, malformedData(m.Name, err))
		return
	}
	publish := m.Name == MsgUnPublishStream
	s.mu.Lock()
	c.notifyLocked(m.Name, parseFields(p), nil)
	s.mu.Unlock()
	status, info, cause := StatusStopped, InfoUser, ErrStoppedByUser
	if publish {
		status, info = StatusUnpublished, InfoPublisherStop
	}
	var cl closers
	s.mu.Lock()
	st := c.streams[req.MediaSessionID]
	if st == nil {
		// Unknown or already ended: still confirm, so the SDK can finish.
		fields := parseFields(p)
		delete(fields, "sdp")
		c.sendMsg(MsgNotifyStreamStatusEvent, statusObject(fields, req.MediaSessionID, status, info, false, false))
		s.mu.Unlock()
		return
	}
	s.endLocked(st, st.stopStatus(), info, cause, true, &cl)
	s.mu.Unlock()
	cl.run()
}

// onStreamEvent relays a publisher's sendStreamEvent to its players.
func (c *conn) onStreamEvent(m *Message) {
	s := c.srv
	var req streamRequest
	if err := m.DecodePayload(&req); err != nil || m.Payload() == nil {
		s.malformed.Add(1)
		c.log.Info("malformed sendStreamEvent", "err", err)
		c.badMessage(m.Name, malformedData(m.Name, err))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := c.streams[req.MediaSessionID]
	if st == nil || !st.publish || s.publishers[st.name] != st {
		c.log.Debug("sendStreamEvent for no published stream", "mediaSessionId", req.MediaSessionID)
		return
	}
	switch req.Type {
	case "audioMuted", "audioUnmuted":
		st.audioMuted = req.Type == "audioMuted"
	case "videoMuted", "videoUnmuted":
		st.videoMuted = req.Type == "videoMuted"
	}
	s.relayEventLocked(st.name, req.Type, req.Payload)
}

type streamEvent struct {
	MediaSessionID string          `json:"mediaSessionId"`
	Type           string          `json:"type"`
	Payload        json.RawMessage `json:"payload"`
}

func (s *Server) relayEventLocked(name, typ string, payload json.RawMessage) int {
	if len(payload) == 0 || string(payload) == "null" {
		b, _ := json.Marshal(map[string]string{"streamName": name})
		payload = b
	}
	n := 0
	for p := range s.players[name] {
		if !p.answered || p.ended {
			continue
		}
		switch typ {
		case "audioMuted", "audioUnmuted":
			p.audioMuted = typ == "audioMuted"
		case "videoMuted", "videoUnmuted":
			p.videoMuted = typ == "videoMuted"
		}
		p.c.sendMsg(MsgNotifyStreamEvent, streamEvent{p.id, typ, payload})
		n++
	}
	return n
}
