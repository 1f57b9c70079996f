package twcc

import (
	"testing"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// arrival is one recorded packet of a test.
type arrival struct {
	seq uint16
	at  int64 // ns
}

// roundTrip marshals the recorder's feedback, parses it back with pion/rtcp and decodes it.
func roundTrip(t testing.TB, r *Recorder) ([]*rtcp.TransportLayerCC, []Status) {
	t.Helper()
	var fbs []*rtcp.TransportLayerCC
	var all []Status
	for _, p := range r.Feedback() {
		b, err := p.Marshal()
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		if len(b) > 1200 {
			t.Fatalf("feedback of %d bytes", len(b))
		}
		pkts, err := rtcp.Unmarshal(b)
		if err != nil {
			t.Fatalf("unmarshal: %v", err)
		}
		if len(pkts) != 1 {
			t.Fatalf("%d packets in one feedback", len(pkts))
		}
		fb, ok := pkts[0].(*rtcp.TransportLayerCC)
		if !ok {
			t.Fatalf("got %T", pkts[0])
		}
		fbs = append(fbs, fb)
		all = append(all, Decode(fb)...)
	}
	return fbs, all
}

// check verifies that st reports exactly the sequence numbers from first to last, received as in sent, with
// arrival deltas between received packets within 250 µs of the true ones.
func check(t *testing.T, st []Status, first uint16, count int, sent []arrival) {
	t.Helper()
	if len(st) != count {
		t.Fatalf("feedback covers %d sequence numbers, want %d", len(st), count)
	}
	byseq := map[uint16]int64{}
	for _, a := range sent {
		if _, ok := byseq[a.seq]; !ok {
			byseq[a.seq] = a.at
		}
	}
	var prev *Status
	var prevAt int64
	for i := range st {
		s := &st[i]
		if s.Seq != first+uint16(i) {
			t.Fatalf("status %d is seq %d, want %d", i, s.Seq, first+uint16(i))
		}
		at, ok := byseq[s.Seq]
		if s.Received != ok {
			t.Fatalf("seq %d: received %v, want %v", s.Seq, s.Received, ok)
		}
		if !ok {
			continue
		}
		if prev != nil {
			got, want := s.ArrivalUS-prev.ArrivalUS, (at-prevAt)/1000
			if d := got - want; d < -250 || d > 250 {
				t.Fatalf("seq %d: delta %d µs after seq %d, want %d", s.Seq, got, prev.Seq, want)
			}
		}
		prev, prevAt = s, at
	}
}

func TestFeedbackRoundTrip(t *testing.T) {
	const ms = int64(1e6)
	base := int64(1000) * 1000 * ms // 1000 s
	seqs := func(from uint16, n int, step int64) []arrival {
		var out []arrival
		for i := range n {
			out = append(out, arrival{from + uint16(i), base + int64(i)*step})
		}
		return out
	}
	drop := func(a []arrival, idx ...int) []arrival {
		var out []arrival
	next:
		for i, x := range a {
			for _, j := range idx {
				if i == j {
					continue next
				}
			}
			out = append(out, x)
		}
		return out
	}
	tests := []struct {
		name  string
		sent  []arrival
		first uint16
		count int
	}{
		{"one", seqs(7, 1, 0), 7, 1},
		{"steady 1 ms", seqs(100, 100, ms), 100, 100},
		{"same time", seqs(100, 40, 0), 100, 40},
		{"sub-unit spacing", seqs(100, 50, 100_000), 100, 50},
		{"large deltas", seqs(100, 20, 100*ms), 100, 20},
		{"mixed small and large", append(seqs(10, 3, ms), seqs(13, 3, 70*ms)...), 10, 6},
		{"losses", drop(seqs(100, 60, 2*ms), 1, 2, 3, 20, 40, 41), 100, 60},
		{"long loss run", drop(seqs(100, 100, ms), 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25), 100, 100},
		{"wrap-around", seqs(65500, 80, ms), 65500, 80},
		{"wrap-around with loss at 0", drop(seqs(65530, 20, ms), 6), 65530, 20},
		{"reordered", []arrival{{10, base}, {12, base + ms}, {11, base + 2*ms}, {13, base + 3*ms}}, 10, 4},
		{"reordered across the wrap", []arrival{{65534, base}, {0, base + ms}, {65535, base + 2*ms}, {1, base + 3*ms}}, 65534, 4},
		{"duplicate", []arrival{{10, base}, {11, base + ms}, {11, base + 5*ms}, {12, base + 6*ms}}, 10, 3},
		{"gap over 8 s", []arrival{{10, base}, {11, base + 9000*ms}, {12, base + 9001*ms}}, 10, 3},
		{"more than one packet", seqs(0, 1800, ms), 0, 1800},
		{"early ones forgotten", seqs(0, Window+300, ms), 300, Window},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRecorder(0x1234)
			for _, a := range tc.sent {
				r.Record(0xabcd, a.seq, a.at)
			}
			fbs, st := roundTrip(t, r)
			check(t, st, tc.first, tc.count, tc.sent)
			for i, fb := range fbs {
				if fb.SenderSSRC != 0x1234 || fb.MediaSSRC != 0xabcd {
					t.Fatalf("SSRCs %x %x", fb.SenderSSRC, fb.MediaSSRC)
				}
				if fb.FbPktCount != uint8(i) {
					t.Fatalf("feedback %d has count %d", i, fb.FbPktCount)
				}
			}
			if again := r.Feedback(); again != nil {
				t.Fatalf("feedback without new packets: %v", again)
			}
		})
	}
}

