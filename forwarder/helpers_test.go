package forwarder

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"sync"
	"testing"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/rtcrelay/rtcrelay/packet"
	"github.com/rtcrelay/rtcrelay/sdp"
)

// fakeUp records the RTCP sent to the publisher.
type fakeUp struct {
	mu   sync.Mutex
	pkts []rtcp.Packet
}

func (u *fakeUp) WriteRTCP(b []byte) error {
	ps, err := rtcp.Unmarshal(b)
	if err != nil {
		return err
	}
	u.mu.Lock()
	u.pkts = append(u.pkts, ps...)
	u.mu.Unlock()
	return nil
}

func (u *fakeUp) count(match func(rtcp.Packet) bool) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for _, p := range u.pkts {
		if match(p) {
			n++
		}
	}
	return n
}

func isPLI(p rtcp.Packet) bool { _, ok := p.(*rtcp.PictureLossIndication); return ok }
func isFIR(p rtcp.Packet) bool { _, ok := p.(*rtcp.FullIntraRequest); return ok }

// fakeDown records what a player gets, through the production send path: the writer rewrites into a slot of
// a fakeBatch (the player's own Sender) and calls WriteRTPBatch, which queues it; the batch delivers the
// datagrams to the player when the writer flushes. When block is non-nil, WriteRTPBatch waits on it.
type fakeDown struct {
	mu    sync.Mutex
	rtp   []rtp.Packet
	rtcp  []rtcp.Packet
	block chan struct{}
}

// fakeAddr is where every fakeDown's datagrams go.
var fakeAddr = netip.MustParseAddrPort("127.0.0.1:9")

func (d *fakeDown) Sender() Sender { return d }

func (d *fakeDown) NewBatch() BatchSender { return newFakeBatch(d) }

func (d *fakeDown) WriteRTPBatch(b BatchSender, buf []byte) error {
	if cap(buf) < len(buf)+16 {
		return errors.New("no room to encrypt in place")
	}
	if d.block != nil {
		<-d.block
	}
	return b.Queue(len(buf), fakeAddr)
}

func (d *fakeDown) deliver(b []byte) {
	var p rtp.Packet
	if err := p.Unmarshal(append([]byte(nil), b...)); err != nil {
		panic(err)
	}
	d.mu.Lock()
	d.rtp = append(d.rtp, p)
	d.mu.Unlock()
}

// fakeBatch is a BatchSender with ice.Batch's slot discipline: Buf is the next slot, Queue takes it, a full
// batch flushes, Flush hands the queued datagrams to their players.
type fakeBatch struct {
	d      *fakeDown
	slots  [8][]byte
	queued int
	sent   int // datagrams flushed
}

func newFakeBatch(d *fakeDown) *fakeBatch {
	b := &fakeBatch{d: d}
	for i := range b.slots {
		b.slots[i] = make([]byte, 0, packet.Size+128)
	}
	return b
}

func (b *fakeBatch) Buf() []byte { return b.slots[b.queued][:0] }
func (b *fakeBatch) Len() int    { return b.queued }

func (b *fakeBatch) Queue(n int, to netip.AddrPort) error {
	if to != fakeAddr {
		return errors.New("fakeBatch: unexpected destination")
	}
	b.slots[b.queued] = b.slots[b.queued][:n]
	b.queued++
	if b.queued == len(b.slots) {
		return b.Flush()
	}
	return nil
}

func (b *fakeBatch) Flush() error {
	for i := range b.queued {
		b.d.deliver(b.slots[i])
	}
	b.sent += b.queued
	b.queued = 0
	return nil
}

func (d *fakeDown) WriteRTCP(b []byte) error {
	ps, err := rtcp.Unmarshal(b)
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.rtcp = append(d.rtcp, ps...)
	d.mu.Unlock()
	return nil
}

func (d *fakeDown) packets() []rtp.Packet {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]rtp.Packet(nil), d.rtp...)
}

func (d *fakeDown) reports() []rtcp.Packet {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]rtcp.Packet(nil), d.rtcp...)
}

// A publisher of Opus (PT 111) and VP8 (PT 96) with audio-level, abs-send-time, transport-cc and mid.
const (
	pubAudioSSRC = 0x1111
	pubVideoSSRC = 0x2222
)

