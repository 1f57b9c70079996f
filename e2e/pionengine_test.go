package e2e

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"

	"github.com/rtcrelay/rtcrelay/media"
	"github.com/rtcrelay/rtcrelay/signaling"
	"github.com/rtcrelay/rtcrelay/web"
)

// pionEngine is a reference media side built on pion/webrtc (an independent implementation, tests only). It lets
// the browser harness be checked end to end with the project's real signaling and pages, independently of media/:
// when a TestIssue3 test fails but the same scenario passes on TestHarness, the fault is in the server's media path.
type pionEngine struct {
	api  *webrtc.API
	mu   sync.Mutex
	pubs map[string]*pionSession
}

type pionSession struct {
	e         *pionEngine
	name      string
	pc        *webrtc.PeerConnection
	connected chan struct{}
	done      chan struct{}
	once      sync.Once
	err       error
	publisher bool
	mu        sync.Mutex
	players   map[*pionSession]map[string]*webrtc.TrackLocalStaticRTP // kind → track (publisher only)
}

func newPionEngine(t testing.TB) *pionEngine {
	t.Helper()
	m := &webrtc.MediaEngine{}
	for _, c := range []webrtc.RTPCodecParameters{
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"}, PayloadType: 111},
	} {
		if err := m.RegisterCodec(c, webrtc.RTPCodecTypeAudio); err != nil {
			t.Fatal(err)
		}
	}
	fb := []webrtc.RTCPFeedback{{Type: "nack"}, {Type: "nack", Parameter: "pli"}, {Type: "ccm", Parameter: "fir"}}
	if err := m.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000, RTCPFeedback: fb}, PayloadType: 96}, webrtc.RTPCodecTypeVideo); err != nil {
		t.Fatal(err)
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		t.Fatal(err)
	}
	lo := net.IPv4(127, 0, 0, 1)
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetInterfaceFilter(func(n string) bool { return n == "lo" })
	se.SetIPFilter(func(ip net.IP) bool { return ip.Equal(lo) })
	se.SetRemoteIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	return &pionEngine{api: webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), pubs: map[string]*pionSession{}}
}

func (e *pionEngine) newSession(name string, publisher bool) (*pionSession, error) {
	pc, err := e.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	s := &pionSession{e: e, name: name, pc: pc, connected: make(chan struct{}), done: make(chan struct{}), publisher: publisher,
		players: map[*pionSession]map[string]*webrtc.TrackLocalStaticRTP{}}
	var connOnce sync.Once
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		switch st {
		case webrtc.PeerConnectionStateConnected:
			connOnce.Do(func() { close(s.connected) })
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			s.Close(fmt.Errorf("peer connection %s", st))
		}
	})
	return s, nil
}

func (s *pionSession) answer(offer string) (string, error) {
	if err := s.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", err
	}
	ans, err := s.pc.CreateAnswer(nil)
	if err != nil {
		return "", err
	}
	gathered := webrtc.GatheringCompletePromise(s.pc)
	if err := s.pc.SetLocalDescription(ans); err != nil {
		return "", err
	}
	<-gathered
	return s.pc.LocalDescription().SDP, nil
}

func (e *pionEngine) Publish(_ context.Context, req media.PublishRequest) (media.Session, string, error) {
	e.mu.Lock()
	if e.pubs[req.Name] != nil {
		e.mu.Unlock()
		return nil, "", media.ErrNameInUse
	}
	s, err := e.newSession(req.Name, true)
	if err != nil {
		e.mu.Unlock()
		return nil, "", err
	}
	e.pubs[req.Name] = s
	e.mu.Unlock()
	s.pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		kind := tr.Kind().String()
		if tr.Kind() == webrtc.RTPCodecTypeVideo {
			go s.pliLoop(uint32(tr.SSRC()))
		}
		for {
			p, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			s.mu.Lock()
			for _, tracks := range s.players {
				if lt := tracks[kind]; lt != nil {
					_ = lt.WriteRTP(p)
				}
			}
			s.mu.Unlock()
		}
	})
	ans, err := s.answer(req.SDP)
	if err != nil {
		s.Close(err)
		return nil, "", err
	}
	return s, ans, nil
}

