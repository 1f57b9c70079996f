package ice

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rtcrelay/rtcrelay/packet"
)

// recorder is an Endpoint that counts and keeps the last DTLS datagram.
type recorder struct {
	dtls, srtp, srtcp atomic.Int64
	mu                sync.Mutex
	last              []byte
	got               chan struct{}
}

func newRecorder() *recorder { return &recorder{got: make(chan struct{}, 16)} }

func (r *recorder) HandleDTLS(b []byte, _ netip.AddrPort) {
	r.mu.Lock()
	r.last = append(r.last[:0], b...)
	r.mu.Unlock()
	r.dtls.Add(1)
	r.signal()
}
func (r *recorder) HandleSRTP(*packet.Buffer, netip.AddrPort)  { r.srtp.Add(1); r.signal() }
func (r *recorder) HandleSRTCP(*packet.Buffer, netip.AddrPort) { r.srtcp.Add(1); r.signal() }
func (r *recorder) signal() {
	select {
	case r.got <- struct{}{}:
	default:
	}
}

var loopback = netip.MustParseAddrPort("127.0.0.1:0")

func serve(t *testing.T, cfg SocketConfig) *Socket {
	t.Helper()
	s, err := Listen(cfg)
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

func wait(t *testing.T, c <-chan struct{}) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(5 * time.Second):
		t.Fatal("timed out")
	}
}

