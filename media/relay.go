package media

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rtcrelay/rtcrelay/forwarder"
	"github.com/rtcrelay/rtcrelay/sdp"
	"github.com/rtcrelay/rtcrelay/session"
)

// HasStream reports whether name is published here.
func (e *Engine) HasStream(name string) bool { return e.Available(name) }

// StreamDone is closed when the local stream name ends (already closed when it is not published).
func (e *Engine) StreamDone(name string) <-chan struct{} {
	if st, ok := e.reg.Lookup(name); ok {
		return st.Done()
	}
	c := make(chan struct{})
	close(c)
	return c
}

// StreamPath is the relay path the local stream name was published with (nil for a browser's stream).
func (e *Engine) StreamPath(name string) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if p := e.streams[name]; p != nil {
		return slices.Clone(p.path)
	}
	return nil
}

// outbound is one outbound relay session (one attempt of a relay agent).
type outbound struct {
	*wait
	e      *Engine
	s      *session.Session
	tracks []sdp.Track       // what we offered
	pull   *feed             // nil for a push
	src    *source           // this session as a feed's source (pull)
	stream *forwarder.Stream // the local stream a push plays
	player atomic.Pointer[forwarder.Player]

	statsMu  sync.Mutex
	lastIn   uint64
	lastSeen time.Time
	lastRate time.Time
	lastOut  uint64
	rate     float64
}

// OfferPush makes an outbound sendonly session that will be a player of the local stream name.
func (e *Engine) OfferPush(ctx context.Context, name string) (Outbound, string, error) {
	if err := e.admit(ctx); err != nil {
		return nil, "", fmt.Errorf("push %q: %w", name, err)
	}
	st, ok := e.reg.Lookup(name)
	if !ok {
		return nil, "", classify(fmt.Errorf("push %q: %w", name, forwarder.ErrNotFound))
	}
	s, sock, err := e.outboundSession(e.log.With("stream", name, "role", "push"))
	if err != nil {
		return nil, "", err
	}
	tracks := pushTracks(st.Tracks())
	offer, err := sdp.BuildOffer(s.Transport(), tracks, "rtcrelay-"+randomID(4), "rtcrelay")
	if err != nil {
		s.Close(err)
		_ = sock.Close()
		return nil, "", err
	}
	o := &outbound{e: e, s: s, tracks: tracks}
	o.wait = e.newWait(func(cause error) {
		if p := o.player.Load(); p != nil {
			p.Close()
		}
		s.Close(cause)
		_ = sock.Close()
	})
	e.wg.Go(func() {
		select {
		case <-st.Done():
			o.Close(classify(forwarder.ErrPublisherStopped))
		case <-o.Done():
		}
	})
	o.stream = st
	return o, offer, nil
}

// pushTracks are the tracks a push offers for a stream's: one m-section per track, but one for all the layers
// of a simulcast stream, offered as simulcast (a=simulcast:send with their RIDs) so that the remote gets every
// layer and its players adapt on their own.
func pushTracks(infos []forwarder.TrackInfo) []sdp.Track {
	var tracks []sdp.Track
	for _, t := range infos {
		if t.RID != "" {
			if i := slices.IndexFunc(tracks, func(x sdp.Track) bool { return len(x.RIDs) > 0 }); i >= 0 {
				tracks[i].RIDs = append(tracks[i].RIDs, t.RID)
				continue
			}
			tracks = append(tracks, sdp.Track{Mid: strconv.Itoa(len(tracks)), Kind: t.Kind, Codec: t.Codec, SSRC: randomSSRC(),
				Direction: "sendonly", RIDs: []string{t.RID},
				// BuildOffer's default IDs for these two, and one for the RID every layer's packets carry.
				Extensions: []sdp.Extension{{ID: 2, URI: sdp.ExtAbsSendTime}, {ID: 4, URI: sdp.ExtSDESMid}, {ID: sdp.DefaultRTPStreamIDID, URI: sdp.ExtRTPStreamID}}})
			continue
		}
		tracks = append(tracks, sdp.Track{Mid: strconv.Itoa(len(tracks)), Kind: t.Kind, Codec: t.Codec, SSRC: randomSSRC(), Direction: "sendonly"})
	}
	return tracks
}

