package e2e

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rtcrelay/rtcrelay/relay"
)

// Issue 4 end to end: relays between real rtcrelay processes on loopback, the official Web SDK in headless
// Chromium publishing the frame-ID video at the origin and playing at the edge (e2e/browser/relay-driver.mjs).

const (
	relayUp      = 15 * time.Second // a relay agent reaching PROCESSED_REMOTE (ICE+DTLS under -race on 2 cores)
	relaySeconds = 3.0              // media sampling per check
)

func relayServer(t *testing.T, name string, extra ...string) *Server {
	t.Helper()
	return startServer(t, ServerOpts{Name: name, ExtraArgs: append([]string{"--server-id", name}, extra...)})
}

// relayEstablished waits until srv's agent for name is PROCESSED_REMOTE and checks its fields.
func relayEstablished(t *testing.T, srv *Server, name string, dir relay.Direction, uri string) relay.AgentInfo {
	t.Helper()
	a := waitAgent(t, srv, name, relayUp, "PROCESSED_REMOTE", hasStatus(relay.StatusProcessedRemote))
	if a.RemoteMediaSessionID == nil || *a.RemoteMediaSessionID == "" {
		t.Errorf("%s agent %s: remoteMediaSessionId %v, want non-null", srv.Opts.Name, a.LocalMediaSessionID, a.RemoteMediaSessionID)
	}
	if a.Direction != dir || a.URI != uri || a.LocalMediaSessionID == "" {
		t.Errorf("%s agent: %s", srv.Opts.Name, agentsJSON([]relay.AgentInfo{a}))
	}
	return a
}

// waitFailed waits for the agent of localName to be FAILED with a non-empty info.
func waitFailed(t *testing.T, srv *Server, localName string, within time.Duration) relay.AgentInfo {
	t.Helper()
	start := time.Now()
	a := waitAgent(t, srv, localName, within, "FAILED with info", func(a relay.AgentInfo) bool {
		return a.Status == relay.StatusFailed && a.Info != ""
	})
	t.Logf("%s agent for %q FAILED after %v: %q", srv.Opts.Name, localName, time.Since(start).Round(time.Millisecond), a.Info)
	return a
}

// TestRelayPush is issue 4's push: Chromium publishes s to A, A pushes it to B, Chromium plays it from B.
func TestRelayPush(t *testing.T) {
	requireBrowser(t)
	a, b := relayServer(t, "A"), relayServer(t, "B")
	br := startRelayBrowser(t)
	br.open("pubA", a)
	br.publish("pubA", "pub", "s")

	spec := relaySpec{URI: b.WS, LocalStreamName: "s", RemoteStreamName: "s"}
	t0 := time.Now()
	relayCall(t, a, "push", spec, 200)
	ag := relayEstablished(t, a, "s", relay.DirectionPush, b.WS)
	t.Logf("push A→B: PROCESSED_REMOTE after %v, remoteMediaSessionId %s", time.Since(t0).Round(time.Millisecond), *ag.RemoteMediaSessionID)
	if names := streamNames(t, b); !contains(names, "s") {
		t.Errorf("B /stream/find_all published names %v, want s", names)
	}

	br.open("playB", b)
	br.mustPlay("playB", "p1", "s")
	checkRelayMedia(t, br.sample(PageRef{"playB", "p1"}, PageRef{"pubA", "pub"}, relaySeconds), relaySeconds)
	if ag := waitAgent(t, a, "s", time.Second, "with packets", func(a relay.AgentInfo) bool { return a.Packets > 0 }); ag.Bytes == 0 {
		t.Errorf("agent stats: %s", agentsJSON([]relay.AgentInfo{ag}))
	} else {
		t.Logf("agent stats: %d packets, %d bytes, %.0f bit/s, rtt %.1f ms", ag.Packets, ag.Bytes, ag.Bitrate, ag.RTTMs)
	}

	t.Run("duplicate-409", func(t *testing.T) { relayCall(t, a, "push", spec, 409) })
	t.Run("unknown-stream-404", func(t *testing.T) {
		relayCall(t, a, "push", relaySpec{URI: b.WS, LocalStreamName: "nope", RemoteStreamName: "nope"}, 404)
	})
	t.Run("find", func(t *testing.T) {
		code, body := restCall(t, a.HTTP, "/rest-api/pull/find", map[string]string{"localStreamName": "s", "status": "PROCESSED_REMOTE"})
		if code != 200 || !strings.Contains(string(body), ag.LocalMediaSessionID) {
			t.Errorf("/pull/find: %d %s", code, body)
		}
		if code, body := restCall(t, a.HTTP, "/rest-api/pull/find", map[string]string{"localStreamName": "other"}); code != 404 {
			t.Errorf("/pull/find of no agent: %d %s, want 404", code, body)
		}
	})
	t.Run("closed-port-FAILED", func(t *testing.T) {
		uri := "ws://127.0.0.1:" + strconv.Itoa(closedPort(t))
		relayCall(t, a, "push", relaySpec{URI: uri, LocalStreamName: "s", RemoteStreamName: "s"}, 200)
		waitAgent(t, a, "s", 5*time.Second, "FAILED for "+uri, func(x relay.AgentInfo) bool {
			if x.URI == uri && x.Status == relay.StatusFailed && x.Info != "" {
				t.Logf("closed port: FAILED %q", x.Info)
				return true
			}
			return false
		})
	})
	t.Run("loop-refused", func(t *testing.T) {
		// B → A of the stream A pushed to B, under a name that is free on A: only loop detection can refuse it.
		loop := relaySpec{URI: a.WS, LocalStreamName: "s", RemoteStreamName: "s-loop"}
		code, body := restCall(t, b.HTTP, "/rest-api/pull/push", loop)
		switch code {
		case 409:
			t.Logf("loop B→A refused synchronously: 409 %s", body)
		case 200:
			x := waitFailed(t, b, "s", 10*time.Second)
			t.Logf("loop B→A accepted (200), then the agent FAILED: %q", x.Info)
		default:
			t.Fatalf("loop push: %d %s, want 409 (or 200 then FAILED)", code, body)
		}
		if contains(streamNames(t, a), "s-loop") {
			t.Errorf("A publishes s-loop: the loop was not refused")
		}
	})

	relayCall(t, a, "terminate", spec, 200)
	v := br.wait("playB", "p1", 10*time.Second, "FAILED", "STOPPED")
	if v.Status != "FAILED" && v.Status != "STOPPED" {
		t.Errorf("B's player after /pull/terminate on A: %s, want a terminal status", v.Status)
	}
	t.Logf("B's player after terminate: %s %q", v.Status, v.Info)
	if names := streamNames(t, b); contains(names, "s") {
		t.Errorf("B still publishes s after terminate: %v", names)
	}
	if code, body := restCall(t, a.HTTP, "/rest-api/pull/terminate", spec); code != 404 {
		t.Errorf("second terminate: %d %s, want 404", code, body)
	}
}

