package ice

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rtcrelay/rtcrelay/internal/vnettest"
)

// vnetServe is serve over a host of the virtual WAN.
func vnetServe(t *testing.T, w *vnettest.WAN, ip string) *Socket {
	t.Helper()
	return serve(t, SocketConfig{Addr: netip.AddrPortFrom(netip.MustParseAddr(ip), 3478), Net: w.Net(ip)})
}

// TestVNetLiteAndControllingLoss connects a lite answerer and a full controlling agent across a virtual WAN with
// 40 ms one-way delay that drops every 3rd datagram: checks and answers are lost, the controlling agent's
// retransmissions (and the lite agent's answers to them) must still select the pair, in bounded fake time.
func TestVNetLiteAndControllingLoss(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cfg       vnettest.Config
		maxFake   time.Duration
		wantDrops bool
	}{
		{"no loss", vnettest.Config{Delay: 40 * time.Millisecond}, time.Second, false},
		{"every 3rd lost", vnettest.Config{Delay: 40 * time.Millisecond, DropEvery: 3}, 3 * time.Second, true},
		{"30% lost", vnettest.Config{Delay: 40 * time.Millisecond, Loss: 0.3, Seed: 7}, 5 * time.Second, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := vnettest.New(t, tc.cfg, "10.0.0.1", "10.0.0.2")
				sa := vnetServe(t, w, "10.0.0.1")
				sb := vnetServe(t, w, "10.0.0.2")
				lite, err := sa.NewAgent(AgentConfig{Lite: true}, newRecorder())
				if err != nil {
					t.Fatal(err)
				}
				defer lite.Close()
				ctl, err := sb.NewAgent(AgentConfig{Controlling: true}, newRecorder())
				if err != nil {
					t.Fatal(err)
				}
				defer ctl.Close()
				lu, lp := lite.LocalCredentials()
				cu, cp := ctl.LocalCredentials()
				lite.SetRemote(cu, cp, nil, false)
				ctl.SetRemote(lu, lp, lite.LocalCandidates(), true)

				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				start := time.Now()
				var wg sync.WaitGroup
				var liteRemote netip.AddrPort
				var liteErr error
				wg.Go(func() { liteRemote, liteErr = lite.Connect(ctx) })
				ctlRemote, err := ctl.Connect(ctx)
				if err != nil {
					t.Fatalf("controlling: %v", err)
				}
				wg.Wait()
				took := time.Since(start)
				if liteErr != nil {
					t.Fatalf("lite: %v", liteErr)
				}
				if ctlRemote != sa.LocalAddr() || liteRemote != sb.LocalAddr() {
					t.Fatalf("selected %v / %v, sockets %v / %v", ctlRemote, liteRemote, sa.LocalAddr(), sb.LocalAddr())
				}
				// At least one round trip (80 ms), and within the bound for this loss.
				if took < 80*time.Millisecond || took > tc.maxFake {
					t.Fatalf("connected in %v of fake time, want 80ms..%v", took, tc.maxFake)
				}
				if tc.wantDrops && w.Dropped() == 0 {
					t.Fatal("no datagram was dropped")
				}
				t.Logf("connected in %v fake time; %d datagrams passed, %d dropped", took, w.Passed(), w.Dropped())
			})
		})
	}
}

// TestVNetBatchFallsBack: on a socket that is not a *net.UDPConn, a Batch sends each datagram with WriteTo at
// Queue (no sendmmsg, no GSO).
func TestVNetBatchFallsBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := vnettest.New(t, vnettest.Config{Delay: 10 * time.Millisecond}, "10.0.0.1", "10.0.0.2")
		sa := vnetServe(t, w, "10.0.0.1")
		if sa.raw != nil || sa.gso {
			t.Fatal("a vnet socket has a raw conn or GSO")
		}
		peer, err := w.Net("10.0.0.2").ListenPacket("udp4", "10.0.0.2:4000")
		if err != nil {
			t.Fatal(err)
		}
		defer peer.Close()
		to := netip.MustParseAddrPort("10.0.0.2:4000")
		b := sa.NewBatch()
		const n = 5
		for i := range n {
			buf := append(b.Buf(), 0x80, 96, 0, byte(i))
			if err := b.Queue(len(buf), to); err != nil {
				t.Fatal(err)
			}
			if b.Len() != 0 {
				t.Fatalf("%d datagrams left queued", b.Len())
			}
		}
		if err := b.Flush(); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64)
		for i := range n {
			m, _, err := peer.ReadFrom(buf)
			if err != nil || m != 4 || buf[3] != byte(i) {
				t.Fatalf("datagram %d: %x %v", i, buf[:m], err)
			}
		}
		if st := sa.Stats(); st.Sent != n || st.GSOMessages != 0 {
			t.Fatalf("stats %+v", st)
		}
	})
}