// TestLiteAndControlling connects a lite agent and a controlling agent on two sockets of ours, then checks that
// media from the validated address reaches the endpoint and media from anyone else is dropped.
func TestLiteAndControlling(t *testing.T) {
	sa := serve(t, SocketConfig{Addr: loopback, ReadBuffer: 1 << 20, WriteBuffer: 1 << 20})
	sb := serve(t, SocketConfig{Addr: loopback})
	ra, rb := newRecorder(), newRecorder()

	lite, err := sa.NewAgent(AgentConfig{Lite: true}, ra)
	if err != nil {
		t.Fatal(err)
	}
	defer lite.Close()
	ctl, err := sb.NewAgent(AgentConfig{Controlling: true}, rb)
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	if c := lite.LocalCandidates(); len(c) != 1 {
		t.Fatalf("lite candidates %q", c)
	}
	lu, lp := lite.LocalCredentials()
	cu, cp := ctl.LocalCredentials()
	if len(lu) < 4 || len(lp) < 22 || lu == cu {
		t.Fatalf("weak credentials %q %q", lu, lp)
	}
	lite.SetRemote(cu, cp, nil, false)
	ctl.SetRemote(lu, lp, lite.LocalCandidates(), true)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var liteRemote netip.AddrPort
	var liteErr error
	wg.Go(func() { liteRemote, liteErr = lite.Connect(ctx) })
	ctlRemote, err := ctl.Connect(ctx)
	if err != nil {
		t.Fatalf("controlling: %v", err)
	}
	wg.Wait()
	if liteErr != nil {
		t.Fatalf("lite: %v", liteErr)
	}
	if ctlRemote != sa.LocalAddr() || liteRemote != sb.LocalAddr() {
		t.Fatalf("remotes %v %v, sockets %v %v", ctlRemote, liteRemote, sa.LocalAddr(), sb.LocalAddr())
	}

	// DTLS and SRTP/SRTCP from the validated address reach the endpoint.
	dtls := []byte{22, 0xfe, 0xfd, 1, 2, 3}
	if err := sb.WriteTo(dtls, ctlRemote); err != nil {
		t.Fatal(err)
	}
	wait(t, ra.got)
	ra.mu.Lock()
	if string(ra.last) != string(dtls) {
		t.Fatalf("DTLS %x", ra.last)
	}
	ra.mu.Unlock()
	rtp := make([]byte, 40)
	rtp[0], rtp[1] = 0x80, 96
	if err := sb.WriteTo(rtp, ctlRemote); err != nil {
		t.Fatal(err)
	}
	wait(t, ra.got)
	rtcp := []byte{0x80, 200, 0, 1, 0, 0, 0, 1}
	if err := sa.WriteTo(rtcp, liteRemote); err != nil {
		t.Fatal(err)
	}
	wait(t, rb.got)
	if ra.srtp.Load() != 1 || rb.srtcp.Load() != 1 {
		t.Fatalf("srtp %d srtcp %d", ra.srtp.Load(), rb.srtcp.Load())
	}

	// A stranger is not bound: dropped and counted, never delivered.
	stranger, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(loopback))
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	before := sa.Stats().DroppedUnbound
	for _, b := range [][]byte{dtls, rtp, {99}} {
		if _, err := stranger.WriteToUDPAddrPort(b, sa.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	// The socket reads in arrival order: once a later datagram of the peer is delivered, the stranger's were seen.
	if err := sb.WriteTo(rtp, ctlRemote); err != nil {
		t.Fatal(err)
	}
	wait(t, ra.got)
	if st := sa.Stats(); st.DroppedUnbound != before+2 || st.DroppedUnknown != 1 {
		t.Fatalf("stats %+v", st)
	}
	if ra.dtls.Load() != 1 || ra.srtp.Load() != 2 {
		t.Fatal("stranger's datagram delivered")
	}

	// Closing unbinds.
	lite.Close()
	if n := len(*sa.bindings.Load()); n != 0 {
		t.Fatalf("%d bindings after Close", n)
	}
	if lite.Err() == nil {
		t.Fatal("no Err after Close")
	}
}

// TestFailureAfterConnect: when the peer goes away, the agent reports ErrFailed on Done.
func TestFailureAfterConnect(t *testing.T) {
	sa := serve(t, SocketConfig{Addr: loopback})
	sb := serve(t, SocketConfig{Addr: loopback})
	short := AgentConfig{DisconnectedTimeout: 300 * time.Millisecond, FailedTimeout: 300 * time.Millisecond}
	lcfg, ccfg := short, short
	lcfg.Lite, ccfg.Controlling = true, true
	lite, err := sa.NewAgent(lcfg, newRecorder())
	if err != nil {
		t.Fatal(err)
	}
	defer lite.Close()
	ctl, err := sb.NewAgent(ccfg, newRecorder())
	if err != nil {
		t.Fatal(err)
	}
	lu, lp := lite.LocalCredentials()
	cu, cp := ctl.LocalCredentials()
	lite.SetRemote(cu, cp, nil, false)
	ctl.SetRemote(lu, lp, lite.LocalCandidates(), true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { _, _ = lite.Connect(ctx) })
	if _, err := ctl.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	ctl.Close()
	select {
	case <-lite.Done():
		if !errors.Is(lite.Err(), ErrFailed) {
			t.Fatalf("Err %v", lite.Err())
		}
	case <-ctx.Done():
		t.Fatal("lite agent did not fail")
	}
}

func TestConnectTimeout(t *testing.T) {
	s := serve(t, SocketConfig{Addr: loopback})
	a, err := s.NewAgent(AgentConfig{Lite: true, RemoteUfrag: "abcd", RemotePwd: "0123456789012345678901"}, newRecorder())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := a.Connect(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v", err)
	}
}

func TestAcceptRemoteFilter(t *testing.T) {
	s, err := Listen(SocketConfig{Addr: loopback, AcceptRemote: func(netip.Addr) bool { return false }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p := packet.Get()
	defer p.Release()
	p.SetLen(copy(p.ReadSlice(), []byte{0x80, 96, 0, 0}))
	s.dispatch(p, netip.MustParseAddrPort("192.0.2.1:5000"))
	if st := s.Stats(); st.DroppedFiltered != 1 || st.SRTP != 0 {
		t.Fatalf("%+v", st)
	}
}

func stunMessage(typ uint16, username string) []byte {
	b := make([]byte, 20, 64)
	binary.BigEndian.PutUint16(b[0:], typ)
	binary.BigEndian.PutUint32(b[4:], stunMagicCookie)
	copy(b[8:20], "txid-abcdefg")
	if username != "" {
		attr := make([]byte, 4+(len(username)+3)&^3)
		binary.BigEndian.PutUint16(attr[0:], stunAttrUser)
		binary.BigEndian.PutUint16(attr[2:], uint16(len(username)))
		copy(attr[4:], username)
		b = append(b, attr...)
	}
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)-20))
	return b
}

