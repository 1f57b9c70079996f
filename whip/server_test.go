package whip

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	pionice "github.com/pion/ice/v4"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/rtcrelay/rtcrelay/dtls"
	"github.com/rtcrelay/rtcrelay/ice"
	"github.com/rtcrelay/rtcrelay/media"
)

// pionAPI is pion/webrtc as an independent peer restricted to loopback.
func pionAPI(t *testing.T) *webrtc.API {
	t.Helper()
	lo := net.IPv4(127, 0, 0, 1)
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetInterfaceFilter(func(n string) bool { return n == "lo" })
	se.SetIPFilter(func(ip net.IP) bool { return ip.Equal(lo) })
	se.SetRemoteIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetICEMulticastDNSMode(pionice.MulticastDNSModeDisabled)
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	return webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(m))
}

func testLogger() *slog.Logger {
	if os.Getenv("WHIP_DEBUG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// newEngine serves a real media engine on its own loopback media socket.
func newEngine(t testing.TB, id string) *media.Engine {
	t.Helper()
	loopback := func(a netip.Addr) bool { return a.IsLoopback() }
	sock, err := ice.Listen(ice.SocketConfig{Addr: netip.MustParseAddrPort("127.0.0.1:0"), AcceptRemote: loopback, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = sock.Serve(context.Background()) }()
	cert, err := dtls.GenerateCertificate()
	if err != nil {
		t.Fatal(err)
	}
	e := media.New(media.Config{Socket: sock, Certificate: cert, ICETimeout: 5 * time.Second, DTLSTimeout: 5 * time.Second,
		Outbound: ice.SocketConfig{Addr: netip.MustParseAddrPort("127.0.0.1:0"), AcceptRemote: loopback},
		ServerID: id, Logger: testLogger().With("server", id)})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.Close(ctx); err != nil {
			t.Errorf("engine %s: %v", id, err)
		}
		e.Registry().Close()
		_ = sock.Close()
	})
	return e
}

// newServer is a Handler on a real engine behind httptest.
func newServer(t testing.TB, cfg Config) (*Handler, *httptest.Server) {
	t.Helper()
	if cfg.Engine == nil {
		cfg.Engine = newEngine(t, "srv")
	}
	cfg.Logger = testLogger()
	h := NewHandler(cfg)
	mux := http.NewServeMux()
	mux.Handle("/rest-api/", http.NotFoundHandler()) // as cmd/rtcrelay mounts the REST API
	h.Mount(mux)
	ts := httptest.NewServer(mux)
	t.Cleanup(func() {
		ts.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := h.Close(ctx); err != nil {
			t.Errorf("handler close: %v", err)
		}
	})
	return h, ts
}

// peer is a pion/webrtc WHIP or WHEP client.
type peer struct {
	pc           *webrtc.PeerConnection
	video, audio *webrtc.TrackLocalStaticRTP
	offer        string
}

// newPublisher makes a sendonly VP8 + Opus peer with its complete offer.
func newPublisher(t *testing.T) *peer {
	t.Helper()
	pc, err := pionAPI(t).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	p := &peer{pc: pc}
	p.video, _ = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "v", "pub")
	p.audio, _ = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "a", "pub")
	for _, tr := range []webrtc.TrackLocal{p.audio, p.video} {
		if _, err := pc.AddTransceiverFromTrack(tr, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
			t.Fatal(err)
		}
	}
	p.offer = localOffer(t, pc)
	return p
}

// newPlayer makes a recvonly audio + video peer with its complete offer.
func newPlayer(t *testing.T) *peer {
	t.Helper()
	pc, err := pionAPI(t).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	return &peer{pc: pc, offer: localOffer(t, pc)}
}

func localOffer(t *testing.T, pc *webrtc.PeerConnection) string {
	t.Helper()
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	return pc.LocalDescription().SDP
}

func (p *peer) accept(t *testing.T, answer string) {
	t.Helper()
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
}

// send writes synthetic VP8 (a keyframe every 10th frame) and Opus RTP until ctx ends.
func (p *peer) send(ctx context.Context) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		key := byte(0x01)
		if i%10 == 0 {
			key = 0x00
		}
		payload := append([]byte{0x10, key, 0x9d, 0x01, 0x2a}, fmt.Sprintf("FRAME-%06d", i)...)
		_ = p.video.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, Marker: true, SequenceNumber: uint16(i), Timestamp: uint32(i * 3000)}, Payload: payload})
		_ = p.audio.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(i), Timestamp: uint32(i * 480)}, Payload: fmt.Appendf(nil, "AUDIO-%06d", i)})
	}
}

