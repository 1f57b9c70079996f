package dtls

import (
	"bytes"
	"context"
	"errors"
	"net"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rtcrelay/rtcrelay/internal/vnettest"
)

// vnetPair returns a PacketConn on each of two hosts of w.
func vnetPair(t *testing.T, w *vnettest.WAN) (a, b net.PacketConn) {
	t.Helper()
	a, err := w.Net("10.0.0.1").ListenPacket("udp4", "10.0.0.1:5000")
	if err != nil {
		t.Fatal(err)
	}
	b, err = w.Net("10.0.0.2").ListenPacket("udp4", "10.0.0.2:5000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
	return a, b
}

// TestVNetHandshakeLoss: the DTLS-SRTP handshake completes across a virtual WAN with 40 ms one-way delay that
// drops every third datagram (flights are retransmitted), and both ends derive crossing keys. Fake time
// (synctest): the retransmission timers run without real waiting.
func TestVNetHandshakeLoss(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := vnettest.New(t, vnettest.Config{Delay: 40 * time.Millisecond, DropEvery: 3}, "10.0.0.1", "10.0.0.2")
		sConn, cConn := vnetPair(t, w)
		srvCert, cliCert := mustCert(t), mustCert(t)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		start := time.Now()
		srvCh := goHandshake(ctx, sConn, cConn.LocalAddr(), HandshakeConfig{Certificate: srvCert, Role: RoleServer, RemoteFingerprint: "sha-256 " + cliCert.Fingerprint()})
		cliCh := goHandshake(ctx, cConn, sConn.LocalAddr(), HandshakeConfig{Certificate: cliCert, Role: RoleClient, RemoteFingerprint: "sha-256 " + srvCert.Fingerprint()})
		srv, cli := <-srvCh, <-cliCh
		if srv.err != nil || cli.err != nil {
			t.Fatalf("server %v, client %v", srv.err, cli.err)
		}
		defer srv.conn.Close()
		defer cli.conn.Close()
		if !bytes.Equal(cli.keys.LocalKey, srv.keys.RemoteKey) || !bytes.Equal(cli.keys.RemoteKey, srv.keys.LocalKey) {
			t.Fatal("keys do not cross-match")
		}
		if w.Dropped() == 0 {
			t.Fatal("nothing was dropped")
		}
		t.Logf("handshake in %v fake time over 80 ms RTT, %d of %d datagrams dropped", time.Since(start), w.Dropped(), w.Dropped()+w.Passed())
	})
}

// TestVNetHandshakeCut: with the link cut, the handshake ends with the context's deadline (a clear error, no
// goroutine left behind: synctest fails the test otherwise).
func TestVNetHandshakeCut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := vnettest.New(t, vnettest.Config{}, "10.0.0.1", "10.0.0.2")
		w.Cut(true)
		sConn, cConn := vnetPair(t, w)
		srvCert, cliCert := mustCert(t), mustCert(t)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srvCh := goHandshake(ctx, sConn, cConn.LocalAddr(), HandshakeConfig{Certificate: srvCert, Role: RoleServer, RemoteFingerprint: "sha-256 " + cliCert.Fingerprint()})
		cliCh := goHandshake(ctx, cConn, sConn.LocalAddr(), HandshakeConfig{Certificate: cliCert, Role: RoleClient, RemoteFingerprint: "sha-256 " + srvCert.Fingerprint()})
		srv, cli := <-srvCh, <-cliCh
		for _, r := range []result{srv, cli} {
			if r.err == nil {
				r.conn.Close()
				t.Fatal("handshake succeeded over a cut link")
			}
			if !errors.Is(r.err, context.DeadlineExceeded) {
				t.Errorf("err %v, want the context's deadline", r.err)
			}
		}
	})
}
