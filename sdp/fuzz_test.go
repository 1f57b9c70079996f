package sdp

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// FuzzParseAndAnswer feeds arbitrary text through Parse, both negotiations and
// BuildAnswer. It must never panic, and every answer we build must parse back
// with the offer's m-section count and mids. The seeds are the testdata files,
// so `go test` runs them as a regular test. With 6 KiB seeds, run the fuzzer
// with a short -fuzzminimizetime (e.g. 2s): the default 60 s minimisation of
// each new input looks like a stall (0 execs/s).
func FuzzParseAndAnswer(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.sdp"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no seeds: %v", err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Add(minimalOffer + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\na=rtcp-fb:* nack\r\n")
	// Simulcast and RTX: Chrome's form, then hostile a=rid/a=simulcast/apt lines.
	f.Add(chromeSimulcastOffer)
	f.Add(simulcastVideo(DirSendOnly, "a=rid:q send pt=96;max-width=320", "a=rid:h send", "a=rid:f recv", "a=simulcast:send ~q,h;f;h;x recv f"))
	f.Add(simulcastVideo(DirSendRecv, "a=rid:q", "a=rid:a/b send", "a=rid:"+strings.Repeat("r", MaxRIDLen+1)+" send", "a=simulcast:send", "a=simulcast:send ;;,~;~"))
	f.Add(simulcastVideo(DirSendOnly, strings.Repeat("a=rid:q send\r\n", 3*MaxRIDs)+"a=simulcast:send "+strings.Repeat("q;", 3*MaxRIDs)))
	f.Add(minimalOffer + "m=video 9 UDP/TLS/RTP/SAVPF 96 97 98\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=97\r\n" +
		"a=rtpmap:98 RTX/90000\r\na=fmtp:98 apt=96;apt=97\r\n")
	published := []Codec{
		{Name: "opus", ClockRate: 48000, Channels: 2},
		{Name: "VP8", ClockRate: 90000},
		{Name: "H264", ClockRate: 90000, Fmtp: "packetization-mode=1;profile-level-id=42e01f"},
	}
	tr := testTransport()
	f.Fuzz(func(t *testing.T, s string) {
		offer, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		for i, m := range offer.Media {
			if len(m.RIDs) > MaxRIDs || len(m.SimulcastSend) > MaxRIDs {
				t.Fatalf("m %d: %d rids, %d simulcast", i, len(m.RIDs), len(m.SimulcastSend))
			}
			for _, id := range m.SimulcastSend {
				if !slices.Contains(m.RIDs, RID{ID: id, Direction: "send", Params: ridParams(m.RIDs, id)}) {
					t.Fatalf("m %d: simulcast %q not a send rid of %v", i, id, m.RIDs)
				}
			}
		}
		check := func(tracks []Track) {
			if offer.Setup == "passive" {
				return // we answer passive; the conflict is an error by design
			}
			answer, err := BuildAnswer(offer, tr, tracks, "stream", "cname")
			if err != nil {
				t.Fatalf("BuildAnswer: %v", err)
			}
			a, err := Parse(answer)
			if err != nil {
				t.Fatalf("our answer does not parse: %v\n%s", err, answer)
			}
			if len(a.Media) != len(offer.Media) {
				t.Fatalf("answer has %d m-sections, offer %d", len(a.Media), len(offer.Media))
			}
			for i := range a.Media {
				if a.Media[i].Mid != offer.Media[i].Mid {
					t.Fatalf("m %d: mid %q vs %q", i, a.Media[i].Mid, offer.Media[i].Mid)
				}
			}
		}
		if tracks, err := NegotiatePublish(offer); err == nil {
			check(tracks)
		} else if !errors.Is(err, ErrNoCommonCodec) {
			t.Fatalf("NegotiatePublish: %v", err)
		}
		if tracks, err := NegotiatePlay(offer, published); err == nil {
			check(tracks)
		} else if !errors.Is(err, ErrNoCommonCodec) {
			t.Fatalf("NegotiatePlay: %v", err)
		}
	})
}

func ridParams(rids []RID, id string) string {
	for _, r := range rids {
		if r.ID == id {
			return r.Params
		}
	}
	return ""
}
