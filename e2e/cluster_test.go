package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/rtcrelay/rtcrelay/relay"
)

// Issue 9 end to end: rtcrelay processes sharing a real Redis directory, the official Web SDK in Chromium.

// TestClusterEdgePull: a browser publishes s on origin A; browsers play s on edges B and C without any REST call.
// Each edge pulls s once from A (two players at B share one pull); frames decode at both edges.
func TestClusterEdgePull(t *testing.T) {
	requireBrowser(t)
	r := startRedis(t)
	a, b, c := clusterServer(t, "A", r), clusterServer(t, "B", r), clusterServer(t, "C", r)
	br := startRelayBrowser(t)
	br.open("pubA", a)
	br.publish("pubA", "pub", "s")
	waitDirectory(t, b, "s", 10*time.Second)

	br.open("playB", b)
	t0 := time.Now()
	br.mustPlay("playB", "p1", "s")
	cold := time.Since(t0)
	first := waitFrames(t, br, "playB", "p1", 1, 10*time.Second)
	t.Logf("cold edge pull: PLAYING after %v, first decoded frame after %v", cold.Round(time.Millisecond), (cold + first).Round(time.Millisecond))
	br.mustPlay("playB", "p2", "s")
	br.open("playC", c)
	br.mustPlay("playC", "p1", "s")

	checkRelayMedia(t, br.sample(PageRef{"playB", "p1"}, PageRef{"pubA", "pub"}, relaySeconds), relaySeconds)
	checkRelayMedia(t, br.sample(PageRef{"playB", "p2"}, PageRef{"pubA", "pub"}, relaySeconds), relaySeconds)
	checkRelayMedia(t, br.sample(PageRef{"playC", "p1"}, PageRef{"pubA", "pub"}, relaySeconds), relaySeconds)

	if n := playersOf(t, a, "s"); n != 2 {
		t.Errorf("origin A has %d players of s, want exactly one pull per edge (2)", n)
	}
	for _, edge := range []*Server{b, c} {
		ag := waitAgent(t, edge, "s", 5*time.Second, "an edge pull", hasStatus(relay.StatusProcessedRemote))
		if ag.Origin != "directory" || ag.Direction != relay.DirectionPull || ag.URI != a.WS {
			t.Errorf("%s agent %s, want a pull from %s with origin directory", edge.Opts.Name, agentsJSON([]relay.AgentInfo{ag}), a.WS)
		}
		if n := len(agents(t, edge)); n != 1 {
			t.Errorf("%s has %d agents, want 1", edge.Opts.Name, n)
		}
	}

	// The pull ends after its last player (idle timeout 3 s in these servers).
	br.stop("playC", "p1")
	waitNoAgent(t, c, "s", 10*time.Second)
	if n := playersOf(t, a, "s"); n != 1 {
		t.Errorf("after C's idle timeout, A has %d players of s, want 1", n)
	}
}

// TestClusterRedisOutage: Redis dies during playback at an edge: playback goes on, local plays still work; when
// Redis is back, on-demand pulls work again.
func TestClusterRedisOutage(t *testing.T) {
	requireBrowser(t)
	r := startRedis(t)
	a, b := clusterServer(t, "A", r), clusterServer(t, "B", r)
	br := startRelayBrowser(t)
	br.open("pubA", a)
	br.publish("pubA", "pub", "s")
	waitDirectory(t, b, "s", 10*time.Second)
	br.open("playB", b)
	br.mustPlay("playB", "p1", "s")

	r.Kill()
	waitHealth(t, b, 10*time.Second, func(h health) bool { return h.Directory.Status != "ok" })
	checkRelayMedia(t, br.sample(PageRef{"playB", "p1"}, PageRef{"pubA", "pub"}, relaySeconds), relaySeconds)
	// A local publish and play on the edge work without the directory.
	br.open("pubB", b)
	br.publish("pubB", "pub", "local")
	br.mustPlay("playB", "p2", "local")
	if v := br.status("playB", "p1"); v.Status != "PLAYING" {
		t.Errorf("edge player during the outage: %s %q", v.Status, v.Info)
	}

	r.Restart()
	waitHealth(t, b, 15*time.Second, func(h health) bool { return h.Directory.Status == "ok" })
	br.publish("pubA", "pub2", "s2")
	waitDirectory(t, b, "s2", 15*time.Second)
	br.mustPlay("playB", "p3", "s2")
	checkRelayMedia(t, br.sample(PageRef{"playB", "p3"}, PageRef{"pubA", "pub2"}, relaySeconds), relaySeconds)
}

