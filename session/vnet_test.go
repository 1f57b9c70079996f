package session

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pion/rtp"

	"github.com/rtcrelay/rtcrelay/dtls"
	"github.com/rtcrelay/rtcrelay/ice"
	"github.com/rtcrelay/rtcrelay/internal/vnettest"
	"github.com/rtcrelay/rtcrelay/sdp"
)

// vnetConfig is testConfig with the socket on a host of the virtual WAN.
func vnetConfig(t *testing.T, w *vnettest.WAN, ip string) Config {
	t.Helper()
	s, err := ice.Listen(ice.SocketConfig{Addr: netip.AddrPortFrom(netip.MustParseAddr(ip), 5000), Net: w.Net(ip), Logger: testLogger(t)})
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
	cert, err := dtls.GenerateCertificate()
	if err != nil {
		t.Fatal(err)
	}
	return Config{Socket: s, Certificate: cert, Logger: testLogger(t)}
}

func describe(tr sdp.Transport) *sdp.Description {
	return &sdp.Description{
		ICEUfrag: tr.ICEUfrag, ICEPwd: tr.ICEPwd, Fingerprint: "sha-256 " + tr.Fingerprint,
		Setup: tr.Setup, ICELite: tr.Lite, Candidates: tr.Candidates,
	}
}

// vnetPair makes an offerer (10.0.0.2) and an answerer (10.0.0.1) of ours and starts both; answerFP, when set,
// replaces the fingerprint the offerer is told. It returns both sessions and both Start errors.
func vnetPair(t *testing.T, w *vnettest.WAN, answerFP string) (off, ans *Session, offErr, ansErr error) {
	t.Helper()
	off, err := NewOfferer(vnetConfig(t, w, "10.0.0.2"))
	if err != nil {
		t.Fatal(err)
	}
	ans, err = NewAnswerer(vnetConfig(t, w, "10.0.0.1"), describe(off.Transport()))
	if err != nil {
		t.Fatal(err)
	}
	d := describe(ans.Transport())
	if answerFP != "" {
		d.Fingerprint = answerFP
	}
	if err := off.SetRemote(d); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- ans.Start(ctx) }()
	offErr = off.Start(ctx)
	ansErr = <-errc
	return off, ans, offErr, ansErr
}

func isRTP(b []byte) bool {
	return len(b) > 1 && b[0] >= 128 && b[0] <= 191 && (b[1] < 192 || b[1] > 223)
}

// TestVNetSessionLoss runs a full offerer ↔ answerer session (ICE, DTLS, SRTP) across a virtual WAN with 30 ms
// one-way delay that drops every 4th datagram (25%) during ICE and the DTLS handshake, then every 4th RTP
// packet: ICE and DTLS retransmissions must bring the session up, and RTP both ways must arrive exactly
// minus what the network dropped, with the counters of both sides agreeing.
func TestVNetSessionLoss(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := vnettest.New(t, vnettest.Config{Delay: 30 * time.Millisecond, DropEvery: 4}, "10.0.0.1", "10.0.0.2")
		start := time.Now()
		off, ans, offErr, ansErr := vnetPair(t, w, "")
		if offErr != nil || ansErr != nil {
			t.Fatalf("start: offerer %v, answerer %v", offErr, ansErr)
		}
		defer off.Close(nil)
		defer ans.Close(nil)
		up := time.Since(start)
		if w.Dropped() == 0 {
			t.Fatal("nothing dropped during ICE+DTLS")
		}
		t.Logf("up in %v fake time, %d datagrams dropped of %d", up, w.Dropped(), w.Dropped()+w.Passed())

		// RTP both ways; only RTP is counted and dropped now (consent checks may cross).
		w.Only(isRTP)
		before := w.Dropped()
		ks := [2]*chanSink{newChanSink(), newChanSink()}
		ans.SetSink(ks[0])
		off.SetSink(ks[1])
		const n = 100
		for i := range n {
			for _, s := range []*Session{off, ans} {
				raw, err := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: uint16(i), SSRC: 42}, Payload: make([]byte, 200)}).Marshal()
				if err != nil {
					t.Fatal(err)
				}
				if err := s.WriteRTP(append(make([]byte, 0, len(raw)+16), raw...)); err != nil {
					t.Fatal(err)
				}
			}
		}
		got := 0
		for got+int(w.Dropped()-before) < 2*n {
			select {
			case <-ks[0].rtp:
			case <-ks[1].rtp:
			case <-time.After(time.Second): // fake time: passes only when nothing else can run
				t.Fatalf("got %d RTP, %d dropped, of %d", got, w.Dropped()-before, 2*n)
			}
			got++
		}
		lost := int(w.Dropped() - before)
		if lost != 2*n/4 {
			t.Fatalf("dropped %d RTP, want %d (every 4th)", lost, 2*n/4)
		}
		so, sa := off.Stats(), ans.Stats()
		if so.RTPOut != n || sa.RTPOut != n || so.RTPIn+sa.RTPIn != uint64(got) || so.DecryptFailures+sa.DecryptFailures != 0 {
			t.Fatalf("offerer %+v, answerer %+v, received %d", so, sa, got)
		}
	})
}

// TestVNetSessionWrongFingerprint: with a fingerprint that is not the answerer's, the offerer (DTLS client)
// fails in the fingerprint stage, across a lossy virtual WAN.
func TestVNetSessionWrongFingerprint(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := vnettest.New(t, vnettest.Config{Delay: 30 * time.Millisecond, DropEvery: 4}, "10.0.0.1", "10.0.0.2")
		other, err := dtls.GenerateCertificate()
		if err != nil {
			t.Fatal(err)
		}
		off, ans, offErr, _ := vnetPair(t, w, "sha-256 "+other.Fingerprint())
		defer off.Close(nil)
		defer ans.Close(nil)
		var se *StageError
		if !errors.As(offErr, &se) || se.Stage != StageDTLSFingerprint || !errors.Is(offErr, dtls.ErrFingerprint) {
			t.Fatalf("offerer err %v", offErr)
		}
	})
}
