package forwarder

import (
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

func TestRegistry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := NewRegistry(nil)
		st, err := r.Publish("s", pubTracks(true), &fakeUp{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Publish("s", pubTracks(true), &fakeUp{}); !errors.Is(err, ErrNameInUse) {
			t.Fatalf("second publish: %v, want ErrNameInUse", err)
		}
		if _, err := r.Publish("empty", nil, &fakeUp{}); !errors.Is(err, ErrNoTracks) {
			t.Fatalf("publish without tracks: %v", err)
		}
		if got, ok := r.Lookup("s"); !ok || got != st {
			t.Fatal("Lookup did not find the stream")
		}
		if _, ok := r.Lookup("x"); ok {
			t.Fatal("Lookup found a stream never published")
		}
		st2, _ := r.Publish("a", pubTracks(false), &fakeUp{})
		list := r.Streams()
		if len(list) != 2 || list[0].Name != "a" || list[1].Name != "s" || len(list[1].Tracks) != 2 {
			t.Fatalf("Streams = %+v", list)
		}
		if err := r.Remove("nope"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Remove unknown: %v", err)
		}
		st.Close()
		st.Close()
		if _, ok := r.Lookup("s"); ok {
			t.Fatal("closed stream still registered")
		}
		if _, err := r.Publish("s", pubTracks(true), &fakeUp{}); err != nil {
			t.Fatalf("republish after close: %v", err)
		}
		st2.Close()
		r.Close()
		if len(r.Streams()) != 0 {
			t.Fatal("registry not empty after Close")
		}
	})
}

// checkPlayer verifies that d got exactly the packets seqs (publisher numbers) of kind, rewritten for player i.
func checkPlayer(t *testing.T, i int, pl *Player, d *fakeDown, audioSeqs, videoSeqs []uint16) {
	t.Helper()
	tr := playTracks(i)
	var gotA, gotV []rtp.Packet
	for _, p := range d.packets() {
		switch p.SSRC {
		case tr[0].SSRC:
			gotA = append(gotA, p)
		case tr[1].SSRC:
			gotV = append(gotV, p)
		default:
			t.Fatalf("player %d: packet with SSRC %x", i, p.SSRC)
		}
	}
	if len(gotA) != len(audioSeqs) || len(gotV) != len(videoSeqs) {
		t.Fatalf("player %d: got %d audio %d video, want %d %d", i, len(gotA), len(gotV), len(audioSeqs), len(videoSeqs))
	}
	for k, p := range gotA {
		if p.PayloadType != tr[0].Codec.PayloadType || p.Timestamp != uint32(audioSeqs[k])*960 {
			t.Fatalf("player %d audio %d: PT %d ts %d", i, k, p.PayloadType, p.Timestamp)
		}
		if k > 0 && p.SequenceNumber != gotA[k-1].SequenceNumber+(audioSeqs[k]-audioSeqs[k-1]) {
			t.Fatalf("player %d audio: seq %d after %d", i, p.SequenceNumber, gotA[k-1].SequenceNumber)
		}
		if lvl := p.GetExtension(9); len(lvl) != 1 || lvl[0] != 0x85 {
			t.Fatalf("player %d audio: audio level ext = %x (ids %v)", i, lvl, p.GetExtensionIDs())
		}
		if mid := string(p.GetExtension(10)); mid != "a" {
			t.Fatalf("player %d audio: mid %q", i, mid)
		}
		if p.GetExtension(1) != nil || p.GetExtension(4) != nil {
			t.Fatalf("player %d audio: publisher extension IDs leaked: %v", i, p.GetExtensionIDs())
		}
		if string(p.Payload) != "\xfc\x01\x02\x03" {
			t.Fatalf("payload %x", p.Payload)
		}
	}
	var tw uint16
	for k, p := range gotV {
		if p.PayloadType != tr[1].Codec.PayloadType || p.Timestamp != uint32(videoSeqs[k])*3000 {
			t.Fatalf("player %d video %d: PT %d ts %d", i, k, p.PayloadType, p.Timestamp)
		}
		if k > 0 && p.SequenceNumber != gotV[k-1].SequenceNumber+(videoSeqs[k]-videoSeqs[k-1]) {
			t.Fatalf("player %d video: seq %d after %d", i, p.SequenceNumber, gotV[k-1].SequenceNumber)
		}
		ids := p.GetExtensionIDs()
		if len(ids) != 3 || string(p.GetExtension(10)) != "v" || len(p.GetExtension(11)) != 2 ||
			string(p.GetExtension(12)) != "\x07" {
			t.Fatalf("player %d video: extensions %v", i, ids)
		}
		got := uint16(p.GetExtension(11)[0])<<8 | uint16(p.GetExtension(11)[1])
		if k > 0 && got <= tw {
			t.Fatalf("transport-cc seq not increasing: %d after %d", got, tw)
		}
		tw = got
	}
	_ = pl
}