// TestHitlessPush: A pushes s to B through a TCP proxy; the proxy drops the relay's WebSocket and refuses it for
// 2 s. B keeps s for its publisher grace, A's agent reconnects and takes the stream over: B's Chromium player is
// never re-signaled (it stays PLAYING) and frames resume within a second of the link returning.
func TestHitlessPush(t *testing.T) {
	requireBrowser(t)
	a, b := relayServer(t, "A"), relayServer(t, "B")
	proxy := startProxy(t, strings.TrimPrefix(b.WS, "ws://"))
	br := startRelayBrowser(t)
	br.open("pubA", a)
	br.publish("pubA", "pub", "s")
	relayCall(t, a, "push", relaySpec{URI: proxy.URI(), LocalStreamName: "s", RemoteStreamName: "s"}, 200)
	before := relayEstablished(t, a, "s", relay.DirectionPush, proxy.URI())
	br.open("playB", b)
	br.mustPlay("playB", "p1", "s")
	waitFrames(t, br, "playB", "p1", 10, 10*time.Second)

	proxy.Cut()
	time.Sleep(2 * time.Second) // the link stays down
	gap := br.framesDecoded("playB", "p1")
	proxy.Restore()
	restored := time.Now()
	resumed := waitFrames(t, br, "playB", "p1", gap+5, 10*time.Second)
	t.Logf("frames resumed %v after the link returned", resumed.Round(time.Millisecond))
	if resumed > time.Second+500*time.Millisecond {
		t.Errorf("frames resumed %v after the link returned, want about 1 s", resumed)
	}
	after := waitAgent(t, a, "s", relayUp, "PROCESSED_REMOTE again", func(x relay.AgentInfo) bool {
		return x.Status == relay.StatusProcessedRemote && x.Reconnects > before.Reconnects
	})
	t.Logf("push re-established %v after restore, reconnects %d", time.Since(restored).Round(time.Millisecond), after.Reconnects)
	v := br.status("playB", "p1")
	for _, h := range v.History {
		if h.Status != "PENDING" && h.Status != "PLAYING" {
			t.Errorf("B's player history %+v: it must not leave PLAYING", v.History)
			break
		}
	}
	checkRelayMedia(t, br.sample(PageRef{"playB", "p1"}, PageRef{"pubA", "pub"}, relaySeconds), relaySeconds)
	h := getHealth(t, b)
	if h.Media.Takeovers < 1 {
		t.Errorf("B's /healthz media %+v: want a takeover", h.Media)
	}
}

// waitFrames waits until the player decoded at least n frames; it returns how long that took.
func waitFrames(t *testing.T, br *relayBrowser, page, handle string, n int, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if got := br.framesDecoded(page, handle); got >= n {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("%s/%s decoded fewer than %d frames in %v", page, handle, n, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func waitNoAgent(t *testing.T, srv *Server, name string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		found := false
		for _, a := range agents(t, srv) {
			found = found || a.LocalStreamName == name
		}
		if !found {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still has an agent for %q after %v: %s", srv.Opts.Name, name, timeout, agentsJSON(agents(t, srv)))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// health is the part of GET /healthz the cluster tests read.
type health struct {
	Status    string `json:"status"`
	Directory struct {
		Kind    string `json:"kind"`
		Status  string `json:"status"`
		Entries int    `json:"entries"`
		Error   string `json:"error"`
	} `json:"directory"`
	Media struct {
		Takeovers uint64 `json:"takeovers"`
	} `json:"media"`
	Edge struct {
		PullsStarted uint64 `json:"pullsStarted"`
		PullsEnded   uint64 `json:"pullsEnded"`
	} `json:"edge"`
}

func getHealth(t testing.TB, srv *Server) health {
	t.Helper()
	code, body := restCall(t, srv.HTTP, "/healthz", nil)
	var h health
	if err := json.Unmarshal(body, &h); err != nil {
		t.Fatalf("%s /healthz: %d %s", srv.Opts.Name, code, body)
	}
	return h
}

func waitHealth(t testing.TB, srv *Server, timeout time.Duration, ok func(health) bool) health {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		h := getHealth(t, srv)
		if ok(h) {
			return h
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s /healthz not as wanted in %v: %+v", srv.Opts.Name, timeout, h)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitDirectory waits until srv's directory lists name (GET /rest-api/directory/find_all).
func waitDirectory(t testing.TB, srv *Server, name string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		code, body := restCall(t, srv.HTTP, "/rest-api/directory/find_all", nil)
		if code == 200 && strings.Contains(string(body), `"name":"`+name+`"`) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s directory has no %q after %v: %d %s", srv.Opts.Name, name, timeout, code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestClusterOriginFailover: edge B plays s from origin A; s stops at A and is published at C instead. B's edge pull
// looks the origin up again and pulls from C; B's Chromium player is not re-signaled and decodes C's frames.
func TestClusterOriginFailover(t *testing.T) {
	requireBrowser(t)
	r := startRedis(t)
	a, b, c := clusterServer(t, "A", r), clusterServer(t, "B", r), clusterServer(t, "C", r)
	br := startRelayBrowser(t)
	br.open("pubA", a)
	br.publish("pubA", "pub", "s")
	waitDirectory(t, b, "s", 10*time.Second)
	br.open("playB", b)
	br.mustPlay("playB", "p1", "s")
	waitFrames(t, br, "playB", "p1", 10, 10*time.Second)

	br.stop("pubA", "pub")
	br.open("pubC", c)
	br.publish("pubC", "pub", "s")
	moved := time.Now()
	ag := waitAgent(t, b, "s", 20*time.Second, "pulling from C", func(x relay.AgentInfo) bool {
		return x.URI == c.WS && x.Status == relay.StatusProcessedRemote
	})
	t.Logf("edge pull moved to C %v after the republish (reconnects %d)", time.Since(moved).Round(time.Millisecond), ag.Reconnects)
	checkRelayMedia(t, br.sample(PageRef{"playB", "p1"}, PageRef{"pubC", "pub"}, relaySeconds), relaySeconds)
	v := br.status("playB", "p1")
	for _, h := range v.History {
		if h.Status != "PENDING" && h.Status != "PLAYING" {
			t.Errorf("B's player history %+v: it must not leave PLAYING", v.History)
			break
		}
	}
}
