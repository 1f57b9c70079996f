package session

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	pionice "github.com/pion/ice/v4"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/rtcrelay/rtcrelay/dtls"
	"github.com/rtcrelay/rtcrelay/ice"
	"github.com/rtcrelay/rtcrelay/packet"
	"github.com/rtcrelay/rtcrelay/sdp"
)

// pionAPI is pion/webrtc as an independent peer restricted to loopback (see the browser e2e notes).
func pionAPI() *webrtc.API {
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
		panic(err)
	}
	return webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(m))
}

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("SESSION_DEBUG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// testSocket serves a loopback media socket for the test.
func testSocket(t *testing.T) *ice.Socket {
	t.Helper()
	s, err := ice.Listen(ice.SocketConfig{
		Addr:         netip.MustParseAddrPort("127.0.0.1:0"),
		AcceptRemote: func(a netip.Addr) bool { return a.IsLoopback() },
		Logger:       testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(context.Background()) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-errc; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s
}

func testConfig(t *testing.T) Config {
	t.Helper()
	cert, err := dtls.GenerateCertificate()
	if err != nil {
		t.Fatal(err)
	}
	return Config{Socket: testSocket(t), Certificate: cert, Logger: testLogger(t)}
}

// chanSink collects what a session decrypts.
type chanSink struct {
	rtp  chan rtp.Packet
	rtcp chan []byte
}

func newChanSink() *chanSink {
	return &chanSink{rtp: make(chan rtp.Packet, 256), rtcp: make(chan []byte, 64)}
}

func (k *chanSink) HandleRTP(p *packet.Buffer) {
	var pkt rtp.Packet
	if err := pkt.Unmarshal(append([]byte(nil), p.Bytes()...)); err != nil {
		panic(err)
	}
	if pkt.SSRC != p.Header.SSRC || pkt.SequenceNumber != p.Header.SequenceNumber {
		panic("p.Header does not match the plaintext")
	}
	select {
	case k.rtp <- pkt:
	default:
	}
}

func (k *chanSink) HandleRTCP(plain []byte) {
	select {
	case k.rtcp <- append([]byte(nil), plain...):
	default:
	}
}

func closePC(t *testing.T, pc *webrtc.PeerConnection) {
	t.Cleanup(func() {
		if err := pc.Close(); err != nil {
			t.Errorf("pion close: %v", err)
		}
	})
}

// pionPublisher makes a pion PeerConnection that offers like a browser publishing: sendonly audio and video.
// It returns the offer SDP taken before gathering, so it carries no candidates.
func pionPublisher(t *testing.T) (*webrtc.PeerConnection, *webrtc.TrackLocalStaticRTP, *webrtc.RTPSender, string) {
	t.Helper()
	pc, err := pionAPI().NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	closePC(t, pc)
	audio, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "a", "pub")
	if err != nil {
		t.Fatal(err)
	}
	video, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "v", "pub")
	if err != nil {
		t.Fatal(err)
	}
	send := webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}
	if _, err := pc.AddTransceiverFromTrack(audio, send); err != nil {
		t.Fatal(err)
	}
	tr, err := pc.AddTransceiverFromTrack(video, send)
	if err != nil {
		t.Fatal(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	return pc, video, tr.Sender(), offer.SDP
}

// answer builds our ICE-lite answer for a publish offer.
func answer(t *testing.T, cfg Config, offerSDP string, mutate func(*sdp.Description)) (*Session, string) {
	t.Helper()
	offer, err := sdp.Parse(offerSDP)
	if err != nil {
		t.Fatal(err)
	}
	if len(offer.Candidates) != 0 {
		t.Fatalf("offer has candidates: %q", offer.Candidates)
	}
	if mutate != nil {
		mutate(offer)
	}
	tracks, err := sdp.NegotiatePublish(offer)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewAnswerer(cfg, offer)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(nil) })
	ans, err := sdp.BuildAnswer(offer, s.Transport(), tracks, "stream", "cname")
	if err != nil {
		t.Fatal(err)
	}
	return s, ans
}

func startAsync(ctx context.Context, s *Session) <-chan error {
	errc := make(chan error, 1)
	go func() { errc <- s.Start(ctx) }()
	return errc
}

