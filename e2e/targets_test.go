package e2e

import (
	"strings"
	"testing"
)

// TestRelayTargetPolicy: the real binary refuses relays to forbidden addresses with 400 and the reason, by
// default and with --relay-deny-net, and lets loopback through.
func TestRelayTargetPolicy(t *testing.T) {
	srv := startServer(t, ServerOpts{Name: "guard", ExtraArgs: []string{"--relay-deny-net", "10.0.0.0/8"}})
	for uri, reason := range map[string]string{
		"ws://169.254.169.254/":          "cloud metadata",
		"ws://[fe80::1]:8080/":           "link-local",
		"ws://[::ffff:169.254.169.254]/": "cloud metadata",
		"ws://2852039166/":               "non-standard IPv4",
		"ws://0x7f000001:8080/":          "non-standard IPv4",
		"http://239.1.2.3/whip/s":        "multicast",
		"ws://[::]:8080/":                "unspecified",
		"ws://10.1.2.3:8080/":            "deny-list 10.0.0.0/8",
	} {
		for _, method := range []string{"push", "pull"} {
			body := relayCall(t, srv, method, relaySpec{URI: uri, LocalStreamName: "s", RemoteStreamName: "s"}, 400)
			if !strings.Contains(string(body), reason) {
				t.Errorf("%s %s: %s, want the reason %q", method, uri, body, reason)
			}
		}
	}
	// Loopback stays allowed: a pull from a closed loopback port is accepted (and fails later for its own reason).
	relayCall(t, srv, "pull", relaySpec{URI: "ws://127.0.0.1:1/", LocalStreamName: "p", RemoteStreamName: "s"}, 200)
}