func TestFanout(t *testing.T) {
	for _, n := range []int{1, 10, 100} {
		t.Run(fmt.Sprint("players=", n), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := NewRegistry(nil)
				up := &fakeUp{}
				st, err := r.Publish("s", pubTracks(n%2 == 0), up)
				if err != nil {
					t.Fatal(err)
				}
				f := &feeder{tb: t, st: st}
				downs := make([]*fakeDown, n)
				players := make([]*Player, n)
				for i := range n {
					downs[i] = &fakeDown{}
					if players[i], err = st.Subscribe(downs[i], playTracks(i)); err != nil {
						t.Fatal(err)
					}
				}
				// Video before the first keyframe is held back; audio flows at once.
				f.video(10, false)
				var aSeqs, vSeqs []uint16
				for k := range uint16(50) {
					f.audio(65500 + k) // wraps
					aSeqs = append(aSeqs, 65500+k)
					f.video(11+k, k == 0)
					vSeqs = append(vSeqs, 11+k)
				}
				synctest.Wait()
				for i := range n {
					checkPlayer(t, i, players[i], downs[i], aSeqs, vSeqs)
				}
				s := st.Stats()
				if s.PacketsIn != 101 || s.PacketsOut != uint64(100*n) || s.Drops != 0 || s.Players != n {
					t.Fatalf("stats %+v", s)
				}
				if ps := players[0].Stats(); ps.PacketsOut != 100 || ps.SkippedBeforeKeyframe != 1 || ps.WaitingForKeyframe {
					t.Fatalf("player stats %+v", ps)
				}
				st.Close()
				for i := range n {
					<-players[i].Done()
					if !errors.Is(players[i].Err(), ErrPublisherStopped) {
						t.Fatalf("player err %v", players[i].Err())
					}
				}
				if l := f.leaks(); l != 0 {
					t.Fatalf("%d buffers still referenced after Close", l)
				}
			})
		})
	}
}

func TestJoinMidStreamWaitsForKeyframe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := NewRegistry(nil)
		up := &fakeUp{}
		st, _ := r.Publish("s", pubTracks(true), up)
		f := &feeder{tb: t, st: st}
		for k := range uint16(20) {
			f.video(k, k == 0)
		}
		d := &fakeDown{}
		pl, err := st.Subscribe(d, playTracks(0))
		if err != nil {
			t.Fatal(err)
		}
		if n := up.count(isPLI); n != 1 {
			t.Fatalf("PLIs at join = %d, want 1", n)
		}
		if n := up.count(isFIR); n != 1 {
			t.Fatalf("FIRs at join = %d, want 1 (ccm fir negotiated)", n)
		}
		// A second player and the first player's own PLI within the second are throttled.
		pl2, _ := st.Subscribe(&fakeDown{}, playTracks(1))
		pli, _ := (&rtcp.PictureLossIndication{MediaSSRC: pl.SSRC("video")}).Marshal()
		pl.HandleRTCP(pli)
		for k := range uint16(20) {
			f.video(20+k, false)
			time.Sleep(40 * time.Millisecond)
		}
		synctest.Wait()
		if n := up.count(isPLI); n != 1 {
			t.Fatalf("PLIs within 1 s = %d, want 1", n)
		}
		if got := len(d.packets()); got != 0 {
			t.Fatalf("player got %d packets before a keyframe", got)
		}
		if !pl.Stats().WaitingForKeyframe {
			t.Fatal("player not waiting for a keyframe")
		}
		// Still no keyframe after the throttle interval: one more request.
		time.Sleep(300 * time.Millisecond)
		synctest.Wait()
		if n := up.count(isPLI); n != 2 {
			t.Fatalf("PLIs after 1.1 s = %d, want 2", n)
		}
		f.video(40, true)
		f.video(41, false)
		synctest.Wait()
		got := d.packets()
		if len(got) != 2 || got[1].SequenceNumber != got[0].SequenceNumber+1 {
			t.Fatalf("after keyframe got %d packets", len(got))
		}
		// No more requests once nobody waits.
		time.Sleep(3 * time.Second)
		if n := up.count(isPLI); n != 2 {
			t.Fatalf("PLIs = %d after every player started", n)
		}
		pl2.Close()
		pl.Close()
		if !errors.Is(pl.Err(), ErrPlayerClosed) {
			t.Fatalf("err %v", pl.Err())
		}
		if st.Players() != 0 {
			t.Fatal("players left")
		}
		st.Close()
		if l := f.leaks(); l != 0 {
			t.Fatalf("%d leaks", l)
		}
	})
}

