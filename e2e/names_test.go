package e2e

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/rtcrelay/rtcrelay/signaling"
)

// TestStreamNameRule: the real binary applies one stream name rule to publish and play over the WCS protocol
// (FAILED with "Invalid stream name: <reason>"), to REST relays (400) and to WHIP/WHEP (400), and accepts names
// in any script.
func TestStreamNameRule(t *testing.T) {
	srv := startServer(t, ServerOpts{Name: "names"})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := signaling.Dial(ctx, srv.WS, signaling.ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
	bad := map[string]string{
		"":                       "empty",
		strings.Repeat("x", 129): "longer than 128 bytes",
		"cam/1":                  `contains '/'`,
		"cam\x01":                "contains the control character U+0001",
		"cam\u202e1":             "contains the invisible format character U+202E",
		" cam":                   "starts with white space",
	}
	for name, reason := range bad {
		for _, publish := range []bool{true, false} {
			id := signaling.NewMediaSessionID()
			var err error
			if publish {
				_, err = c.Publish(ctx, name, id, offer, nil)
			} else {
				_, err = c.Play(ctx, name, id, offer, nil)
			}
			var se *signaling.StreamError
			if !errors.As(err, &se) || se.Status != signaling.StatusFailed || se.Info != "Invalid stream name: "+reason {
				t.Errorf("publish=%v %q: %v, want FAILED %q", publish, name, err, "Invalid stream name: "+reason)
			}
		}
		if name == "" {
			continue // REST and WHIP have their own words for a missing name
		}
		body := relayCall(t, srv, "pull", relaySpec{URI: "ws://127.0.0.1:1/", LocalStreamName: name, RemoteStreamName: "s"}, 400)
		if !strings.Contains(string(body), reason) {
			t.Errorf("REST pull %q: %s, want %q", name, body, reason)
		}
		for _, ep := range []string{"/whip/", "/whep/"} {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.HTTP+ep+url.PathEscape(name), strings.NewReader(offer))
			req.Header.Set("Content-Type", "application/sdp")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(name, "/") {
				continue // the path has another shape: not a stream name of this endpoint
			}
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), reason) {
				t.Errorf("POST %s%q: %d %s, want 400 naming %q", ep, name, resp.StatusCode, b, reason)
			}
		}
	}
	// A good name in another script reaches the engine: here it fails on the empty SDP, not on the name.
	_, err = c.Publish(ctx, "Камера 1", signaling.NewMediaSessionID(), offer, nil)
	var se *signaling.StreamError
	if !errors.As(err, &se) || strings.HasPrefix(se.Info, "Invalid stream name") {
		t.Fatalf("a valid name: %v", err)
	}
}
