package main

import (
	"encoding/json"
	"net/http"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rtcrelay/rtcrelay/directory"
	"github.com/rtcrelay/rtcrelay/forwarder"
	"github.com/rtcrelay/rtcrelay/ice"
	"github.com/rtcrelay/rtcrelay/relay"
	"github.com/rtcrelay/rtcrelay/resthook"
	"github.com/rtcrelay/rtcrelay/signaling"
	"github.com/rtcrelay/rtcrelay/whip"
)

// processMetrics is the GET /metrics?format=json document: the process's CPU and memory, and the forwarding totals, for
// load tests (bench/load) and monitoring.
type processMetrics struct {
	CPUSeconds float64         `json:"cpuSeconds"`    // user + system since start
	RSSBytes   uint64          `json:"rssBytes"`      // resident set size (VmRSS), 0 where unknown
	HeapBytes  uint64          `json:"heapBytes"`     // Go heap in use (HeapInuse: live objects, garbage not yet swept, free slots)
	HeapLive   uint64          `json:"heapLiveBytes"` // heap reachable at the last GC (exact with ?gc=1)
	HeapObjs   uint64          `json:"heapObjects"`
	StackBytes uint64          `json:"stackBytes"` // goroutine stacks (StackInuse)
	Goroutines int             `json:"goroutines"`
	OpenFDs    int             `json:"openFDs"` // open file descriptors (/proc/self/fd), 0 where unknown
	Streams    int             `json:"streams"`
	Players    int             `json:"players"`
	PacketsIn  uint64          `json:"packetsIn"`  // RTP from publishers, all streams
	PacketsOut uint64          `json:"packetsOut"` // RTP forwarded to players, all streams
	Drops      uint64          `json:"drops"`      // writer-queue drops, all streams
	Socket     ice.SocketStats `json:"socket"`
	UptimeSecs float64         `json:"uptimeSeconds"`
	GC         uint32          `json:"gcCycles"`
	// Hooks are the REST hook counters per method (allowed, denied, errors, dropped events, mean latency).
	Hooks map[string]resthook.MethodStats `json:"hooks,omitempty"`
}

// heapLiveMetric is the heap the last GC found reachable (runtime/metrics), the figure memory budgets are about:
// unlike HeapInuse it holds no garbage and no free slots.
const heapLiveMetric = "/gc/heap/live:bytes"

// gcInterval bounds how often GET /metrics?gc=1 collects, so that the query cannot be used to burn CPU.
const gcInterval = time.Second

// metricsSource is what GET /metrics reads.
type metricsSource struct {
	reg    *forwarder.Registry
	sock   *ice.Socket
	relays *relay.Manager                         // nil: no relay series
	sig    *signaling.Server                      // nil: no signaling series
	whip   *whip.Handler                          // nil: no WHIP series
	dir    directory.Directory                    // nil: no directory series
	hooks  func() map[string]resthook.MethodStats // nil: no REST hook counters
}

// metricsHandler serves GET /metrics: the Prometheus text format (0.0.4) by default, the JSON document
// (processMetrics) with ?format=json or "Accept: application/json". With ?gc=1 it first runs two garbage
// collections (at most once per gcInterval), so that heapLiveBytes is exact at the moment of the query (the load
// test's memory per player): the second frees what the first left in sync.Pool's victim caches (free packet
// buffers, which belong to no stream or player).
func metricsHandler(src metricsSource) http.HandlerFunc {
	started := time.Now()
	var gcMu sync.Mutex
	var lastGC time.Time
	return func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("gc") == "1" {
			gcMu.Lock()
			if time.Since(lastGC) >= gcInterval {
				runtime.GC()
				runtime.GC()
				lastGC = time.Now()
			}
			gcMu.Unlock()
		}
		streams := src.reg.Streams()
		m := readProcessMetrics(src.sock, started, streams)
		if src.hooks != nil {
			m.Hooks = src.hooks()
		}
		w.Header().Set("Cache-Control", "no-store")
		if wantsJSON(r) {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(m)
			return
		}
		snap := promSnapshot{proc: m, streams: streams}
		if src.relays != nil {
			snap.relays = src.relays.Find(relay.Filter{})
		}
		if src.sig != nil {
			snap.signaling = src.sig.Stats()
		}
		if src.whip != nil {
			snap.whip = src.whip.Stats()
		}
		if src.dir != nil {
			h := src.dir.Status()
			snap.dirHealth, snap.dirStats = &h, src.dir.Stats()
		}
		w.Header().Set("Content-Type", promContentType)
		_ = writePrometheus(w, snap)
	}
}

// wantsJSON: ?format=json, or an Accept header that names application/json (and not ?format=prometheus).
func wantsJSON(r *http.Request) bool {
	switch r.URL.Query().Get("format") {
	case "json":
		return true
	case "prometheus", "text":
		return false
	}
	return strings.Contains(r.Header.Get("Accept"), "application/json")
}

func readProcessMetrics(sock *ice.Socket, started time.Time, streams []forwarder.StreamInfo) processMetrics {
	live := []metrics.Sample{{Name: heapLiveMetric}}
	metrics.Read(live)
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m := processMetrics{
		CPUSeconds: time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds(),
		RSSBytes:   rss(),
		HeapBytes:  ms.HeapInuse,
		HeapObjs:   ms.HeapObjects,
		StackBytes: ms.StackInuse,
		Goroutines: runtime.NumGoroutine(),
		OpenFDs:    openFDs(),
		Socket:     sock.Stats(),
		UptimeSecs: time.Since(started).Seconds(),
		GC:         ms.NumGC,
	}
	if live[0].Value.Kind() == metrics.KindUint64 {
		m.HeapLive = live[0].Value.Uint64()
	}
	for _, si := range streams {
		m.Streams++
		m.Players += si.Players
		m.PacketsIn += si.Stats.PacketsIn
		m.PacketsOut += si.Stats.PacketsOut
		m.Drops += si.Stats.Drops
	}
	return m
}

// openFDs counts the process's open file descriptors (Linux); 0 elsewhere.
func openFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0
	}
	return len(ents) - 1 // the directory being read is one of them
}

// rss reads VmRSS from /proc/self/status (Linux); 0 elsewhere.
func rss() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err == nil {
				return kb * 1024
			}
		}
	}
	return 0
}