// (a) pion offers like a browser; we answer ICE-lite, DTLS server, and media flows both ways.
func TestPionPublishesToAnswerer(t *testing.T) {
	cfg := testConfig(t)
	pc, video, sender, offerSDP := pionPublisher(t)
	s, ans := answer(t, cfg, offerSDP, nil)
	sink := newChanSink()
	s.SetSink(sink)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	started := startAsync(ctx, s)
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: ans}); err != nil {
		t.Fatalf("pion rejects our answer: %v\n%s", err, ans)
	}
	if err := <-started; err != nil {
		t.Fatalf("Start: %v", err)
	}
	if p := s.SRTPProfile(); p != dtls.ProfileAEADAES128GCM {
		t.Fatalf("SRTP profile %#x, want AEAD_AES_128_GCM", p)
	}

	// pion → us: RTP, decrypted in place on the socket reader.
	payload := []byte("vp8 payload that is not really vp8")
	var got rtp.Packet
	for seq := uint16(1); ; seq++ {
		if err := video.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: 3000 * uint32(seq)}, Payload: payload}); err != nil {
			t.Fatal(err)
		}
		select {
		case got = <-sink.rtp:
		case <-time.After(20 * time.Millisecond):
			if ctx.Err() != nil {
				t.Fatal("no RTP from pion")
			}
			continue
		case <-ctx.Done():
			t.Fatal("no RTP from pion")
		}
		break
	}
	if string(got.Payload) != string(payload) {
		t.Fatalf("payload %q", got.Payload)
	}

	// us → pion: a PLI for the video SSRC reaches pion's sender.
	pli, err := rtcp.Marshal([]rtcp.Packet{&rtcp.PictureLossIndication{SenderSSRC: 1, MediaSSRC: got.SSRC}})
	if err != nil {
		t.Fatal(err)
	}
	gotPLI := make(chan struct{})
	go func() {
		for {
			pkts, _, err := sender.ReadRTCP()
			if err != nil {
				return
			}
			for _, p := range pkts {
				if pl, ok := p.(*rtcp.PictureLossIndication); ok && pl.MediaSSRC == got.SSRC {
					close(gotPLI)
					return
				}
			}
		}
	}()
	if err := s.WriteRTCP(pli); err != nil {
		t.Fatal(err)
	}
	select {
	case <-gotPLI:
	case <-ctx.Done():
		t.Fatal("pion got no PLI")
	}
	st := s.Stats()
	if st.RTPIn == 0 || st.RTCPOut != 1 || st.DecryptFailures != 0 {
		t.Fatalf("stats %+v", st)
	}

	// pion closes: close_notify ends our session.
	pc.Close()
	select {
	case <-s.Done():
		if !errors.Is(s.Err(), dtls.ErrPeerClosed) {
			t.Fatalf("session ended with %v", s.Err())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("session outlived the peer's close_notify")
	}
}

// (b) we offer as the controlling agent (an outbound relay); pion answers and receives our RTP.
func TestOffererToPion(t *testing.T) {
	cfg := testConfig(t)
	s, err := NewOfferer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(nil)
	const ssrc = 0x1234abcd
	offer, err := sdp.BuildOffer(s.Transport(), []sdp.Track{{Mid: "0", Kind: sdp.KindVideo, SSRC: ssrc, Direction: sdp.DirSendOnly}}, "stream", "cname")
	if err != nil {
		t.Fatal(err)
	}

	pc, err := pionAPI().NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	closePC(t, pc)
	tracks := make(chan *webrtc.TrackRemote, 1)
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) { tracks <- tr })
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		t.Fatalf("pion rejects our offer: %v\n%s", err, offer)
	}
	a, err := pc.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(a); err != nil {
		t.Fatal(err)
	}
	<-gathered
	ans, err := sdp.Parse(pc.LocalDescription().SDP)
	if err != nil {
		t.Fatal(err)
	}
	if len(ans.Candidates) == 0 {
		t.Fatal("pion answered without candidates")
	}
	if err := s.SetRemote(ans); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}

	payload := []byte("relayed frame")
	var tr *webrtc.TrackRemote
	buf := make([]byte, 0, 1500)
	for seq := uint16(100); tr == nil; seq++ {
		pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: uint32(seq) * 3000, SSRC: ssrc}, Payload: payload}
		b, err := pkt.Header.MarshalTo(buf[:cap(buf)])
		if err != nil {
			t.Fatal(err)
		}
		out := append(buf[:b], payload...)
		if err := s.WriteRTP(out); err != nil {
			t.Fatal(err)
		}
		select {
		case tr = <-tracks:
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			t.Fatal("pion got no track")
		}
	}
	if tr.SSRC() != ssrc {
		t.Fatalf("pion track SSRC %x", tr.SSRC())
	}
	tr.SetReadDeadline(time.Now().Add(5 * time.Second))
	var wg sync.WaitGroup
	wg.Go(func() {
		for seq := uint16(1000); ctx.Err() == nil && seq < 1100; seq++ {
			pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, SSRC: ssrc}, Payload: payload}
			raw, _ := pkt.Marshal()
			if err := s.WriteRTP(append(make([]byte, 0, len(raw)+16), raw...)); err != nil {
				return
			}
			time.Sleep(time.Millisecond)
		}
	})
	pkt, _, err := tr.ReadRTP()
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if string(pkt.Payload) != string(payload) {
		t.Fatalf("pion got %q", pkt.Payload)
	}
	if s.Stats().RTPOut == 0 {
		t.Fatal("no RTPOut")
	}
}

