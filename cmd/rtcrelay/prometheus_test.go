package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/rtcrelay/rtcrelay/directory"
	"github.com/rtcrelay/rtcrelay/forwarder"
	"github.com/rtcrelay/rtcrelay/relay"
)

type promSample struct {
	name   string
	labels map[string]string
	value  float64
}

var (
	promLineRe  = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$`)
	promLabelRe = regexp.MustCompile(`^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)`)
)

// parseProm parses the text format 0.0.4 strictly: every sample's metric has a TYPE line before it, no series
// appears twice, label values are quoted and escaped.
func parseProm(t *testing.T, text string) (samples []promSample, types map[string]string) {
	t.Helper()
	types = map[string]string{}
	seen := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			f := strings.Fields(rest)
			if len(f) != 2 || types[f[0]] != "" {
				t.Fatalf("line %d: bad or repeated TYPE %q", n, line)
			}
			types[f[0]] = f[1]
			continue
		}
		if strings.HasPrefix(line, "# HELP ") {
			continue
		}
		m := promLineRe.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("line %d: not a sample: %q", n, line)
		}
		s := promSample{name: m[1], labels: map[string]string{}}
		if types[s.name] == "" {
			t.Fatalf("line %d: %s has no TYPE before it", n, s.name)
		}
		for l := m[3]; l != ""; {
			lm := promLabelRe.FindStringSubmatch(l)
			if lm == nil {
				t.Fatalf("line %d: bad labels %q", n, m[3])
			}
			v, err := strconv.Unquote(`"` + lm[2] + `"`)
			if err != nil {
				t.Fatalf("line %d: label value %q: %v", n, lm[2], err)
			}
			s.labels[lm[1]] = v
			l = l[len(lm[0]):]
		}
		v, err := strconv.ParseFloat(m[4], 64)
		if err != nil {
			t.Fatalf("line %d: value %q: %v", n, m[4], err)
		}
		s.value = v
		key := s.name + "{" + m[3] + "}"
		if seen[key] {
			t.Fatalf("line %d: series %s twice", n, key)
		}
		seen[key] = true
		samples = append(samples, s)
	}
	return samples, types
}

func testStream(name string, players int, videoRate uint64) forwarder.StreamInfo {
	return forwarder.StreamInfo{Name: name, Players: players, Stats: forwarder.StreamStats{
		Players: players, PacketsIn: 100, BytesIn: 1000 * uint64(players), PacketsOut: 10, PLIsSent: 1,
		Tracks: []forwarder.TrackStats{
			{Kind: "audio", Codec: "opus", PayloadType: 111, Packets: 50, Bytes: 500, Bitrate: 32000, Lost: 1},
			{Kind: "video", Codec: "VP8", PayloadType: 96, Packets: 50, Bytes: 500, Bitrate: videoRate, Lost: 2,
				FPS: 30, NACKs: 3, PLIs: 4},
		},
	}}
}

func TestPrometheusText(t *testing.T) {
	const n = 150
	snap := promSnapshot{
		proc:      processMetrics{CPUSeconds: 1.5, Goroutines: 10},
		relays:    []relay.AgentInfo{{Direction: relay.DirectionPush, Status: "PROCESSED_REMOTE", Bitrate: 1e6, Bytes: 10}},
		dirHealth: &directory.Health{Backend: "memory", OK: true},
	}
	for i := range n {
		// stream-i has i players; a name with characters that need escaping
		snap.streams = append(snap.streams, testStream(fmt.Sprintf("stream-%03d", i), i, 1000))
	}
	snap.streams[0].Name = "we\"ird\\name\nx"
	var buf bytes.Buffer
	if err := writePrometheus(&buf, snap); err != nil {
		t.Fatal(err)
	}
	samples, types := parseProm(t, buf.String())

	labels := map[string]bool{}
	var players, otherPlayers, otherRate float64
	for _, s := range samples {
		if st, ok := s.labels["stream"]; ok {
			labels[st] = true
		}
		switch {
		case s.name == "rtcrelay_stream_players":
			players += s.value
			if s.labels["stream"] == otherStream {
				otherPlayers = s.value
			}
		case s.name == "rtcrelay_stream_bitrate_bits_per_second" && s.labels["stream"] == otherStream && s.labels["kind"] == "video":
			otherRate = s.value
		case s.name == "rtcrelay_stream_video_fps" && s.labels["stream"] == otherStream:
			t.Errorf("a summed fps for _other")
		}
		if strings.HasSuffix(s.name, "_total") && types[s.name] != "counter" {
			t.Errorf("%s ends in _total but is a %s", s.name, types[s.name])
		}
	}
	if len(labels) != maxStreamSeries+1 {
		t.Errorf("%d stream label values, want %d + _other", len(labels), maxStreamSeries)
	}
	if want := float64(n * (n - 1) / 2); players != want {
		t.Errorf("players over all series %v, want %v (nothing lost by folding)", players, want)
	}
	// the 50 streams with the fewest players (0..49) are folded
	if otherPlayers != 49*50/2 || otherRate != 50*1000 {
		t.Errorf("_other: players %v bitrate %v", otherPlayers, otherRate)
	}
	if !labels["stream-149"] || labels["stream-049"] {
		t.Errorf("the top streams by players must keep their label")
	}
	get := func(name string, kv ...string) float64 {
		t.Helper()
	next:
		for _, s := range samples {
			if s.name != name {
				continue
			}
			for i := 0; i < len(kv); i += 2 {
				if s.labels[kv[i]] != kv[i+1] {
					continue next
				}
			}
			return s.value
		}
		t.Fatalf("no sample %s%v", name, kv)
		return 0
	}
	if v := get("rtcrelay_streams"); v != n {
		t.Errorf("rtcrelay_streams %v", v)
	}
	if v := get("rtcrelay_stream_series_folded"); v != 50 {
		t.Errorf("folded %v", v)
	}
	if v := get("rtcrelay_relays", "direction", "push", "status", "PROCESSED_REMOTE"); v != 1 {
		t.Errorf("relays %v", v)
	}
	if v := get("rtcrelay_directory_up", "backend", "memory"); v != 1 {
		t.Errorf("directory up %v", v)
	}
	if v := get("rtcrelay_stream_lost_packets_total", "stream", "stream-149", "kind", "video"); v != 2 {
		t.Errorf("lost %v", v)
	}
	if v := get("rtcrelay_process_cpu_seconds_total"); v != 1.5 {
		t.Errorf("cpu %v", v)
	}
}

func TestPrometheusFewStreams(t *testing.T) {
	var buf bytes.Buffer
	snap := promSnapshot{streams: []forwarder.StreamInfo{testStream("a", 1, 5), testStream(otherStream, 2, 7)}}
	if err := writePrometheus(&buf, snap); err != nil {
		t.Fatal(err)
	}
	samples, _ := parseProm(t, buf.String())
	for _, s := range samples {
		if s.name == "rtcrelay_stream_players" && s.labels["stream"] == otherStream && s.value != 2 {
			t.Errorf("a stream named _other is summed into _other: %v", s.value)
		}
	}
}

func TestMetricsWCSShape(t *testing.T) {
	s := testStream("s", 1, 1187440).Stats
	s.Tracks[1].Width, s.Tracks[1].Height, s.Tracks[1].Frames, s.Tracks[1].Keyframes = 640, 360, 100, 3
	m := wcsMetrics(s)
	want := map[string]any{
		"VIDEO_RATE": uint64(1187440), "VIDEO_FPS": 30.0, "VIDEO_CODEC": uint8(96), "VIDEO_CODEC_NAME": "VP8",
		"VIDEO_NACK": uint64(3), "VIDEO_PLI": uint64(1), "VIDEO_LOST": uint64(2), "VIDEO_WIDTH": uint16(640),
		"VIDEO_HEIGHT": uint16(360), "VIDEO_K_FRAMES": uint64(3), "VIDEO_P_FRAMES": uint64(97),
		"AUDIO_RATE": uint64(32000), "AUDIO_LOST": uint64(1), "AUDIO_CODEC": uint8(111), "AUDIO_CODEC_NAME": "opus",
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v (%T), want %v (%T)", k, m[k], m[k], v, v)
		}
	}
	s.Tracks[1].Width, s.Tracks[1].Height = 0, 0
	if _, ok := wcsMetrics(s)["VIDEO_WIDTH"]; ok {
		t.Errorf("VIDEO_WIDTH present while unknown")
	}
}

func TestMetricsFormatNegotiation(t *testing.T) {
	tests := []struct {
		url, accept string
		json        bool
	}{
		{"/metrics", "", false},
		{"/metrics", "text/plain;version=0.0.4;q=0.3,*/*;q=0.2", false},
		{"/metrics", "application/openmetrics-text;version=1.0.0,text/plain;q=0.5", false},
		{"/metrics", "application/json", true},
		{"/metrics?format=json", "", true},
		{"/metrics?gc=1&format=json", "", true},
		{"/metrics?format=prometheus", "application/json", false},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("GET", tt.url, nil)
		if tt.accept != "" {
			r.Header.Set("Accept", tt.accept)
		}
		if got := wantsJSON(r); got != tt.json {
			t.Errorf("%s Accept %q: json %v, want %v", tt.url, tt.accept, got, tt.json)
		}
	}
}

// A simulcast stream: VIDEO_LAYERS lists every layer in the publisher's order and VIDEO_* describe the top
// layer (the highest bitrate), not the first.
func TestMetricsSimulcastTopLayer(t *testing.T) {
	s := testStream("s", 1, 1187440).Stats
	video := s.Tracks[1]
	s.Tracks = s.Tracks[:1]
	for _, l := range []struct {
		rid  string
		rate uint64
		w    uint16
	}{{"q", 150_000, 160}, {"f", 1_200_000, 640}, {"h", 450_000, 320}} {
		v := video
		v.RID, v.Bitrate, v.Width, v.Height = l.rid, l.rate, l.w, l.w*9/16
		s.Tracks = append(s.Tracks, v)
	}
	m := wcsMetrics(s)
	if m["VIDEO_RATE"] != uint64(1_200_000) || m["VIDEO_WIDTH"] != uint16(640) {
		t.Errorf("VIDEO_RATE %v VIDEO_WIDTH %v, want the top layer's 1200000 and 640", m["VIDEO_RATE"], m["VIDEO_WIDTH"])
	}
	ls, _ := m["VIDEO_LAYERS"].([]map[string]any)
	if len(ls) != 3 || ls[0]["RID"] != "q" || ls[1]["RID"] != "f" || ls[2]["RID"] != "h" || ls[2]["WIDTH"] != uint16(320) {
		t.Errorf("VIDEO_LAYERS %v", ls)
	}
	if m["AUDIO_RATE"] != uint64(32000) {
		t.Errorf("AUDIO_RATE %v", m["AUDIO_RATE"])
	}
	if _, ok := wcsMetrics(testStream("p", 1, 1).Stats)["VIDEO_LAYERS"]; ok {
		t.Errorf("VIDEO_LAYERS on a plain stream")
	}
}
