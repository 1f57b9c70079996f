package media

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	pionice "github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/rtcrelay/rtcrelay/forwarder"
	"github.com/rtcrelay/rtcrelay/packet"
	"github.com/rtcrelay/rtcrelay/sdp"
)

// rtxUp is the publisher side of a test stream: it takes the forwarder's RTCP and drops it.
type rtxUp struct{}

func (rtxUp) WriteRTCP([]byte) error { return nil }

// rtxDown is a player through the forwarder's production send path: its batches hand each queued datagram
// over at once.
type rtxDown struct {
	mu  sync.Mutex
	got []rtp.Packet
}

var rtxDownAddr = netip.MustParseAddrPort("127.0.0.1:9")

func (d *rtxDown) Sender() forwarder.Sender { return d }
func (d *rtxDown) NewBatch() forwarder.BatchSender {
	return &rtxBatch{d: d, buf: make([]byte, 0, packet.Size+128)}
}
func (d *rtxDown) WriteRTCP([]byte) error { return nil }
func (d *rtxDown) WriteRTPBatch(b forwarder.BatchSender, buf []byte) error {
	if cap(buf) < len(buf)+16 {
		return errors.New("no room to encrypt in place")
	}
	return b.Queue(len(buf), rtxDownAddr)
}

func (d *rtxDown) packets() []rtp.Packet {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]rtp.Packet(nil), d.got...)
}

type rtxBatch struct {
	d   *rtxDown
	buf []byte
}

func (b *rtxBatch) Buf() []byte  { return b.buf[:0] }
func (b *rtxBatch) Len() int     { return 0 }
func (b *rtxBatch) Flush() error { return nil }
func (b *rtxBatch) Queue(n int, _ netip.AddrPort) error {
	var p rtp.Packet
	if err := p.Unmarshal(append([]byte(nil), b.buf[:n]...)); err != nil {
		return err
	}
	b.d.mu.Lock()
	b.d.got = append(b.d.got, p)
	b.d.mu.Unlock()
	return nil
}

var (
	rtxVP8Key   = []byte{0x90, 0x80, 0x01, 0x00, 0x9d, 0x01, 0x2a} // X S PID0, I, picture ID 1, P bit 0
	rtxVP8Delta = []byte{0x90, 0x80, 0x02, 0x01}                   // P bit 1
)

