package forward

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"testing"

	"github.com/pion/rtp"

	"github.com/rtcrelay/rtcrelay/forwarder"
	"github.com/rtcrelay/rtcrelay/ice"
	"github.com/rtcrelay/rtcrelay/internal/benchhooks"
	"github.com/rtcrelay/rtcrelay/packet"
	"github.com/rtcrelay/rtcrelay/sdp"
	"github.com/rtcrelay/rtcrelay/session"
	"github.com/rtcrelay/rtcrelay/srtp"
)

var subCounts = []int{1, 10, 100, 1000}

var (
	vp8  = sdp.Codec{PayloadType: videoPT, Name: "VP8", ClockRate: 90000, Feedback: []string{"nack", "nack pli"}}
	exts = []sdp.Extension{{ID: extAbsSendTime, URI: sdp.ExtAbsSendTime}, {ID: extMid, URI: sdp.ExtSDESMid},
		{ID: extTWCC, URI: sdp.ExtTransportCC}}
)

// receivers makes min(subs, 16) counting receivers; player i sends to receivers[i%len].
func receivers(b *testing.B, subs int, fl *flow) []*receiver {
	rxs := make([]*receiver, min(subs, 16))
	for i := range rxs {
		rxs[i] = newReceiver(b, fl)
	}
	return rxs
}

