package signaling

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

func TestHandshake(t *testing.T) {
	_, hs, _ := newTestServer(t, ServerConfig{})
	c := dialRaw(t, hs, false)
	ud := c.handshake()
	sid, _ := ud["sessionId"].(string)
	if ud["status"] != "ESTABLISHED" || ud["appKey"] != "defaultApp" || ud["clientVersion"] != "2.0" {
		t.Fatalf("getUserData %v", ud)
	}
	if parts := strings.Split(sid, "/"); len(parts) != 3 || parts[0] != "" || !strings.HasPrefix(parts[1], "127.0.0.1:") || !strings.HasPrefix(parts[2], "127.0.0.1:") {
		t.Fatalf("sessionId %q, want /client:port/server:port", sid)
	}
	if ud["authToken"] != sid {
		t.Fatalf("authToken %v, want %q", ud["authToken"], sid)
	}
	if _, ok := ud["webRTCMetricsServerDescription"]; ok {
		t.Fatal("getUserData advertises metrics")
	}
	if custom, _ := ud["custom"].(map[string]any); custom["k"] != "v" {
		t.Fatalf("custom not echoed: %v", ud["custom"])
	}
	// A repeated connection is ignored.
	c.send(MsgConnection, map[string]any{"appKey": "x"})
	c.send(MsgPing, nil)
	c.expect(MsgPong)
}

func TestPingPong(t *testing.T) {
	srv, hs, _ := newTestServer(t, ServerConfig{PingInterval: 10 * time.Millisecond, MaxMissedPongs: 20})
	c := dialRaw(t, hs, false)
	c.handshake()
	waitFor(t, "server pings", func() bool { c.mu.Lock(); defer c.mu.Unlock(); return c.pings >= 10 })
	if got := srv.Stats().Active; got != 1 {
		t.Fatalf("active connections %d, want 1 while pongs are answered", got)
	}
	// Client JSON ping → pong; WebSocket ping frame → pong frame.
	c.send(MsgPing, nil)
	c.expect(MsgPong)
	c.writeFrame(ws.OpPing, []byte("hi"))
	select {
	case p := <-c.pongs:
		if string(p) != "hi" {
			t.Fatalf("pong frame %q", p)
		}
	case <-time.After(waitTimeout):
		t.Fatal("no pong frame")
	}
}

func TestMissedPongsClose(t *testing.T) {
	srv, hs, _ := newTestServer(t, ServerConfig{PingInterval: 10 * time.Millisecond, MaxMissedPongs: 3})
	c := dialRaw(t, hs, true)
	c.handshake()
	if code := c.expectClosed(); code != ws.StatusGoingAway {
		t.Fatalf("close code %d", code)
	}
	c.mu.Lock()
	pings := c.pings
	c.mu.Unlock()
	if pings != 3 {
		t.Fatalf("%d pings before close, want 3", pings)
	}
	waitFor(t, "connection removed", func() bool { return srv.Stats().Active == 0 })
	if srv.Stats().MissedPong != 1 {
		t.Fatalf("stats %+v", srv.Stats())
	}
}

func TestPublishPlay(t *testing.T) {
	srv, hs, fe := newTestServer(t, ServerConfig{})
	pub := dialRaw(t, hs, false)
	pub.handshake()
	pub.publish("p1", "s", "offer-pub")
	if sdp := pub.expectSDP("p1"); sdp != "answer-to:offer-pub" {
		t.Fatalf("answer %q", sdp)
	}
	st := pub.expectStatus("p1", StatusPublishing, "")
	if st["name"] != "s" || st["published"] != true || st["hasVideo"] != true || st["mediaProvider"] != "WebRTC" {
		t.Fatalf("status does not echo the request: %v", st)
	}
	if a, _ := st["audioState"].(map[string]any); a["muted"] != false {
		t.Fatalf("audioState %v", st["audioState"])
	}
	if _, ok := st["sdp"]; ok {
		t.Fatal("status echoes the sdp")
	}

	ply := dialRaw(t, hs, false)
	ply.handshake()
	ply.play("v1", "s", "offer-play")
	if sdp := ply.expectSDP("v1"); sdp != "answer-to:offer-play" {
		t.Fatalf("answer %q", sdp)
	}
	ply.expectStatus("v1", StatusPlaying, "")

	streams := srv.Streams(nil)
	if len(streams) != 2 {
		t.Fatalf("streams %+v", streams)
	}
	pubOnly := true
	if got := srv.Streams(&StreamFilter{Published: &pubOnly}); len(got) != 1 || got[0].Name != "s" || got[0].Status != StatusPublishing || got[0].MediaType != "publish" || got[0].AppKey != "defaultApp" {
		t.Fatalf("published streams %+v", got)
	}
	if conns := srv.Connections(); len(conns) != 2 || conns[0].AppKey != "defaultApp" || conns[0].Streams != 1 {
		t.Fatalf("connections %+v", conns)
	}

	// Stop the player: STOPPED "Stopped by user", then unpublish: UNPUBLISHED.
	ply.send(MsgStopStream, map[string]any{"mediaSessionId": "v1", "name": "s", "published": false, "status": "PLAYING"})
	ply.expectStatus("v1", StatusStopped, InfoUser)
	pub.send(MsgUnPublishStream, map[string]any{"mediaSessionId": "p1", "name": "s", "published": true, "status": "PUBLISHING"})
	pub.expectStatus("p1", StatusUnpublished, InfoPublisherStop)
	waitFor(t, "media sessions closed", func() bool { return fe.open() == 0 })
	if got := srv.Streams(nil); len(got) != 0 {
		t.Fatalf("streams left %+v", got)
	}
	// Stop of an unknown id is still confirmed.
	ply.send(MsgStopStream, map[string]any{"mediaSessionId": "gone"})
	ply.expectStatus("gone", StatusStopped, InfoUser)
}

