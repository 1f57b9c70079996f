package main

import (
	"bufio"
	"cmp"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/rtcrelay/rtcrelay/directory"
	"github.com/rtcrelay/rtcrelay/forwarder"
	"github.com/rtcrelay/rtcrelay/relay"
	"github.com/rtcrelay/rtcrelay/signaling"
	"github.com/rtcrelay/rtcrelay/whip"
)

// promContentType is the Prometheus text exposition format (version 0.0.4), which every Prometheus scraper
// accepts, also those that ask for OpenMetrics first.
const promContentType = "text/plain; version=0.0.4; charset=utf-8"

// maxStreamSeries bounds the stream label: the streams with the most players (ties: the higher inbound bytes,
// then the name) get series of their own, all others are summed into stream="_other".
const maxStreamSeries = 100

// otherStream is the stream label of the streams beyond maxStreamSeries.
const otherStream = "_other"

// promSnapshot is everything one scrape exposes, gathered on the control path.
type promSnapshot struct {
	proc      processMetrics
	streams   []forwarder.StreamInfo
	relays    []relay.AgentInfo
	signaling signaling.ServerStats
	whip      whip.Stats
	dirHealth *directory.Health // nil: no directory
	dirStats  directory.Stats
}

// promWriter writes samples, each metric's HELP and TYPE once before its first sample.
type promWriter struct {
	w    *bufio.Writer
	seen map[string]bool
}

func (p *promWriter) sample(name, typ, help string, v float64, labels ...string) {
	if !p.seen[name] {
		p.seen[name] = true
		p.w.WriteString("# HELP " + name + " " + help + "\n# TYPE " + name + " " + typ + "\n")
	}
	p.w.WriteString(name)
	if len(labels) > 0 {
		p.w.WriteByte('{')
		for i := 0; i+1 < len(labels); i += 2 {
			if i > 0 {
				p.w.WriteByte(',')
			}
			p.w.WriteString(labels[i] + `="` + escapeLabel(labels[i+1]) + `"`)
		}
		p.w.WriteByte('}')
	}
	p.w.WriteString(" " + strconv.FormatFloat(v, 'g', -1, 64) + "\n")
}

func escapeLabel(s string) string {
	if !strings.ContainsAny(s, "\\\"\n") {
		return s
	}
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}

// streamSeries is one stream label's values (a stream, or the sum of the streams beyond the bound).
type streamSeries struct {
	name                    string
	players                 int
	packetsOut, bytesOut    uint64
	drops, keyframeRequests uint64
	fps                     float64
	hasFPS                  bool
	kinds                   map[string]*kindSeries
}

type kindSeries struct {
	bitrate, packets, bytes, lost, nacks, plis uint64
}

func (s *streamSeries) add(si forwarder.StreamInfo) {
	s.players += si.Players
	s.packetsOut += si.Stats.PacketsOut
	s.bytesOut += si.Stats.BytesOut
	s.drops += si.Stats.Drops
	s.keyframeRequests += si.Stats.PLIsSent
	for _, t := range si.Stats.Tracks {
		k := s.kinds[t.Kind]
		if k == nil {
			k = &kindSeries{}
			s.kinds[t.Kind] = k
		}
		k.bitrate += t.Bitrate
		k.packets += t.Packets
		k.bytes += t.Bytes
		k.lost += t.Lost
		k.nacks += t.NACKs
		k.plis += t.PLIs
		if t.Kind == "video" && !s.hasFPS {
			s.fps, s.hasFPS = t.FPS, true
		}
	}
}

// boundStreams orders the streams (most players first) and folds those beyond limit into one "_other" series.
func boundStreams(streams []forwarder.StreamInfo, limit int) (series []*streamSeries, folded int) {
	sorted := slices.Clone(streams)
	slices.SortFunc(sorted, func(a, b forwarder.StreamInfo) int {
		return cmp.Or(cmp.Compare(b.Players, a.Players), cmp.Compare(b.Stats.BytesIn, a.Stats.BytesIn), cmp.Compare(a.Name, b.Name))
	})
	var other *streamSeries
	for i, si := range sorted {
		if i < limit && si.Name != otherStream {
			s := &streamSeries{name: si.Name, kinds: map[string]*kindSeries{}}
			s.add(si)
			series = append(series, s)
			continue
		}
		if other == nil {
			other = &streamSeries{name: otherStream, kinds: map[string]*kindSeries{}}
		}
		other.add(si)
		folded++
	}
	if other != nil {
		other.hasFPS = false // a sum of frame rates means nothing
		series = append(series, other)
	}
	return series, folded
}