// do sends one request and returns the response with its body read.
func do(t *testing.T, method, url, ctype, body string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func wantStatus(t *testing.T, resp *http.Response, body string, code int) {
	t.Helper()
	if resp.StatusCode != code {
		t.Fatalf("%s %s: status %d (%q), want %d", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, body, code)
	}
	if resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("%s %s: no CORS header", resp.Request.Method, resp.Request.URL.Path)
	}
}

// TestWHIPPublishWHEPPlay publishes with a pion WHIP client and plays with a pion WHEP client: real ICE, DTLS
// and SRTP through the engine; the player gets the publisher's payloads; DELETE ends both.
func TestWHIPPublishWHEPPlay(t *testing.T) {
	_, ts := newServer(t, Config{})
	pub := newPublisher(t)
	resp, answer := do(t, "POST", ts.URL+"/whip/cam", "application/sdp", pub.offer)
	wantStatus(t, resp, answer, http.StatusCreated)
	loc, etag := resp.Header.Get("Location"), resp.Header.Get("ETag")
	if !strings.HasPrefix(loc, "/whip/cam/") || etag == "" || resp.Header.Get("Content-Type") != "application/sdp" {
		t.Fatalf("201 headers: Location %q ETag %q Content-Type %q", loc, etag, resp.Header.Get("Content-Type"))
	}
	if !strings.Contains(answer, "a=ice-lite") || !strings.Contains(answer, "127.0.0.1") {
		t.Fatalf("answer is not ICE-lite with inline candidates:\n%s", answer)
	}
	pub.accept(t, answer)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go pub.send(ctx)

	play := newPlayer(t)
	got := make(chan []byte, 64)
	play.pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		if tr.Kind() != webrtc.RTPCodecTypeVideo {
			return
		}
		for {
			p, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			select {
			case got <- p.Payload:
			default:
			}
		}
	})
	start := time.Now()
	resp, answer = do(t, "POST", ts.URL+"/whep/cam", "application/sdp", play.offer)
	wantStatus(t, resp, answer, http.StatusCreated)
	ploc := resp.Header.Get("Location")
	if !strings.HasPrefix(ploc, "/whep/cam/") {
		t.Fatalf("WHEP Location %q", ploc)
	}
	play.accept(t, answer)
	select {
	case b := <-got:
		if !bytes.Contains(b, []byte("FRAME-")) {
			t.Fatalf("player got %q, not the publisher's payload", b)
		}
		t.Logf("WHEP player's first video packet %v after its POST", time.Since(start).Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		t.Fatal("no video at the WHEP player")
	}

	resp, body := do(t, "DELETE", ts.URL+ploc, "", "")
	wantStatus(t, resp, body, http.StatusOK)
	resp, body = do(t, "DELETE", ts.URL+ploc, "", "")
	wantStatus(t, resp, body, http.StatusNotFound)
	resp, body = do(t, "DELETE", ts.URL+loc, "", "")
	wantStatus(t, resp, body, http.StatusOK)
	// the stream ended with its publisher's resource
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, body = do(t, "POST", ts.URL+"/whep/cam", "application/sdp", newPlayer(t).offer)
		if resp.StatusCode == http.StatusNotFound || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	wantStatus(t, resp, body, http.StatusNotFound)
	if strings.TrimSpace(body) != "Stream not found" {
		t.Errorf("404 body %q", body)
	}
}

// TestWHIPResourceEndsWithSession: a publisher that closes its peer connection (DTLS close) ends its session,
// and its resource disappears.
func TestWHIPResourceEndsWithSession(t *testing.T) {
	h, ts := newServer(t, Config{})
	pub := newPublisher(t)
	resp, answer := do(t, "POST", ts.URL+"/whip/gone", "application/sdp", pub.offer)
	wantStatus(t, resp, answer, http.StatusCreated)
	loc := resp.Header.Get("Location")
	pub.accept(t, answer)
	connected := make(chan struct{})
	var once bool
	pub.pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected && !once {
			once = true
			close(connected)
		}
	})
	select {
	case <-connected:
	case <-time.After(10 * time.Second):
		t.Fatal("publisher did not connect")
	}
	if st := h.Stats(); st.Publishers != 1 {
		t.Fatalf("stats %+v, want 1 publisher", st)
	}
	_ = pub.pc.Close()
	deadline := time.Now().Add(10 * time.Second)
	for h.Stats().Publishers != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the resource outlived its media session")
		}
		time.Sleep(20 * time.Millisecond)
	}
	resp, body := do(t, "DELETE", ts.URL+loc, "", "")
	wantStatus(t, resp, body, http.StatusNotFound)
}