// pliLoop asks the publisher for a keyframe every second so that late players start quickly.
func (s *pionSession) pliLoop(ssrc uint32) {
	tk := time.NewTicker(time.Second)
	defer tk.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-tk.C:
			_ = s.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}})
		}
	}
}

func (e *pionEngine) Play(_ context.Context, req media.PlayRequest) (media.Session, string, error) {
	e.mu.Lock()
	pub := e.pubs[req.Name]
	e.mu.Unlock()
	if pub == nil {
		return nil, "", media.ErrNotFound
	}
	s, err := e.newSession(req.Name, false)
	if err != nil {
		return nil, "", err
	}
	tracks := map[string]*webrtc.TrackLocalStaticRTP{}
	for kind, mime := range map[string]string{"audio": webrtc.MimeTypeOpus, "video": webrtc.MimeTypeVP8} {
		lt, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: mime}, kind, req.Name)
		if err != nil {
			return nil, "", err
		}
		rtpSender, err := s.pc.AddTrack(lt)
		if err != nil {
			return nil, "", err
		}
		go func() { // read RTCP so the interceptors work
			for {
				if _, _, err := rtpSender.ReadRTCP(); err != nil {
					return
				}
			}
		}()
		tracks[kind] = lt
	}
	ans, err := s.answer(req.SDP)
	if err != nil {
		s.Close(err)
		return nil, "", err
	}
	go func() {
		select {
		case <-s.connected:
		case <-s.done:
			return
		}
		pub.mu.Lock()
		pub.players[s] = tracks
		pub.mu.Unlock()
		select {
		case <-s.done:
		case <-pub.done:
			s.Close(media.ErrPublisherStopped)
		}
		pub.mu.Lock()
		delete(pub.players, s)
		pub.mu.Unlock()
	}()
	return s, ans, nil
}

func (e *pionEngine) Available(name string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.pubs[name] != nil
}

func (s *pionSession) Ready(ctx context.Context) error {
	select {
	case <-s.connected:
		return nil
	case <-s.done:
		return s.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *pionSession) Done() <-chan struct{} { return s.done }

func (s *pionSession) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

func (s *pionSession) Close(cause error) {
	s.once.Do(func() {
		if cause == nil {
			cause = errors.New("closed")
		}
		s.err = cause
		close(s.done)
		if s.publisher {
			s.e.mu.Lock()
			if s.e.pubs[s.name] == s {
				delete(s.e.pubs, s.name)
			}
			s.e.mu.Unlock()
		}
		go s.pc.Close()
	})
}

// startReference runs signaling.Server + web.Handler with the pion engine in process, on loopback ports, and
// returns a *Server describing it (no process: Log() is the slog output).
func startReference(t testing.TB) *Server {
	t.Helper()
	lb := &logBuffer{}
	log := slog.New(slog.NewTextHandler(logWriter{lb}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	sig := signaling.NewServer(signaling.ServerConfig{Engine: newPionEngine(t), Logger: log, ReadyTimeout: 15 * time.Second})
	wsLn, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	wsSrv := httptest.NewUnstartedServer(sig)
	wsSrv.Listener.Close()
	wsSrv.Listener = wsLn
	wsSrv.Start()
	wsPort := wsLn.Addr().(*net.TCPAddr).Port
	webSrv := httptest.NewServer(web.Handler(web.Config{WSPort: wsPort}))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = sig.Shutdown(ctx)
		wsSrv.Close()
		webSrv.Close()
		if t.Failed() {
			t.Logf("---- reference server log ----\n%s", tail(lb.String(), 200))
		}
	})
	httpPort := webSrv.Listener.Addr().(*net.TCPAddr).Port
	return &Server{Opts: ServerOpts{Name: "reference"}, log: lb, WSPort: wsPort, HTTPPort: httpPort,
		WS: "ws://127.0.0.1:" + strconv.Itoa(wsPort), HTTP: "http://127.0.0.1:" + strconv.Itoa(httpPort)}
}

type logWriter struct{ b *logBuffer }

func (w logWriter) Write(p []byte) (int, error) {
	w.b.add(string(p[:len(p)-1]))
	return len(p), nil
}

var _ http.Handler = (*signaling.Server)(nil)