func TestFailures(t *testing.T) {
	_, hs, _ := newTestServer(t, ServerConfig{ReadyTimeout: 50 * time.Millisecond})
	owner := dialRaw(t, hs, false)
	owner.handshake()
	owner.publish("p1", "taken", "offer")
	owner.expectSDP("p1")
	owner.expectStatus("p1", StatusPublishing, "")

	tests := []struct {
		name    string
		publish bool
		id      string
		stream  string
		sdp     string
		info    string
		sdpSent bool
	}{
		{name: "name in use", publish: true, id: "a", stream: "taken", sdp: "offer", info: InfoNameInUse},
		{name: "not found", id: "b", stream: "nope", sdp: "offer", info: InfoStreamNotFound},
		{name: "no common codecs publish", publish: true, id: "c", stream: "x", sdp: "nocodec", info: InfoNoCommonCodecs},
		{name: "no common codecs play", id: "d", stream: "taken", sdp: "nocodec", info: InfoNoCommonCodecs},
		{name: "ICE stage error", publish: true, id: "e", stream: "y", sdp: "ice-timeout", info: InfoICETimeout, sdpSent: true},
		{name: "ready timeout", id: "f", stream: "taken", sdp: "hold", info: InfoICETimeout, sdpSent: true},
		{name: "media session id null", publish: true, id: "", stream: "z", sdp: "offer", info: InfoMediaSessionIDNull},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, hs, false)
			c.handshake()
			if tc.publish {
				c.publish(tc.id, tc.stream, tc.sdp)
			} else {
				c.play(tc.id, tc.stream, tc.sdp)
			}
			if tc.sdpSent {
				c.expectSDP(tc.id)
			}
			st := c.expectStatus(tc.id, StatusFailed, tc.info)
			if st["name"] != tc.stream {
				t.Fatalf("status does not echo name: %v", st)
			}
		})
	}
	// The refused second publisher did not disturb the owner.
	owner.quiet(50 * time.Millisecond)

	t.Run("media session id in use", func(t *testing.T) {
		owner.publish("p1", "other", "offer")
		owner.expectStatus("p1", StatusFailed, InfoMediaSessionIDInUse)
	})
	t.Run("before connection", func(t *testing.T) {
		c := dialRaw(t, hs, false)
		c.publish("q", "early", "offer")
		c.expectStatus("q", StatusFailed, InfoSessionNotReady)
	})
}

