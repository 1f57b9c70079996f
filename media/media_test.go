package media

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	pionice "github.com/pion/ice/v4"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/rtcrelay/rtcrelay/dtls"
	"github.com/rtcrelay/rtcrelay/ice"
)

// pionAPI is pion/webrtc as an independent peer restricted to loopback.
func pionAPI(t *testing.T) *webrtc.API {
	t.Helper()
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	return webrtc.NewAPI(webrtc.WithSettingEngine(pionSettings()), webrtc.WithMediaEngine(m))
}

// pionSettings keep a pion peer on loopback.
func pionSettings() webrtc.SettingEngine {
	lo := net.IPv4(127, 0, 0, 1)
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetInterfaceFilter(func(n string) bool { return n == "lo" })
	se.SetIPFilter(func(ip net.IP) bool { return ip.Equal(lo) })
	se.SetRemoteIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetICEMulticastDNSMode(pionice.MulticastDNSModeDisabled)
	return se
}

func testLogger() *slog.Logger {
	if os.Getenv("MEDIA_DEBUG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// newEngine serves an engine on its own loopback media socket.
func newEngine(t *testing.T, id string) *Engine {
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
	e := New(Config{Socket: sock, Certificate: cert, ICETimeout: 5 * time.Second, DTLSTimeout: 5 * time.Second,
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

// publisher is a pion peer that publishes synthetic VP8 + Opus RTP to name, like a browser (no trickle).
func publisher(t *testing.T, e *Engine, name string) (stop func()) {
	t.Helper()
	end := publisherFrom(t, e, name, 0)
	return func() { end(errors.New("test publisher stop")) }
}

// publisherFrom is publisher with payload counters from first and the close cause the caller's.
func publisherFrom(t *testing.T, e *Engine, name string, first int) (end func(cause error)) {
	t.Helper()
	pc, err := pionAPI(t).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	video, _ := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "v", "pub")
	audio, _ := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "a", "pub")
	for _, tr := range []webrtc.TrackLocal{audio, video} {
		if _, err := pc.AddTransceiverFromTrack(tr, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
			t.Fatal(err)
		}
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	ms, answer, err := e.Publish(context.Background(), PublishRequest{Name: name, MediaSessionID: "pub-" + name, SDP: offer.SDP})
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ms.Ready(ctx); err != nil {
		t.Fatalf("publisher Ready: %v", err)
	}
	done := make(chan struct{})
	go func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := first; ; i++ {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			// VP8 payload descriptor (S=1, PID 0) + a keyframe header every 10th frame (P bit 0), then a marker.
			key := byte(0x01)
			if i%10 == 0 {
				key = 0x00
			}
			payload := append([]byte{0x10, key, 0x9d, 0x01, 0x2a}, []byte(fmt.Sprintf("FRAME-%06d", i))...)
			_ = video.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, Marker: true, SequenceNumber: uint16(i), Timestamp: uint32(i * 3000)}, Payload: payload})
			_ = audio.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(i), Timestamp: uint32(i * 480)}, Payload: []byte(fmt.Sprintf("AUDIO-%06d", i))})
		}
	}()
	return func(cause error) {
		close(done)
		ms.Close(cause)
		_ = pc.Close()
	}
}

// player plays name from e with a pion peer and returns channels of the payloads it receives per kind.
func player(t *testing.T, e *Engine, name string) (video, audio chan []byte, ms Session) {
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
	video, audio = make(chan []byte, 1000), make(chan []byte, 1000)
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		out := audio
		if tr.Kind() == webrtc.RTPCodecTypeVideo {
			out = video
		}
		for {
			p, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			select {
			case out <- p.Payload:
			default:
			}
		}
	})
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	ms, answer, err := e.Play(context.Background(), PlayRequest{Name: name, MediaSessionID: "play-" + name, SDP: offer.SDP})
	if err != nil {
		t.Fatalf("Play: %v", err)
	}
	t.Cleanup(func() { ms.Close(errors.New("test end")) })
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ms.Ready(ctx); err != nil {
		t.Fatalf("player Ready: %v", err)
	}
	return video, audio, ms
}

// expect waits for n payloads with the given prefix and checks they arrive in order.
func expect(t *testing.T, c chan []byte, prefix string, n int) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	last := -1
	for got := 0; got < n; {
		select {
		case p := <-c:
			i := bytes.Index(p, []byte(prefix))
			if i < 0 {
				t.Fatalf("payload %q has no %q", p, prefix)
			}
			var seq int
			if _, err := fmt.Sscanf(string(p[i+len(prefix):]), "%06d", &seq); err != nil {
				t.Fatalf("payload %q: %v", p, err)
			}
			if seq <= last {
				t.Fatalf("%s%d after %d", prefix, seq, last)
			}
			last = seq
			got++
		case <-timeout:
			t.Fatalf("only %d of %d %s packets", got, n, prefix)
		}
	}
}

