package forwarder

import (
	"encoding/binary"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/rtcrelay/rtcrelay/packet"
	"github.com/rtcrelay/rtcrelay/sdp"
)

// A simulcast publisher: audio plus one VP8 m-section sent as three layers, told apart by the rtp-stream-id
// extension (ID 6) of their first packets; SSRCs undeclared, as Chrome does.
var simRIDs = []string{"q", "h", "f"}

const simSSRC = 0x5000 // + layer index

func simTracks() []TrackInfo {
	tr := pubTracks(true)[:1]
	for _, rid := range simRIDs {
		v := pubTracks(false)[1]
		v.Extensions = append(v.Extensions, sdp.Extension{ID: 6, URI: extRTPStreamID})
		v.RID = rid
		tr = append(tr, v)
	}
	return tr
}

// simFeeder sends 100 frames/s per layer, one packet each, layer i's packets 100·3^i bytes, a keyframe every
// 30 frames on every layer. Layer i's VP8 picture IDs start at 1000·i. Payload byte 6 names the layer.
type simFeeder struct {
	f     *feeder
	frame int
}

func (s *simFeeder) step() {
	n := s.frame
	s.frame++
	for i := range simRIDs {
		size := 100 * []int{1, 3, 9}[i]
		pl := make([]byte, size)
		pic := uint16(1000*i+n) & 0x7FFF
		pl[0], pl[1] = 0x90, 0x80 // X, S, PID 0; I
		binary.BigEndian.PutUint16(pl[2:], 0x8000|pic)
		pl[4] = 0x01 // P: a delta frame
		if n%30 == 0 {
			pl[4] = 0x00
		}
		pl[5] = 0
		pl[6] = byte(i)
		h := rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: uint16(100*i + n), Timestamp: uint32(7777*i + n*900),
			SSRC: simSSRC + uint32(i)}
		_ = h.SetExtension(4, []byte("1"))
		if n < 5 {
			_ = h.SetExtension(6, []byte(simRIDs[i])) // Chrome sends the RID on the first packets only
		}
		p := packet.Get()
		b, err := (&rtp.Packet{Header: h, Payload: pl}).Marshal()
		if err != nil {
			s.f.tb.Fatal(err)
		}
		p.SetLen(copy(p.ReadSlice(), b))
		if _, err := p.Header.Unmarshal(p.Bytes()); err != nil {
			s.f.tb.Fatal(err)
		}
		s.f.bufs = append(s.f.bufs, p)
		s.f.st.HandleRTP(p)
		p.Release()
	}
	s.f.audio(uint16(n))
}