func TestPublisherEndsPlayers(t *testing.T) {
	for _, how := range []string{"unpublish", "socket close", "media failure"} {
		t.Run(how, func(t *testing.T) {
			srv, hs, fe := newTestServer(t, ServerConfig{})
			pub := dialRaw(t, hs, false)
			pub.handshake()
			sdp := "offer"
			if how == "media failure" {
				sdp = "rtp-fail"
			}
			pub.publish("p1", "s", sdp)
			pub.expectSDP("p1")
			if how == "media failure" {
				// The fake ends the session right after Ready; a player may
				// not join in time, so only check the publisher.
				pub.expectStatus("p1", StatusPublishing, "")
				pub.expectStatus("p1", StatusFailed, InfoICEError)
				return
			}
			pub.expectStatus("p1", StatusPublishing, "")
			var players []*rawClient
			for i, id := range []string{"v1", "v2"} {
				c := dialRaw(t, hs, false)
				c.handshake()
				c.play(id, "s", "offer")
				c.expectSDP(id)
				c.expectStatus(id, StatusPlaying, "")
				players = append(players, c)
				_ = i
			}
			switch how {
			case "unpublish":
				pub.send(MsgUnPublishStream, map[string]any{"mediaSessionId": "p1", "name": "s"})
				pub.expectStatus("p1", StatusUnpublished, InfoPublisherStop)
			case "socket close":
				_ = pub.nc.Close()
			}
			for i, c := range players {
				id := []string{"v1", "v2"}[i]
				c.expectStatus(id, StatusFailed, InfoPublisherStop)
				c.quiet(20 * time.Millisecond)
			}
			waitFor(t, "all media closed", func() bool { return fe.open() == 0 })
			waitFor(t, "no streams", func() bool { return len(srv.Streams(nil)) == 0 })
		})
	}
}

func TestSocketCloseEndsStreams(t *testing.T) {
	srv, hs, fe := newTestServer(t, ServerConfig{})
	pub := dialRaw(t, hs, false)
	pub.handshake()
	pub.publish("p1", "s", "offer")
	pub.expectSDP("p1")
	pub.expectStatus("p1", StatusPublishing, "")
	ply := dialRaw(t, hs, false)
	ply.handshake()
	ply.play("v1", "s", "offer")
	ply.expectSDP("v1")
	ply.expectStatus("v1", StatusPlaying, "")
	// A player leaving ends only its own stream.
	_ = ply.nc.Close()
	waitFor(t, "player stream gone", func() bool { return len(srv.Streams(nil)) == 1 })
	waitFor(t, "player media closed", func() bool { return fe.open() == 1 })
	pub.quiet(20 * time.Millisecond)
	// A pending (not yet ready) stream also ends.
	pub.publish("p2", "held", "hold")
	pub.expectSDP("p2")
	_ = pub.nc.Close()
	waitFor(t, "all media closed", func() bool { return fe.open() == 0 })
	waitFor(t, "no connections", func() bool { return srv.Stats().Active == 0 })
}

func TestStreamEvents(t *testing.T) {
	srv, hs, _ := newTestServer(t, ServerConfig{})
	pub := dialRaw(t, hs, false)
	pub.handshake()
	pub.publish("p1", "s", "offer")
	pub.expectSDP("p1")
	pub.expectStatus("p1", StatusPublishing, "")
	ply := dialRaw(t, hs, false)
	ply.handshake()
	ply.play("v1", "s", "offer")
	ply.expectSDP("v1")
	ply.expectStatus("v1", StatusPlaying, "")

	pub.send(MsgSendStreamEvent, map[string]any{"mediaSessionId": "p1", "type": "audioMuted"})
	ev := ply.expect(MsgNotifyStreamEvent)
	if ev["mediaSessionId"] != "v1" || ev["type"] != "audioMuted" || ev["payload"].(map[string]any)["streamName"] != "s" {
		t.Fatalf("event %v", ev)
	}
	pub.send(MsgSendStreamEvent, map[string]any{"mediaSessionId": "p1", "type": "data", "payload": map[string]any{"x": 1.0}})
	ev = ply.expect(MsgNotifyStreamEvent)
	if ev["mediaSessionId"] != "v1" || ev["type"] != "data" || ev["payload"].(map[string]any)["x"] != 1.0 {
		t.Fatalf("event %v", ev)
	}
	// A player joining after the mute sees audioState muted.
	late := dialRaw(t, hs, false)
	late.handshake()
	late.play("v2", "s", "offer")
	late.expectSDP("v2")
	st := late.expectStatus("v2", StatusPlaying, "")
	if st["audioState"].(map[string]any)["muted"] != true {
		t.Fatalf("late player audioState %v", st["audioState"])
	}
	// Events from a player or an unknown id go nowhere.
	ply.send(MsgSendStreamEvent, map[string]any{"mediaSessionId": "v1", "type": "data"})
	pub.quiet(20 * time.Millisecond)
	// REST-side event.
	if n := srv.SendStreamEvent("s", "data", []byte(`{"r":2}`)); n != 2 {
		t.Fatalf("SendStreamEvent reached %d players", n)
	}
	ply.expect(MsgNotifyStreamEvent)
	late.expect(MsgNotifyStreamEvent)
}