// TestRelayPull is issue 4's pull: B plays s from A and publishes it locally; Chromium plays it at B.
func TestRelayPull(t *testing.T) {
	requireBrowser(t)
	a, b := relayServer(t, "A"), relayServer(t, "B")
	br := startRelayBrowser(t)
	br.open("pubA", a)
	br.publish("pubA", "pub", "s")

	spec := relaySpec{URI: a.WS, LocalStreamName: "s", RemoteStreamName: "s"}
	t0 := time.Now()
	relayCall(t, b, "pull", spec, 200)
	ag := relayEstablished(t, b, "s", relay.DirectionPull, a.WS)
	t.Logf("pull B←A: PROCESSED_REMOTE after %v, remoteMediaSessionId %s", time.Since(t0).Round(time.Millisecond), *ag.RemoteMediaSessionID)
	// A stream published here by a pull agent has no WebSocket session, but /stream/find_all lists it too.
	if names := streamNames(t, b); !contains(names, "s") {
		t.Errorf("B /stream/find_all published names %v: the pulled stream s is not listed", names)
	}

	br.open("playB", b)
	br.mustPlay("playB", "p1", "s")
	checkRelayMedia(t, br.sample(PageRef{"playB", "p1"}, PageRef{"pubA", "pub"}, relaySeconds), relaySeconds)

	t.Run("duplicate-409", func(t *testing.T) { relayCall(t, b, "pull", spec, 409) })
	t.Run("local-name-in-use-409", func(t *testing.T) {
		relayCall(t, b, "pull", relaySpec{URI: a.WS, LocalStreamName: "s", RemoteStreamName: "other"}, 409)
	})
	t.Run("remote-not-found-FAILED", func(t *testing.T) {
		relayCall(t, b, "pull", relaySpec{URI: a.WS, LocalStreamName: "s-missing", RemoteStreamName: "missing"}, 200)
		if x := waitFailed(t, b, "s-missing", 5*time.Second); !strings.Contains(x.Info, "not found") {
			t.Errorf("pull of a missing stream: info %q, want Stream not found", x.Info)
		}
	})
	t.Run("closed-port-FAILED", func(t *testing.T) {
		uri := "ws://127.0.0.1:" + strconv.Itoa(closedPort(t))
		relayCall(t, b, "pull", relaySpec{URI: uri, LocalStreamName: "s-closed", RemoteStreamName: "s"}, 200)
		waitFailed(t, b, "s-closed", 5*time.Second)
	})

	relayCall(t, b, "terminate", spec, 200)
	v := br.wait("playB", "p1", 10*time.Second, "FAILED", "STOPPED")
	if v.Status != "FAILED" && v.Status != "STOPPED" {
		t.Errorf("B's player after /pull/terminate on B: %s, want a terminal status", v.Status)
	}
	t.Logf("B's player after terminate: %s %q", v.Status, v.Info)
	// A keeps publishing; its player (B's agent) is gone.
	if st := br.status("pubA", "pub"); st.Status != "PUBLISHING" {
		t.Errorf("A's publisher after the pull ended: %s %q", st.Status, st.Info)
	}
}

