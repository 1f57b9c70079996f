package relay

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rtcrelay/rtcrelay/internal/dnstest"
	"github.com/rtcrelay/rtcrelay/netguard"
	"github.com/rtcrelay/rtcrelay/signaling"
)

// TestTargetPolicy: Push and Pull refuse forbidden targets with ErrBadRequest and the reason (literal
// addresses, spellings, names resolved by a real DNS server on loopback); a name that resolved to an allowed
// address when the relay was asked for and to a forbidden one at connect time (rebinding) leaves the agent
// FAILED with the reason, and it does not retry; an allowed name works.
func TestTargetPolicy(t *testing.T) {
	re := &remoteEngine{published: map[string]bool{}, serverID: "B"}
	hs := httptest.NewServer(signaling.NewServer(signaling.ServerConfig{Engine: re}))
	t.Cleanup(hs.Close)
	port := hs.URL[strings.LastIndex(hs.URL, ":")+1:]
	r := dnstest.Serve(t, map[string][]string{
		"meta.test": {"169.254.169.254"}, "rebind.test": {"127.0.0.1", "169.254.169.254"}, "ok.test": {"127.0.0.1"},
	})
	targets := &netguard.Policy{Resolver: r}
	m, err := NewManager(Config{
		Engine: &localEngine{streams: map[string]chan struct{}{"s": make(chan struct{})}},
		Dial:   WCSDialer(nil, targets, nil), ServerID: "A", RetryFailed: -1, Targets: targets,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })

	for uri, reason := range map[string]string{
		"ws://169.254.169.254/":           "metadata",
		"ws://[fe80::1]:8080/":            "link-local",
		"ws://[::ffff:169.254.169.254]/":  "metadata",
		"ws://2852039166:8080/":           "non-standard IPv4",
		"ws://0xa9fea9fe/":                "non-standard IPv4",
		"http://224.0.0.1/whip/s":         "multicast",
		"ws://0.0.0.0:8080/":              "this network",
		"ws://meta.test:" + port + "/":    "meta.test is 169.254.169.254",
		"https://[fd00:ec2::254]/whep/s/": "metadata",
	} {
		for _, call := range []func() (AgentInfo, error){
			func() (AgentInfo, error) {
				return m.Push(t.Context(), Spec{URI: uri, LocalStreamName: "s", RemoteStreamName: "s"})
			},
			func() (AgentInfo, error) {
				return m.Pull(t.Context(), Spec{URI: uri, LocalStreamName: "p", RemoteStreamName: "s"})
			},
		} {
			_, err := call()
			if !errors.Is(err, ErrBadRequest) || !errors.Is(err, netguard.ErrForbidden) || !strings.Contains(err.Error(), reason) {
				t.Errorf("%s: %v, want a bad request naming %q", uri, err, reason)
			}
		}
	}
	if n := len(m.FindAll()); n != 0 {
		t.Fatalf("%d agents made for refused targets", n)
	}

	ai, err := m.Push(t.Context(), Spec{URI: "ws://rebind.test:" + port, LocalStreamName: "s", RemoteStreamName: "s"})
	if err != nil {
		t.Fatalf("the REST-time check saw 127.0.0.1: %v", err)
	}
	ai = wait(t, m, ai.LocalMediaSessionID, func(ai AgentInfo) bool { return ai.Status == StatusFailed })
	if !strings.Contains(ai.Info, "forbidden relay target") || !strings.Contains(ai.Info, "169.254.169.254") {
		t.Fatalf("info %q, want the dial-time refusal", ai.Info)
	}
	select {
	case <-m.agentDone(ai.LocalMediaSessionID):
	case <-t.Context().Done():
	}
	if got := m.FindAll(); len(got) != 1 || got[0].Reconnects != 0 {
		t.Fatalf("a refused agent retried: %+v", got)
	}

	ok, err := m.Push(t.Context(), Spec{URI: "ws://ok.test:" + port, LocalStreamName: "s", RemoteStreamName: "ok"})
	if err != nil {
		t.Fatal(err)
	}
	if ai := wait(t, m, ok.LocalMediaSessionID, func(ai AgentInfo) bool { return ai.RemoteMediaSessionID != nil }); strings.Contains(ai.Info, "forbidden") {
		t.Fatalf("an allowed name was refused: %+v", ai)
	}
}
