package forward

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"testing"

	"github.com/rtcrelay/rtcrelay/forwarder"
	"github.com/rtcrelay/rtcrelay/ice"
	"github.com/rtcrelay/rtcrelay/internal/benchhooks"
	"github.com/rtcrelay/rtcrelay/sdp"
	"github.com/rtcrelay/rtcrelay/session"
)

var subCounts = []int{1, 10, 100, 1000}

var (
	vp8  = sdp.Codec{PayloadType: videoPT, Name: "VP8", ClockRate: 90000, Feedback: []string{"nack", "nack pli"}}
	exts = []sdp.Extension{{ID: extAbsSendTime, URI: sdp.ExtAbsSendTime}, {ID: extMid, URI: sdp.ExtSDESMid},
		{ID: extTWCC, URI: sdp.ExtTransportCC}}
)

// receivers makes min(subs, 16) counting receivers with mk (newReceiver or newIdleReceiver); player i sends to
// receivers[i%len].
func receivers(b *testing.B, subs int, fl *flow, mk func(testing.TB, *flow) *receiver) []*receiver {
	rxs := make([]*receiver, min(subs, 16))
	for i := range rxs {
		rxs[i] = mk(b, fl)
	}
	return rxs
}

func listen(b *testing.B, batch, slab int, noGSO bool) *ice.Socket {
	sock, err := ice.Listen(ice.SocketConfig{Addr: netip.MustParseAddrPort("127.0.0.1:0"),
		ReadBuffer: sockBuf, WriteBuffer: sockBuf, SendBatch: batch, SendBatchBytes: slab, NoGSO: noGSO})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sock.Close() })
	return sock
}

// runForwarder measures the product path: the socket's reader decrypts in the publisher's session, the stream
// stores and fans out, writers rewrite, encrypt in the players' sessions and send (batch 0 and noGSO false are
// the socket's defaults).
func runForwarder(b *testing.B, subs, batch int, noGSO bool) {
	runForwarderSlab(b, subs, batch, 0, 0, noGSO)
}

// runForwarderSlab is runForwarder with a batch slab of slab bytes (0: the socket's default) and at most
// writers writer goroutines (0: the default).
func runForwarderSlab(b *testing.B, subs, batch, slab, writers int, noGSO bool) {
	fl := newFlow(subs)
	rxs := receivers(b, subs, fl, newReceiver)
	sock := listen(b, batch, slab, noGSO)
	pub := newPublisher(b, sock.LocalAddr())
	cfg := session.Config{Socket: sock}
	var st *forwarder.Stream
	var sessions []*session.Session
	asServer(func(ctx context.Context) {
		go func() { _ = sock.Serve(ctx) }()
		sk, ss := key(1000)
		pk, ps := key(0)
		ps0, err := benchhooks.NewKeyed(cfg, pub.conn.LocalAddr().(interface{ AddrPort() netip.AddrPort }).AddrPort(),
			srtpProfile, sk, ss, pk, ps)
		if err != nil {
			b.Fatal(err)
		}
		sessions = append(sessions, ps0)
		reg := forwarder.NewRegistry(nil)
		reg.SetMaxWriters(writers)
		st, err = reg.Publish("bench",
			[]forwarder.TrackInfo{{Kind: sdp.KindVideo, Codec: vp8, Extensions: exts, SSRC: pubSSRC}}, ps0)
		if err != nil {
			b.Fatal(err)
		}
		ps0.SetSink(st)
		for i := range subs {
			k, s := key(i + 1)
			sub, err := benchhooks.NewKeyed(cfg, rxs[i%len(rxs)].addr(), srtpProfile, k, s, k, s)
			if err != nil {
				b.Fatal(err)
			}
			sessions = append(sessions, sub)
			if _, err := st.Subscribe(sub, []sdp.Track{{Mid: "0", Kind: sdp.KindVideo, Codec: vp8, Extensions: exts,
				Direction: sdp.DirSendOnly}}); err != nil {
				b.Fatal(err)
			}
		}
	})
	defer func() {
		st.Close()
		for _, s := range sessions {
			s.Close(nil)
		}
	}()
	measure(b, subs, func() { pub.send(b) }, fl)
	if s := st.Stats(); s.Drops != 0 {
		b.Logf("forwarder queue drops: %d", s.Drops)
	}
}

