package twcc

import (
	"encoding/binary"
	"testing"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// FuzzSequenceNumber: any RTP header the session parses gives a sequence number or none, never a panic.
func FuzzSequenceNumber(f *testing.F) {
	h := rtp.Header{Version: 2, SSRC: 1}
	_ = h.SetExtension(3, []byte{0x12, 0x34})
	b, _ := h.Marshal()
	f.Add(b, uint8(3))
	f.Add([]byte{0x90, 0x60, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0x10, 0x00, 0, 1, 3, 1, 0xff, 0}, uint8(3))
	f.Fuzz(func(t *testing.T, data []byte, id uint8) {
		var h rtp.Header
		if _, err := h.Unmarshal(data); err != nil {
			return
		}
		seq, ok := SequenceNumber(&h, id)
		if ok {
			if e := h.GetExtension(id); len(e) < 2 || binary.BigEndian.Uint16(e) != seq {
				t.Fatalf("seq %d from extension %x", seq, e)
			}
		}
	})
}

// FuzzRecorder feeds arbitrary arrivals (2 bytes each: a signed step of the sequence number from the
// previous one, an arrival step in 100 µs; a zero sequence step asks for feedback) from a first sequence
// number in the first two bytes, and checks that every feedback survives pion/rtcp's marshal and unmarshal,
// reports only sent packets, and their arrival deltas within 250 µs.
func FuzzRecorder(f *testing.F) {
	f.Add([]byte{0xff, 0xf0, 1, 10, 1, 10, 2, 200, 0, 0, 0xff, 1, 2, 1})
	f.Add([]byte{0, 0, 1, 0, 0x80, 0, 0x7f, 0xff, 0, 0, 3, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 2 {
			return
		}
		r := NewRecorder(1)
		seq := int64(binary.BigEndian.Uint16(data))
		high := seq
		data = data[2:]
		at := int64(0)
		first := map[int64]int64{} // the first arrival of each (unwrapped) sequence number
		flush := func() {
			for _, p := range r.Feedback() {
				b, err := p.Marshal()
				if err != nil {
					t.Fatalf("marshal: %v", err)
				}
				pkts, err := rtcp.Unmarshal(b)
				if err != nil {
					t.Fatalf("unmarshal: %v", err)
				}
				fb := pkts[0].(*rtcp.TransportLayerCC)
				st := Decode(fb)
				if len(st) != int(fb.PacketStatusCount) {
					t.Fatalf("decoded %d of %d", len(st), fb.PacketStatusCount)
				}
				var prev *Status
				var prevAt int64
				for i := range st {
					s := &st[i]
					if !s.Received {
						continue
					}
					u := high + int64(int16(s.Seq-uint16(high)))
					want, ok := first[u]
					if !ok {
						t.Fatalf("seq %d (%d) reported received, never sent", s.Seq, u)
					}
					if prev != nil {
						got := s.ArrivalUS - prev.ArrivalUS
						if d := got - (want-prevAt)/1000; d < -250 || d > 250 {
							t.Fatalf("seq %d: delta %d µs, want %d", s.Seq, got, (want-prevAt)/1000)
						}
					}
					prev, prevAt = s, want
				}
			}
		}
		first[seq] = at
		r.Record(2, uint16(seq), at)
		for ; len(data) >= 2; data = data[2:] {
			step := int64(int8(data[0]))
			if step == 0 {
				flush()
				continue
			}
			// The steps may take the sequence number more than half the 16-bit space behind: like a
			// receiver, the oracle unwraps to the nearest number of the highest.
			seq = high + int64(int16(uint16(seq+step)-uint16(high)))
			high = max(high, seq)
			at += int64(data[1]) * 100_000
			if _, ok := first[seq]; !ok && seq > high-Window {
				first[seq] = at
			}
			r.Record(2, uint16(seq), at)
		}
		flush()
	})
}