// TestRelayCascade pushes A → B → C and plays at C.
func TestRelayCascade(t *testing.T) {
	requireBrowser(t)
	a, b, c := relayServer(t, "A"), relayServer(t, "B"), relayServer(t, "C")
	br := startRelayBrowser(t)
	br.open("pubA", a)
	br.publish("pubA", "pub", "s")
	relayCall(t, a, "push", relaySpec{URI: b.WS, LocalStreamName: "s", RemoteStreamName: "s"}, 200)
	relayEstablished(t, a, "s", relay.DirectionPush, b.WS)
	relayCall(t, b, "push", relaySpec{URI: c.WS, LocalStreamName: "s", RemoteStreamName: "s"}, 200)
	relayEstablished(t, b, "s", relay.DirectionPush, c.WS)
	br.open("playC", c)
	br.mustPlay("playC", "p1", "s")
	checkRelayMedia(t, br.sample(PageRef{"playC", "p1"}, PageRef{"pubA", "pub"}, relaySeconds), relaySeconds)

	t.Run("loop-C-to-A-refused", func(t *testing.T) {
		code, body := restCall(t, c.HTTP, "/rest-api/pull/push", relaySpec{URI: a.WS, LocalStreamName: "s", RemoteStreamName: "s-loop"})
		switch code {
		case 409:
			t.Logf("loop C→A refused synchronously: 409 %s", body)
		case 200:
			t.Logf("loop C→A accepted (200), then the agent FAILED: %q", waitFailed(t, c, "s", 10*time.Second).Info)
		default:
			t.Fatalf("loop push: %d %s", code, body)
		}
	})

	// The origin's publisher stops: the push chain ends and C's player gets a terminal status.
	br.do(map[string]any{"do": "stop", "page": "pubA", "handle": "pub"})
	if v := br.wait("playC", "p1", 15*time.Second, "FAILED", "STOPPED"); v.Status != "FAILED" && v.Status != "STOPPED" {
		t.Errorf("C's player after A's publisher stopped: %s", v.Status)
	}
}

// TestRelayWSS pushes over wss:// to a server with a self-signed certificate the pusher trusts via --agent-ca.
func TestRelayWSS(t *testing.T) {
	requireBrowser(t)
	cert, key := selfSignedCert(t, t.TempDir())
	b := startServer(t, ServerOpts{Name: "B", TLSCert: cert, TLSKey: key, ExtraArgs: []string{"--server-id", "B"}})
	a := relayServer(t, "A", "--wcs-agent-ssl", "--agent-ca", cert)
	noSSL := relayServer(t, "A-nossl")
	br := startRelayBrowser(t)
	br.open("pubA", a)
	br.publish("pubA", "pub", "s")
	uri := "wss://127.0.0.1:" + strconv.Itoa(b.WSSPort)

	relayCall(t, a, "push", relaySpec{URI: uri, LocalStreamName: "s", RemoteStreamName: "s"}, 200)
	relayEstablished(t, a, "s", relay.DirectionPush, uri)
	br.open("playB", b)
	br.mustPlay("playB", "p1", "s")
	checkRelayMedia(t, br.sample(PageRef{"playB", "p1"}, PageRef{"pubA", "pub"}, 2), 2)

	t.Run("without-wcs-agent-ssl-400", func(t *testing.T) {
		br.open("pubN", noSSL)
		br.publish("pubN", "pub", "n")
		code, body := restCall(t, noSSL.HTTP, "/rest-api/pull/push", relaySpec{URI: uri, LocalStreamName: "n", RemoteStreamName: "n"})
		if code != 400 {
			t.Errorf("wss:// push without --wcs-agent-ssl: %d %s, want 400", code, body)
		}
	})
}