func pubTracks(declareSSRC bool) []TrackInfo {
	a := TrackInfo{Kind: "audio", Codec: sdp.Codec{PayloadType: 111, Name: "opus", ClockRate: 48000, Channels: 2},
		Extensions: []sdp.Extension{{ID: 1, URI: "urn:ietf:params:rtp-hdrext:ssrc-audio-level"}, {ID: 4, URI: extMid}}}
	v := TrackInfo{Kind: "video", Codec: sdp.Codec{PayloadType: 96, Name: "VP8", ClockRate: 90000,
		Feedback: []string{"nack", "nack pli", "ccm fir"}},
		Extensions: []sdp.Extension{{ID: 2, URI: extAbsSendTime}, {ID: 3, URI: extTransportCC}, {ID: 4, URI: extMid},
			{ID: 5, URI: "urn:3gpp:video-orientation"}}}
	if declareSSRC {
		a.SSRC, v.SSRC = pubAudioSSRC, pubVideoSSRC
	}
	return []TrackInfo{a, v}
}

// playTracks is what sdp.NegotiatePlay would give player i: its own PTs, extension IDs and SSRCs.
func playTracks(i int) []sdp.Track {
	return []sdp.Track{
		{Mid: "a", Kind: "audio", Direction: sdp.DirSendOnly, SSRC: uint32(0x10000 + 2*i),
			Codec:      sdp.Codec{PayloadType: uint8(100 + i%20), Name: "opus", ClockRate: 48000, Channels: 2},
			Extensions: []sdp.Extension{{ID: 9, URI: "urn:ietf:params:rtp-hdrext:ssrc-audio-level"}, {ID: 10, URI: extMid}}},
		{Mid: "v", Kind: "video", Direction: sdp.DirSendOnly, SSRC: uint32(0x10001 + 2*i),
			Codec:      sdp.Codec{PayloadType: uint8(50 + i%20), Name: "VP8", ClockRate: 90000},
			Extensions: []sdp.Extension{{ID: 11, URI: extTransportCC}, {ID: 10, URI: extMid}, {ID: 12, URI: "urn:3gpp:video-orientation"}}},
	}
}

var vp8Key = []byte{0x90, 0x80, 0x01, 0x00, 0x9d, 0x01, 0x2a} // X S PID0, I, picture ID 1, P bit 0
var vp8Delta = []byte{0x90, 0x80, 0x02, 0x01}                 // P bit 1

// mkPacket builds a publisher packet the way a session hands it over: plaintext in a packet.Buffer, header
// parsed.
func mkPacket(tb testing.TB, ssrc uint32, pt uint8, seq uint16, ts uint32, payload []byte, exts map[uint8][]byte) *packet.Buffer {
	tb.Helper()
	h := rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: seq, Timestamp: ts, SSRC: ssrc}
	for _, id := range []uint8{1, 2, 3, 4, 5} {
		if v, ok := exts[id]; ok {
			if err := h.SetExtension(id, v); err != nil {
				tb.Fatal(err)
			}
		}
	}
	p := packet.Get()
	n, err := h.MarshalTo(p.ReadSlice())
	if err != nil {
		tb.Fatal(err)
	}
	n += copy(p.ReadSlice()[n:], payload)
	p.SetLen(n)
	if _, err := p.Header.Unmarshal(p.Bytes()); err != nil {
		tb.Fatal(err)
	}
	return p
}

func videoExts(seq uint16) map[uint8][]byte {
	return map[uint8][]byte{2: {1, 2, 3}, 3: binary.BigEndian.AppendUint16(nil, seq), 4: []byte("1"), 5: {7}}
}

// feeder sends packets into a stream as a publisher session would, tracking every buffer for leak checks.
type feeder struct {
	tb   testing.TB
	st   *Stream
	bufs []*packet.Buffer
}

func (f *feeder) send(ssrc uint32, pt uint8, seq uint16, ts uint32, payload []byte, exts map[uint8][]byte) {
	p := mkPacket(f.tb, ssrc, pt, seq, ts, payload, exts)
	f.bufs = append(f.bufs, p)
	f.st.HandleRTP(p)
	p.Release()
}

func (f *feeder) video(seq uint16, key bool) {
	pl := vp8Delta
	if key {
		pl = vp8Key
	}
	f.send(pubVideoSSRC, 96, seq, uint32(seq)*3000, pl, videoExts(seq))
}

func (f *feeder) audio(seq uint16) {
	f.send(pubAudioSSRC, 111, seq, uint32(seq)*960, []byte{0xfc, 1, 2, 3}, map[uint8][]byte{1: {0x85}, 4: []byte("0")})
}

// leaks reports buffers still referenced.
func (f *feeder) leaks() int {
	n := 0
	for _, b := range f.bufs {
		if b.Refs() != 0 {
			n++
		}
	}
	return n
}
