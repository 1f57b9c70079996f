package e2e

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/rtcrelay/rtcrelay/dtls"
	"github.com/rtcrelay/rtcrelay/ice"
	"github.com/rtcrelay/rtcrelay/sdp"
	"github.com/rtcrelay/rtcrelay/session"
	"github.com/rtcrelay/rtcrelay/signaling"
)

// validOffer is a real sendonly offer of ours (its transport never starts: the stream exists until ICE times out).
func validOffer(t *testing.T) string {
	t.Helper()
	sock, err := ice.Listen(ice.SocketConfig{Addr: netip.MustParseAddrPort("127.0.0.1:0")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sock.Close() })
	cert, err := dtls.GenerateCertificate()
	if err != nil {
		t.Fatal(err)
	}
	s, err := session.NewOfferer(session.Config{Socket: sock, Certificate: cert})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(nil) })
	offer, err := sdp.BuildOffer(s.Transport(), []sdp.Track{{Mid: "0", Kind: sdp.KindVideo, Direction: sdp.DirSendOnly,
		Codec: sdp.Codec{PayloadType: 96, Name: "VP8", ClockRate: 90000}, SSRC: 7}}, "t", "t")
	if err != nil {
		t.Fatal(err)
	}
	return offer
}

// TestLimits: per-IP WebSocket connection and publish limits (loopback not exempt here), the handshake timeout,
// WHIP under the same publish budget, and the server's stream cap — against the real binary.
func TestLimits(t *testing.T) {
	srv := startServer(t, ServerOpts{Name: "limits", ExtraArgs: []string{"--limit-exempt", "none",
		"--limit-conn-per-ip", "3", "--limit-conn-rate", "1000", "--limit-conn-burst", "1000",
		"--limit-publish-rate", "0.01", "--limit-publish-burst", "2", "--ws-handshake-timeout", "1s"}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var open []*signaling.Client
	for range 3 {
		c, err := signaling.Dial(ctx, srv.WS, signaling.ClientConfig{})
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, c)
	}
	if _, err := signaling.Dial(ctx, srv.WS, signaling.ClientConfig{}); err == nil || !strings.Contains(err.Error(), "429") {
		t.Fatalf("a 4th connection from one address: %v, want 429", err)
	}
	open[2].Close()
	var c *signaling.Client
	var err error
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c, err = signaling.Dial(ctx, srv.WS, signaling.ClientConfig{}); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("a connection after one closed: %v", err)
	}
	defer c.Close()

	// Publishes: a burst of two, then "Too many requests"; the third one never reaches the engine.
	const bad = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
	for i, want := range []string{"", "", signaling.InfoTooMany} {
		_, err := c.Publish(ctx, "p", signaling.NewMediaSessionID(), bad, nil)
		var se *signaling.StreamError
		if !errors.As(err, &se) || (want != "" && se.Info != want) || (want == "" && se.Info == signaling.InfoTooMany) {
			t.Fatalf("publish %d: %v, want info %q", i, err, want)
		}
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.HTTP+"/whip/w", strings.NewReader(bad))
	req.Header.Set("Content-Type", "application/sdp")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("WHIP publish over the budget: %d, want 429", resp.StatusCode)
	}

	// A WebSocket that never sends `connection` is closed (1008) after --ws-handshake-timeout.
	open[0].Close()
	var conn net.Conn
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		// The server frees the closed session's slot when its goroutines finish: retry a 429 briefly.
		if conn, _, _, err = ws.Dial(ctx, srv.WS); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	var closed wsutil.ClosedError
	for {
		_, _, err := wsutil.ReadServerData(conn)
		if errors.As(err, &closed) {
			break
		}
		if err != nil {
			t.Fatalf("no close frame: %v", err)
		}
	}
	if closed.Code != ws.StatusPolicyViolation || time.Since(start) > 3*time.Second {
		t.Fatalf("closed %v after %v, want 1008 after about 1 s", closed, time.Since(start))
	}

	// The stream cap.
	capped := startServer(t, ServerOpts{Name: "capped", ExtraArgs: []string{"--max-streams", "1"}})
	cc, err := signaling.Dial(ctx, capped.WS, signaling.ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if _, err := cc.Publish(ctx, "one", signaling.NewMediaSessionID(), validOffer(t), nil); err != nil {
		t.Fatalf("first publish: %v", err)
	}
	_, err = cc.Publish(ctx, "two", signaling.NewMediaSessionID(), validOffer(t), nil)
	var se *signaling.StreamError
	if !errors.As(err, &se) || se.Info != signaling.InfoCapacity {
		t.Fatalf("second publish: %v, want %q", err, signaling.InfoCapacity)
	}
}
