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

	"github.com/rtcrelay/rtcrelay/forwarder"
	"github.com/rtcrelay/rtcrelay/ice"
	"github.com/rtcrelay/rtcrelay/resthook"
)

// processMetrics is the GET /metrics document: the process's CPU and memory, and the forwarding totals, for
// load tests (bench/load) and monitoring.
type processMetrics struct {
	CPUSeconds float64         `json:"cpuSeconds"`    // user + system since start
	RSSBytes   uint64          `json:"rssBytes"`      // resident set size (VmRSS), 0 where unknown
	HeapBytes  uint64          `json:"heapBytes"`     // Go heap in use (HeapInuse: live objects, garbage not yet swept, free slots)
	HeapLive   uint64          `json:"heapLiveBytes"` // heap reachable at the last GC (exact with ?gc=1)
	HeapObjs   uint64          `json:"heapObjects"`
	StackBytes uint64          `json:"stackBytes"` // goroutine stacks (StackInuse)
	Goroutines int             `json:"goroutines"`
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

// metricsHandler serves GET /metrics. With ?gc=1 it first runs a garbage collection (at most once per gcInterval),
// so that heapLiveBytes is exact at the moment of the query (the load test's memory per player).
func metricsHandler(reg *forwarder.Registry, sock *ice.Socket, hooks func() map[string]resthook.MethodStats) http.HandlerFunc {
	started := time.Now()
	var gcMu sync.Mutex
	var lastGC time.Time
	return func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("gc") == "1" {
			gcMu.Lock()
			if time.Since(lastGC) >= gcInterval {
				runtime.GC()
				lastGC = time.Now()
			}
			gcMu.Unlock()
		}
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
			Socket:     sock.Stats(),
			UptimeSecs: time.Since(started).Seconds(),
			GC:         ms.NumGC,
			Hooks:      hooks(),
		}
		if live[0].Value.Kind() == metrics.KindUint64 {
			m.HeapLive = live[0].Value.Uint64()
		}
		for _, si := range reg.Streams() {
			m.Streams++
			m.Players += si.Players
			m.PacketsIn += si.Stats.PacketsIn
			m.PacketsOut += si.Stats.PacketsOut
			m.Drops += si.Stats.Drops
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(m)
	}
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
