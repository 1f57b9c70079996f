package forwarder

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/rtcrelay/rtcrelay/packet"
)

// discard is a Downstream that drops what it gets (no encryption, no syscall) through the production send
// path: the writer's batch of the player's Sender; the benchmark measures the forwarder.
type discard struct {
	n     uint64 // written by the player's writer goroutine only
	bytes uint64
}

func (d *discard) Sender() Sender         { return discardSender{} }
func (d *discard) WriteRTCP([]byte) error { return nil }
func (d *discard) WriteRTPBatch(b BatchSender, buf []byte) error {
	d.n++
	d.bytes += uint64(len(buf))
	return b.Queue(len(buf), netip.AddrPort{})
}

// discardSender's batches (one per writer, shared by its players) drop what they queue.
type discardSender struct{}

func (discardSender) NewBatch() BatchSender {
	return &discardBatch{buf: make([]byte, 0, packet.Size+128)}
}

type discardBatch struct {
	buf    []byte
	queued int
}

func (b *discardBatch) Buf() []byte                     { return b.buf[:0] }
func (b *discardBatch) Queue(int, netip.AddrPort) error { b.queued++; return nil }
func (b *discardBatch) Flush() error                    { b.queued = 0; return nil }
func (b *discardBatch) Len() int                        { return b.queued }

type nopUp struct{}

func (nopUp) WriteRTCP([]byte) error { return nil }

// BenchmarkFanout publishes 1200-byte VP8 packets with three header extensions into one stream with N players
// and reports the cost per forwarded packet (rewritten for and handed to a player). The producer yields while
// a writer queue is half full, so nothing is dropped and every op is forwarded N times.
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{1, 10, 100, 1000} {
		b.Run(fmt.Sprint("subs=", n), func(b *testing.B) { benchFanout(b, n, false) })
	}
}

// BenchmarkFanoutSimulcast is BenchmarkFanout with layer selection on: the publisher sends three simulcast
// layers (for every 4 packets of the top layer, one of each lower layer), the players are on the top layer,
// and every player's downTrack sees every layer's packets and skips those of the layers it is not on. Compare
// its cpu-ns/fwd with BenchmarkFanout's in one run.
func BenchmarkFanoutSimulcast(b *testing.B) {
	for _, n := range []int{1, 10, 100, 1000} {
		b.Run(fmt.Sprint("subs=", n), func(b *testing.B) { benchFanout(b, n, true) })
	}
}

// BenchmarkFanoutLayerSelect is BenchmarkFanoutSimulcast without the lower layers' packets: only the layer
// the players are on is sent, so that the difference from BenchmarkFanout is the players' cost of layer
// selection (the layer check, VP8 picture ID continuity), not the ingest of more packets.
func BenchmarkFanoutLayerSelect(b *testing.B) {
	for _, n := range []int{1, 10, 100, 1000} {
		b.Run(fmt.Sprint("subs=", n), func(b *testing.B) { benchFanoutLayers(b, n, true, false) })
	}
}

func benchFanout(b *testing.B, n int, simulcast bool) { benchFanoutLayers(b, n, simulcast, simulcast) }

func benchFanoutLayers(b *testing.B, n int, simulcast, lower bool) {
	r := NewRegistry(nil)
	tracks := pubTracks(true)[1:]
	if simulcast {
		tracks = simTracks()[1:]
		for i := range tracks {
			tracks[i].SSRC = simSSRC + uint32(i)
		}
	}
	st, err := r.Publish("bench", tracks, nopUp{})
	if err != nil {
		b.Fatal(err)
	}
	downs := make([]*discard, n)
	for i := range n {
		downs[i] = &discard{}
		if _, err := st.Subscribe(downs[i], playTracks(i)[1:]); err != nil {
			b.Fatal(err)
		}
	}
	writers := st.writers // fixed from here on

	payload := make([]byte, 1200)
	copy(payload, vp8Key)
	h := rtp.Header{Version: 2, PayloadType: 96, SSRC: pubVideoSSRC}
	for id, v := range videoExts(0) {
		if id != 5 {
			_ = h.SetExtension(id, v)
		}
	}
	tmpl, _ := (&rtp.Packet{Header: h, Payload: payload}).Marshal()
	hdrLen := len(tmpl) - len(payload)
	var seqs [3]uint16
	top := 0
	if simulcast {
		top = 2
	}
	send := func(layer int, key bool) {
		for _, w := range writers {
			for w.q.len() > queueSize/2 {
				runtime.Gosched()
			}
		}
		p := packet.Get()
		buf := p.ReadSlice()
		copy(buf, tmpl)
		seq := seqs[layer]
		seqs[layer]++
		buf[2], buf[3] = byte(seq>>8), byte(seq)
		if !key {
			buf[hdrLen+3] |= 1 // VP8 P bit: a delta frame
		}
		p.SetLen(len(tmpl))
		p.Arrival = int64(time.Since(r.epoch)) // as the socket reader stamps it
		p.Header = h
		if simulcast {
			p.Header.SSRC = simSSRC + uint32(layer)
			binary.BigEndian.PutUint32(buf[8:], p.Header.SSRC)
		}
		p.Header.SequenceNumber = seq
		p.Header.Timestamp = uint32(seq/4) * 3000
		st.HandleRTP(p)
		p.Release()
	}
	send(top, true)
	b.SetBytes(int64(len(tmpl)) * int64(n))
	b.ReportAllocs()
	cpu0 := cpuTime()
	var ops int
	for b.Loop() {
		send(top, false)
		if ops++; lower && ops%4 == 0 {
			send(0, false)
			send(1, false)
		}
	}
	for _, w := range writers {
		for w.q.len() > 0 {
			runtime.Gosched()
		}
	}
	elapsed := b.Elapsed()
	cpu := cpuTime() - cpu0
	st.Close()
	var fwd uint64
	for _, d := range downs {
		fwd += d.n
	}
	if s := st.Stats(); s.Drops != 0 {
		b.Errorf("%d drops", s.Drops)
	}
	if want := uint64(ops+1) * uint64(n); fwd != want {
		b.Errorf("forwarded %d, want %d", fwd, want)
	}
	b.ReportMetric(float64(elapsed.Nanoseconds())/float64(fwd), "ns/fwd")
	b.ReportMetric(float64(fwd)/elapsed.Seconds(), "fwd/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(fwd), "cpu-ns/fwd")
}

// cpuTime is the process's user+system CPU time: on a shared machine it measures the work better than the
// wall clock.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
