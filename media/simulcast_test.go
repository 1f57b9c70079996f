package media

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/rtcrelay/rtcrelay/forwarder"
	"github.com/rtcrelay/rtcrelay/sdp"
)

// simulcastPublisher publishes name to e from a pion peer sending VP8 as three simulcast layers (RIDs q, h, f,
// told apart by the rtp-stream-id extension), each packet's payload naming its layer.
func simulcastPublisher(t *testing.T, e *Engine, name string) (stop func()) {
	t.Helper()
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	for _, uri := range []string{sdp.ExtSDESMid, sdp.ExtRTPStreamID, sdp.ExtRepairedStreamID} {
		if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: uri}, webrtc.RTPCodecTypeVideo); err != nil {
			t.Fatal(err)
		}
	}
	pcAPI := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(pionSettings()))
	pc, err := pcAPI.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	var layers []*webrtc.TrackLocalStaticRTP
	for _, rid := range []string{"q", "h", "f"} {
		tr, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "v", "pub", webrtc.WithRTPStreamID(rid))
		if err != nil {
			t.Fatal(err)
		}
		layers = append(layers, tr)
	}
	sender, err := pc.AddTrack(layers[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers[1:] {
		if err := sender.AddEncoding(l); err != nil {
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
	// This pion does not stamp RIDs on simulcast packets (Chrome does, on the first ones): the test does.
	od, err := sdp.Parse(offer.SDP)
	if err != nil {
		t.Fatal(err)
	}
	var ridID uint8
	for _, x := range od.Media[0].Extensions {
		if x.URI == sdp.ExtRTPStreamID {
			ridID = x.ID
		}
	}
	if ridID == 0 {
		t.Fatal("pion offered no rtp-stream-id extension")
	}
	ms, answer, err := e.Publish(context.Background(), PublishRequest{Name: name, MediaSessionID: "pub-" + name, SDP: offer.SDP})
	if err != nil {
		t.Fatalf("simulcast publish: %v", err)
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
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			key := byte(0x01)
			if i%10 == 0 {
				key = 0x00
			}
			for l, tr := range layers {
				payload := append([]byte{0x10, key, 0x9d, 0x01, 0x2a}, fmt.Sprintf("LAYER-%d-%06d", l, i)...)
				h := rtp.Header{Version: 2, Marker: true, SequenceNumber: uint16(i), Timestamp: uint32(i * 3000)}
				if i < 20 {
					_ = h.SetExtension(ridID, []byte(tr.RID()))
				}
				_ = tr.WriteRTP(&rtp.Packet{Header: h, Payload: payload})
			}
		}
	}()
	return func() {
		close(done)
		ms.Close(errors.New("test end"))
		_ = pc.Close()
	}
}

// TestSimulcastPushBetweenEngines: A's simulcast stream is pushed to B with all its layers (one m-section,
// a=simulcast:send), so that B's players adapt on their own: B publishes three layers, each fed.
func TestSimulcastPushBetweenEngines(t *testing.T) {
	a, b := newEngine(t, "A"), newEngine(t, "B")
	stop := simulcastPublisher(t, a, "s")
	defer stop()
	waitLayers(t, a, "A")
	out, offer, err := a.OfferPush(context.Background(), "s")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close(errors.New("test end"))
	od, err := sdp.Parse(offer)
	if err != nil {
		t.Fatal(err)
	}
	var videos int
	for _, m := range od.Media {
		if m.Kind == sdp.KindVideo {
			videos++
			if len(m.SimulcastSend) != 3 {
				t.Errorf("push offer's video: simulcast send %v, want q h f", m.SimulcastSend)
			}
		}
	}
	if videos != 1 {
		t.Fatalf("push offer has %d video m-sections, want 1:\n%s", videos, offer)
	}
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
	waitLayers(t, b, "B")
	topLayerPlays(t, b)
}

// waitLayers waits until e's stream s has three simulcast layers, each fed.
func waitLayers(t *testing.T, e *Engine, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, ok := e.Registry().Lookup("s")
		n := 0
		if ok {
			for _, ts := range st.Stats().Tracks {
				if ts.RID != "" && ts.Packets > 20 {
					n++
				}
			}
		}
		if n == 3 {
			return
		}
		if time.Now().After(deadline) {
			var tracks []forwarder.TrackInfo
			if ok {
				tracks = st.Tracks()
			}
			t.Fatalf("%s: %d of 3 layers fed (tracks %+v)", what, n, tracks)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// topLayerPlays checks that a player of e's stream s starts on the top layer (its estimate starts above every
// layer's rate).
func topLayerPlays(t *testing.T, e *Engine) {
	t.Helper()
	video, _ := rtpPlayer(t, e, "s")
	timeout := time.After(5 * time.Second)
	for got := 0; got < 20; {
		select {
		case p := <-video:
			if len(p.Payload) > 6 && string(p.Payload[5:]) >= "LAYER-2-" && string(p.Payload[5:]) < "LAYER-3" {
				got++
			}
		case <-timeout:
			t.Fatal("the player got no packets of the top layer")
		}
	}
}

// TestSimulcastPullBetweenEngines: B pulls A's simulcast stream asking for simulcast under RIDs of its own; A
// sends every layer, and B publishes three layers, each fed, whose players adapt on their own.
func TestSimulcastPullBetweenEngines(t *testing.T) {
	a, b := newEngine(t, "A"), newEngine(t, "B")
	stop := simulcastPublisher(t, a, "s")
	defer stop()
	waitLayers(t, a, "A")
	out, offer, err := b.OfferPull(context.Background(), "s")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close(errors.New("test end"))
	ms, answer, err := a.Play(context.Background(), PlayRequest{Name: "s", MediaSessionID: "relay", SDP: offer})
	if err != nil {
		t.Fatalf("A play: %v", err)
	}
	ad, err := sdp.Parse(answer)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ad.Media {
		if m.Kind == sdp.KindVideo && len(m.SimulcastSend) != 3 {
			t.Errorf("A's answer to the pull: simulcast send %v, want three of B's RIDs", m.SimulcastSend)
		}
	}
	if err := out.Accept(answer); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := out.Ready(ctx); err != nil {
		t.Fatalf("pull Ready: %v", err)
	}
	if err := ms.Ready(ctx); err != nil {
		t.Fatalf("A player Ready: %v", err)
	}
	waitLayers(t, b, "B")
	topLayerPlays(t, b)
}

// TestPullOfPlainStreamAsksSimulcast: a pull always asks for simulcast; a stream without layers answers with a
// plain video track, which B publishes as one.
func TestPullOfPlainStreamAsksSimulcast(t *testing.T) {
	a := newEngine(t, "A")
	stop := publisher(t, a, "s")
	defer stop()
	b := newEngine(t, "B")
	out, offer, err := b.OfferPull(context.Background(), "s")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close(errors.New("test end"))
	_, answer, err := a.Play(context.Background(), PlayRequest{Name: "s", MediaSessionID: "relay", SDP: offer})
	if err != nil {
		t.Fatalf("A play: %v", err)
	}
	if strings.Contains(answer, "a=simulcast") || strings.Contains(answer, "a=rid") {
		t.Fatalf("answer for a plain stream offers simulcast:\n%s", answer)
	}
}