// writePrometheus writes the snapshot in the text exposition format 0.0.4.
func writePrometheus(out io.Writer, s promSnapshot) error {
	p := &promWriter{w: bufio.NewWriter(out), seen: map[string]bool{}}
	f := func(v uint64) float64 { return float64(v) }

	pm := s.proc
	p.sample("rtcrelay_process_cpu_seconds_total", "counter", "User and system CPU time of the process.", pm.CPUSeconds)
	p.sample("rtcrelay_process_resident_memory_bytes", "gauge", "Resident set size (VmRSS).", f(pm.RSSBytes))
	p.sample("rtcrelay_process_open_fds", "gauge", "Open file descriptors.", float64(pm.OpenFDs))
	p.sample("rtcrelay_go_heap_inuse_bytes", "gauge", "Go heap in use (HeapInuse).", f(pm.HeapBytes))
	p.sample("rtcrelay_go_heap_live_bytes", "gauge", "Go heap reachable at the last GC.", f(pm.HeapLive))
	p.sample("rtcrelay_go_heap_objects", "gauge", "Objects on the Go heap.", f(pm.HeapObjs))
	p.sample("rtcrelay_go_stack_bytes", "gauge", "Goroutine stacks in use.", f(pm.StackBytes))
	p.sample("rtcrelay_go_goroutines", "gauge", "Goroutines.", float64(pm.Goroutines))
	p.sample("rtcrelay_go_gc_cycles_total", "counter", "Completed GC cycles.", float64(pm.GC))
	p.sample("rtcrelay_uptime_seconds", "gauge", "Seconds since the server started.", pm.UptimeSecs)

	so := pm.Socket
	p.sample("rtcrelay_socket_received_datagrams_total", "counter", "Datagrams read from the media socket.", f(so.Datagrams))
	p.sample("rtcrelay_socket_received_bytes_total", "counter", "Bytes read from the media socket.", f(so.Bytes))
	p.sample("rtcrelay_socket_sent_datagrams_total", "counter", "Datagrams sent on the media socket.", f(so.Sent))
	p.sample("rtcrelay_socket_sent_bytes_total", "counter", "Bytes sent on the media socket.", f(so.SentBytes))
	for _, d := range []struct {
		proto string
		v     uint64
	}{{"stun", so.STUN}, {"dtls", so.DTLS}, {"srtp", so.SRTP}, {"srtcp", so.SRTCP}} {
		p.sample("rtcrelay_socket_delivered_datagrams_total", "counter", "Datagrams delivered, by protocol.", f(d.v), "proto", d.proto)
	}
	for _, d := range []struct {
		reason string
		v      uint64
	}{{"filtered", so.DroppedFiltered}, {"unknown", so.DroppedUnknown}, {"malformed", so.DroppedMalformed},
		{"no_agent", so.DroppedNoAgent}, {"unbound", so.DroppedUnbound}, {"queue_full", so.DroppedQueueFull}} {
		p.sample("rtcrelay_socket_dropped_datagrams_total", "counter", "Datagrams dropped, by reason.", f(d.v), "reason", d.reason)
	}
	p.sample("rtcrelay_socket_errors_total", "counter", "Socket errors, by operation.", f(so.ReadErrors), "op", "read")
	p.sample("rtcrelay_socket_errors_total", "counter", "Socket errors, by operation.", f(so.WriteErrors), "op", "write")

	sg := s.signaling
	p.sample("rtcrelay_signaling_connections", "gauge", "Open WebSocket signaling sessions.", float64(sg.Active))
	p.sample("rtcrelay_signaling_accepted_total", "counter", "WebSocket signaling sessions accepted.", float64(sg.Accepted))
	for _, c := range []struct {
		kind string
		n    uint64
	}{
		{"malformed", sg.Malformed}, {"unknown", sg.Unknown}, {"binary", sg.Binary}, {"oversized", sg.Oversized},
		{"bad_name", sg.BadNames}, {"limited", sg.Limited},
	} {
		p.sample("rtcrelay_signaling_refused_total", "counter", "Signaling messages and requests refused, by reason.", float64(c.n), "reason", c.kind)
	}
	p.sample("rtcrelay_signaling_handshake_timeouts_total", "counter", "WebSocket sessions closed for sending no connection message in time.", float64(sg.HandshakeTimeouts))
	p.sample("rtcrelay_signaling_closed_bad_total", "counter", "WebSocket sessions closed after too many malformed messages.", float64(sg.BadClosed))
	const relayAuthHelp = "Relay authentication by protocol and result (failed: invalid tokens and fingerprints, and relay paths refused or ignored for want of a token)."
	p.sample("rtcrelay_relay_auth_total", "counter", relayAuthHelp, float64(sg.RelaysAuthenticated), "protocol", "wcs", "result", "ok")
	p.sample("rtcrelay_relay_auth_total", "counter", relayAuthHelp, float64(sg.RelayAuthFailures), "protocol", "wcs", "result", "failed")
	p.sample("rtcrelay_relay_auth_total", "counter", relayAuthHelp, float64(s.whip.RelaysAuthenticated), "protocol", "whip", "result", "ok")
	p.sample("rtcrelay_relay_auth_total", "counter", relayAuthHelp, float64(s.whip.RelayAuthFailures), "protocol", "whip", "result", "failed")

	var tot forwarder.StreamStats
	for _, si := range s.streams {
		tot.Players += si.Players
		tot.PacketsIn += si.Stats.PacketsIn
		tot.BytesIn += si.Stats.BytesIn
		tot.PacketsOut += si.Stats.PacketsOut
		tot.BytesOut += si.Stats.BytesOut
		tot.Drops += si.Stats.Drops
		tot.NACKsServed += si.Stats.NACKsServed
		tot.NACKsMissed += si.Stats.NACKsMissed
		tot.PLIsSent += si.Stats.PLIsSent
	}
	p.sample("rtcrelay_streams", "gauge", "Published streams.", float64(len(s.streams)))
	p.sample("rtcrelay_players", "gauge", "Players of all streams.", float64(tot.Players))
	p.sample("rtcrelay_forwarder_received_packets", "gauge", "RTP packets from publishers of the current streams.", f(tot.PacketsIn))
	p.sample("rtcrelay_forwarder_received_bytes", "gauge", "RTP bytes from publishers of the current streams.", f(tot.BytesIn))
	p.sample("rtcrelay_forwarder_sent_packets", "gauge", "RTP packets forwarded to players of the current streams.", f(tot.PacketsOut))
	p.sample("rtcrelay_forwarder_sent_bytes", "gauge", "RTP payload bytes forwarded to players of the current streams.", f(tot.BytesOut))
	p.sample("rtcrelay_forwarder_drops", "gauge", "Packets dropped by full writer queues (current streams).", f(tot.Drops))
	p.sample("rtcrelay_forwarder_nacks", "gauge", "Retransmission requests of the current streams, by result.", f(tot.NACKsServed), "result", "served")
	p.sample("rtcrelay_forwarder_nacks", "gauge", "Retransmission requests of the current streams, by result.", f(tot.NACKsMissed), "result", "missed")
	p.sample("rtcrelay_forwarder_keyframe_requests", "gauge", "PLIs sent to publishers of the current streams.", f(tot.PLIsSent))

	type relayKey struct{ dir, status string }
	counts := map[relayKey]int{}
	sums := map[string]*relay.AgentInfo{}
	for _, a := range s.relays {
		counts[relayKey{string(a.Direction), a.Status}]++
		sm := sums[string(a.Direction)]
		if sm == nil {
			sm = &relay.AgentInfo{}
			sums[string(a.Direction)] = sm
		}
		sm.Bytes += a.Bytes
		sm.Packets += a.Packets
		sm.Bitrate += a.Bitrate
		sm.Reconnects += a.Reconnects
	}
	for _, dir := range []string{string(relay.DirectionPush), string(relay.DirectionPull)} {
		for _, st := range []string{relay.StatusNew, relay.StatusPending, relay.StatusProcessedRemote, relay.StatusFailed} {
			p.sample("rtcrelay_relays", "gauge", "Relay agents, by direction and status.", float64(counts[relayKey{dir, st}]), "direction", dir, "status", st)
		}
	}
	for _, dir := range []string{string(relay.DirectionPush), string(relay.DirectionPull)} {
		sm := sums[dir]
		if sm == nil {
			sm = &relay.AgentInfo{}
		}
		p.sample("rtcrelay_relay_bitrate_bits_per_second", "gauge", "Sum of the relay agents' bitrates.", sm.Bitrate, "direction", dir)
		p.sample("rtcrelay_relay_bytes", "gauge", "Bytes relayed by the current agents.", f(sm.Bytes), "direction", dir)
		p.sample("rtcrelay_relay_packets", "gauge", "Packets relayed by the current agents.", f(sm.Packets), "direction", dir)
		p.sample("rtcrelay_relay_reconnects", "gauge", "Reconnects of the current agents.", f(sm.Reconnects), "direction", dir)
	}

	if h := s.dirHealth; h != nil {
		up := 0.0
		if h.OK {
			up = 1
		}
		p.sample("rtcrelay_directory_up", "gauge", "1 when the stream directory's backend answers.", up, "backend", h.Backend)
		p.sample("rtcrelay_directory_registered", "gauge", "Directory entries this server keeps registered.", float64(s.dirStats.Registered))
		p.sample("rtcrelay_directory_lookups_total", "counter", "Directory lookups.", f(s.dirStats.Lookups))
		p.sample("rtcrelay_directory_errors_total", "counter", "Failed directory backend calls.", f(s.dirStats.Errors))
		p.sample("rtcrelay_directory_conflicts_total", "counter", "Registrations refused: the name is owned elsewhere.", f(s.dirStats.Conflicts))
	}

	series, folded := boundStreams(s.streams, maxStreamSeries)
	p.sample("rtcrelay_stream_series_folded", "gauge", "Streams summed into stream=\"_other\" (beyond the top "+strconv.Itoa(maxStreamSeries)+" by players).", float64(folded))
	for _, ss := range series {
		p.sample("rtcrelay_stream_players", "gauge", "Players of the stream.", float64(ss.players), "stream", ss.name)
	}
	for _, ss := range series {
		p.sample("rtcrelay_stream_sent_packets_total", "counter", "RTP packets forwarded to the stream's players.", f(ss.packetsOut), "stream", ss.name)
	}
	for _, ss := range series {
		p.sample("rtcrelay_stream_drops_total", "counter", "Packets dropped by the stream's full writer queues.", f(ss.drops), "stream", ss.name)
	}
	for _, ss := range series {
		p.sample("rtcrelay_stream_keyframe_requests_total", "counter", "PLIs sent to the stream's publisher.", f(ss.keyframeRequests), "stream", ss.name)
	}
	for _, ss := range series {
		if ss.hasFPS {
			p.sample("rtcrelay_stream_video_fps", "gauge", "Video frames per second from the publisher (last second).", ss.fps, "stream", ss.name)
		}
	}
	perKind := []struct {
		name, typ, help string
		v               func(*kindSeries) uint64
	}{
		{"rtcrelay_stream_bitrate_bits_per_second", "gauge", "Inbound bitrate from the publisher (last second, RTP headers included).", func(k *kindSeries) uint64 { return k.bitrate }},
		{"rtcrelay_stream_received_packets_total", "counter", "RTP packets from the publisher.", func(k *kindSeries) uint64 { return k.packets }},
		{"rtcrelay_stream_received_bytes_total", "counter", "RTP bytes from the publisher.", func(k *kindSeries) uint64 { return k.bytes }},
		{"rtcrelay_stream_lost_packets_total", "counter", "Packets from the publisher missing by sequence number.", func(k *kindSeries) uint64 { return k.lost }},
		{"rtcrelay_stream_nacks_total", "counter", "Sequence numbers the stream's players asked to retransmit.", func(k *kindSeries) uint64 { return k.nacks }},
		{"rtcrelay_stream_player_plis_total", "counter", "Keyframe requests the stream's players sent.", func(k *kindSeries) uint64 { return k.plis }},
	}
	for _, m := range perKind {
		for _, ss := range series {
			for _, kind := range []string{"audio", "video"} {
				if k := ss.kinds[kind]; k != nil {
					p.sample(m.name, m.typ, m.help, f(m.v(k)), "stream", ss.name, "kind", kind)
				}
			}
		}
	}
	return p.w.Flush()
}