func TestParseSTUN(t *testing.T) {
	for _, tc := range []struct {
		name  string
		b     []byte
		ok    bool
		class stunClass
		user  string
	}{
		{"request", stunMessage(stunBindingRequest, "ours:theirs"), true, stunClassRequest, "ours:theirs"},
		{"odd username", stunMessage(stunBindingRequest, "abc:de"), true, stunClassRequest, "abc:de"},
		{"success", stunMessage(stunBindingSuccess, ""), true, stunClassSuccess, ""},
		{"error", stunMessage(stunBindingError, ""), true, stunClassError, ""},
		{"indication", stunMessage(stunBindingIndication, ""), true, stunClassIndication, ""},
		{"short", []byte{0, 1, 0, 0}, false, 0, ""},
		{"bad cookie", func() []byte { b := stunMessage(1, ""); b[4] = 0; return b }(), false, 0, ""},
		{"bad length", func() []byte { b := stunMessage(1, "a:b"); b[3] = 4; return b }(), false, 0, ""},
		{"truncated attr", func() []byte { b := stunMessage(1, "a:b"); b[23] = 200; return b }(), false, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var m stunMsg
			ok := parseSTUN(tc.b, &m)
			if ok != tc.ok {
				t.Fatalf("ok %v", ok)
			}
			if ok && (m.class() != tc.class || string(m.username) != tc.user) {
				t.Fatalf("class %d user %q", m.class(), m.username)
			}
		})
	}
	if u := localUfrag([]byte("ours:theirs")); string(u) != "ours" {
		t.Fatalf("%q", u)
	}
	if localUfrag([]byte("nocolon")) != nil {
		t.Fatal("ufrag without colon")
	}
}

func FuzzParseSTUN(f *testing.F) {
	f.Add(stunMessage(stunBindingRequest, "ours:theirs"))
	f.Add(stunMessage(stunBindingSuccess, ""))
	f.Fuzz(func(t *testing.T, b []byte) {
		var m stunMsg
		if parseSTUN(b, &m) {
			_ = localUfrag(m.username)
			_ = m.class()
		}
	})
}

type nopEndpoint struct{}

func (nopEndpoint) HandleDTLS([]byte, netip.AddrPort)          {}
func (nopEndpoint) HandleSRTP(*packet.Buffer, netip.AddrPort)  {}
func (nopEndpoint) HandleSRTCP(*packet.Buffer, netip.AddrPort) {}

// BenchmarkDispatchSRTP is the socket demux path of one SRTP datagram from a bound address: filter,
// classification, lock-free lookup, hand-off to the endpoint.
func BenchmarkDispatchSRTP(b *testing.B) {
	s, err := Listen(SocketConfig{Addr: loopback, AcceptRemote: func(a netip.Addr) bool { return a.IsLoopback() }})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	from := netip.MustParseAddrPort("127.0.0.1:40000")
	a := &Agent{s: s}
	for i := range 1000 { // a realistic table
		s.setBindingLocked(netip.AddrPortFrom(from.Addr(), uint16(i)), &binding{agent: a, ep: nopEndpoint{}})
	}
	s.setBindingLocked(from, &binding{agent: a, ep: nopEndpoint{}})
	p := packet.Get()
	defer p.Release()
	pkt := make([]byte, 1244)
	pkt[0], pkt[1] = 0x80, 96
	n := copy(p.ReadSlice(), pkt)
	b.SetBytes(int64(n))
	b.ReportAllocs()
	for b.Loop() {
		p.SetLen(n)
		s.dispatch(p, from)
	}
	if s.Stats().SRTP == 0 {
		b.Fatal("not delivered")
	}
}
