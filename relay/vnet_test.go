package relay

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pion/rtp"

	"github.com/rtcrelay/rtcrelay/dtls"
	"github.com/rtcrelay/rtcrelay/ice"
	"github.com/rtcrelay/rtcrelay/internal/vnettest"
	"github.com/rtcrelay/rtcrelay/media"
	"github.com/rtcrelay/rtcrelay/packet"
	"github.com/rtcrelay/rtcrelay/sdp"
	"github.com/rtcrelay/rtcrelay/session"
	"github.com/rtcrelay/rtcrelay/signaling"
)

// The deterministic relay test: two real media engines (origin A, edge B) and two clients of ours on a
// virtual WAN (pion/transport vnet) with delay and seeded loss, inside a testing/synctest bubble, so that
// seconds of network time take milliseconds and nothing touches the host's network. The relay agent on A
// speaks the real WCS protocol (signaling.Client) to B's real signaling.Server over in-memory pipes.

const (
	hostA, hostB     = "10.0.0.1", "10.0.0.2"
	hostPub, hostPly = "10.0.0.3", "10.0.0.4"
)

func vnetLogger() *slog.Logger {
	if os.Getenv("RELAY_DEBUG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// vnetSocket serves an ice.Socket on a host of the WAN; t's cleanup closes it.
func vnetSocket(t *testing.T, w *vnettest.WAN, ip string) *ice.Socket {
	t.Helper()
	s, err := ice.Listen(ice.SocketConfig{Addr: netip.AddrPortFrom(netip.MustParseAddr(ip), 5000), Net: w.Net(ip), Logger: vnetLogger()})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(context.Background()) }()
	t.Cleanup(func() {
		s.Close()
		<-errc
	})
	return s
}

func vnetCert(t *testing.T) *dtls.Certificate {
	t.Helper()
	c, err := dtls.GenerateCertificate()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// vnetEngine is a media engine whose main and outbound sockets are on host ip.
func vnetEngine(t *testing.T, w *vnettest.WAN, ip, id string, grace time.Duration) *media.Engine {
	t.Helper()
	e := media.New(media.Config{
		Socket: vnetSocket(t, w, ip), Certificate: vnetCert(t), ICETimeout: 5 * time.Second, DTLSTimeout: 5 * time.Second,
		Outbound: ice.SocketConfig{Addr: netip.AddrPortFrom(netip.MustParseAddr(ip), 0), Net: w.Net(ip)},
		ServerID: id, PublisherGrace: grace, Logger: vnetLogger().With("server", id),
	})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.Close(ctx); err != nil {
			t.Errorf("engine %s: %v", id, err)
		}
		e.Registry().Close()
	})
	return e
}

// pipeListener is a net.Listener of in-memory connections (net.Pipe): B's signaling port.
type pipeListener struct {
	conns chan net.Conn
	once  sync.Once
	done  chan struct{}
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error { l.once.Do(func() { close(l.done) }); return nil }
func (l *pipeListener) Addr() net.Addr {
	return &net.TCPAddr{IP: net.ParseIP(hostB), Port: 8080}
}

func (l *pipeListener) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	c, s := net.Pipe()
	select {
	case l.conns <- s:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// serveSignaling serves B's WCS signaling on an in-memory listener and returns the dialer that reaches it.
func serveSignaling(t *testing.T, e *media.Engine, id string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	t.Helper()
	sig := signaling.NewServer(signaling.ServerConfig{Engine: e, ServerID: id, Logger: vnetLogger().With("server", id)})
	l := newPipeListener()
	hs := &http.Server{Handler: sig, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = sig.Shutdown(ctx)
		_ = hs.Close()
		<-errc
	})
	return l.dial
}

// rtpSink collects the RTP a client session receives.
type rtpSink struct{ c chan rtp.Header }

func (k *rtpSink) HandleRTP(p *packet.Buffer) {
	select {
	case k.c <- p.Header:
	default:
	}
}
func (k *rtpSink) HandleRTCP([]byte) {}

// clientSession is one of our offerers on host ip, as a browser would be: it offers tracks, the engine
// answers through answer, and it runs until t ends.
func clientSession(t *testing.T, w *vnettest.WAN, ip string, tracks []sdp.Track, answer func(offer string) (media.Session, string, error)) (*session.Session, media.Session) {
	t.Helper()
	s, err := session.NewOfferer(session.Config{Socket: vnetSocket(t, w, ip), Certificate: vnetCert(t), Logger: vnetLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(nil) })
	offer, err := sdp.BuildOffer(s.Transport(), tracks, "client", "client")
	if err != nil {
		t.Fatal(err)
	}
	ms, ans, err := answer(offer)
	if err != nil {
		t.Fatal(err)
	}
	d, err := sdp.Parse(ans)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetRemote(d); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatalf("client on %s: %v", ip, err)
	}
	if err := ms.Ready(ctx); err != nil {
		t.Fatalf("engine side of the client on %s: %v", ip, err)
	}
	return s, ms
}

var vp8 = sdp.Codec{PayloadType: 96, Name: "VP8", ClockRate: 90000, Feedback: []string{"nack", "nack pli"}}

// sendVideo sends 30 VP8 frames a second (one packet each, a keyframe every second) on s until stop closes.
func sendVideo(s *session.Session, ssrc uint32, stop <-chan struct{}) {
	tick := time.NewTicker(time.Second / 30)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		payload := make([]byte, 300)
		payload[0] = 0x10 // VP8 descriptor: S=1, PID=0
		if i%30 != 0 {
			payload[1] = 0x01 // P=1: an interframe
		}
		raw, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: vp8.PayloadType, Marker: true,
			SequenceNumber: uint16(i), Timestamp: uint32(i * 3000), SSRC: ssrc}, Payload: payload}).Marshal()
		_ = s.WriteRTP(append(make([]byte, 0, len(raw)+16), raw...))
	}
}

