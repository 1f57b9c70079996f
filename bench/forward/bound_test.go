package forward

import (
	"context"
	"net/netip"
	"runtime/pprof"
	"testing"

	"github.com/pion/rtp"

	"github.com/rtcrelay/rtcrelay/ice"
	"github.com/rtcrelay/rtcrelay/srtp"
)

// The physical bound of a forwarder on this machine, in the server's CPU ns per forwarded packet, from three
// measurements made with the same socket, packets and subscriber counts as BenchmarkForward:
//
//		bound_ns(N) = kernel(N) + aesgcm + ingest/N
//
//	  - kernel(N): BenchmarkBound/kernel/subs=N, the kernel's own cost of handing a datagram to loopback: one
//	    ice.Socket blasts pre-built 1244-byte datagrams (no crypto, no rewrite, no copy once the slab holds
//	    them) with sendmmsg + UDP GSO to min(N, 16) receivers, in runs of up to 16 per subscriber (the
//	    writers' burst) as far as the forwarder's in-flight window allows, while the receivers wait (see
//	    blaster);
//	  - aesgcm: BenchmarkBound/aesgcm, EncryptRTP of the 1228-byte plaintext into a separate buffer (one
//	    subscriber's encryption);
//	  - ingest: BenchmarkBound/ingest, the publisher's packet into the server: full recvmmsg batches and the
//	    decrypt in place, shared by the N subscribers (see runBoundIngest).
//
// Each term is the server's share of the CPU (with -srvcpu: profile samples in goroutines labelled
// role=server, syscalls included), as the forwarder's figure is: the blaster's goroutine, the ingest reader,
// the encrypting loop. The receivers, the publisher and the runtime's idle spinning are not counted on either
// side. (Sums of whole-process figures are no bound: each separate run pays the receivers' wake-ups and the
// scheduler's spinning once more, and on 7 Dec the forwarder came out at 124–189 % of such a "bound".)
//
// No real forwarder can be cheaper: it must at least encrypt per subscriber, hand every datagram to the kernel
// and take in the publisher's packet, and each term does its part the cheapest way.
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
	// One goroutine does nothing else: all of it is the server's work.
	results[b.Name()] = result{fwd: int64(b.N), cpuPerFwd: ns, serverCPUPerFwd: ns}
}

// ingestPhase is the publisher packets the ingest bound sends before the server side reads them.
const ingestPhase = 1024

// runBoundIngest measures the cheapest possible intake of a publisher's packet: the publisher sends a batch of
// packets (one sendto each, not counted), then the server side (a labelled goroutine) reads them with recvmmsg
// of ice.DefaultRecvBatch and decrypts each in place. Nothing reads while the publisher sends, so each read finds
// a full batch, which no real reader woken by the first packet of a burst can count on.
func runBoundIngest(b *testing.B) {
	fl := newFlow(1)
	rx := newIdleReceiver(b, fl)
	rx.batch = ice.DefaultRecvBatch
	fl.window = 1 << 40 // the phases bound what is in flight
	pub := newPublisher(b, rx.addr())
	pk, ps := key(0)
	_, _, dec, err := srtp.NewPairFromKeys(srtpProfile, pk, ps, pk, ps)
	if err != nil {
		b.Fatal(err)
	}
	var hdr rtp.Header
	rx.each = func(p []byte) {
		if _, err := dec.DecryptRTP(p, &hdr); err != nil {
			b.Error(err)
		}
	}
	read, done := make(chan int), make(chan struct{})
	asServer(func(context.Context) {
		go func() {
			for n := range read {
				rx.drain(n)
				done <- struct{}{}
			}
		}()
	})
	defer close(read)
	pending, first := 0, true
	flush := func() {
		if pending > 0 {
			read <- pending
			<-done
			pending = 0
		}
	}
	measureWith(b, 1, func() {
		pub.send(b)
		if pending++; pending == ingestPhase || first { // the warm-up's first packet is waited for
			flush()
			first = false
		}
	}, fl, flush)
}

// blaster sends, per call, one pre-built datagram to each of N subscribers, buffered into runs of up to 16 per
// subscriber. The receivers do not read while it sends: after each phase of about 1024 datagrams a drainer
// goroutine (not the server's) reads them empty, and the blaster waits for it. The kernel's cost of a datagram is
// then what the send costs alone, without the receivers taking the same socket locks at the same time (which
// makes a blast at full speed dearer per datagram than the forwarder's paced writers), and the hand-shake with
// the drainer is spread over the phase.
type blaster struct {
	batch     *ice.Batch
	to        []netip.AddrPort
	rxs       []*receiver
	pkt       []byte
	run       int   // datagrams per subscriber per batch
	phase     int   // datagrams between drains, at least
	pending   int   // datagrams per subscriber not yet sent
	undrained int   // datagrams per subscriber sent and not drained
	share     []int // subscribers per receiver (subscriber i sends to receiver i%len)
	drain     chan int
	drained   chan struct{}
}

func (bl *blaster) send() {
	bl.pending++
	if bl.pending >= bl.run {
		bl.sendRun()
	}
}

func (bl *blaster) sendRun() {
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
	bl.undrained += bl.pending
	bl.pending = 0
	if bl.undrained*len(bl.to) >= bl.phase {
		bl.drainNow()
	}
}

func (bl *blaster) drainNow() {
	bl.drain <- bl.undrained
	<-bl.drained
	bl.undrained = 0
}

// flush sends what is pending and waits until the receivers read all of it.
func (bl *blaster) flush() {
	if bl.pending > 0 {
		bl.sendRun()
	}
	if bl.undrained > 0 {
		bl.drainNow()
	}
}

// drainer reads each receiver's share of every phase.
func (bl *blaster) drainer() {
	for n := range bl.drain {
		for i, r := range bl.rxs {
			r.drain(n * bl.share[i])
		}
		bl.drained <- struct{}{}
	}
}

func runBoundKernel(b *testing.B, subs int) {
	fl := newFlow(subs)
	rxs := receivers(b, subs, fl, newIdleReceiver)
	sock := listen(b, 0, 0, false)
	pub := newPublisher(b, sock.LocalAddr())
	pkt, err := pub.enc.EncryptRTP(append(make([]byte, 0, ice.BatchSlotSize), pub.packet()...), &pub.hdr)
	if err != nil {
		b.Fatal(err)
	}
	// Runs as long as the forwarder's in-flight window lets a writer find queued for one player.
	bl := &blaster{batch: sock.NewBatch(), pkt: pkt, rxs: rxs, run: max(1, min(16, int(fl.window)/subs)),
		phase: min(window, 1024*len(rxs)), drain: make(chan int), drained: make(chan struct{})}
	fl.window = 1 << 40 // the phases bound what is in flight
	bl.share = make([]int, len(rxs))
	for i := range subs {
		bl.to = append(bl.to, rxs[i%len(rxs)].addr())
		bl.share[i%len(rxs)]++
	}
	go bl.drainer()
	defer close(bl.drain)
	first := true
	// The blaster is the server here: its goroutine (sends, syscalls included) is what -srvcpu counts, not the
	// receivers'.
	pprof.SetGoroutineLabels(pprof.WithLabels(context.Background(), pprof.Labels("role", "server")))
	defer pprof.SetGoroutineLabels(context.Background())
	measureWith(b, subs, func() {
		bl.send()
		if first { // the warm-up's first packet is waited for
			bl.flush()
			first = false
		}
	}, fl, bl.flush)
}
