package e2e

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rtcrelay/rtcrelay/relay"
	"github.com/rtcrelay/rtcrelay/relayauth"
)

// relayAuthStats are the relay authentication counters of GET /healthz (signaling and WHIP).
func relayAuthStats(t *testing.T, srv *Server) (wsOK, wsFailed, whipOK, whipFailed uint64) {
	t.Helper()
	code, body := restCall(t, srv.HTTP, "/healthz", nil)
	if code != http.StatusOK {
		t.Fatalf("%s /healthz: %d %s", srv.Opts.Name, code, body)
	}
	var h struct {
		Signaling struct{ RelaysAuthenticated, RelayAuthFailures uint64 }
		WHIP      struct {
			RelaysAuthenticated uint64 `json:"relaysAuthenticated"`
			RelayAuthFailures   uint64 `json:"relayAuthFailures"`
		} `json:"whip"`
	}
	if err := json.Unmarshal(body, &h); err != nil {
		t.Fatalf("/healthz: %v: %s", err, body)
	}
	return h.Signaling.RelaysAuthenticated, h.Signaling.RelayAuthFailures, h.WHIP.RelaysAuthenticated, h.WHIP.RelayAuthFailures
}

// TestRelayAuth: authenticated relays between real processes. O (origin) and E (edge) share the cluster secret
// and both require authentication; X signs with a wrong secret, N has none. O's pushes to E over ws://, wss:// and
// WHIP, and E's pull from O, are established and carry media to a Chromium player; X's and N's pushes and N's pull
// are refused, visible as FAILED with the reason in their /pull/find_all.
func TestRelayAuth(t *testing.T) {
	requireBrowser(t)
	cert, key := selfSignedCert(t, t.TempDir())
	secret := "cluster-secret-for-the-e2e-test"
	// O takes its secret from the environment (RTCRELAY_RELAY_SECRET), the others from flags.
	o := startServer(t, ServerOpts{Name: "O", Env: []string{"RTCRELAY_RELAY_SECRET=" + secret},
		ExtraArgs: []string{"--server-id", "O", "--relay-require-auth", "--wcs-agent-ssl", "--agent-ca", cert}})
	e := startServer(t, ServerOpts{Name: "E", TLSCert: cert, TLSKey: key,
		ExtraArgs: []string{"--server-id", "E", "--relay-secret", secret, "--relay-require-auth"}})
	x := relayServer(t, "X", "--relay-secret", "not-the-cluster-secret")
	n := relayServer(t, "N")

	br := startRelayBrowser(t)
	br.open("pubO", o)
	br.publish("pubO", "pub", "s")
	br.open("pubX", x)
	br.publish("pubX", "pub", "x")
	br.open("pubN", n)
	br.publish("pubN", "pub", "n")

	wss := "wss://127.0.0.1:" + strconv.Itoa(e.WSSPort)
	relayCall(t, o, "push", relaySpec{URI: e.WS, LocalStreamName: "s", RemoteStreamName: "s-ws"}, 200)
	relayCall(t, o, "push", relaySpec{URI: wss, LocalStreamName: "s", RemoteStreamName: "s-wss"}, 200)
	relayCall(t, o, "push", relaySpec{URI: e.HTTP + "/whip/s-whip", LocalStreamName: "s", RemoteStreamName: "s-whip"}, 200)
	relayCall(t, e, "pull", relaySpec{URI: o.WS, LocalStreamName: "s-pull", RemoteStreamName: "s"}, 200)
	relayCall(t, x, "push", relaySpec{URI: e.WS, LocalStreamName: "x", RemoteStreamName: "x"}, 200)
	relayCall(t, n, "push", relaySpec{URI: e.WS, LocalStreamName: "n", RemoteStreamName: "n"}, 200)
	relayCall(t, n, "pull", relaySpec{URI: o.WS, LocalStreamName: "n-pull", RemoteStreamName: "s"}, 200)
	relayCall(t, n, "push", relaySpec{URI: e.HTTP + "/whip/n-whip", LocalStreamName: "n", RemoteStreamName: "n-whip"}, 200)

	waitAgent(t, o, "s", relayUp, "three PROCESSED_REMOTE pushes", func(relay.AgentInfo) bool {
		up := 0
		for _, a := range agents(t, o) {
			if a.Status == relay.StatusProcessedRemote {
				up++
			}
		}
		return up == 3
	})
	relayEstablished(t, e, "s-pull", relay.DirectionPull, o.WS)

	for _, c := range []struct {
		srv       *Server
		name, uri string
		want      string
	}{
		{x, "x", e.WS, relayauth.InfoFailed + ": bad signature"},
		{n, "n", e.WS, relayauth.InfoRequired + ": a relay path needs a token signed with the relay secret"},
		{n, "n-pull", o.WS, relayauth.InfoRequired + ": a relay path needs a token signed with the relay secret"},
		{n, "n", e.HTTP + "/whip/n-whip", relayauth.InfoRequired + ": a relay path needs a token signed with the relay secret"},
	} {
		a := waitAgent(t, c.srv, c.name, relayUp, "FAILED to "+c.uri, func(a relay.AgentInfo) bool {
			return a.URI == c.uri && a.Status == relay.StatusFailed && a.Info != ""
		})
		if a.Info != c.want {
			t.Errorf("%s agent %s → %s: FAILED %q, want %q", c.srv.Opts.Name, c.name, c.uri, a.Info, c.want)
		}
	}
	// Refused agents give up: they stay FAILED, they do not retry.
	time.Sleep(2 * time.Second)
	for _, srv := range []*Server{x, n} {
		for _, a := range agents(t, srv) {
			if a.Status != relay.StatusFailed || a.Reconnects != 0 {
				t.Errorf("%s agent after a refusal: %s, want FAILED without reconnects", srv.Opts.Name, agentsJSON([]relay.AgentInfo{a}))
			}
		}
	}
	names := streamNames(t, e)
	for _, want := range []string{"s-ws", "s-wss", "s-whip", "s-pull"} {
		if !contains(names, want) {
			t.Errorf("E publishes %v, want %s", names, want)
		}
	}
	for _, not := range []string{"x", "n", "n-whip"} {
		if contains(names, not) {
			t.Errorf("E publishes %q from a refused relay", not)
		}
	}

	br.open("playE", e)
	for _, name := range []string{"s-ws", "s-wss", "s-whip", "s-pull"} {
		br.mustPlay("playE", name, name)
	}
	for _, name := range []string{"s-ws", "s-wss", "s-whip", "s-pull"} {
		checkRelayMedia(t, br.sample(PageRef{"playE", name}, PageRef{"pubO", "pub"}, 2), 2)
	}

	wsOK, wsFailed, whipOK, whipFailed := relayAuthStats(t, e)
	if wsOK < 2 || wsFailed < 2 || whipOK < 1 || whipFailed < 1 {
		t.Errorf("E relay auth counters: ws %d ok %d failed, whip %d ok %d failed; want ≥ 2, 2, 1, 1", wsOK, wsFailed, whipOK, whipFailed)
	}
	if _, metrics := restCall(t, e.HTTP, "/metrics", nil); !strings.Contains(string(metrics), `rtcrelay_relay_auth_total{protocol="whip",result="ok"} 1`) {
		t.Errorf("E /metrics lacks the WHIP relay authentication: %s", metrics)
	}
	if oOK, oFailed, _, _ := relayAuthStats(t, o); oOK < 1 || oFailed < 1 {
		t.Errorf("O relay auth counters: %d ok, %d failed; want ≥ 1 each (E's pull, N's pull)", oOK, oFailed)
	}
	// The secret never reaches a log line.
	for _, srv := range []*Server{o, e, x} {
		if got := srv.Grep(secret); len(got) > 0 {
			t.Errorf("%s logged the relay secret: %q", srv.Opts.Name, got[0])
		}
	}
}

// TestRelayAuthEdgePull: an on-demand edge pull in a Redis cluster whose servers require authenticated relays:
// the edge's pull is signed, and a player at the edge sees the origin's stream.
func TestRelayAuthEdgePull(t *testing.T) {
	requireBrowser(t)
	r := startRedis(t)
	auth := []string{"--relay-secret", "edge-cluster-secret", "--relay-require-auth"}
	a, b := clusterServer(t, "A", r, auth...), clusterServer(t, "B", r, auth...)
	br := startRelayBrowser(t)
	br.open("pubA", a)
	br.publish("pubA", "pub", "s")
	waitDirectory(t, b, "s", 10*time.Second)
	br.open("playB", b)
	br.mustPlay("playB", "p1", "s")
	checkRelayMedia(t, br.sample(PageRef{"playB", "p1"}, PageRef{"pubA", "pub"}, relaySeconds), relaySeconds)
	if ok, failed, _, _ := relayAuthStats(t, a); ok < 1 || failed != 0 {
		t.Errorf("origin A relay auth counters: %d ok, %d failed; want ≥ 1 ok and none failed", ok, failed)
	}
}
