package forward

import (
	"context"
	"net/netip"
	"testing"

	"github.com/pion/rtp"

	"github.com/rtcrelay/rtcrelay/ice"
	"github.com/rtcrelay/rtcrelay/internal/benchhooks"
	"github.com/rtcrelay/rtcrelay/packet"
	"github.com/rtcrelay/rtcrelay/srtp"
)

// The physical bound of a forwarder on this machine, in CPU ns per forwarded packet, from three measurements
// made with the same sockets, receivers, flow control and CPU accounting as BenchmarkForward:
//
//		bound_ns(N) = kernel(N) + aesgcm + ingest/N
//
//	  - kernel(N): BenchmarkBound/kernel/subs=N, the kernel's own cost of sending and receiving a datagram: one
//	    ice.Socket blasts pre-built 1244-byte datagrams (no crypto, no rewrite, no copy once the slots hold them)
//	    with sendmmsg + UDP GSO to the counting receivers, in runs of up to 16 per subscriber (the writers'
//	    burst) as far as the in-flight window allows;
//	  - aesgcm: BenchmarkBound/aesgcm, EncryptRTP of the 1228-byte plaintext into a separate buffer (one
//	    subscriber's encryption);
//	  - ingest: BenchmarkBound/ingest, the publisher's packet into the server: the publisher's encrypt and send,
//	    the server's recvmmsg (ice.Socket.Serve) and decrypt in place, shared by the N subscribers.
//
// No real forwarder can be cheaper: it must at least encrypt per subscriber, hand every datagram to the kernel
// and take in the publisher's packet.
func BenchmarkBound(b *testing.B) {
	b.Run("aesgcm", runBoundAES)
	b.Run("ingest", runBoundIngest)
	b.Run("kernel", func(b *testing.B) {
		for _, n := range subCounts {
			b.Run(subName(n), func(b *testing.B) { runBoundKernel(b, n) })
		}
	})
}

func runBoundAES(b *testing.B) {
	k, s := key(1)
	enc, _, _, err := srtp.NewPairFromKeys(srtpProfile, k, s, k, s)
	if err != nil {
		b.Fatal(err)
	}
	plain, _ := template()
	dst := make([]byte, 0, ice.BatchSlotSize)
	var hdr rtp.Header
	b.SetBytes(int64(len(plain)))
	b.ReportAllocs()
	cpu0 := cpuTime()
	for b.Loop() {
		if _, err := enc.EncryptRTP(append(dst[:0], plain...), &hdr); err != nil {
			b.Fatal(err)
		}
	}
	ns := float64((cpuTime() - cpu0).Nanoseconds()) / float64(b.N)
	b.ReportMetric(ns, "cpu-ns/pkt")
	results[b.Name()] = result{fwd: int64(b.N), cpuPerFwd: ns}
}

// ingestSink decrypts in place what the socket hands it and counts it as received.
type ingestSink struct {
	dec *srtp.Decrypter
	hdr rtp.Header
	fl  *flow
}

func (k *ingestSink) HandleDTLS([]byte, netip.AddrPort)          {}
func (k *ingestSink) HandleSRTCP(*packet.Buffer, netip.AddrPort) {}
func (k *ingestSink) HandleSRTP(p *packet.Buffer, _ netip.AddrPort) {
	if _, err := k.dec.DecryptRTP(p.Bytes(), &k.hdr); err == nil {
		k.fl.received(1)
	}
}

func runBoundIngest(b *testing.B) {
	fl := newFlow(1)
	sock := listen(b, 0, 0, false)
	pub := newPublisher(b, sock.LocalAddr())
	pk, ps := key(0)
	k := &ingestSink{fl: fl}
	var err error
	if _, _, k.dec, err = srtp.NewPairFromKeys(srtpProfile, pk, ps, pk, ps); err != nil {
		b.Fatal(err)
	}
	a, err := benchhooks.FixedAgent(sock, pub.conn.LocalAddr().(interface{ AddrPort() netip.AddrPort }).AddrPort(), k)
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	asServer(func(ctx context.Context) { go func() { _ = sock.Serve(ctx) }() })
	measure(b, 1, func() { pub.send(b) }, fl)
}

// blaster sends, per call, one pre-built datagram to each of N subscribers, buffered into runs of up to 16 per
// subscriber.
type blaster struct {
	batch   *ice.Batch
	to      []netip.AddrPort
	pkt     []byte
	run     int // datagrams per subscriber per flush
	pending int
}

func (bl *blaster) send() {
	bl.pending++
	if bl.pending >= bl.run {
		bl.flush()
	}
}

func (bl *blaster) flush() {
	for _, to := range bl.to {
		for range bl.pending {
			buf := bl.batch.Buf()[:len(bl.pkt)]
			if buf[0] != bl.pkt[0] || buf[len(buf)-1] != bl.pkt[len(bl.pkt)-1] {
				copy(buf, bl.pkt)
			}
			_ = bl.batch.Queue(len(buf), to)
		}
	}
	_ = bl.batch.Flush()
	bl.pending = 0
}

func runBoundKernel(b *testing.B, subs int) {
	fl := newFlow(subs)
	rxs := receivers(b, subs, fl)
	sock := listen(b, 0, 0, false)
	pub := newPublisher(b, sock.LocalAddr())
	pkt, err := pub.enc.EncryptRTP(append(make([]byte, 0, ice.BatchSlotSize), pub.packet()...), &pub.hdr)
	if err != nil {
		b.Fatal(err)
	}
	bl := &blaster{batch: sock.NewBatch(), pkt: pkt, run: max(1, min(16, int(fl.window)/(2*subs)))}
	for i := range subs {
		bl.to = append(bl.to, rxs[i%len(rxs)].addr())
	}
	first := true
	measureWith(b, subs, func() {
		bl.send()
		if first { // the warm-up's first packet is waited for
			bl.flush()
			first = false
		}
	}, fl, bl.flush)
}
