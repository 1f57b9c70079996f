package main

import (
	"encoding/json"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rtcrelay/rtcrelay/forwarder"
	"github.com/rtcrelay/rtcrelay/ice"
)

// processMetrics is the GET /metrics document: the process's CPU and memory, and the forwarding totals, for
// load tests (bench/load) and monitoring.
type processMetrics struct {
	CPUSeconds float64         `json:"cpuSeconds"` // user + system since start
	RSSBytes   uint64          `json:"rssBytes"`   // resident set size (VmRSS), 0 where unknown
	HeapBytes  uint64          `json:"heapBytes"`  // Go heap in use
	Goroutines int             `json:"goroutines"`
	Streams    int             `json:"streams"`
	Players    int             `json:"players"`
	PacketsIn  uint64          `json:"packetsIn"`  // RTP from publishers, all streams
	PacketsOut uint64          `json:"packetsOut"` // RTP forwarded to players, all streams
	Drops      uint64          `json:"drops"`      // writer-queue drops, all streams
	Socket     ice.SocketStats `json:"socket"`
	UptimeSecs float64         `json:"uptimeSeconds"`
	GC         uint32          `json:"gcCycles"`
}

// metricsHandler serves GET /metrics.
func metricsHandler(reg *forwarder.Registry, sock *ice.Socket) http.HandlerFunc {
	started := time.Now()
	return func(w http.ResponseWriter, _ *http.Request) {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		m := processMetrics{
			CPUSeconds: time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds(),
			RSSBytes:   rss(),
			HeapBytes:  ms.HeapInuse,
			Goroutines: runtime.NumGoroutine(),
			Socket:     sock.Stats(),
			UptimeSecs: time.Since(started).Seconds(),
			GC:         ms.NumGC,
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