// run feeds for d of (fake) time.
func (s *simFeeder) run(d time.Duration) {
	for end := time.Now().Add(d); time.Now().Before(end); {
		s.step()
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSimulcastLayerSwitch: a player starts on the top layer, is capped down to the lowest, paused (audio
// only) and uncapped back to the top; across every switch it sees one SSRC, sequence numbers without a gap,
// rising timestamps and VP8 picture IDs that go on by one, and each switch happens at a keyframe.
func TestSimulcastLayerSwitch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := NewRegistry(nil)
		st, err := r.Publish("s", simTracks(), &fakeUp{})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		sf := &simFeeder{f: &feeder{tb: t, st: st}}
		sf.run(1500 * time.Millisecond) // the layers' SSRCs are learned and their bitrates measured
		for i, tr := range st.Tracks()[1:] {
			if tr.SSRC != simSSRC+uint32(i) || tr.RID != simRIDs[i] {
				t.Fatalf("layer %d learned as %+v", i, tr)
			}
		}
		d := &fakeDown{}
		p, err := st.Subscribe(d, playTracks(0))
		if err != nil {
			t.Fatal(err)
		}
		layerOf := func() string { return p.Stats().Layer }
		sf.run(time.Second)
		if l := layerOf(); l != "f" {
			t.Fatalf("uncapped player on layer %q, want f (stats %+v)", l, p.Stats())
		}
		p.SetMaxBitrate(40_000 + 100_000) // the audio (about 30 kbit/s) + room for the 80 kbit/s layer only
		sf.run(1500 * time.Millisecond)
		if l := layerOf(); l != "q" {
			t.Fatalf("capped player on layer %q, want q (stats %+v)", l, p.Stats())
		}
		p.SetMaxBitrate(40_000) // the lowest layer needs over twice what is left: video pauses after pauseAfter
		sf.run(pauseAfter + time.Second)
		mark := len(d.packets())
		sf.run(time.Second)
		ps := p.Stats()
		if !ps.VideoPaused || ps.Layer != "" {
			t.Fatalf("player not paused: %+v", ps)
		}
		for _, pk := range d.packets()[mark:] {
			if pk.SSRC == p.SSRC("video") {
				t.Fatal("video sent to a paused player")
			}
		}
		p.SetMaxBitrate(0)
		sf.run(3 * time.Second)
		if ps := p.Stats(); ps.Layer != "f" || ps.LayerSwitches < 4 {
			t.Fatalf("uncapped player did not climb back: %+v", ps)
		}

		var last *rtp.Packet
		var layers []byte
		for _, pk := range d.packets() {
			if pk.SSRC != p.SSRC("video") {
				continue
			}
			layer := pk.Payload[6]
			if len(layers) == 0 || layers[len(layers)-1] != layer {
				if pk.Payload[4]&1 != 0 {
					t.Fatalf("switched to layer %d on a delta frame", layer)
				}
				layers = append(layers, layer)
			}
			if last != nil {
				if pk.SequenceNumber != last.SequenceNumber+1 {
					t.Fatalf("sequence %d → %d (layer %d)", last.SequenceNumber, pk.SequenceNumber, layer)
				}
				if d := pk.Timestamp - last.Timestamp; d == 0 || d > 1<<30 {
					t.Fatalf("timestamp %d → %d (layer %d)", last.Timestamp, pk.Timestamp, layer)
				}
				a, b := binary.BigEndian.Uint16(last.Payload[2:])&0x7FFF, binary.BigEndian.Uint16(pk.Payload[2:])&0x7FFF
				if b != (a+1)&0x7FFF {
					t.Fatalf("picture ID %d → %d (layer %d)", a, b, layer)
				}
			}
			c := pk
			last = &c
		}
		if len(layers) < 4 || layers[0] != 2 || layers[len(layers)-1] != 2 {
			t.Fatalf("layers seen in order %v", layers)
		}
		st.Close()
		if l := sf.f.leaks(); l != 0 {
			t.Fatalf("%d buffers still referenced", l)
		}
	})
}

// TestNACKRetransmissionRTX: a player that negotiated RTX gets its retransmissions on its RTX SSRC and payload
// type, each with the original sequence number (the player's) first in the payload (RFC 4588), and RTX
// sequence numbers of their own.
func TestNACKRetransmissionRTX(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := NewRegistry(nil)
		st, _ := r.Publish("s", pubTracks(true), &fakeUp{})
		defer st.Close()
		f := &feeder{tb: t, st: st}
		d := &fakeDown{}
		tracks := playTracks(3)
		tracks[1].RTX = &sdp.Codec{PayloadType: 97, Name: "rtx", ClockRate: 90000, Fmtp: "apt=53"}
		tracks[1].RTXSSRC = 0xABCDEF
		pl, _ := st.Subscribe(d, tracks)
		for k := range uint16(10) {
			f.video(1000+k, k == 0)
		}
		synctest.Wait()
		first := d.packets()
		want := []uint16{first[3].SequenceNumber, first[4].SequenceNumber}
		nack, _ := (&rtcp.TransportLayerNack{MediaSSRC: pl.SSRC("video"), Nacks: rtcp.NackPairsFromSequenceNumbers(want)}).Marshal()
		pl.HandleRTCP(nack)
		f.audio(1)
		synctest.Wait()
		var re []rtp.Packet
		for _, p := range d.packets()[10:] {
			if p.SSRC == 0xABCDEF {
				re = append(re, p)
			}
		}
		if len(re) != 2 {
			t.Fatalf("%d RTX packets, want 2", len(re))
		}
		for k, p := range re {
			orig := first[3+k]
			if p.PayloadType != 97 || binary.BigEndian.Uint16(p.Payload) != want[k] || string(p.Payload[2:]) != string(orig.Payload) ||
				p.Timestamp != orig.Timestamp {
				t.Fatalf("RTX %d: pt %d osn %d ts %d payload %x (orig %x)", k, p.PayloadType, binary.BigEndian.Uint16(p.Payload), p.Timestamp, p.Payload, orig.Payload)
			}
			if k > 0 && p.SequenceNumber != re[k-1].SequenceNumber+1 {
				t.Fatalf("RTX sequence %d → %d", re[k-1].SequenceNumber, p.SequenceNumber)
			}
		}
		if s := pl.Stats(); s.RTXSent != 2 || s.Retransmits != 2 {
			t.Fatalf("stats %+v", s)
		}
	})
}

