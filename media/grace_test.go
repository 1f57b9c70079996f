package media

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// rtpPlayer plays name with a pion peer and returns the video packets it receives.
func rtpPlayer(t *testing.T, e *Engine, name string) (chan *rtp.Packet, Session) {
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
	video := make(chan *rtp.Packet, 2000)
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			p, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			if tr.Kind() == webrtc.RTPCodecTypeVideo {
				select {
				case video <- p:
				default:
				}
			}
		}
	})
	offer, _ := pc.CreateOffer(nil)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	ms, answer, err := e.Play(context.Background(), PlayRequest{Name: name, SDP: offer.SDP})
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
	return video, ms
}

// nextFrame waits for a video packet whose payload carries FRAME-n with n >= min.
func nextFrame(t *testing.T, c chan *rtp.Packet, min int) (*rtp.Packet, int) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case p := <-c:
			var n int
			if len(p.Payload) > 5 {
				if _, err := fmt.Sscanf(string(p.Payload[5:]), "FRAME-%06d", &n); err == nil && n >= min {
					return p, n
				}
			}
		case <-timeout:
			t.Fatalf("no video frame >= %d", min)
			return nil, 0
		}
	}
}

// TestPublisherGraceTakeover: a publisher that is interrupted (its WebSocket dropped) keeps its stream for the
// grace; a new publisher of the name takes it over and the player, never re-signaled, sees the same SSRC and a
// sequence number that goes on by one.
func TestPublisherGraceTakeover(t *testing.T) {
	e := newEngine(t, "A")
	e.cfg.PublisherGrace = 3 * time.Second
	end1 := publisherFrom(t, e, "s", 0)
	video, ms := rtpPlayer(t, e, "s")
	before, _ := nextFrame(t, video, 20)
	end1(fmt.Errorf("test: websocket dropped: %w", ErrInterrupted))
	time.Sleep(300 * time.Millisecond) // the gap a reconnect takes
	if !e.Available("s") || e.Stats().InGrace != 1 {
		t.Fatalf("stream not kept in its grace: available %v, stats %+v", e.Available("s"), e.Stats())
	}
	var last *rtp.Packet
	for drained := false; !drained; {
		select {
		case p := <-video:
			last = p
		default:
			drained = true
		}
	}
	if last == nil {
		last = before
	}
	end2 := publisherFrom(t, e, "s", 100000)
	defer end2(errors.New("test end"))
	after, n := nextFrame(t, video, 100000)
	if after.SSRC != last.SSRC {
		t.Errorf("SSRC changed across the takeover: %x → %x", last.SSRC, after.SSRC)
	}
	// The first packet after the takeover may be a later one (video waits for nothing here); the sequence
	// continues from the last forwarded one without a jump.
	if d := after.SequenceNumber - last.SequenceNumber; d == 0 || d > 50 {
		t.Errorf("sequence jumped across the takeover: %d → %d (frame %d)", last.SequenceNumber, after.SequenceNumber, n)
	}
	if d := after.Timestamp - last.Timestamp; d > 90000*5 {
		t.Errorf("timestamp jumped across the takeover: %d → %d", last.Timestamp, after.Timestamp)
	}
	select {
	case <-ms.Done():
		t.Fatalf("player ended: %v", ms.Err())
	default:
	}
	if st := e.Stats(); st.Takeovers != 1 || st.InGrace != 0 {
		t.Errorf("stats %+v, want 1 takeover and none in grace", st)
	}
}

// TestPublisherGraceExpires: without a takeover the stream ends after the grace and the player with it; a
// deliberate stop ends it at once.
func TestPublisherGraceExpires(t *testing.T) {
	e := newEngine(t, "A")
	e.cfg.PublisherGrace = 500 * time.Millisecond
	end := publisherFrom(t, e, "s", 0)
	_, ms := rtpPlayer(t, e, "s")
	start := time.Now()
	end(fmt.Errorf("test: %w", ErrInterrupted))
	select {
	case <-ms.Done():
		if !errors.Is(ms.Err(), ErrPublisherStopped) {
			t.Errorf("player ended with %v", ms.Err())
		}
		if d := time.Since(start); d < 400*time.Millisecond {
			t.Errorf("player ended after %v, before the grace", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("player not ended after the grace")
	}

	end = publisherFrom(t, e, "t", 0)
	_, ms = rtpPlayer(t, e, "t")
	start = time.Now()
	end(errors.New("test: unpublished"))
	select {
	case <-ms.Done():
		if d := time.Since(start); d > 300*time.Millisecond {
			t.Errorf("a deliberate stop took %v", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("player not ended by the publisher's stop")
	}
}

// TestTakeoverNeedsSamePath: in its grace, a stream is taken over only by a publisher with the same relay path.
func TestTakeoverNeedsSamePath(t *testing.T) {
	e := newEngine(t, "A")
	e.cfg.PublisherGrace = 5 * time.Second
	end := publisherFrom(t, e, "s", 0)
	end(fmt.Errorf("test: %w", ErrInterrupted))
	if _, _, err := e.Publish(context.Background(), PublishRequest{Name: "s", SDP: sdpOfPionPublisher(t), Path: []string{"X"}}); !errors.Is(err, ErrNameInUse) {
		t.Fatalf("takeover from another path: %v, want ErrNameInUse", err)
	}
}

func sdpOfPionPublisher(t *testing.T) string {
	t.Helper()
	pc, err := pionAPI(t).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
			t.Fatal(err)
		}
	}
	offer, _ := pc.CreateOffer(nil)
	return offer.SDP
}
