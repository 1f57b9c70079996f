package main

import (
	"github.com/rtcrelay/rtcrelay/forwarder"
	"github.com/rtcrelay/rtcrelay/rest"
)

// streamMetrics serves WCS's per-stream metrics map (/stream/find display:["metrics"], /stream/metrics) from
// the forwarder's counters.
type streamMetrics struct {
	reg *forwarder.Registry
}

var _ rest.MetricsAPI = streamMetrics{}

// StreamMetrics is the metrics map of the stream published here under name.
func (m streamMetrics) StreamMetrics(name string) (map[string]any, bool) {
	st, ok := m.reg.Lookup(name)
	if !ok {
		return nil, false
	}
	return wcsMetrics(st.Stats()), true
}

// PlayerMetrics is the metrics map of the player mediaSessionID of the stream published here under name.
func (m streamMetrics) PlayerMetrics(name, mediaSessionID string) (map[string]any, bool) {
	st, ok := m.reg.Lookup(name)
	if !ok {
		return nil, false
	}
	for _, ps := range st.PlayerStats() {
		if ps.ID == mediaSessionID {
			return playerMetrics(ps), true
		}
	}
	return nil, false
}

// playerMetrics names a player's counters in the style of WCS's stream metrics (these are ours: WCS has no
// per-player map). BWE_* are the send-side bandwidth estimate of the path to the player (bits/s); VIDEO_LAYER
// is the simulcast RID forwarded ("" when the stream has no simulcast or video is paused).
func playerMetrics(p forwarder.PlayerStats) map[string]any {
	return map[string]any{
		"PACKETS_OUT": p.PacketsOut, "BYTES_OUT": p.BytesOut, "DROPS": p.Drops,
		"NACKS": p.NACKs, "NACKS_SERVED": p.NACKsServed, "NACKS_MISSED": p.NACKsMissed, "RETRANSMITS": p.Retransmits,
		"RTX_SENT": p.RTXSent, "PLIS": p.PLIs, "FIRS": p.FIRs,
		"FRACTION_LOST": float64(p.FractionLost) / 256, "RTT_MS": p.RTT.Milliseconds(),
		"BWE_ESTIMATE": p.Estimator.Estimate, "BWE_RECEIVE_RATE": p.Estimator.ReceiveRate,
		"BWE_LOSS": p.Estimator.LossFraction, "BWE_STATE": p.Estimator.State, "BWE_BUDGET": p.Budget,
		"TWCC_FEEDBACKS": p.TWCCFeedbacks, "REMBS": p.REMBs,
		"VIDEO_LAYER": p.Layer, "VIDEO_TARGET_LAYER": p.TargetLayer, "VIDEO_LAYER_SWITCHES": p.LayerSwitches,
		"VIDEO_PAUSED": p.VideoPaused,
	}
}

// wcsMetrics maps a stream's counters to WCS's metric names (docs: "Stream parameters monitoring with REST
// API"). As in WCS, *_CODEC is the RTP payload type; *_CODEC_NAME (ours) is the codec's name. *_RATE are
// bits/s over the last second including RTP headers; *_LOST are packets missing by sequence number; VIDEO_NACK
// counts sequence numbers players asked for; VIDEO_PLI counts keyframe requests (PLI) sent to the publisher.
// VIDEO_WIDTH/HEIGHT are known for VP8 only (read from keyframes) and omitted otherwise; VIDEO_SYNC,
// AUDIO_SYNC and VIDEO_B_FRAMES are not reported. PLAYERS (ours) counts the stream's players, relays included.
func wcsMetrics(s forwarder.StreamStats) map[string]any {
	m := map[string]any{"PLAYERS": s.Players} // ours: the forwarder's players, relays included
	seen := map[string]bool{}
	var layers []map[string]any
	for _, t := range s.Tracks {
		if t.RID != "" {
			l := map[string]any{"RID": t.RID, "RATE": t.Bitrate, "FPS": t.FPS, "PACKETS": t.Packets, "LOST": t.Lost}
			if t.Width != 0 {
				l["WIDTH"], l["HEIGHT"] = t.Width, t.Height
			}
			layers = append(layers, l)
		}
	}
	if layers != nil {
		m["VIDEO_LAYERS"] = layers // ours: the simulcast layers, in the publisher's order
	}
	// The first track of each kind describes it, as WCS streams have one of each; of a simulcast stream's
	// layers, the top one (the highest bitrate: what an unconstrained player gets).
	top := -1
	for i, t := range s.Tracks {
		if t.RID != "" && (top < 0 || t.Bitrate > s.Tracks[top].Bitrate) {
			top = i
		}
	}
	for i, t := range s.Tracks {
		p := "AUDIO_"
		if t.Kind == "video" {
			p = "VIDEO_"
		}
		if seen[p] || (p == "VIDEO_" && top >= 0 && i != top) {
			continue
		}
		seen[p] = true
		m[p+"RATE"] = t.Bitrate
		m[p+"LOST"] = t.Lost
		m[p+"CODEC"] = t.PayloadType
		m[p+"CODEC_NAME"] = t.Codec
		m[p+"PACKETS"] = t.Packets
		m[p+"NACK"] = t.NACKs
		if p == "VIDEO_" {
			m["VIDEO_FPS"] = t.FPS
			m["VIDEO_PLI"] = s.PLIsSent
			m["VIDEO_K_FRAMES"] = t.Keyframes
			m["VIDEO_P_FRAMES"] = t.Frames - min(t.Keyframes, t.Frames)
			m["VIDEO_GOP_SIZE"] = t.GOP
			if t.Width != 0 {
				m["VIDEO_WIDTH"], m["VIDEO_HEIGHT"] = t.Width, t.Height
			}
		}
	}
	return m
}