// TestRelayReconnectPush kills the push target B and restarts it on the same ports: A's agent reconnects and a
// new player on B plays.
func TestRelayReconnectPush(t *testing.T) {
	requireBrowser(t)
	a, b := relayServer(t, "A"), relayServer(t, "B")
	br := startRelayBrowser(t)
	br.open("pubA", a)
	br.publish("pubA", "pub", "s")
	relayCall(t, a, "push", relaySpec{URI: b.WS, LocalStreamName: "s", RemoteStreamName: "s"}, 200)
	before := relayEstablished(t, a, "s", relay.DirectionPush, b.WS)
	br.open("playB", b)
	br.mustPlay("playB", "p1", "s")

	b.Kill(t)
	killed := time.Now()
	waitAgent(t, a, "s", 10*time.Second, "to notice B is gone", func(x relay.AgentInfo) bool {
		return x.Status != relay.StatusProcessedRemote
	})
	if v := br.wait("playB", "p1", 10*time.Second, "FAILED"); v.Status != "FAILED" {
		t.Logf("old player on B after the kill: %s", v.Status) // the SDK may report only the session
	}
	b.Restart(t)
	after := waitAgent(t, a, "s", relayUp, "PROCESSED_REMOTE again with more reconnects", func(x relay.AgentInfo) bool {
		return x.Status == relay.StatusProcessedRemote && x.Reconnects > before.Reconnects
	})
	t.Logf("push re-established %v after the kill: reconnects %d → %d, remoteMediaSessionId %s → %s",
		time.Since(killed).Round(time.Millisecond), before.Reconnects, after.Reconnects, *before.RemoteMediaSessionID, *after.RemoteMediaSessionID)
	if after.LocalMediaSessionID != before.LocalMediaSessionID {
		t.Errorf("the agent was replaced (%s → %s), want the same agent reconnecting", before.LocalMediaSessionID, after.LocalMediaSessionID)
	}
	br.open("playB2", b)
	br.mustPlay("playB2", "p2", "s")
	checkRelayMedia(t, br.sample(PageRef{"playB2", "p2"}, PageRef{"pubA", "pub"}, 2), 2)
}

// TestRelayReconnectPull: B pulls s from A and a browser plays it at B; A is killed and restarted, and s is
// published there again. B's agent reconnects (retrying through "Stream not found") and B's existing player
// resumes without reconnecting.
func TestRelayReconnectPull(t *testing.T) {
	requireBrowser(t)
	a, b := relayServer(t, "A"), relayServer(t, "B")
	br := startRelayBrowser(t)
	br.open("pubA", a)
	br.publish("pubA", "pub", "s")
	relayCall(t, b, "pull", relaySpec{URI: a.WS, LocalStreamName: "s", RemoteStreamName: "s"}, 200)
	before := relayEstablished(t, b, "s", relay.DirectionPull, a.WS)
	br.open("playB", b)
	br.mustPlay("playB", "p1", "s")
	checkRelayMedia(t, br.sample(PageRef{"playB", "p1"}, PageRef{"pubA", "pub"}, 2), 2)

	a.Kill(t)
	killed := time.Now()
	waitAgent(t, b, "s", 10*time.Second, "to notice A is gone", func(x relay.AgentInfo) bool {
		return x.Status != relay.StatusProcessedRemote
	})
	a.Restart(t)
	// A is back but s is not published there yet: the agent keeps retrying through "Stream not found".
	nf := waitAgent(t, b, "s", 10*time.Second, `retrying through "Stream not found"`, func(x relay.AgentInfo) bool {
		return strings.Contains(x.Info, "Stream not found")
	})
	t.Logf("while A has no s: B's agent %s %q, reconnects %d", nf.Status, nf.Info, nf.Reconnects)
	gapFrames := br.framesDecoded("playB", "p1")
	if v := br.status("playB", "p1"); v.Status != "PLAYING" {
		t.Fatalf("B's player during the gap: %s %q, want PLAYING (the local stream must not end)", v.Status, v.Info)
	}

	br.open("pubA2", a)
	br.publish("pubA2", "pub", "s")
	after := waitAgent(t, b, "s", relayUp, "PROCESSED_REMOTE again", hasStatus(relay.StatusProcessedRemote))
	t.Logf("pull re-established %v after the kill: reconnects %d → %d", time.Since(killed).Round(time.Millisecond), before.Reconnects, after.Reconnects)
	if after.Reconnects <= before.Reconnects || after.LocalMediaSessionID != before.LocalMediaSessionID {
		t.Errorf("agent before %s, after %s: want the same agent with more reconnects",
			agentsJSON([]relay.AgentInfo{before}), agentsJSON([]relay.AgentInfo{after}))
	}
	s := br.sample(PageRef{"playB", "p1"}, PageRef{"pubA2", "pub"}, 3)
	t.Logf("framesDecoded during the gap %d, after %v", gapFrames, s.FramesDecoded)
	if s.FramesDecoded[1] <= gapFrames {
		t.Errorf("B's existing player did not resume: framesDecoded %d at the gap, %v after", gapFrames, s.FramesDecoded)
	}
	checkRelayMedia(t, s, 3)
	v := br.status("playB", "p1")
	if v.Status != "PLAYING" {
		t.Errorf("B's player after the reconnect: %s", v.Status)
	}
	for _, h := range v.History {
		if h.Status != "PENDING" && h.Status != "PLAYING" {
			t.Errorf("B's player history %+v: it must not have left PLAYING", v.History)
			break
		}
	}
}