// Successive feedbacks continue where the last one ended; a packet that arrives after being reported lost is
// reported again.
func TestFeedbackIntervals(t *testing.T) {
	const ms = int64(1e6)
	r := NewRecorder(1)
	if r.Feedback() != nil {
		t.Fatal("feedback before any packet")
	}
	sent := []arrival{{100, 0}, {101, ms}, {103, 3 * ms}}
	for _, a := range sent {
		r.Record(2, a.seq, a.at)
	}
	_, st := roundTrip(t, r)
	check(t, st, 100, 4, sent)

	late := []arrival{{102, 4 * ms}, {104, 5 * ms}}
	for _, a := range late {
		r.Record(2, a.seq, a.at)
	}
	_, st = roundTrip(t, r)
	check(t, st, 102, 3, append(sent, late...))

	r.Record(2, 105, 6*ms)
	fbs, st := roundTrip(t, r)
	check(t, st, 105, 1, []arrival{{105, 6 * ms}})
	if fbs[0].FbPktCount != 2 {
		t.Fatalf("third feedback has count %d", fbs[0].FbPktCount)
	}
	// A packet older than the window does not bring back a feedback.
	r.Record(2, uint16(105+1<<16-Window), 7*ms)
	if r.Feedback() != nil {
		t.Fatal("feedback for a packet out of the window")
	}
}

func TestFeedbackReferenceTimeWraps(t *testing.T) {
	r := NewRecorder(1)
	at := int64(1<<24)*refUnitUS*1000 + 5e6 // just past the 24-bit wrap of the 64 ms reference
	r.Record(1, 1, at)
	r.Record(1, 2, at+1e6)
	fbs, st := roundTrip(t, r)
	if fbs[0].ReferenceTime != 0 {
		t.Fatalf("reference time %d, want 0 (wrapped)", fbs[0].ReferenceTime)
	}
	check(t, st, 1, 2, []arrival{{1, at}, {2, at + 1e6}})
}