func TestAvailableSendDataSnapshot(t *testing.T) {
	_, hs, _ := newTestServer(t, ServerConfig{})
	c := dialRaw(t, hs, false)
	c.handshake()
	c.send(MsgAvailableStream, map[string]any{"mediaSessionId": "a1", "name": "s"})
	if v := c.expect(MsgAvailableStream); v["id"] != "a1" || v["status"] != "false" || v["info"] != InfoStreamNotFound {
		t.Fatalf("availableStream %v", v)
	}
	c.publish("p1", "s", "offer")
	c.expectSDP("p1")
	c.expectStatus("p1", StatusPublishing, "")
	c.send(MsgAvailableStream, map[string]any{"mediaSessionId": "a2", "name": "s"})
	if v := c.expect(MsgAvailableStream); v["id"] != "a2" || v["status"] != "true" {
		t.Fatalf("availableStream %v", v)
	}
	c.send(MsgSendData, map[string]any{"operationId": "op-1", "payload": map[string]any{"a": 1}})
	if v := c.expect(MsgDataStatusEvent); v["operationId"] != "op-1" || v["status"] != "ACCEPTED" {
		t.Fatalf("DataStatusEvent %v", v)
	}
	c.send(MsgSnapshot, map[string]any{"mediaSessionId": "p1", "name": "s"})
	if v := c.expect(MsgNotifyStreamEvent); v["type"] != "snapshotFailed" || v["mediaSessionId"] != "p1" {
		t.Fatalf("snapshot reply %v", v)
	}
}

func TestBadInput(t *testing.T) {
	srv, hs, _ := newTestServer(t, ServerConfig{MaxMessageSize: 4096})
	c := dialRaw(t, hs, false)
	c.handshake()
	alive := func() {
		t.Helper()
		c.send(MsgPing, nil)
		c.expect(MsgPong)
	}
	// Every class of bad message gets a fail naming the problem within a second, and the session lives on.
	for _, tc := range []struct{ raw, api, info string }{
		{`{not json`, "unknown", "Malformed message: "},
		{`[]`, "unknown", "Malformed message: "},
		{`{"message":42}`, "unknown", "Malformed message: "},
		{`{"data":[{}]}`, "unknown", "Malformed message: "},
		{`{"message":"frobnicate","data":[{}]}`, "frobnicate", "Unknown message: frobnicate"},
		{`{"message":"publishStream"}`, "publishStream", "Malformed publishStream: no data object"},
		{`{"message":"publishStream","data":[null]}`, "publishStream", "Malformed publishStream: no data object"},
		{`{"message":"publishStream","data":["str"]}`, "publishStream", "Malformed publishStream: "},
		{`{"message":"playStream","data":[{"mediaSessionId":5}]}`, "playStream", "Malformed playStream: "},
		{`{"message":"unPublishStream"}`, "unPublishStream", "Malformed unPublishStream: no data object"},
		{`{"message":"sendStreamEvent","data":[]}`, "sendStreamEvent", "Malformed sendStreamEvent"},
		{`{"message":"availableStream","data":[1]}`, "availableStream", "Malformed availableStream: "},
		{`{"message":"sendData"}`, "sendData", "Malformed sendData: no data object"},
		{`{"message":"snapshot","data":[[]]}`, "snapshot", "Malformed snapshot: "},
	} {
		start := time.Now()
		c.sendRaw(tc.raw)
		f := c.expect(MsgFail)
		if f["apiMethod"] != tc.api || !strings.HasPrefix(fmt.Sprint(f["info"]), tc.info) || time.Since(start) > time.Second {
			t.Fatalf("%s: fail %v after %v, want apiMethod %q and info %q…", tc.raw, f, time.Since(start), tc.api, tc.info)
		}
		alive()
	}
	// Messages of the SDK that rtcrelay does not act on are not errors.
	c.sendRaw(`{"message":"pushLogs","data":[{"logs":"x"}]}`)
	alive()
	// A data-less ping is still answered.
	c.sendRaw(`{"message":"ping"}`)
	c.expect(MsgPong)
	c.writeFrame(ws.OpBinary, []byte{1, 2, 3})
	if f := c.expect(MsgFail); !strings.Contains(fmt.Sprint(f["info"]), "Binary frames") {
		t.Fatalf("binary frame: %v", f)
	}
	alive()
	st := srv.Stats()
	if st.Malformed < 8 || st.Unknown != 1 || st.Binary != 1 {
		t.Fatalf("stats %+v", st)
	}
	// Oversized → close 1009, server still serves others.
	c.sendRaw(`{"message":"ping","data":[null],"pad":"` + strings.Repeat("x", 5000) + `"}`)
	if code := c.expectClosed(); code != ws.StatusMessageTooBig {
		t.Fatalf("close code %d", code)
	}
	if srv.Stats().Oversized != 1 {
		t.Fatalf("stats %+v", srv.Stats())
	}
	d := dialRaw(t, hs, false)
	d.handshake()
}

