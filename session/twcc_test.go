package session

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"

	"github.com/rtcrelay/rtcrelay/internal/vnettest"
	"github.com/rtcrelay/rtcrelay/twcc"
)

// TestVNetTWCCFeedback: the answerer, with EnableTWCC, sends transport-cc feedback every 100 ms (virtual time)
// that covers every transport-wide sequence number the offerer sent, the skipped ones as lost, with the exact
// 1 ms spacing of the sends; once the offerer stops, no more feedback comes.
func TestVNetTWCCFeedback(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := vnettest.New(t, vnettest.Config{Delay: 20 * time.Millisecond}, "10.0.0.1", "10.0.0.2")
		off, ans, offErr, ansErr := vnetPair(t, w, "")
		if offErr != nil || ansErr != nil {
			t.Fatalf("start: offerer %v, answerer %v", offErr, ansErr)
		}
		defer off.Close(nil)
		defer ans.Close(nil)
		const extID, sender = 5, 0x5151
		ans.EnableTWCC(extID, sender)
		k := newChanSink()
		off.SetSink(k)
		type arrived struct {
			at time.Time
			b  []byte
		}
		rtcpc, stop := make(chan arrived, 64), make(chan struct{})
		go func() { // timestamps the RTCP as it arrives
			for {
				select {
				case b := <-k.rtcp:
					rtcpc <- arrived{time.Now(), b}
				case <-stop:
					return
				}
			}
		}()
		defer close(stop)

		// 300 packets 1 ms apart, transport-wide numbers across the 16-bit wrap; every 10th is not sent.
		const n, first = 300, 65500
		sent := map[uint16]bool{}
		for i := range n {
			seq := uint16(first + i)
			if i%10 == 9 {
				continue
			}
			h := rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: uint16(i), SSRC: 42}
			if err := h.SetExtension(extID, []byte{byte(seq >> 8), byte(seq)}); err != nil {
				t.Fatal(err)
			}
			raw, err := (&rtp.Packet{Header: h, Payload: make([]byte, 200)}).Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if err := off.WriteRTP(append(make([]byte, 0, len(raw)+16), raw...)); err != nil {
				t.Fatal(err)
			}
			sent[seq] = true
			time.Sleep(time.Millisecond) // virtual time
		}

		// Feedback until every number was reported: the last ones within an interval plus the path delay.
		reported := map[uint16]twcc.Status{}
		var fbTimes []time.Time
		var fbCount uint8
		deadline := time.After(time.Second)
		for len(reported) < n-1 { // the last number (65500+299) is skipped
			select {
			case a := <-rtcpc:
				pkts, err := rtcp.Unmarshal(a.b)
				if err != nil {
					t.Fatal(err)
				}
				for _, p := range pkts {
					fb, ok := p.(*rtcp.TransportLayerCC)
					if !ok {
						continue
					}
					if fb.SenderSSRC != sender || fb.MediaSSRC != 42 || fb.FbPktCount != fbCount {
						t.Fatalf("feedback %d: SSRCs %x %d, count %d", fbCount, fb.SenderSSRC, fb.MediaSSRC, fb.FbPktCount)
					}
					fbCount++
					fbTimes = append(fbTimes, a.at)
					for _, s := range twcc.Decode(fb) {
						reported[s.Seq] = s
					}
				}
			case <-deadline:
				t.Fatalf("%d of %d sequence numbers reported after 1 s", len(reported), n-1)
			}
		}
		for i := range n - 1 {
			seq := uint16(first + i)
			s, ok := reported[seq]
			if !ok || s.Received != sent[seq] {
				t.Fatalf("seq %d: reported %v %+v, sent %v", seq, ok, s, sent[seq])
			}
			if prev, ok := reported[seq-1]; i > 0 && ok && prev.Received && s.Received {
				if d := s.ArrivalUS - prev.ArrivalUS; d < 750 || d > 1250 {
					t.Fatalf("seq %d arrived %d µs after seq %d, sent 1 ms apart", seq, d, seq-1)
				}
			}
		}
		// 300 ms of sending: about three feedbacks, 100 ms apart.
		if len(fbTimes) < 3 || len(fbTimes) > 5 {
			t.Fatalf("%d feedbacks", len(fbTimes))
		}
		for i := 1; i < len(fbTimes); i++ {
			if d := fbTimes[i].Sub(fbTimes[i-1]); d < 100*time.Millisecond-time.Millisecond {
				t.Fatalf("feedbacks %v apart", d)
			}
		}

		// Idle: no feedback at all.
		out := ans.Stats().TWCCFeedbackOut
		select {
		case a := <-rtcpc:
			t.Fatalf("RTCP while idle: %x", a.b)
		case <-time.After(time.Second):
		}
		if got := ans.Stats().TWCCFeedbackOut; got != out || got != uint64(len(fbTimes)) {
			t.Fatalf("%d feedbacks sent, %d before the idle second, %d received", got, out, len(fbTimes))
		}
	})
}