func TestPublishPlayThroughEngine(t *testing.T) {
	e := newEngine(t, "A")
	stop := publisher(t, e, "s")
	video, audio, ms := player(t, e, "s")
	expect(t, video, "FRAME-", 30)
	expect(t, audio, "AUDIO-", 30)
	stop()
	select {
	case <-ms.Done():
		if !errors.Is(ms.Err(), ErrPublisherStopped) {
			t.Errorf("player ended with %v, want ErrPublisherStopped", ms.Err())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("player did not end when the publisher stopped")
	}
}

// TestEngineClose ends the sessions it handed out with ErrClosed, waits for its goroutines and refuses new ones.
func TestEngineClose(t *testing.T) {
	e := newEngine(t, "A")
	stop := publisher(t, e, "s")
	defer stop()
	video, _, ms := player(t, e, "s")
	expect(t, video, "FRAME-", 5)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
	select {
	case <-ms.Done():
		if !errors.Is(ms.Err(), ErrClosed) {
			t.Errorf("player ended with %v, want ErrClosed", ms.Err())
		}
	default:
		t.Fatal("Close returned with a live player session")
	}
	if e.Available("s") {
		t.Error("stream still published after Close")
	}
	if _, _, err := e.Play(context.Background(), PlayRequest{Name: "s", SDP: "v=0"}); !errors.Is(err, ErrClosed) {
		t.Errorf("play after close: %v, want ErrClosed", err)
	}
	cctx, ccancel := context.WithCancel(context.Background())
	ccancel()
	if _, _, err := newEngine(t, "B").Publish(cctx, PublishRequest{Name: "x", SDP: "v=0"}); !errors.Is(err, context.Canceled) {
		t.Errorf("publish with a cancelled ctx: %v, want context.Canceled", err)
	}
}

func TestPlayUnknownAndNameInUse(t *testing.T) {
	e := newEngine(t, "A")
	if _, _, err := e.Play(context.Background(), PlayRequest{Name: "nope", SDP: "v=0"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("play unknown: %v, want ErrNotFound", err)
	}
	stop := publisher(t, e, "s")
	defer stop()
	pc, _ := pionAPI(t).NewPeerConnection(webrtc.Configuration{})
	defer pc.Close()
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	offer, _ := pc.CreateOffer(nil)
	if _, _, err := e.Publish(context.Background(), PublishRequest{Name: "s", SDP: offer.SDP}); !errors.Is(err, ErrNameInUse) {
		t.Errorf("second publisher: %v, want ErrNameInUse", err)
	}
}

// TestPushBetweenEngines relays A's stream to B over an outbound session (what /pull/push does, without the
// WebSocket part) and plays it at B.
func TestPushBetweenEngines(t *testing.T) {
	a, b := newEngine(t, "A"), newEngine(t, "B")
	stop := publisher(t, a, "s")
	defer stop()
	out, offer, err := a.OfferPush(context.Background(), "s")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close(errors.New("test end"))
	ms, answer, err := b.Publish(context.Background(), PublishRequest{Name: "s", MediaSessionID: "relay", SDP: offer})
	if err != nil {
		t.Fatalf("B publish: %v", err)
	}
	if err := out.Accept(answer); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := out.Ready(ctx); err != nil {
		t.Fatalf("push Ready: %v", err)
	}
	if err := ms.Ready(ctx); err != nil {
		t.Fatalf("B publisher Ready: %v", err)
	}
	video, audio, _ := player(t, b, "s")
	expect(t, video, "FRAME-", 30)
	expect(t, audio, "AUDIO-", 30)
	if st := out.Stats(); st.Packets == 0 || st.Bytes == 0 {
		t.Errorf("outbound stats %+v", st)
	}
}

// TestPullBetweenEngines pulls A's stream into B, drops the relay session and attaches a new one: B's player keeps
// playing without reconnecting.
func TestPullBetweenEngines(t *testing.T) {
	a, b := newEngine(t, "A"), newEngine(t, "B")
	stop := publisher(t, a, "s")
	defer stop()
	attach := func() (close func()) {
		out, offer, err := b.OfferPull(context.Background(), "s")
		if err != nil {
			t.Fatal(err)
		}
		ms, answer, err := a.Play(context.Background(), PlayRequest{Name: "s", MediaSessionID: "relay", SDP: offer})
		if err != nil {
			t.Fatalf("A play: %v", err)
		}
		if err := out.Accept(answer); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := out.Ready(ctx); err != nil {
			t.Fatalf("pull Ready: %v", err)
		}
		return func() { out.Close(errors.New("remote lost")); ms.Close(errors.New("remote lost")) }
	}
	drop := attach()
	video, audio, ms := player(t, b, "s")
	expect(t, video, "FRAME-", 20)
	expect(t, audio, "AUDIO-", 20)
	drop()
	if !b.HasStream("s") {
		t.Fatal("the pulled stream ended with its relay session")
	}
	drop = attach()
	defer drop()
	for len(video) > 0 { // what was queued before the gap
		<-video
	}
	expect(t, video, "FRAME-", 20)
	select {
	case <-ms.Done():
		t.Fatalf("B's player ended: %v", ms.Err())
	default:
	}
}