// TestVNetRelayReconnect: A pushes a stream to B across a WAN with 25 ms one-way delay and 3 % loss; the link
// between A and B is cut for 3 s. The agent's session fails, the agent reconnects once the link is back, B
// takes the stream over within its publisher grace, and B's player — never re-signaled — gets media again
// with its SSRC kept and its sequence numbers continuing without a jump.
func TestVNetRelayReconnect(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := vnettest.New(t, vnettest.Config{Delay: 25 * time.Millisecond, Loss: 0.03, Seed: 7}, hostA, hostB, hostPub, hostPly)
		a := vnetEngine(t, w, hostA, "A", 0)
		b := vnetEngine(t, w, hostB, "B", 5*time.Second)
		dial := serveSignaling(t, b, "B")
		m, err := NewManager(Config{
			Engine: a, Dial: dialWCS(signaling.ClientConfig{Logger: vnetLogger(), NetDial: dial}, nil), ServerID: "A",
			NoMediaTimeout: 2 * time.Second, Logger: vnetLogger().With("server", "A", "component", "relay"),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = m.Close() })

		// The publisher on A.
		const ssrc = 0x1234
		pub, _ := clientSession(t, w, hostPub, []sdp.Track{{Mid: "0", Kind: "video", Codec: vp8, SSRC: ssrc, Direction: "sendonly"}},
			func(offer string) (media.Session, string, error) {
				return a.Publish(context.Background(), media.PublishRequest{Name: "s", MediaSessionID: "pub", SDP: offer})
			})
		stop := make(chan struct{})
		sent := make(chan struct{})
		go func() { defer close(sent); sendVideo(pub, ssrc, stop) }()
		t.Cleanup(func() { close(stop); <-sent })

		// The push, then the player on B.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		info, err := m.Push(ctx, Spec{URI: "ws://" + hostB + ":8080", LocalStreamName: "s", RemoteStreamName: "s"})
		if err != nil {
			t.Fatal(err)
		}
		established := func(ai AgentInfo) bool { return ai.Status == StatusProcessedRemote }
		if _, err := m.Wait(ctx, info.LocalMediaSessionID, established); err != nil {
			t.Fatalf("push not established: %v", err)
		}
		sink := &rtpSink{c: make(chan rtp.Header, 4096)}
		ply, plyMS := clientSession(t, w, hostPly, []sdp.Track{{Mid: "0", Kind: "video", Direction: "recvonly"}},
			func(offer string) (media.Session, string, error) {
				return b.Play(context.Background(), media.PlayRequest{Name: "s", MediaSessionID: "ply", SDP: offer})
			})
		ply.SetSink(sink)

		// recv returns the next packet the player got, failing after 2 s of silence (fake time).
		recv := func(what string) rtp.Header {
			select {
			case h := <-sink.c:
				return h
			case <-time.After(2 * time.Second):
				t.Fatalf("%s: no RTP at the player for 2 s", what)
				return rtp.Header{}
			}
		}
		first := recv("before the cut")
		last := first
		for range 60 { // two seconds of media through the lossy link
			last = recv("before the cut")
		}

		w.Partition(hostA, hostB, true)
		cut := time.Now()
		for drained := false; !drained; { // what was in flight when the link went
			select {
			case h := <-sink.c:
				last = h
			case <-time.After(500 * time.Millisecond):
				drained = true
			}
		}
		time.Sleep(3*time.Second - time.Since(cut))
		// B keeps the stream published for the player: in its grace, or taken over by an attempt whose
		// session cannot come up yet.
		if !b.Available("s") {
			t.Fatalf("B dropped the stream during the cut: %+v", b.Stats())
		}
		w.Partition(hostA, hostB, false)
		back := time.Now()
		var after rtp.Header
		select {
		case after = <-sink.c:
		case <-time.After(5 * time.Second):
			t.Fatalf("no media at the player within 5 s of the link's return; agents %+v", m.FindAll())
		}
		resumed := time.Since(back)

		if after.SSRC != first.SSRC {
			t.Errorf("SSRC changed across the reconnect: %x → %x", first.SSRC, after.SSRC)
		}
		if d := after.SequenceNumber - last.SequenceNumber; d == 0 || d > 50 {
			t.Errorf("sequence jumped across the reconnect: %d → %d", last.SequenceNumber, after.SequenceNumber)
		}
		select {
		case <-plyMS.Done():
			t.Fatalf("the player was ended: %v", plyMS.Err())
		default:
		}
		ai := m.FindAll()
		if len(ai) != 1 || ai[0].Reconnects == 0 || ai[0].Status != StatusProcessedRemote {
			t.Fatalf("agent after the cut: %+v", ai)
		}
		if st := b.Stats(); st.Takeovers == 0 || st.InGrace != 0 {
			t.Fatalf("B: %+v, want a takeover and nothing left in grace", st)
		}
		for range 30 { // and media keeps flowing
			recv("after the reconnect")
		}
		if w.Dropped() == 0 {
			t.Fatal("the WAN dropped nothing: no loss was injected")
		}
		t.Logf("media resumed %v (fake time) after the link returned; %d reconnects; %d of %d datagrams dropped",
			resumed, ai[0].Reconnects, w.Dropped(), w.Dropped()+w.Passed())
		if _, err := m.Terminate(Filter{LocalMediaSessionID: info.LocalMediaSessionID}); err != nil && !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
	})
}