// rtxPacket builds a publisher packet the way a session hands it over: plaintext in a packet.Buffer, header
// parsed; pad > 0 appends that many bytes of padding (P bit set).
func rtxPacket(t *testing.T, ssrc uint32, pt uint8, seq uint16, ts uint32, payload []byte, pad int, exts map[uint8]string) *packet.Buffer {
	t.Helper()
	h := rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: seq, Timestamp: ts, SSRC: ssrc, Marker: true}
	for id, v := range exts {
		if err := h.SetExtension(id, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	p := packet.Get()
	n, err := h.MarshalTo(p.ReadSlice())
	if err != nil {
		t.Fatal(err)
	}
	n += copy(p.ReadSlice()[n:], payload)
	if pad > 0 {
		p.ReadSlice()[0] |= 0x20
		for i := range pad {
			p.ReadSlice()[n+i] = 0
		}
		n += pad
		p.ReadSlice()[n-1] = byte(pad)
	}
	p.SetLen(n)
	if _, err := p.Header.Unmarshal(p.Bytes()); err != nil {
		t.Fatal(err)
	}
	return p
}

// rtxOf is an RTX payload: the original sequence number, then the original payload.
func rtxOf(osn uint16, payload []byte) []byte {
	return append(binary.BigEndian.AppendUint16(nil, osn), payload...)
}

// rtxFeed publishes a stream fed by a feed of pts (with counters of its own) into a registry of its own, and
// returns the sink a session would deliver to.
func rtxFeed(t *testing.T, pts []pubTrack) (*feed, *feedSink, *forwarder.Stream) {
	t.Helper()
	reg := forwarder.NewRegistry(slog.New(slog.DiscardHandler))
	t.Cleanup(reg.Close)
	f, infos := newFeed("s", pts, &feedCounters{})
	st, err := reg.Publish("s", infos, rtxUp{})
	if err != nil {
		t.Fatal(err)
	}
	f.stream = st
	src := &source{}
	f.cur.Store(src)
	return f, &feedSink{f: f, src: src}, st
}

func handle(k *feedSink, p *packet.Buffer) {
	k.HandleRTP(p)
	p.Release()
}

var rtxVP8 = sdp.Codec{PayloadType: 96, Name: "VP8", ClockRate: 90000, Feedback: []string{"nack", "nack pli"}}

// A plain video track with RTX: a retransmission reaches the player as the original packet, in the numbering
// of the media packets; padding-only RTX (probes) and unknown payload types are counted and dropped.
func TestFeedRTX(t *testing.T) {
	const pubSSRC, rtxSSRC = 0x2222, 0x3333
	f, k, st := rtxFeed(t, []pubTrack{{info: forwarder.TrackInfo{Kind: "video", Codec: rtxVP8, SSRC: pubSSRC}, rtxPT: 97}})
	d := &rtxDown{}
	pl, err := st.Subscribe(d, []sdp.Track{{Mid: "v", Kind: "video", Direction: sdp.DirSendOnly, SSRC: 0x10001,
		Codec: sdp.Codec{PayloadType: 50, Name: "VP8", ClockRate: 90000}}})
	if err != nil {
		t.Fatal(err)
	}
	defer pl.Close()

	lost := append(clone(rtxVP8Delta), "lost and found"...)
	handle(k, rtxPacket(t, pubSSRC, 96, 1000, 9000, rtxVP8Key, 0, nil))
	handle(k, rtxPacket(t, pubSSRC, 96, 1001, 12000, rtxVP8Delta, 0, nil))
	handle(k, rtxPacket(t, pubSSRC, 96, 1003, 18000, rtxVP8Delta, 0, nil))
	handle(k, rtxPacket(t, rtxSSRC, 97, 7, 15000, rtxOf(1002, lost), 4, nil)) // the retransmission, padded
	handle(k, rtxPacket(t, rtxSSRC, 97, 8, 18000, nil, 200, nil))             // a probe: padding only
	handle(k, rtxPacket(t, rtxSSRC, 97, 9, 18000, []byte{0xee}, 3, nil))      // no room for an OSN
	handle(k, rtxPacket(t, pubSSRC, 120, 1, 18000, rtxVP8Delta, 0, nil))      // no such payload type

	var got []rtp.Packet
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if got = d.packets(); len(got) >= 4 {
			break
		}
	}
	if len(got) != 4 {
		t.Fatalf("the player got %d packets, want 4", len(got))
	}
	first := got[0].SequenceNumber
	for i, want := range []uint16{0, 1, 3, 2} {
		p := got[i]
		if p.SequenceNumber != first+want || p.PayloadType != 50 || p.SSRC != got[0].SSRC {
			t.Errorf("packet %d: seq %d (want %d) pt %d ssrc %#x", i, p.SequenceNumber, first+want, p.PayloadType, p.SSRC)
		}
	}
	if r := got[3]; !bytes.Equal(r.Payload, lost) || r.Padding || r.Timestamp != got[2].Timestamp-3000 {
		t.Errorf("the retransmission: payload %q padding %v ts %d, want %q, no padding, ts %d", r.Payload, r.Padding,
			r.Timestamp, lost, got[2].Timestamp-3000)
	}
	if c := f.ctr; c.rtx.Load() != 1 || c.padding.Load() != 2 || c.unknown.Load() != 1 {
		t.Errorf("counters: rtx %d padding %d unknown %d, want 1 2 1", c.rtx.Load(), c.padding.Load(), c.unknown.Load())
	}
	if tr := f.tracks[0]; tr.lastSeq != 1003 {
		t.Errorf("a late copy moved the feed's last sequence number to %d", tr.lastSeq)
	}
}