// TestWHIPStatusCodes covers every status code of the HTTP semantics against a real engine.
func TestWHIPStatusCodes(t *testing.T) {
	authErr := errors.New("hook says no")
	h, ts := newServer(t, Config{Token: "s3cret", ServerID: "srv", Authorize: func(_ context.Context, r AuthRequest) error {
		switch r.Name {
		case "forbidden":
			return fmt.Errorf("%w: %s may not %s", media.ErrRestricted, r.UserAgent, r.Kind)
		case "broken":
			return authErr
		}
		if r.Token != "s3cret" {
			return errors.New("the hook got no token")
		}
		return nil
	}})
	auth := []string{"Authorization", "Bearer s3cret"}
	sdpCT := "application/sdp"

	// a live publisher for 409, PATCH and DELETE
	pub := newPublisher(t)
	resp, answer := do(t, "POST", ts.URL+"/whip/live", sdpCT, pub.offer, auth...)
	wantStatus(t, resp, answer, http.StatusCreated)
	pub.accept(t, answer)
	loc, etag := resp.Header.Get("Location"), resp.Header.Get("ETag")
	// a stream that came through server "up" (a relay), for the play-loop case
	resp2, answer2 := do(t, "POST", ts.URL+"/whip/relayed", sdpCT, newPublisher(t).offer, append([]string{PathHeader, "up"}, auth...)...)
	wantStatus(t, resp2, answer2, http.StatusCreated)
	if resp.Header.Get(ServerIDHeader) != "srv" || resp.Header.Get("Accept-Patch") != "application/trickle-ice-sdpfrag" {
		t.Errorf("201 headers %v", resp.Header)
	}
	if eh := resp.Header.Get("Access-Control-Expose-Headers"); !strings.Contains(eh, "Location") || !strings.Contains(eh, "ETag") {
		t.Errorf("Access-Control-Expose-Headers %q", eh)
	}

	cases := []struct {
		name, method, path, ctype, body string
		hdr                             []string
		want                            int
		wantBody                        string
	}{
		{"no token", "POST", "/whip/x", sdpCT, pub.offer, nil, 401, ""},
		{"wrong token", "POST", "/whip/x", sdpCT, pub.offer, []string{"Authorization", "Bearer nope"}, 401, ""},
		{"wrong content type", "POST", "/whip/x", "application/json", pub.offer, auth, 415, ""},
		{"no content type", "POST", "/whip/x", "", pub.offer, auth, 415, ""},
		{"bad SDP", "POST", "/whip/x", sdpCT, "hello", auth, 400, ""},
		{"empty body", "POST", "/whip/x", sdpCT, "", auth, 400, ""},
		{"oversized", "POST", "/whip/x", sdpCT, strings.Repeat("a", DefaultMaxBody+1), auth, 413, ""},
		{"name in use", "POST", "/whip/live", sdpCT, newPublisher(t).offer, auth, 409, "Stream name is already in use"},
		{"relay loop", "POST", "/whip/x", sdpCT, newPublisher(t).offer, append([]string{PathHeader, "a, srv"}, auth...), 403, ""},
		{"hook restricts", "POST", "/whip/forbidden", sdpCT, pub.offer, auth, 403, ""},
		{"hook fails", "POST", "/whip/broken", sdpCT, pub.offer, auth, 500, ""},
		{"play unknown stream", "POST", "/whep/nothing", sdpCT, newPlayer(t).offer, auth, 404, "Stream not found"},
		{"play loop", "POST", "/whep/relayed", sdpCT, newPlayer(t).offer, append([]string{PathHeader, "up"}, auth...), 403, ""},
		{"delete unknown", "DELETE", "/whip/live/0000", "", "", auth, 404, ""},
		{"delete without token", "DELETE", loc, "", "", nil, 401, ""},
		{"delete on the wrong name", "DELETE", strings.Replace(loc, "/live/", "/other/", 1), "", "", auth, 404, ""},
		{"patch trickle", "PATCH", loc, "application/trickle-ice-sdpfrag", "a=mid:0\r\na=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\n", append([]string{"If-Match", etag}, auth...), 204, ""},
		{"patch stale etag", "PATCH", loc, "application/trickle-ice-sdpfrag", "a=end-of-candidates\r\n", append([]string{"If-Match", `"stale"`}, auth...), 412, ""},
		{"patch ICE restart", "PATCH", loc, "application/trickle-ice-sdpfrag", "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\n", append([]string{"If-Match", "*"}, auth...), 422, ""},
		{"patch wrong type", "PATCH", loc, sdpCT, "a=end-of-candidates\r\n", auth, 415, ""},
		{"patch unknown", "PATCH", "/whip/live/0000", "application/trickle-ice-sdpfrag", "", auth, 404, ""},
		{"GET not allowed", "GET", "/whip/live", "", "", auth, 405, ""},
		{"preflight", "OPTIONS", "/whip/x", "", "", nil, 204, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, body := do(t, c.method, ts.URL+c.path, c.ctype, c.body, c.hdr...)
			wantStatus(t, resp, body, c.want)
			if c.wantBody != "" && strings.TrimSpace(body) != c.wantBody {
				t.Errorf("body %q, want %q", body, c.wantBody)
			}
			if c.want == 401 && resp.Header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			if c.want >= 400 && resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
				t.Errorf("error Content-Type %q", resp.Header.Get("Content-Type"))
			}
			if c.method == "OPTIONS" {
				if resp.Header.Get("Accept-Post") != "application/sdp" || !strings.Contains(resp.Header.Get("Access-Control-Allow-Methods"), "POST") ||
					!strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
					t.Errorf("preflight headers %v", resp.Header)
				}
			}
		})
	}

	t.Run("WCS endpoint answers 202", func(t *testing.T) {
		p := newPublisher(t)
		resp, answer := do(t, "POST", ts.URL+"/rest-api/stream/publish/wcs", sdpCT, p.offer, auth...)
		wantStatus(t, resp, answer, http.StatusAccepted)
		if !strings.HasPrefix(resp.Header.Get("Location"), "/whip/wcs/") || !strings.HasPrefix(answer, "v=0") {
			t.Fatalf("202: Location %q, answer %q", resp.Header.Get("Location"), answer)
		}
		resp, body := do(t, "DELETE", ts.URL+resp.Header.Get("Location"), "", "", auth...)
		wantStatus(t, resp, body, http.StatusOK)
	})
	t.Run("delete", func(t *testing.T) {
		resp, body := do(t, "DELETE", ts.URL+loc, "", "", auth...)
		wantStatus(t, resp, body, http.StatusOK)
	})
	t.Run("closing", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := h.Close(ctx); err != nil {
			t.Fatal(err)
		}
		resp, body := do(t, "POST", ts.URL+"/whip/late", sdpCT, newPublisher(t).offer, auth...)
		wantStatus(t, resp, body, http.StatusServiceUnavailable)
	})
	refusals := 1 // the 503
	for _, c := range cases {
		if c.want >= 400 {
			refusals++
		}
	}
	if st := h.Stats(); st.Refused != uint64(refusals) {
		t.Errorf("stats %+v: refusals not counted", st)
	}
}

