package signaling

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rtcrelay/rtcrelay/relayauth"
)

const testFP = "sha-256 01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF"

// relaySDP is an offer with the relay's fingerprint (the fake engine only looks at its words).
const relaySDP = "v=0\r\na=fingerprint:" + testFP + "\r\n"

func newVerifier(t *testing.T, secret string) *relayauth.Verifier {
	t.Helper()
	v, err := relayauth.NewVerifier(relayauth.Config{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func token(t *testing.T, server, secret string) relayauth.Token {
	t.Helper()
	s, err := relayauth.NewSigner(server, secret, testFP)
	if err != nil {
		t.Fatal(err)
	}
	return s.Sign(time.Now())
}

// connect sends `connection` with custom and returns the first reply.
func (c *rawClient) connect(custom json.RawMessage) Message {
	c.t.Helper()
	c.send(MsgConnection, map[string]any{"appKey": "defaultApp", "mediaProviders": []string{"WebRTC"}, "clientVersion": "2.0", "custom": custom})
	return c.next()
}

// relayStart sends publishStream or playStream with a relay path in custom.
func (c *rawClient) relayStart(msg, id, name, sdp string, path []string) {
	c.send(msg, map[string]any{"mediaSessionId": id, "name": name, "published": msg == MsgPublishStream, "hasVideo": true,
		"hasAudio": true, "status": "PENDING", "mediaProvider": "WebRTC", "sdp": sdp, "custom": PathCustom(path)})
}

func failInfo(t *testing.T, m Message) (apiMethod, status, info string) {
	t.Helper()
	var v struct{ APIMethod, Status, Info string }
	if err := json.Unmarshal(m.Payload(), &v); err != nil {
		t.Fatalf("%s payload: %v", m.Name, err)
	}
	return v.APIMethod, v.Status, v.Info
}

// TestRelayAuthenticated: a valid token makes the connection a relay: its path reaches the engine, the
// Authorizer is not asked, the token is not echoed, and an SDP with another fingerprint is refused.
func TestRelayAuthenticated(t *testing.T) {
	auth := &fakeAuth{}
	srv, hs, fe := newTestServer(t, ServerConfig{RelayAuth: newVerifier(t, "k"), RelayRequireAuth: true, Authorizer: auth})
	c := dialRaw(t, hs, false)
	m := c.connect(token(t, "origin-1", "k").Custom(json.RawMessage(`{"x":1}`)))
	if m.Name != MsgGetUserData {
		t.Fatalf("got %s %s, want getUserData", m.Name, m.Data)
	}
	if strings.Contains(string(m.Payload()), relayauth.CustomKey) {
		t.Errorf("getUserData echoes the token: %s", m.Payload())
	}
	c.relayStart(MsgPublishStream, "p1", "s", relaySDP, []string{"origin-1"})
	c.expectSDP("p1")
	c.expectStatus("p1", StatusPublishing, "")
	if got := fe.session(0).path; !slices.Equal(got, []string{"origin-1"}) {
		t.Errorf("engine saw path %v, want [origin-1]", got)
	}
	if auth.has(false, "connect:") || auth.has(false, "publishStream:s") {
		t.Errorf("the Authorizer was asked for an authenticated relay: %v", auth.calls)
	}
	other := strings.Replace(relaySDP, "01:23", "FF:FF", 1)
	c.relayStart(MsgPlayStream, "p2", "s", other, []string{"origin-1"})
	v := c.expect(MsgNotifyStreamStatusEvent)
	if v["mediaSessionId"] != "p2" || v["status"] != StatusFailed || !strings.HasPrefix(v["info"].(string), relayauth.InfoFailed+": the DTLS fingerprint") {
		t.Errorf("play with another fingerprint: %v", v)
	}
	if st := srv.Stats(); st.RelaysAuthenticated != 1 || st.RelayAuthFailures != 1 {
		t.Errorf("stats %+v, want 1 authenticated and 1 failure", st)
	}
}

// TestRelayRefused: with RelayRequireAuth a wrong secret, a replayed token and a malformed token are refused at
// connection with a ConnectionStatusEvent FAILED naming the reason, and a relay path without a token at publish.
func TestRelayRefused(t *testing.T) {
	srv, hs, fe := newTestServer(t, ServerConfig{RelayAuth: newVerifier(t, "k"), RelayRequireAuth: true})
	replay := token(t, "origin-1", "k")
	for _, tc := range []struct {
		name   string
		custom json.RawMessage
		want   string
	}{
		{"wrong secret", token(t, "origin-1", "other").Custom(nil), relayauth.InfoFailed + ": bad signature"},
		{"malformed", json.RawMessage(`{"rtcrelayAuth":42}`), relayauth.InfoFailed + ": rtcrelayAuth is not a token object"},
		{"first use", replay.Custom(nil), ""},
		{"replayed", replay.Custom(nil), relayauth.InfoFailed + ": token replayed"},
	} {
		c := dialRaw(t, hs, false)
		m := c.connect(tc.custom)
		if tc.want == "" {
			if m.Name != MsgGetUserData {
				t.Errorf("%s: got %s %s, want getUserData", tc.name, m.Name, m.Data)
			}
			continue
		}
		api, status, info := failInfo(t, m)
		if m.Name != MsgFail || api != "ConnectionStatusEvent" || status != StatusFailed || info != tc.want {
			t.Errorf("%s: got %s %s, want fail ConnectionStatusEvent FAILED %q", tc.name, m.Name, m.Data, tc.want)
		}
		c.expectDropped()
	}

	// No token: an ordinary client may publish, but not with a relay path.
	c := dialRaw(t, hs, false)
	c.handshake()
	c.relayStart(MsgPublishStream, "p1", "s", relaySDP, []string{"origin-1"})
	c.expectStatus("p1", StatusFailed, relayauth.InfoRequired+": a relay path needs a token signed with the relay secret")
	c.publish("p2", "s", "offer")
	c.expectSDP("p2")
	c.expectStatus("p2", StatusPublishing, "")
	if fe.session(0) == nil || fe.session(0).path != nil {
		t.Errorf("ordinary publisher's path: %+v", fe.session(0))
	}
	if st := srv.Stats(); st.RelayAuthFailures != 4 {
		t.Errorf("stats %+v, want 4 failures", st)
	}
}

// TestRelayPathIgnored: with a verifier but without RelayRequireAuth, an unauthenticated relay path (or a
// failed token) makes an ordinary client: the stream goes on and the engine sees no path.
func TestRelayPathIgnored(t *testing.T) {
	_, hs, fe := newTestServer(t, ServerConfig{RelayAuth: newVerifier(t, "k")})
	c := dialRaw(t, hs, false)
	if m := c.connect(token(t, "origin-1", "wrong").Custom(nil)); m.Name != MsgGetUserData {
		t.Fatalf("got %s %s, want getUserData", m.Name, m.Data)
	}
	c.relayStart(MsgPublishStream, "p1", "s", relaySDP, []string{"origin-1"})
	c.expectSDP("p1")
	c.expectStatus("p1", StatusPublishing, "")
	if p := fe.session(0).path; p != nil {
		t.Errorf("engine saw path %v of an unauthenticated connection", p)
	}
	// Without any verifier the path is trusted as before (a cluster without a secret).
	_, hs2, fe2 := newTestServer(t, ServerConfig{})
	c2 := dialRaw(t, hs2, false)
	c2.handshake()
	c2.relayStart(MsgPublishStream, "p1", "s", relaySDP, []string{"origin-1"})
	c2.expectSDP("p1")
	if p := fe2.session(0).path; !slices.Equal(p, []string{"origin-1"}) {
		t.Errorf("no verifier: engine saw path %v", p)
	}
}

// TestClientConnectionRefused: signaling.Dial reports the server's refusal reason as a *ConnectionError that
// matches relayauth.ErrAuth (relay agents give up on it and show the reason).
func TestClientConnectionRefused(t *testing.T) {
	_, hs, _ := newTestServer(t, ServerConfig{RelayAuth: newVerifier(t, "k"), RelayRequireAuth: true})
	ctx, cancel := contextWithTimeout()
	defer cancel()
	_, err := Dial(ctx, wsURL(hs, "/"), ClientConfig{Custom: token(t, "origin-1", "wrong").Custom(nil)})
	var ce *ConnectionError
	if !errors.As(err, &ce) || ce.Info != relayauth.InfoFailed+": bad signature" || !errors.Is(err, relayauth.ErrAuth) {
		t.Fatalf("Dial = %v, want a ConnectionError matching relayauth.ErrAuth", err)
	}
	c, err := Dial(ctx, wsURL(hs, "/"), ClientConfig{Custom: token(t, "origin-1", "k").Custom(nil)})
	if err != nil {
		t.Fatalf("Dial with the right secret: %v", err)
	}
	_ = c.Close()
}

// expectDropped waits for the server to drop the socket (no close frame: the SDK then reports the session FAILED).
func (c *rawClient) expectDropped() {
	c.t.Helper()
	select {
	case m, ok := <-c.msgs:
		if ok {
			c.t.Fatalf("message %q %s, want the socket dropped", m.Name, m.Data)
		}
	case <-time.After(waitTimeout):
		c.t.Fatalf("server did not drop the connection")
	}
}