func TestTerminateAndShutdown(t *testing.T) {
	srv, hs, fe := newTestServer(t, ServerConfig{})
	pub := dialRaw(t, hs, false)
	ud := pub.handshake()
	pub.publish("p1", "s", "offer")
	pub.expectSDP("p1")
	pub.expectStatus("p1", StatusPublishing, "")
	pub.publish("p2", "t", "offer")
	pub.expectSDP("p2")
	pub.expectStatus("p2", StatusPublishing, "")
	ply := dialRaw(t, hs, false)
	ply.handshake()
	ply.play("v1", "s", "offer")
	ply.expectSDP("v1")
	ply.expectStatus("v1", StatusPlaying, "")

	if n := srv.TerminateStream(StreamFilter{Name: "nothing"}, ""); n != 0 {
		t.Fatalf("terminated %d", n)
	}
	if n := srv.TerminateStream(StreamFilter{MediaSessionID: "p1"}, ""); n != 1 {
		t.Fatalf("terminated %d", n)
	}
	pub.expectStatus("p1", StatusUnpublished, InfoRESTTerminate)
	ply.expectStatus("v1", StatusFailed, InfoPublisherStop)

	ply.play("v2", "t", "offer")
	ply.expectSDP("v2")
	ply.expectStatus("v2", StatusPlaying, "")
	if srv.Terminate("/no/such") {
		t.Fatal("terminated unknown session")
	}
	ply2 := dialRaw(t, hs, false)
	ud2 := ply2.handshake()
	if !srv.Terminate(ud2["sessionId"].(string)) {
		t.Fatal("terminate session")
	}
	ply2.expectClosed()
	_ = ud

	ctx, cancel := contextWithTimeout()
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	pub.expectStatus("p2", StatusUnpublished, InfoRequestedShutdown)
	ply.expectStatus("v2", StatusStopped, InfoRequestedShutdown)
	if code := pub.expectClosed(); code != ws.StatusGoingAway {
		t.Fatalf("close code %d", code)
	}
	ply.expectClosed()
	if fe.open() != 0 {
		t.Fatal("media sessions left open")
	}
}

// TestStopRacingTransportClose: the Web SDK sends unPublishStream and closes its peer connection at once, so the
// media session may end first; the client must still get UNPUBLISHED, not FAILED.
func TestStopRacingTransportClose(t *testing.T) {
	_, hs, _ := newTestServer(t, ServerConfig{})
	pub := dialRaw(t, hs, false)
	pub.handshake()
	pub.publish("p1", "s", "rtp-fail") // the fake's media session ends right after Ready
	pub.expectSDP("p1")
	pub.expectStatus("p1", StatusPublishing, "")
	pub.send(MsgUnPublishStream, map[string]any{"mediaSessionId": "p1", "name": "s"})
	pub.expectStatus("p1", StatusUnpublished, InfoPublisherStop)
}

// TestTooManyBadMessages: a session that keeps sending what the server cannot act on is answered maxBadMessages
// times, then closed with 1008.
func TestTooManyBadMessages(t *testing.T) {
	srv, hs, _ := newTestServer(t, ServerConfig{})
	c := dialRaw(t, hs, false)
	c.handshake()
	for range maxBadMessages {
		c.sendRaw(`{"message":"frobnicate","data":[{}]}`)
		c.expect(MsgFail)
	}
	c.sendRaw(`{not json`)
	if code := c.expectClosed(); code != ws.StatusPolicyViolation {
		t.Fatalf("close code %d, want 1008", code)
	}
	if srv.Stats().BadClosed != 1 {
		t.Fatalf("stats %+v", srv.Stats())
	}
}

// TestHandshakeTimeout: a session that sends no `connection` is closed with 1008 after HandshakeTimeout.
func TestHandshakeTimeout(t *testing.T) {
	srv, hs, _ := newTestServer(t, ServerConfig{HandshakeTimeout: 200 * time.Millisecond})
	c := dialRaw(t, hs, false)
	if code := c.expectClosed(); code != ws.StatusPolicyViolation {
		t.Fatalf("close code %d, want 1008", code)
	}
	if srv.Stats().HandshakeTimeouts != 1 {
		t.Fatalf("stats %+v", srv.Stats())
	}
}