func TestNACKRetransmission(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := NewRegistry(nil)
		st, _ := r.Publish("s", pubTracks(true), &fakeUp{})
		f := &feeder{tb: t, st: st}
		d := &fakeDown{}
		pl, _ := st.Subscribe(d, playTracks(3))
		for k := range uint16(30) {
			f.video(1000+k, k == 0)
		}
		synctest.Wait()
		first := d.packets()
		if len(first) != 30 {
			t.Fatalf("got %d", len(first))
		}
		// The player lost its packets #5 and #7..#9 and asks for them with its own numbers.
		want := []uint16{first[5].SequenceNumber, first[7].SequenceNumber, first[8].SequenceNumber, first[9].SequenceNumber}
		nack, _ := (&rtcp.TransportLayerNack{MediaSSRC: pl.SSRC("video"), Nacks: rtcp.NackPairsFromSequenceNumbers(want)}).Marshal()
		pl.HandleRTCP(nack)
		// Served on the publisher's next packet, by the player's writer.
		f.audio(1)
		synctest.Wait()
		got := d.packets()[30:]
		var re []rtp.Packet
		for _, p := range got {
			if p.SSRC == pl.SSRC("video") {
				re = append(re, p)
			}
		}
		if len(re) != len(want) {
			t.Fatalf("retransmitted %d, want %d", len(re), len(want))
		}
		for k, p := range re {
			orig := first[[]int{5, 7, 8, 9}[k]]
			if p.SequenceNumber != want[k] || p.Timestamp != orig.Timestamp || string(p.Payload) != string(orig.Payload) {
				t.Fatalf("retransmission %d: seq %d ts %d", k, p.SequenceNumber, p.Timestamp)
			}
		}
		// Too old for the ring: counted as missed.
		old, _ := (&rtcp.TransportLayerNack{MediaSSRC: pl.SSRC("video"),
			Nacks: rtcp.NackPairsFromSequenceNumbers([]uint16{first[0].SequenceNumber - 5000})}).Marshal()
		pl.HandleRTCP(old)
		f.audio(2)
		synctest.Wait()
		if s := pl.Stats(); s.NACKs != 5 || s.NACKsServed != 4 || s.NACKsMissed != 1 || s.Retransmits != 4 {
			t.Fatalf("stats %+v", s)
		}
		st.Close()
		if l := f.leaks(); l != 0 {
			t.Fatalf("%d leaks", l)
		}
	})
}

func TestSenderReportRewrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := NewRegistry(nil)
		up := &fakeUp{}
		st, _ := r.Publish("s", pubTracks(true), up)
		f := &feeder{tb: t, st: st}
		var downs []*fakeDown
		var pls []*Player
		for i := range 3 {
			d := &fakeDown{}
			pl, _ := st.Subscribe(d, playTracks(i))
			downs, pls = append(downs, d), append(pls, pl)
		}
		for k := range uint16(10) {
			f.audio(k)
		}
		synctest.Wait()
		sr, _ := (&rtcp.SenderReport{SSRC: pubAudioSSRC, NTPTime: 0xAABBCCDD11223344, RTPTime: 12345,
			PacketCount: 999, OctetCount: 99999}).Marshal()
		st.HandleRTCP(sr)
		for i, d := range downs {
			var got []*rtcp.SenderReport
			for _, p := range d.reports() {
				if s, ok := p.(*rtcp.SenderReport); ok {
					got = append(got, s)
				}
			}
			if len(got) != 1 {
				t.Fatalf("player %d got %d SRs", i, len(got))
			}
			s := got[0]
			if s.SSRC != pls[i].SSRC("audio") || s.NTPTime != 0xAABBCCDD11223344 || s.RTPTime != 12345 ||
				s.PacketCount != 10 || s.OctetCount != 40 {
				t.Fatalf("player %d SR %+v", i, s)
			}
		}
		// The player answers with a receiver report: RTT from LSR/DLSR.
		time.Sleep(100 * time.Millisecond)
		rr, _ := (&rtcp.ReceiverReport{SSRC: 1, Reports: []rtcp.ReceptionReport{{SSRC: pls[0].SSRC("audio"),
			FractionLost: 12, TotalLost: 3, LastSenderReport: 0xCCDD1122, Delay: 65536 * 60 / 1000}}}).Marshal()
		pls[0].HandleRTCP(rr)
		s := pls[0].Stats()
		if s.FractionLost != 12 || s.TotalLost != 3 || s.RTT < 35*time.Millisecond || s.RTT > 45*time.Millisecond {
			t.Fatalf("player stats after RR %+v", s)
		}
		// Our receiver report to the publisher, every second, with the SR's LSR.
		time.Sleep(time.Second)
		synctest.Wait()
		up.mu.Lock()
		var rep *rtcp.ReceptionReport
		for _, p := range up.pkts {
			if x, ok := p.(*rtcp.ReceiverReport); ok {
				for i := range x.Reports {
					if x.Reports[i].SSRC == pubAudioSSRC {
						rep = &x.Reports[i]
					}
				}
			}
		}
		up.mu.Unlock()
		if rep == nil || rep.LastSequenceNumber != 9 || rep.TotalLost != 0 || rep.LastSenderReport != 0xCCDD1122 || rep.Delay == 0 {
			t.Fatalf("receiver report %+v", rep)
		}
		st.Close()
	})
}