func listen(b *testing.B, batch int, noGSO bool) *ice.Socket {
	sock, err := ice.Listen(ice.SocketConfig{Addr: netip.MustParseAddrPort("127.0.0.1:0"),
		ReadBuffer: sockBuf, WriteBuffer: sockBuf, SendBatch: batch, NoGSO: noGSO})
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
	fl := newFlow(subs)
	rxs := receivers(b, subs, fl)
	sock := listen(b, batch, noGSO)
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
		st, err = forwarder.NewRegistry(nil).Publish("bench",
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

// ceiling is the bare loop as an endpoint of the same socket: decrypt once in place, then per player copy,
// rewrite SSRC and sequence number, encrypt with the player's context and send (or queue on a batch, flushed
// after every incoming packet).
type ceiling struct {
	sock    *ice.Socket
	batch   *ice.Batch
	dec     *srtp.Decrypter
	encs    []*srtp.Encrypter
	to      []netip.AddrPort
	scratch []byte
	hdr     rtp.Header
}

func (c *ceiling) HandleDTLS([]byte, netip.AddrPort)          {}
func (c *ceiling) HandleSRTCP(*packet.Buffer, netip.AddrPort) {}
func (c *ceiling) HandleSRTP(p *packet.Buffer, _ netip.AddrPort) {
	plain, err := c.dec.DecryptRTP(p.Bytes(), &p.Header)
	if err != nil {
		return
	}
	for i, enc := range c.encs {
		buf := c.scratch
		if c.batch != nil {
			buf = c.batch.Buf()
		}
		buf = append(buf[:0], plain...)
		ssrc := uint32(i + 1)
		buf[8], buf[9], buf[10], buf[11] = byte(ssrc>>24), byte(ssrc>>16), byte(ssrc>>8), byte(ssrc)
		seq := p.Header.SequenceNumber + uint16(i)
		buf[2], buf[3] = byte(seq>>8), byte(seq)
		out, err := enc.EncryptRTP(buf, &c.hdr)
		if err != nil {
			continue
		}
		if c.batch != nil {
			_ = c.batch.Queue(len(out), c.to[i])
		} else {
			_ = c.sock.WriteTo(out, c.to[i])
		}
	}
	if c.batch != nil {
		_ = c.batch.Flush()
	}
}

func runCeiling(b *testing.B, subs int, batched bool) {
	fl := newFlow(subs)
	rxs := receivers(b, subs, fl)
	sock := listen(b, 0, true)
	pub := newPublisher(b, sock.LocalAddr())
	pk, ps := key(0)
	c := &ceiling{sock: sock, scratch: make([]byte, 0, ice.BatchSlotSize)}
	var err error
	if _, _, c.dec, err = srtp.NewPairFromKeys(srtpProfile, pk, ps, pk, ps); err != nil {
		b.Fatal(err)
	}
	if batched {
		c.batch = sock.NewBatch()
	}
	for i := range subs {
		k, s := key(i + 1)
		enc, _, _, err := srtp.NewPairFromKeys(srtpProfile, k, s, k, s)
		if err != nil {
			b.Fatal(err)
		}
		c.encs = append(c.encs, enc)
		c.to = append(c.to, rxs[i%len(rxs)].addr())
	}
	a, err := benchhooks.FixedAgent(sock, pub.conn.LocalAddr().(interface{ AddrPort() netip.AddrPort }).AddrPort(), c)
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	asServer(func(ctx context.Context) { go func() { _ = sock.Serve(ctx) }() })
	measure(b, subs, func() { pub.send(b) }, fl)
}

// BenchmarkCeiling is the bare read→decrypt→encrypt-per-player→send loop on the same socket and primitives.
func BenchmarkCeiling(b *testing.B) {
	for _, n := range subCounts {
		b.Run(subName(n), func(b *testing.B) {
			b.Run("sendto", func(b *testing.B) { runCeiling(b, n, false) })
			b.Run("sendmmsg", func(b *testing.B) { runCeiling(b, n, true) })
			b.Run("burst-mmsg", func(b *testing.B) { runBurstCeiling(b, n, true) })
			b.Run("burst-gso", func(b *testing.B) { runBurstCeiling(b, n, false) })
		})
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	summary()
	os.Exit(code)
}

// ceilingVariants are BenchmarkCeiling's sub-benchmarks, weakest first.
var ceilingVariants = []string{"sendto", "sendmmsg", "burst-mmsg", "burst-gso"}

// summary prints, per subscriber count, the forwarder's packets per CPU-second against every ceiling variant and
// the baseline (the server's CPU share when profiling was possible, else the whole process's), and the
// forwarder's share of the best ceiling variant at that count.
func summary() {
	if len(results) == 0 {
		return
	}
	srv := *srvCPU
	basis := "process CPU (publisher and receivers included)"
	if srv {
		basis = "server CPU share (pprof labels)"
	}
	fmt.Printf("\nfan-out summary: forwarded packets per CPU-second, %s\n", basis)
	fmt.Printf("%-5s %10s", "subs", "forwarder")
	for _, v := range ceilingVariants {
		fmt.Printf(" %11s", "c-"+v)
	}
	fmt.Printf(" %10s | %-22s %8s\n", "pion", "% of best ceiling", "×pion")
	for _, n := range subCounts {
		f, ok := results["BenchmarkForward/"+subName(n)]
		if !ok {
			continue
		}
		fwd := f.perCoreSecond()
		fmt.Printf("%-5d %10.0f", n, fwd)
		best, bestName := 0.0, ""
		for _, v := range ceilingVariants {
			r, ok := results["BenchmarkCeiling/"+subName(n)+"/"+v]
			if !ok {
				fmt.Printf(" %11s", "-")
				continue
			}
			fmt.Printf(" %11.0f", r.perCoreSecond())
			if r.perCoreSecond() > best {
				best, bestName = r.perCoreSecond(), v
			}
		}
		pion := "-"
		if r, ok := results["BenchmarkBaseline/"+subName(n)]; ok {
			fmt.Printf(" %10.0f", r.perCoreSecond())
			pion = fmt.Sprintf("%.2f×", fwd/r.perCoreSecond())
		} else {
			fmt.Printf(" %10s", "-")
		}
		pct := "-"
		if best > 0 {
			pct = fmt.Sprintf("%.0f%% (of %s)", 100*fwd/best, bestName)
		}
		fmt.Printf(" | %-22s %8s\n", pct, pion)
	}
}
