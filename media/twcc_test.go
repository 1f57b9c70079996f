package media

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	pionice "github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	piontwcc "github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	pionsdp "github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/rtcrelay/rtcrelay/twcc"
)

// sendLog notes when each transport-wide sequence number left the pion publisher. As an interceptor added
// before pion's TWCC header extension interceptor, it sits below it and sees the numbers it stamps.
type sendLog struct {
	interceptor.NoOp
	id uint8 // the negotiated extension ID, set before any packet is sent

	mu   sync.Mutex
	sent map[uint16]time.Time
}

func (l *sendLog) NewInterceptor(string) (interceptor.Interceptor, error) { return l, nil }

func (l *sendLog) BindLocalStream(info *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	for _, e := range info.RTPHeaderExtensions {
		if e.URI == pionsdp.TransportCCURI {
			l.mu.Lock()
			l.id = uint8(e.ID)
			l.mu.Unlock()
		}
	}
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		l.mu.Lock()
		if seq, ok := twcc.SequenceNumber(h, l.id); ok {
			l.sent[seq] = time.Now()
		}
		l.mu.Unlock()
		return w.Write(h, payload, a)
	})
}

func (l *sendLog) at(seq uint16) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	t, ok := l.sent[seq]
	return t, ok
}

// TestPublisherGetsTWCCFeedback: a pion/webrtc publisher with the TWCC header extension gets transport-cc
// feedback from the engine, from the stream's RTCP SSRC, covering the sequence numbers it sent, received, with
// arrival deltas close to the send deltas.
func TestPublisherGetsTWCCFeedback(t *testing.T) {
	e := newEngine(t, "a")
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
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: pionsdp.TransportCCURI}, k); err != nil {
			t.Fatal(err)
		}
	}
	log := &sendLog{sent: map[uint16]time.Time{}}
	hdr, err := piontwcc.NewHeaderExtensionInterceptor()
	if err != nil {
		t.Fatal(err)
	}
	ir := &interceptor.Registry{}
	ir.Add(log)
	ir.Add(hdr)
	api := webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir))

	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = pc.Close() }()
	video, _ := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "v", "pub")
	audio, _ := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "a", "pub")
	fbs := make(chan *rtcp.TransportLayerCC, 256)
	for _, tr := range []webrtc.TrackLocal{audio, video} {
		x, err := pc.AddTransceiverFromTrack(tr, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		if err != nil {
			t.Fatal(err)
		}
		go func() { // the feedback goes to the sender of its media SSRC; ends when pc closes
			for {
				pkts, _, err := x.Sender().ReadRTCP()
				if err != nil {
					return
				}
				for _, p := range pkts {
					if fb, ok := p.(*rtcp.TransportLayerCC); ok {
						select {
						case fbs <- fb:
						default:
						}
					}
				}
			}
		}()
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	ms, answer, err := e.Publish(context.Background(), PublishRequest{Name: "twcc", MediaSessionID: "pub-twcc", SDP: offer.SDP})
	if err != nil {
		t.Fatal(err)
	}
	defer ms.Close(nil)
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ms.Ready(ctx); err != nil {
		t.Fatalf("publisher Ready: %v", err)
	}
	st, ok := e.Registry().Lookup("twcc")
	if !ok {
		t.Fatal("stream not published")
	}

	// Send 5 ms apart until 200 numbers were reported received, at most 10 s.
	reported := map[uint16]twcc.Status{}
	received, feedbacks := 0, 0
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for i := 0; received < 200; {
		select {
		case <-ctx.Done():
			t.Fatalf("%d sequence numbers reported received in %d feedbacks", received, feedbacks)
		case <-tick.C:
			if i%2 == 0 {
				_ = video.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, Marker: true, SequenceNumber: uint16(i), Timestamp: uint32(i * 3000)}, Payload: make([]byte, 600)})
			} else {
				_ = audio.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(i), Timestamp: uint32(i * 480)}, Payload: make([]byte, 100)})
			}
			i++
		case fb := <-fbs:
			feedbacks++
			if fb.SenderSSRC != st.SSRC() {
				t.Fatalf("feedback from SSRC %x, the stream's RTCP SSRC is %x", fb.SenderSSRC, st.SSRC())
			}
			for _, s := range twcc.Decode(fb) {
				if _, ok := log.at(s.Seq); !ok && s.Received {
					t.Fatalf("seq %d reported received, never sent", s.Seq)
				}
				if old, ok := reported[s.Seq]; !ok || !old.Received {
					reported[s.Seq] = s
					if s.Received {
						received++
					}
				}
			}
		}
	}
	// Loopback loses nothing: every number up to the highest reported is received, and the arrival deltas
	// follow the send deltas (within the scheduling noise of a shared machine).
	var hi uint16
	for seq := range reported {
		hi = max(hi, seq)
	}
	var prev *twcc.Status
	var prevSent time.Time
	worst := time.Duration(0)
	for seq := range hi + 1 {
		s, ok := reported[seq]
		sent, wasSent := log.at(seq)
		if !wasSent {
			t.Fatalf("seq %d reported but never sent", seq)
		}
		if !ok || !s.Received {
			t.Fatalf("seq %d not reported received (%v %+v)", seq, ok, s)
		}
		if prev != nil {
			recv := time.Duration(s.ArrivalUS-prev.ArrivalUS) * time.Microsecond
			diff := recv - sent.Sub(prevSent)
			worst = max(worst, diff.Abs())
			if diff.Abs() > 50*time.Millisecond {
				t.Errorf("seq %d: arrived %v after seq %d, sent %v after", seq, recv, seq-1, sent.Sub(prevSent))
			}
		}
		prev, prevSent = &s, sent
	}
	elapsed := log.sentSpan(hi)
	t.Logf("%d numbers reported in %d feedbacks over %v; worst delta error %v", hi+1, feedbacks, elapsed, worst)
	// About one feedback per 100 ms.
	if lo, hi := int(elapsed/(100*time.Millisecond))/2, int(elapsed/(100*time.Millisecond))+3; feedbacks < lo || feedbacks > hi {
		t.Errorf("%d feedbacks over %v", feedbacks, elapsed)
	}
}

// sentSpan is the time from the first to the last sent sequence number up to hi.
func (l *sendLog) sentSpan(hi uint16) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sent[hi].Sub(l.sent[0])
}