func TestEncodeChunks(t *testing.T) {
	const (
		n = rtcp.TypeTCCPacketNotReceived
		s = rtcp.TypeTCCPacketReceivedSmallDelta
		l = rtcp.TypeTCCPacketReceivedLargeDelta
	)
	rep := func(v uint16, k int) []uint16 {
		out := make([]uint16, k)
		for i := range out {
			out[i] = v
		}
		return out
	}
	tests := []struct {
		name   string
		syms   []uint16
		chunks int
	}{
		{"run", rep(s, 100), 1},
		{"long run", rep(n, 0x1fff+1), 2},
		{"one-bit vector", []uint16{s, n, s, n, s, n, s, n, s, n, s, n, s, n}, 1},
		{"two-bit vectors", []uint16{s, l, s, l, s, l, s, l, s, l, s, l, s, l}, 2},
		{"short tail", []uint16{s, n, s}, 1},
		{"vector then run", append([]uint16{n, s, n}, rep(s, 20)...), 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cs := encodeChunks(tc.syms)
			if len(cs) != tc.chunks {
				t.Fatalf("%d chunks, want %d", len(cs), tc.chunks)
			}
			var got []uint16
			for _, c := range cs {
				switch c := c.(type) {
				case *rtcp.RunLengthChunk:
					got = append(got, rep(c.PacketStatusSymbol, int(c.RunLength))...)
				case *rtcp.StatusVectorChunk:
					if c.SymbolSize == rtcp.TypeTCCSymbolSizeOneBit && len(c.SymbolList) > 14 ||
						c.SymbolSize == rtcp.TypeTCCSymbolSizeTwoBit && len(c.SymbolList) > 7 {
						t.Fatalf("vector of %d symbols, size %d", len(c.SymbolList), c.SymbolSize)
					}
					got = append(got, c.SymbolList...)
				}
			}
			if len(got) != len(tc.syms) {
				t.Fatalf("%d symbols back, want %d", len(got), len(tc.syms))
			}
			for i := range got {
				if got[i] != tc.syms[i] {
					t.Fatalf("symbol %d is %d, want %d", i, got[i], tc.syms[i])
				}
			}
		})
	}
}

func TestSequenceNumber(t *testing.T) {
	for _, profile := range []uint16{0xBEDE, 0x1000} {
		h := rtp.Header{Version: 2, SSRC: 1}
		if err := h.SetExtension(1, []byte{0xff}); err != nil {
			t.Fatal(err)
		}
		h.ExtensionProfile = profile
		if err := h.SetExtension(3, []byte{0x12, 0x34}); err != nil {
			t.Fatal(err)
		}
		b, err := h.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		var p rtp.Header
		if _, err := p.Unmarshal(b); err != nil {
			t.Fatal(err)
		}
		if seq, ok := SequenceNumber(&p, 3); !ok || seq != 0x1234 {
			t.Fatalf("profile %x: seq %x %v", profile, seq, ok)
		}
		for _, id := range []uint8{0, 1, 2} {
			if _, ok := SequenceNumber(&p, id); ok {
				t.Fatalf("profile %x: id %d read as a sequence number", profile, id)
			}
		}
	}
	if _, ok := SequenceNumber(&rtp.Header{}, 3); ok {
		t.Fatal("sequence number from a header without extensions")
	}
}

func BenchmarkRecord(b *testing.B) {
	r := NewRecorder(1)
	var seq uint16
	var at int64
	b.ReportAllocs()
	for b.Loop() {
		seq++
		at += 1e6
		if seq%7 != 0 { // some loss
			r.Record(1, seq, at)
		}
	}
}

func BenchmarkSequenceNumber(b *testing.B) {
	h := rtp.Header{Version: 2}
	_ = h.SetExtension(2, []byte{1, 2, 3})
	_ = h.SetExtension(3, []byte{0x12, 0x34})
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := SequenceNumber(&h, 3); !ok {
			b.Fatal("no sequence number")
		}
	}
}

// BenchmarkFeedback is one 100 ms feedback of a 1,000 packets/s stream.
func BenchmarkFeedback(b *testing.B) {
	r := NewRecorder(1)
	var seq uint16
	var at int64
	b.ReportAllocs()
	for b.Loop() {
		for range 100 {
			seq++
			at += 1e6
			r.Record(1, seq, at)
		}
		for _, p := range r.Feedback() {
			if _, err := p.Marshal(); err != nil {
				b.Fatal(err)
			}
		}
	}
}