func TestSlowPlayerIsolated(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := NewRegistry(nil)
		st, _ := r.Publish("s", pubTracks(true), &fakeUp{})
		f := &feeder{tb: t, st: st}
		slow := &fakeDown{block: make(chan struct{})}
		fast := &fakeDown{}
		ps, _ := st.Subscribe(slow, playTracks(0))
		pf, _ := st.Subscribe(fast, playTracks(1))
		if ps.w == pf.w {
			t.Fatal("two players share a writer; the test needs two")
		}
		const total = 2000
		for k := range uint16(total) {
			f.audio(k)
			if k%100 == 99 {
				synctest.Wait() // the fast writer keeps up; the slow one is stuck
			}
		}
		if got := len(fast.packets()); got != total {
			t.Fatalf("fast player got %d of %d", got, total)
		}
		ds := ps.Stats().Drops
		// The slow writer holds the burst it took (up to writerBurst) besides its full queue.
		if ds < total-queueSize-writerBurst || ds > total-queueSize {
			t.Fatalf("slow player drops = %d, want about %d", ds, total-queueSize)
		}
		if pf.Stats().Drops != 0 || st.Stats().Drops != ds {
			t.Fatalf("drops: fast %d stream %d", pf.Stats().Drops, st.Stats().Drops)
		}
		close(slow.block)
		synctest.Wait()
		if got := uint64(len(slow.packets())); got != total-ds {
			t.Fatalf("slow player got %d, want %d", got, total-ds)
		}
		ps.Close()
		st.Close()
		if l := f.leaks(); l != 0 {
			t.Fatalf("%d leaks", l)
		}
	})
}

func TestCloseWhileBlocked(t *testing.T) {
	// A player whose Downstream is stuck at Close time: Close waits for the writer, so unblock it from a
	// goroutine once Close is under way; every buffer must still come back.
	synctest.Test(t, func(t *testing.T) {
		r := NewRegistry(nil)
		st, _ := r.Publish("s", pubTracks(false), &fakeUp{})
		f := &feeder{tb: t, st: st}
		d := &fakeDown{block: make(chan struct{})}
		pl, _ := st.Subscribe(d, playTracks(0))
		for k := range uint16(100) {
			f.audio(k)
			f.video(k, k%30 == 0)
		}
		go func() {
			synctest.Wait()
			close(d.block)
		}()
		st.Close()
		<-pl.Done()
		if l := f.leaks(); l != 0 {
			t.Fatalf("%d leaks", l)
		}
		if tr := st.Tracks(); tr[0].SSRC != pubAudioSSRC || tr[1].SSRC != pubVideoSSRC {
			t.Fatalf("learned SSRCs %+v", tr)
		}
		// Everything after Close is ignored.
		f.audio(200)
		st.HandleRTCP([]byte{1, 2})
		pl.HandleRTCP([]byte{1, 2})
		if _, err := st.Subscribe(&fakeDown{}, playTracks(1)); !errors.Is(err, ErrStreamClosed) {
			t.Fatalf("subscribe after close: %v", err)
		}
	})
}

func TestSubscribeNoMatchingTrack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := NewRegistry(nil)
		st, _ := r.Publish("s", pubTracks(true)[:1], &fakeUp{})
		if _, err := st.Subscribe(&fakeDown{}, playTracks(0)[1:]); !errors.Is(err, ErrNoTracks) {
			t.Fatalf("err %v", err)
		}
		st.Close()
	})
}

// TestWriterCap: a stream runs about √players writers, at most the registry's bound.
func TestWriterCap(t *testing.T) {
	if n := DefaultMaxWriters(); n < 8 || n > 64 {
		t.Fatalf("DefaultMaxWriters() = %d, want within 8..64", n)
	}
	for _, tc := range []struct{ cap, players, want int }{{0, 16, 4}, {2, 16, 2}, {16, 1000, 16}} {
		r := NewRegistry(nil)
		r.SetMaxWriters(tc.cap)
		st, err := r.Publish("s", pubTracks(true), &fakeUp{})
		if err != nil {
			t.Fatal(err)
		}
		for i := range tc.players {
			if _, err := st.Subscribe(&fakeDown{}, playTracks(i)); err != nil {
				t.Fatal(err)
			}
		}
		st.mu.Lock()
		got := len(st.writers)
		st.mu.Unlock()
		if got != tc.want {
			t.Errorf("cap %d, %d players: %d writers, want %d", tc.cap, tc.players, got, tc.want)
		}
		st.Close()
	}
}