// TestWHIPClient: the client relay agents use, against the handler: answer and resource, the remote's error
// text, the server ID, DELETE.
func TestWHIPClient(t *testing.T) {
	_, ts := newServer(t, Config{ServerID: "srv", Token: "t"})
	ctx := context.Background()
	c := &Client{Token: "t", Header: http.Header{PathHeader: {"up"}}}
	if id, err := c.ServerID(ctx, ts.URL+"/whip/x"); err != nil || id != "srv" {
		t.Fatalf("ServerID = %q, %v", id, err)
	}
	pub := newPublisher(t)
	res, answer, err := c.Post(ctx, ts.URL+"/whip/c", pub.offer)
	if err != nil || !strings.HasPrefix(res.URL, ts.URL+"/whip/c/") || res.ETag == "" || !strings.HasPrefix(answer, "v=0") {
		t.Fatalf("Post = %+v, %.20q, %v", res, answer, err)
	}
	// the relay path went along: a play from "up" of a stream that came through "up" is a loop
	_, _, err = c.Post(ctx, ts.URL+"/whep/c", newPlayer(t).offer)
	if se, ok := errors.AsType[*StatusError](err); !ok || se.Code != http.StatusForbidden {
		t.Fatalf("loop play: %v", err)
	}
	_, _, err = (&Client{Token: "t"}).Post(ctx, ts.URL+"/whep/none", newPlayer(t).offer)
	if se, ok := errors.AsType[*StatusError](err); !ok || se.Code != http.StatusNotFound || se.Error() != "Stream not found" {
		t.Fatalf("unknown stream: %v", err)
	}
	if err := res.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if err := res.Delete(ctx); err == nil {
		t.Fatal("second DELETE succeeded")
	}
}