// After a takeover, RTX of the new session is not decoded before its first media packet of the track (it
// would be numbered with the old session's offsets), and is afterwards.
func TestFeedRTXAfterTakeover(t *testing.T) {
	f, k, _ := rtxFeed(t, []pubTrack{{info: forwarder.TrackInfo{Kind: "video", Codec: rtxVP8, SSRC: 0x2222}, rtxPT: 97}})
	handle(k, rtxPacket(t, 0x2222, 96, 1000, 9000, rtxVP8Key, 0, nil))
	tr := f.tracks[0]
	tr.awaiting.Store(true) // what publishFeed does on a takeover
	handle(k, rtxPacket(t, 0x5555, 97, 1, 9000, rtxOf(7, rtxVP8Delta), 0, nil))
	if c := f.ctr; c.rtx.Load() != 0 || c.unknown.Load() != 1 {
		t.Fatalf("RTX before the new session's media: rtx %d unknown %d, want 0 1", c.rtx.Load(), c.unknown.Load())
	}
	handle(k, rtxPacket(t, 0x4444, 96, 5, 3000, rtxVP8Key, 0, nil)) // the new session's media (5 lost before 7)
	handle(k, rtxPacket(t, 0x4444, 96, 7, 9000, rtxVP8Delta, 0, nil))
	handle(k, rtxPacket(t, 0x5555, 97, 2, 6000, rtxOf(6, rtxVP8Delta), 0, nil))
	if c := f.ctr; c.rtx.Load() != 1 || tr.awaiting.Load() || tr.lastSeq != 1003 {
		t.Fatalf("RTX after the new session's media: rtx %d awaiting %v last seq %d (want 1003)", c.rtx.Load(),
			tr.awaiting.Load(), tr.lastSeq)
	}
	// A copy of a packet that arrived (Chrome probes with those) is dropped, counted.
	handle(k, rtxPacket(t, 0x5555, 97, 3, 9000, rtxOf(7, rtxVP8Delta), 0, nil))
	if c := f.ctr; c.rtx.Load() != 1 || c.redundant.Load() != 1 {
		t.Fatalf("RTX of a received packet: rtx %d redundant %d, want 1 1", c.rtx.Load(), c.redundant.Load())
	}
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

// The layers of a simulcast track: each one's RTX SSRC is learned from the repaired-rtp-stream-id of its first
// RTX packets, and RTX of an SSRC no layer claimed is counted as unknown (padding still as padding).
func TestFeedRTXSimulcast(t *testing.T) {
	const ridID, rrID = 4, 5
	exts := []sdp.Extension{{ID: ridID, URI: sdp.ExtRTPStreamID}, {ID: rrID, URI: sdp.ExtRepairedStreamID}}
	layer := func(rid string) pubTrack {
		return pubTrack{info: forwarder.TrackInfo{Kind: "video", Codec: rtxVP8, Extensions: exts, RID: rid}, rtxPT: 97}
	}
	f, k, st := rtxFeed(t, []pubTrack{layer("q"), layer("h")})
	handle(k, rtxPacket(t, 0x10, 96, 500, 9000, rtxVP8Key, 0, map[uint8]string{ridID: "q"}))
	handle(k, rtxPacket(t, 0x20, 96, 800, 9000, rtxVP8Key, 0, map[uint8]string{ridID: "h"}))
	handle(k, rtxPacket(t, 0x20, 96, 802, 15000, rtxVP8Delta, 0, nil))
	handle(k, rtxPacket(t, 0x20, 96, 804, 21000, rtxVP8Delta, 0, nil))
	handle(k, rtxPacket(t, 0x11, 97, 1, 9000, rtxOf(499, rtxVP8Delta), 0, nil))                          // no layer claimed 0x11 yet
	handle(k, rtxPacket(t, 0x21, 97, 1, 12000, rtxOf(801, rtxVP8Delta), 0, map[uint8]string{rrID: "h"})) // learns 0x21 = h
	handle(k, rtxPacket(t, 0x21, 97, 2, 18000, rtxOf(803, rtxVP8Delta), 0, nil))                         // known now
	handle(k, rtxPacket(t, 0x12, 97, 1, 15000, nil, 100, nil))                                           // a probe of no known layer

	if c := f.ctr; c.rtx.Load() != 2 || c.padding.Load() != 1 || c.unknown.Load() != 1 {
		t.Errorf("counters: rtx %d padding %d unknown %d, want 2 1 1", c.rtx.Load(), c.padding.Load(), c.unknown.Load())
	}
	if q, h := f.tracks[0], f.tracks[1]; q.rtxSSRC.Load() != 0 || h.rtxSSRC.Load() != 0x21 || h.lastSeq != 804 {
		t.Errorf("rtx ssrc q %#x h %#x, h last seq %d", q.rtxSSRC.Load(), h.rtxSSRC.Load(), h.lastSeq)
	}
	ss := st.Stats()
	if len(ss.Tracks) != 2 || ss.Tracks[0].Packets != 1 || ss.Tracks[1].Packets != 5 || ss.UnknownPackets != 0 {
		t.Errorf("forwarder: %+v", ss)
	}
}

// rtxTap hands the test the writer and stream info of the pion publisher's video stream, to send RTX with.
type rtxTap struct {
	interceptor.NoOp
	mu   sync.Mutex
	info *interceptor.StreamInfo
	w    interceptor.RTPWriter
}

func (x *rtxTap) NewInterceptor(string) (interceptor.Interceptor, error) { return x, nil }

func (x *rtxTap) BindLocalStream(info *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	if strings.HasPrefix(strings.ToLower(info.MimeType), "video/") {
		x.mu.Lock()
		x.info, x.w = info, w
		x.mu.Unlock()
	}
	return w
}

// TestPublisherRTXThroughEngine: a pion/webrtc publisher negotiates RTX with the engine; a frame it sent only
// as an RTX retransmission on its RTX SSRC reaches a player as the original packet, numbered between its
// neighbours; its padding-only RTX probe is counted and not forwarded.
func TestPublisherRTXThroughEngine(t *testing.T) {
	e := newEngine(t, "a")
	lo := net.IPv4(127, 0, 0, 1)
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetInterfaceFilter(func(n string) bool { return n == "lo" })
	se.SetIPFilter(func(ip net.IP) bool { return ip.Equal(lo) })
	se.SetRemoteIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetICEMulticastDNSMode(pionice.MulticastDNSModeDisabled)
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	tap := &rtxTap{}
	ir := &interceptor.Registry{}
	ir.Add(tap)
	pc, err := webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir)).
		NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = pc.Close() }()
	video, _ := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "v", "pub")
	audio, _ := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "a", "pub")
	for _, tr := range []webrtc.TrackLocal{audio, video} {
		if _, err := pc.AddTransceiverFromTrack(tr, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
			t.Fatal(err)
		}
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	ms, answer, err := e.Publish(context.Background(), PublishRequest{Name: "rtx", SDP: offer.SDP})
	if err != nil {
		t.Fatal(err)
	}
	defer ms.Close(errors.New("test end"))
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ms.Ready(ctx); err != nil {
		t.Fatalf("publisher Ready: %v", err)
	}
	tap.mu.Lock()
	info, w := tap.info, tap.w
	tap.mu.Unlock()
	if info == nil || info.SSRCRetransmission == 0 || info.PayloadTypeRetransmission == 0 {
		t.Fatalf("the publisher negotiated no RTX: %+v\nanswer:\n%s", info, answer)
	}
	frames, _ := rtpPlayer(t, e, "rtx")

	const lostFrame = 25
	payloadOf := func(i int) []byte {
		key := byte(0x01)
		if i%10 == 0 {
			key = 0x00
		}
		return append([]byte{0x10, key, 0x9d, 0x01, 0x2a}, fmt.Sprintf("FRAME-%06d", i)...)
	}
	for i := range 40 {
		time.Sleep(10 * time.Millisecond)
		switch i {
		case lostFrame:
			continue // sent as RTX only, below
		case lostFrame + 3:
			probe := &rtp.Header{Version: 2, Padding: true, PayloadType: info.PayloadTypeRetransmission,
				SSRC: info.SSRCRetransmission, SequenceNumber: 1, Timestamp: uint32(i * 3000)}
			pad := make([]byte, 200)
			pad[len(pad)-1] = byte(len(pad))
			if _, err := w.Write(probe, pad, nil); err != nil {
				t.Fatal(err)
			}
		case lostFrame + 5:
			h := &rtp.Header{Version: 2, Marker: true, PayloadType: info.PayloadTypeRetransmission,
				SSRC: info.SSRCRetransmission, SequenceNumber: 2, Timestamp: uint32(lostFrame * 3000)}
			if _, err := w.Write(h, rtxOf(lostFrame, payloadOf(lostFrame)), nil); err != nil {
				t.Fatal(err)
			}
		}
		_ = video.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, Marker: true, SequenceNumber: uint16(i), Timestamp: uint32(i * 3000)},
			Payload: payloadOf(i)})
		_ = audio.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(i), Timestamp: uint32(i * 480)},
			Payload: []byte(fmt.Sprintf("AUDIO-%06d", i))})
	}

	seqOf := map[int]uint16{}
	for timeout := time.After(5 * time.Second); len(seqOf) < 3 || seqOf[lostFrame] == 0 && len(seqOf) < 40; {
		var p *rtp.Packet
		select {
		case p = <-frames:
		case <-timeout:
			t.Fatalf("the player got frames %v, not the retransmitted %d", seqOf, lostFrame)
		}
		var n int
		if len(p.Payload) > 5 {
			if _, err := fmt.Sscanf(string(p.Payload[5:]), "FRAME-%06d", &n); err == nil {
				seqOf[n] = p.SequenceNumber
			}
		}
		if _, ok := seqOf[lostFrame]; ok {
			if _, ok := seqOf[lostFrame+1]; ok {
				break
			}
		}
	}
	s, ok := seqOf[lostFrame]
	if !ok {
		t.Fatalf("the retransmitted frame %d never reached the player (got %v)", lostFrame, seqOf)
	}
	if next := seqOf[lostFrame+1]; next != s+1 {
		t.Errorf("the retransmitted frame has seq %d, the next one %d", s, next)
	}
	if prev, ok := seqOf[lostFrame-1]; ok && prev != s-1 {
		t.Errorf("the retransmitted frame has seq %d, the one before %d", s, prev)
	}
	if st := e.Stats(); st.RTXReceived != 1 || st.PaddingReceived != 1 {
		t.Errorf("engine stats %+v, want 1 RTX and 1 padding packet", st)
	}
}