// OfferPull makes an outbound recvonly session that will feed the local stream name.
func (e *Engine) OfferPull(ctx context.Context, name string) (Outbound, string, error) {
	if err := CheckName(name); err != nil {
		return nil, "", fmt.Errorf("pull: %w", err)
	}
	if err := e.admit(ctx); err != nil {
		return nil, "", fmt.Errorf("pull %q: %w", name, err)
	}
	e.mu.Lock()
	p := e.streams[name]
	e.mu.Unlock()
	f := &feed{name: name, ctr: &e.feeds}
	switch {
	case p != nil && !p.pulled:
		return nil, "", fmt.Errorf("pull %q: published by someone else: %w", name, ErrNameInUse)
	case p != nil:
		f = p.feed
	}
	s, sock, err := e.outboundSession(e.log.With("stream", name, "role", "pull"))
	if err != nil {
		return nil, "", err
	}
	// The video asks for simulcast under RIDs of our own: a remote stream with layers sends us every one of them
	// (up to four), so that our players adapt on their own; one without sends a plain track.
	tracks := []sdp.Track{{Mid: "0", Kind: "audio", Direction: "recvonly"},
		{Mid: "1", Kind: "video", Direction: "recvonly", RIDs: []string{"r0", "r1", "r2", "r3"}}}
	offer, err := sdp.BuildOffer(s.Transport(), tracks, "rtcrelay-"+randomID(4), "rtcrelay")
	if err != nil {
		s.Close(err)
		_ = sock.Close()
		return nil, "", err
	}
	o := &outbound{e: e, s: s, tracks: tracks, pull: f}
	o.src = &source{s: s, close: func(cause error) { o.Close(cause) }}
	o.wait = e.newWait(func(cause error) {
		o.pull.detach(o.src)
		s.Close(cause)
		_ = sock.Close()
	})
	return o, offer, nil
}

// Accept applies the remote's answer and brings the session up in the background.
func (o *outbound) Accept(answerSDP string) error {
	ans, err := sdp.Parse(answerSDP)
	if err != nil {
		return fmt.Errorf("remote answer: %w", err)
	}
	if err := o.s.SetRemote(ans); err != nil {
		return fmt.Errorf("remote answer: %w", err)
	}
	o.e.wg.Go(func() { o.run(ans) })
	return nil
}

func (o *outbound) run(ans *sdp.Description) {
	err := o.s.Start(o.e.ctx)
	if err == nil {
		if o.pull != nil {
			err = o.e.attachPull(o, ans)
		} else {
			err = o.attachPush(ans)
		}
	}
	o.setReady(classify(err))
	if err != nil {
		o.Close(classify(err))
		return
	}
	select {
	case <-o.s.Done():
		o.Close(classify(o.s.Err()))
	case <-o.Done():
	}
}

// attachPush subscribes the outbound session as a player of the local stream, with the tracks the remote accepted.
func (o *outbound) attachPush(ans *sdp.Description) error {
	var tracks []sdp.Track
	for _, t := range o.tracks {
		for _, m := range ans.Media {
			if m.Mid == t.Mid && !m.Rejected && m.Direction != "inactive" {
				tracks = append(tracks, t)
			}
		}
	}
	st := o.stream
	p, err := st.Subscribe(o.s, tracks)
	if err != nil {
		return err
	}
	o.player.Store(p)
	o.s.SetSink(p)
	o.e.wg.Go(func() {
		select {
		case <-p.Done():
			o.Close(classify(p.Err()))
		case <-o.Done():
		}
	})
	return nil
}

// EndLocal ends the local stream fed by a pull (its players get their terminal status).
func (o *outbound) EndLocal() {
	if o.pull != nil {
		o.e.endPull(o)
	}
}

// Stats is a snapshot of the relay session's counters.
func (o *outbound) Stats() OutboundStats {
	ss := o.s.Stats()
	o.statsMu.Lock()
	defer o.statsMu.Unlock()
	now := time.Now()
	in := ss.RTPIn + ss.RTCPIn
	if in != o.lastIn {
		o.lastIn, o.lastSeen = in, now
	}
	st := OutboundStats{LastPacket: o.lastSeen}
	if o.pull != nil {
		st.Packets, st.Bytes = ss.RTPIn, ss.RTPBytesIn
	} else {
		st.Packets, st.Bytes = ss.RTPOut, ss.RTPBytesOut
		if p := o.player.Load(); p != nil {
			ps := p.Stats()
			st.RTTMs = float64(ps.RTT) / float64(time.Millisecond)
			st.Lost = uint64(ps.TotalLost)
		}
	}
	if d := now.Sub(o.lastRate); d >= time.Second {
		if !o.lastRate.IsZero() {
			o.rate = float64(st.Bytes-o.lastOut) * 8 / d.Seconds()
		}
		o.lastRate, o.lastOut = now, st.Bytes
	}
	st.Bitrate = o.rate
	return st
}

// Pulled describes a stream published here by a pull relay (it has no WebSocket session of its own).
type Pulled struct {
	Name               string
	HasAudio, HasVideo bool
	Since              time.Time
}

// PulledStreams lists the streams that pull relays publish here, sorted by name.
func (e *Engine) PulledStreams() []Pulled {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []Pulled
	for name, p := range e.streams {
		if !p.pulled {
			continue
		}
		pi := Pulled{Name: name, Since: p.since}
		for _, t := range p.stream.Tracks() {
			pi.HasAudio = pi.HasAudio || t.Kind == "audio"
			pi.HasVideo = pi.HasVideo || t.Kind == "video"
		}
		out = append(out, pi)
	}
	slices.SortFunc(out, func(a, b Pulled) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// EndPulled ends the local stream a pull relay publishes (its players get their terminal status).
func (e *Engine) EndPulled(name string) bool {
	e.mu.Lock()
	p := e.streams[name]
	e.mu.Unlock()
	if p == nil || !p.pulled {
		return false
	}
	p.stream.Close()
	return true
}
