// Package twcc is the receive side of transport-wide congestion control
// (draft-holmer-rmcat-transport-wide-cc-extensions-01): a Recorder notes the
// arrival time of every packet by its transport-wide sequence number, and
// builds the RTCP transport-cc feedback (rtcp.TransportLayerCC) a send-side
// bandwidth estimator such as Chrome's needs.
//
// Record is allocation-free: arrivals live in a fixed ring indexed by the
// unwrapped 64-bit sequence number. Feedback allocates the RTCP packets; it
// runs about ten times a second.
package twcc

import (
	"encoding/binary"
	"sync"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// Window is how many sequence numbers the Recorder remembers: arrivals older
// than Window behind the highest one are forgotten (at 1,000 packets a second,
// two seconds).
const Window = 1 << 11

// maxStatus bounds the sequence numbers one feedback packet covers, so that it
// fits a datagram after SRTCP (worst case: 20 + 2×72 chunk + 2×500 delta bytes).
const maxStatus = 500

// Time units of the feedback format.
const (
	deltaUnitUS = rtcp.TypeTCCDeltaScaleFactor // 250 µs
	refUnitUS   = 64_000                       // reference time: 64 ms
)

// SequenceNumber reads the transport-wide sequence number from the header
// extension id of h (one- or two-byte form). ok is false when the extension is
// absent or shorter than two bytes.
func SequenceNumber(h *rtp.Header, id uint8) (seq uint16, ok bool) {
	if id == 0 || !h.Extension {
		return 0, false
	}
	b := h.GetExtension(id)
	if len(b) < 2 {
		return 0, false
	}
	return binary.BigEndian.Uint16(b), true
}

// Recorder records packet arrivals and builds transport-cc feedback. Record
// and Feedback may be called from different goroutines (a mutex, uncontended
// but for the ten Feedback calls a second, guards the state).
type Recorder struct {
	sender uint32

	mu      sync.Mutex
	seq     [Window]int64 // the unwrapped sequence number + 1 a slot holds; 0 = empty
	at      [Window]int64 // its arrival, nanoseconds
	started bool
	highest int64  // highest unwrapped sequence number recorded
	next    int64  // first sequence number the next feedback reports
	fresh   bool   // packets arrived since the last feedback
	media   uint32 // SSRC of the last packet, the feedback's media SSRC
	fbCount uint8
}

// NewRecorder makes a Recorder whose feedback carries senderSSRC.
func NewRecorder(senderSSRC uint32) *Recorder { return &Recorder{sender: senderSSRC} }

// Record notes that the packet of mediaSSRC with transport-wide sequence
// number seq arrived at arrival (nanoseconds of a monotonic clock). Repeats
// and packets older than Window are ignored. It does not allocate.
func (r *Recorder) Record(mediaSSRC uint32, seq uint16, arrival int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.started {
		r.started = true
		r.highest = 1<<32 + int64(seq) // unwrapped numbers stay positive, so no slot's seq+1 is 0
		r.next = r.highest
	}
	s := r.highest + int64(int16(seq-uint16(r.highest)))
	if s <= r.highest-Window {
		return
	}
	i := s & (Window - 1)
	if r.seq[i] == s+1 {
		return
	}
	r.seq[i], r.at[i] = s+1, arrival
	if s > r.highest {
		r.highest = s
	}
	if s < r.next {
		// Late, after a feedback that reported it lost: report again from here (the estimator takes
		// the latest report of a packet).
		r.next = s
	}
	r.media = mediaSSRC
	r.fresh = true
}

// Feedback builds the transport-cc feedback for what arrived since the last
// call: nil when nothing did, else one or more packets (each to be sent as a
// compound RTCP packet of its own, so that each fits a datagram).
func (r *Recorder) Feedback() []rtcp.Packet {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.fresh {
		return nil
	}
	r.fresh = false
	start, end := max(r.next, r.highest-Window+1), r.highest+1
	r.next = end
	var out []rtcp.Packet
	for start < end {
		fb, n := r.build(start, end)
		if fb == nil {
			break
		}
		out = append(out, fb)
		start += n
	}
	return out
}

// build makes one feedback packet from start up to (not including) end, and
// says how many sequence numbers it covers. The caller holds r.mu.
func (r *Recorder) build(start, end int64) (*rtcp.TransportLayerCC, int64) {
	// The reference time is the first received packet's arrival, in 64 ms units.
	first := start
	for first < end && !r.received(first) {
		first++
	}
	if first == end {
		return nil, 0
	}
	refUS := r.at[first&(Window-1)] / 1000 / refUnitUS * refUnitUS
	lastUS := refUS
	syms := make([]uint16, 0, min(end-start, maxStatus))
	var deltas []*rtcp.RecvDelta
	s := start
	for ; s < end && len(syms) < maxStatus; s++ {
		if !r.received(s) {
			syms = append(syms, rtcp.TypeTCCPacketNotReceived)
			continue
		}
		d := roundDiv(r.at[s&(Window-1)]/1000-lastUS, deltaUnitUS)
		if d < -1<<15 || d >= 1<<15 {
			break // more than 8 s from the previous packet: the next feedback packet goes on from here
		}
		sym := uint16(rtcp.TypeTCCPacketReceivedSmallDelta)
		if d < 0 || d > 0xff {
			sym = rtcp.TypeTCCPacketReceivedLargeDelta
		}
		syms = append(syms, sym)
		deltas = append(deltas, &rtcp.RecvDelta{Type: sym, Delta: d * deltaUnitUS})
		lastUS += d * deltaUnitUS
	}
	fb := &rtcp.TransportLayerCC{
		SenderSSRC:         r.sender,
		MediaSSRC:          r.media,
		BaseSequenceNumber: uint16(start),
		PacketStatusCount:  uint16(len(syms)),
		ReferenceTime:      uint32(refUS/refUnitUS) & 0xffffff,
		FbPktCount:         r.fbCount,
		PacketChunks:       encodeChunks(syms),
		RecvDeltas:         deltas,
	}
	r.fbCount++
	n := fb.MarshalSize()
	fb.Header = rtcp.Header{
		Padding: n != packetLen(fb),
		Count:   rtcp.FormatTCC,
		Type:    rtcp.TypeTransportSpecificFeedback,
		Length:  uint16(n/4 - 1),
	}
	return fb, s - start
}

func (r *Recorder) received(s int64) bool { return r.seq[s&(Window-1)] == s+1 }

// packetLen is the feedback's length before padding.
func packetLen(fb *rtcp.TransportLayerCC) int {
	n := 4 + 16 + 2*len(fb.PacketChunks)
	for _, d := range fb.RecvDeltas {
		n++
		if d.Type == rtcp.TypeTCCPacketReceivedLargeDelta {
			n++
		}
	}
	return n
}

// roundDiv is a/b rounded to the nearest integer, halves away from zero (b > 0).
func roundDiv(a, b int64) int64 {
	if a < 0 {
		return -((-a + b/2) / b)
	}
	return (a + b/2) / b
}

// encodeChunks packs the status symbols into packet status chunks: a run of 14
// or more equal symbols (or the equal rest) as a run-length chunk, otherwise a
// one-bit status vector of 14 when no large delta is among them, otherwise a
// two-bit vector of 7. The last vector may hold fewer symbols; the status
// count says where they end.
func encodeChunks(syms []uint16) []rtcp.PacketStatusChunk {
	var out []rtcp.PacketStatusChunk
	for i := 0; i < len(syms); {
		run := 1
		for i+run < len(syms) && syms[i+run] == syms[i] && run < 0x1fff {
			run++
		}
		if run >= 14 || i+run == len(syms) {
			out = append(out, &rtcp.RunLengthChunk{
				Type: rtcp.TypeTCCRunLengthChunk, PacketStatusSymbol: syms[i], RunLength: uint16(run),
			})
			i += run
			continue
		}
		n, size := min(14, len(syms)-i), uint16(rtcp.TypeTCCSymbolSizeOneBit)
		for _, v := range syms[i : i+n] {
			if v == rtcp.TypeTCCPacketReceivedLargeDelta {
				n, size = min(7, len(syms)-i), rtcp.TypeTCCSymbolSizeTwoBit
				break
			}
		}
		out = append(out, &rtcp.StatusVectorChunk{
			Type: rtcp.TypeTCCStatusVectorChunk, SymbolSize: size, SymbolList: syms[i : i+n : i+n],
		})
		i += n
	}
	return out
}

// Status is one sequence number of a feedback packet, as Decode reads it.
type Status struct {
	Seq      uint16
	Received bool
	// ArrivalUS is the arrival in microseconds on the feedback's clock: the reference time (64 ms units)
	// plus the receive deltas so far. Zero when not received.
	ArrivalUS int64
}

// Decode expands a feedback packet (as rtcp.Unmarshal returns it) into one Status per sequence number it
// covers. It is the reading side of Feedback, for tests and tools; errors are reported as a short result
// (a delta missing for a received symbol ends it).
func Decode(fb *rtcp.TransportLayerCC) []Status {
	out := make([]Status, 0, fb.PacketStatusCount)
	now := int64(fb.ReferenceTime) * refUnitUS
	di := 0
	add := func(sym uint16) bool {
		st := Status{Seq: fb.BaseSequenceNumber + uint16(len(out))}
		if sym == rtcp.TypeTCCPacketReceivedSmallDelta || sym == rtcp.TypeTCCPacketReceivedLargeDelta {
			if di >= len(fb.RecvDeltas) {
				return false
			}
			now += fb.RecvDeltas[di].Delta
			di++
			st.Received, st.ArrivalUS = true, now
		}
		out = append(out, st)
		return true
	}
	for _, c := range fb.PacketChunks {
		switch c := c.(type) {
		case *rtcp.RunLengthChunk:
			for range c.RunLength {
				if len(out) >= int(fb.PacketStatusCount) || !add(c.PacketStatusSymbol) {
					return out
				}
			}
		case *rtcp.StatusVectorChunk:
			for _, sym := range c.SymbolList {
				if len(out) >= int(fb.PacketStatusCount) || !add(sym) {
					return out
				}
			}
		}
	}
	return out
}