// (c) a fingerprint in the offer that is not the peer's certificate fails DTLS with the fingerprint stage.
func TestWrongFingerprint(t *testing.T) {
	cfg := testConfig(t)
	pc, _, _, offerSDP := pionPublisher(t)
	other, err := dtls.GenerateCertificate()
	if err != nil {
		t.Fatal(err)
	}
	s, ans := answer(t, cfg, offerSDP, func(d *sdp.Description) { d.Fingerprint = "sha-256 " + other.Fingerprint() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	started := startAsync(ctx, s)
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: ans}); err != nil {
		t.Fatal(err)
	}
	err = <-started
	var se *StageError
	if !errors.As(err, &se) || se.Stage != StageDTLSFingerprint || !errors.Is(err, dtls.ErrFingerprint) {
		t.Fatalf("err %v", err)
	}
	if !errors.Is(s.Err(), dtls.ErrFingerprint) {
		t.Fatalf("session Err %v", s.Err())
	}
}

// (d) a peer that passes ICE but never speaks DTLS: the DTLS deadline fails the session with the DTLS stage.
func TestPeerWithoutDTLS(t *testing.T) {
	cfg := testConfig(t)
	cfg.DTLSTimeout = 300 * time.Millisecond
	peerSock := testSocket(t)
	peer, err := peerSock.NewAgent(ice.AgentConfig{Controlling: true}, nopEndpoint{})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	pu, pp := peer.LocalCredentials()
	other, err := dtls.GenerateCertificate()
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewAnswerer(cfg, &sdp.Description{ICEUfrag: pu, ICEPwd: pp, Fingerprint: "sha-256 " + other.Fingerprint(), Setup: "actpass"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(nil)
	tp := s.Transport()
	peer.SetRemote(tp.ICEUfrag, tp.ICEPwd, tp.Candidates, true)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	started := startAsync(ctx, s)
	if _, err := peer.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	err = <-started
	var se *StageError
	if !errors.As(err, &se) || se.Stage != StageDTLSError || !errors.Is(err, errDTLSTime) {
		t.Fatalf("err %v", err)
	}
}

// Nobody checks: the ICE deadline fails the session with the ICE timeout stage.
func TestICETimeout(t *testing.T) {
	cfg := testConfig(t)
	cfg.ICETimeout = 200 * time.Millisecond
	s, err := NewAnswerer(cfg, &sdp.Description{ICEUfrag: "abcd", ICEPwd: "0123456789abcdefghijkl", Fingerprint: "sha-256 " + cfg.Certificate.Fingerprint()})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Start(context.Background())
	var se *StageError
	if !errors.As(err, &se) || se.Stage != StageICETimeout {
		t.Fatalf("err %v", err)
	}
	select {
	case <-s.Done():
	default:
		t.Fatal("session not done after a failed Start")
	}
}

type nopEndpoint struct{}

func (nopEndpoint) HandleDTLS([]byte, netip.AddrPort)          {}
func (nopEndpoint) HandleSRTP(*packet.Buffer, netip.AddrPort)  {}
func (nopEndpoint) HandleSRTCP(*packet.Buffer, netip.AddrPort) {}