// TestREMBCap: a publisher that negotiated goog-remb gets, once a second, the lowest of its players'
// estimates, but never less than half the median one (nor 300 kbit/s): one bad player does not starve all.
func TestREMBCap(t *testing.T) {
	for _, c := range []struct {
		ests []int64
		want int64
	}{
		{[]int64{2_000_000}, 2_000_000},
		{[]int64{900_000, 1_000_000, 1_200_000}, 900_000},
		{[]int64{100_000, 1_000_000, 1_200_000}, 500_000}, // the floor: half the median
		{[]int64{100_000, 200_000, 400_000}, 300_000},     // the absolute floor
	} {
		if got, _ := rembCap(c.ests); got != c.want {
			t.Errorf("rembCap(%v) = %d, want %d", c.ests, got, c.want)
		}
	}
	synctest.Test(t, func(t *testing.T) {
		r := NewRegistry(nil)
		tracks := pubTracks(true)
		tracks[1].Codec.Feedback = append(tracks[1].Codec.Feedback, sdp.FeedbackGoogREMB)
		up := &fakeUp{}
		st, _ := r.Publish("s", tracks, up)
		defer st.Close()
		var players []*Player
		for i, bps := range []float32{150_000, 1_000_000, 1_200_000} {
			p, _ := st.Subscribe(&fakeDown{}, playTracks(i))
			players = append(players, p)
			b, _ := (&rtcp.ReceiverEstimatedMaximumBitrate{Bitrate: bps, SSRCs: []uint32{p.SSRC("video")}}).Marshal()
			p.HandleRTCP(b) // a player's own REMB caps its estimate
		}
		time.Sleep(1100 * time.Millisecond)
		synctest.Wait()
		var got []float32
		up.mu.Lock()
		for _, p := range up.pkts {
			if r, ok := p.(*rtcp.ReceiverEstimatedMaximumBitrate); ok {
				got = append(got, r.Bitrate)
			}
		}
		up.mu.Unlock()
		if len(got) == 0 || got[len(got)-1] < 490_000 || got[len(got)-1] > 510_000 {
			t.Fatalf("REMB to the publisher %v, want 500 kbit/s (half the median of 150k, 1M, 1.2M)", got)
		}
		if s := st.Stats(); s.REMBsSent == 0 || s.REMBBitrate != 500_000 {
			t.Fatalf("stats %+v", s)
		}
		_ = players
	})
}

// TestRelayPassthroughSubscribedEarly: a relay subscribes to a simulcast stream before any packet of its layers
// arrived (a pull right after the publisher's offer): each layer's keyframe is asked for once the layer's SSRC
// is learned, and each layer reaches the relay on an SSRC of its own, stamped with the relay's RID.
func TestRelayPassthroughSubscribedEarly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := NewRegistry(nil)
		up := &fakeUp{}
		st, err := r.Publish("s", simTracks(), up)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		tracks := playTracks(0)
		tracks[1].RIDs = []string{"r0", "r1", "r2"}
		tracks[1].Extensions = append(tracks[1].Extensions, sdp.Extension{ID: 13, URI: extRTPStreamID})
		d := &fakeDown{}
		if _, err := st.Subscribe(d, tracks); err != nil {
			t.Fatal(err)
		}
		sf := &simFeeder{f: &feeder{tb: t, st: st}}
		sf.frame = 1                               // start after a keyframe: only a requested one (or the next periodic one, 30 frames on) helps
		sf.run(tickInterval + 50*time.Millisecond) // the layers are learned, then the stream's tick asks
		for i := range simRIDs {
			if n := up.count(func(p rtcp.Packet) bool {
				pli, ok := p.(*rtcp.PictureLossIndication)
				return ok && pli.MediaSSRC == simSSRC+uint32(i)
			}); n == 0 {
				t.Errorf("no PLI for layer %s (SSRC %#x) after it was learned", simRIDs[i], simSSRC+i)
			}
		}
		sf.run(100 * time.Millisecond) // the periodic keyframe (frame 30) would start every layer anyway
		seen := map[uint32]string{}
		for _, pk := range d.packets() {
			if pk.PayloadType != 50 {
				continue
			}
			if rid := pk.GetExtension(13); rid != nil {
				seen[pk.SSRC] = string(rid)
			}
		}
		if len(seen) != 3 {
			t.Errorf("the relay got layers %v, want three SSRCs stamped r0, r1, r2", seen)
		}
	})
}