// BenchmarkForward is the forwarder with the default send path.
func BenchmarkForward(b *testing.B) {
	for _, n := range subCounts {
		b.Run(subName(n), func(b *testing.B) { runForwarder(b, n, 0, false) })
	}
}

// BenchmarkForwardSend is the forwarder with each send-path switch both ways: one sendto per datagram,
// sendmmsg batches, sendmmsg batches with UDP GSO runs.
func BenchmarkForwardSend(b *testing.B) {
	for _, n := range subCounts {
		b.Run(subName(n), func(b *testing.B) {
			b.Run("sendto", func(b *testing.B) { runForwarder(b, n, 1, true) })
			b.Run("sendmmsg", func(b *testing.B) { runForwarder(b, n, ice.DefaultSendBatch, true) })
			b.Run("gso", func(b *testing.B) { runForwarder(b, n, ice.DefaultSendBatch, false) })
		})
	}
}

// BenchmarkForwardSlab is the forwarder with batch slabs of several sizes and writer caps side by side: 64
// slots of BatchSlotSize (what a batch held before datagrams were packed), then 64, 32 and 16 kB, with √N
// writers (up to the default cap) and with at most 8 and 16.
func BenchmarkForwardSlab(b *testing.B) {
	for _, n := range subCounts {
		b.Run(subName(n), func(b *testing.B) {
			for _, writers := range []int{0, 16, 8} {
				if writers != 0 && n < writers*writers {
					continue // √N is under the cap: the same as the default
				}
				for _, slab := range []int{ice.DefaultSendBatch * ice.BatchSlotSize, 64 << 10, 32 << 10, 16 << 10} {
					b.Run(fmt.Sprintf("w%d/%dkB", writers, slab>>10), func(b *testing.B) { runForwarderSlab(b, n, 0, slab, writers, false) })
				}
			}
		})
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	summary()
	os.Exit(code)
}

// summary prints, per subscriber count, the forwarder's and the baseline's forwarded packets per CPU-second (the
// server's CPU share with -srvcpu, else the whole process's) against the physical bound of BenchmarkBound.
func summary() {
	if len(results) == 0 {
		return
	}
	basis := "process CPU (publisher and receivers included)"
	if *srvCPU {
		basis = "server CPU share (pprof labels)"
	}
	aes, okA := results["BenchmarkBound/aesgcm"]
	ing, okI := results["BenchmarkBound/ingest"]
	fmt.Printf("\nfan-out summary: forwarded packets per CPU-second, %s\n", basis)
	bounded := okA && okI && *srvCPU && ing.serverCPUPerFwd > 0
	if bounded {
		fmt.Printf("bound_ns(N) = kernel(N) + aesgcm %.0f ns + ingest %.0f ns / N (server CPU)\n",
			aes.serverCPUPerFwd, ing.serverCPUPerFwd)
	} else if okA && okI {
		fmt.Println("no bound without -srvcpu (sums of whole-process figures count the receivers and the scheduler once per term)")
	}
	fmt.Printf("%-5s %10s %10s %10s %10s %10s | %9s %8s %9s\n",
		"subs", "forwarder", "kernel-ns", "bound-ns", "bound", "pion", "% bound", "×pion", "allocs/op")
	for _, n := range subCounts {
		f, ok := results["BenchmarkForward/"+subName(n)]
		if !ok {
			continue
		}
		fwd := f.perCoreSecond()
		fmt.Printf("%-5d %10.0f", n, fwd)
		pct := "-"
		if k, ok := results["BenchmarkBound/kernel/"+subName(n)]; ok && bounded && k.serverCPUPerFwd > 0 {
			bound := k.serverCPUPerFwd + aes.serverCPUPerFwd + ing.serverCPUPerFwd/float64(n)
			fmt.Printf(" %10.0f %10.0f %10.0f", k.serverCPUPerFwd, bound, 1e9/bound)
			pct = fmt.Sprintf("%.0f%%", 100*fwd*bound/1e9)
		} else {
			fmt.Printf(" %10s %10s %10s", "-", "-", "-")
		}
		pion := "-"
		if r, ok := results["BenchmarkBaseline/"+subName(n)]; ok {
			fmt.Printf(" %10.0f", r.perCoreSecond())
			pion = fmt.Sprintf("%.2f×", fwd/r.perCoreSecond())
		} else {
			fmt.Printf(" %10s", "-")
		}
		fmt.Printf(" | %9s %8s %9.6f\n", pct, pion, f.allocsPerFwd)
	}
}
