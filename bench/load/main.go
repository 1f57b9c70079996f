// Command load drives a running rtcrelay over the real protocol (WCS WebSocket signaling, ICE, DTLS-SRTP):
// one publisher of synthetic VP8 + Opus RTP and N players, built on rtcrelay's own transport packages. It prints
// a progress line per second and a final table: packets/s in and out, loss, latency (stamped packets), setup
// time, the server's CPU per million forwarded packets and memory per player (from the server's GET /metrics),
// and its own CPU.
//
//	go run ./bench/load -server ws://127.0.0.1:8080 -metrics http://127.0.0.1:8081/metrics -players 100 -duration 20s
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"os"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rtcrelay/rtcrelay/dtls"
	"github.com/rtcrelay/rtcrelay/ice"
	"github.com/rtcrelay/rtcrelay/sdp"
	"github.com/rtcrelay/rtcrelay/session"
	"github.com/rtcrelay/rtcrelay/signaling"
)

type options struct {
	server, metrics, stream string
	players, concurrency    int
	duration                time.Duration
	bitrate                 float64
	fps                     int
	bind                    netip.Addr
	verbose                 bool
	sampleEvery             int
	fullRead                bool
	cpuProfile              string
	gro                     bool
	maxPlayerBytes          float64
	pprofURL, heapProfile   string
}

func main() {
	var o options
	var bind string
	flag.StringVar(&o.server, "server", "ws://127.0.0.1:8080", "signaling URL of the running rtcrelay")
	flag.StringVar(&o.metrics, "metrics", "http://127.0.0.1:8081/metrics", "the server's metrics URL (GET /metrics, read as JSON with Accept: application/json); empty: none")
	flag.StringVar(&o.stream, "stream", "", "stream name (default: load-<pid>)")
	flag.IntVar(&o.players, "players", 100, "number of players")
	flag.IntVar(&o.concurrency, "concurrency", 16, "players set up at once")
	flag.DurationVar(&o.duration, "duration", 20*time.Second, "how long to measure once every player is up")
	flag.Float64Var(&o.bitrate, "bitrate", 1.5e6, "publisher bitrate in bit/s (video + audio)")
	flag.IntVar(&o.fps, "fps", 30, "video frames per second (a keyframe every second)")
	flag.StringVar(&bind, "bind", "127.0.0.1", "local address of the publisher's and players' UDP sockets")
	flag.BoolVar(&o.verbose, "v", false, "log the transport at debug level")
	flag.IntVar(&o.sampleEvery, "sample", 16, "players decrypt every n-th packet (latency stamp); the rest are counted from the clear RTP header")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write the tool's own CPU profile of the measurement window to this file")
	flag.BoolVar(&o.gro, "gro", false, "light players ask for UDP GRO: the server's GSO runs arrive whole on loopback, "+
		"which also spares the server the software segmentation a NIC without UDP segmentation offload would cost it")
	flag.Float64Var(&o.maxPlayerBytes, "max-player-kb", 50, "fail (exit status 3) when the server's live heap per player exceeds this many kB (1000 bytes); 0: report only")
	flag.StringVar(&o.pprofURL, "pprof", "", "the server's pprof base URL (rtcrelay --pprof-port), e.g. http://127.0.0.1:8082; with -heap-profile")
	flag.StringVar(&o.heapProfile, "heap-profile", "", "save the server's heap profiles (after a GC) to this prefix: -players.pb.gz with the players up, -end.pb.gz at the end of the window; compare with go tool pprof -base")
	flag.BoolVar(&o.fullRead, "full-read", false, "players read with ice.Socket.Serve and decrypt every packet (the old, heavy path)")
	flag.Parse()
	var err error
	if o.bind, err = netip.ParseAddr(bind); err != nil {
		fmt.Fprintln(os.Stderr, "load: -bind:", err)
		os.Exit(2)
	}
	if o.fullRead {
		o.sampleEvery = 1
	}
	if o.stream == "" {
		o.stream = fmt.Sprintf("load-%d", os.Getpid())
	}
	o.maxPlayerBytes *= 1000
	if err := run(context.Background(), o); err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		if errors.Is(err, errOverBudget) {
			os.Exit(3)
		}
		os.Exit(1)
	}
}

// peer is the publisher's or a player's transport: its own UDP socket (as a browser's peer connection has), a
// session and a signaling connection.
type peer struct {
	sock *ice.Socket
	sess *session.Session
	sig  *signaling.Client
}

func (p *peer) close() {
	if p.sess != nil {
		p.sess.Close(nil)
	}
	if p.sig != nil {
		p.sig.Close()
	}
	if p.sock != nil {
		p.sock.Close()
	}
}

// connect makes the socket and the session, sends the offer (publish or play) and brings the transport up.
// A player (pl not nil) reads its socket with the light reader, unless -full-read.
func connect(ctx context.Context, o options, cert *dtls.Certificate, log *slog.Logger, pl *player, tracks []sdp.Track) (*peer, error) {
	p := &peer{}
	publish := pl == nil
	var err error
	p.sock, err = ice.Listen(ice.SocketConfig{Addr: netip.AddrPortFrom(o.bind, 0), ReadBuffer: 1 << 20, WriteBuffer: 1 << 20, Logger: log})
	if err != nil {
		return nil, err
	}
	if publish || o.fullRead {
		go func() { _ = p.sock.Serve(context.Background()) }()
	} else {
		r, err := newLightReader(p.sock, pl, o.gro)
		if err != nil {
			p.close()
			return nil, err
		}
		go r.run()
	}
	if p.sess, err = session.NewOfferer(session.Config{Socket: p.sock, Certificate: cert, Logger: log}); err != nil {
		p.close()
		return nil, err
	}
	offer, err := sdp.BuildOffer(p.sess.Transport(), tracks, "load", "load")
	if err != nil {
		p.close()
		return nil, err
	}
	if p.sig, err = signaling.Dial(ctx, o.server, signaling.ClientConfig{Logger: log}); err != nil {
		p.close()
		return nil, err
	}
	var answer string
	if publish {
		answer, err = p.sig.Publish(ctx, o.stream, "", offer, nil)
	} else {
		answer, err = p.sig.Play(ctx, o.stream, "", offer, nil)
	}
	if err != nil {
		p.close()
		return nil, err
	}
	desc, err := sdp.Parse(answer)
	if err == nil {
		err = p.sess.SetRemote(desc)
	}
	if err == nil {
		err = p.sess.Start(ctx)
	}
	if err != nil {
		p.close()
		return nil, err
	}
	return p, nil
}

var (
	opus = sdp.Codec{PayloadType: 111, Name: "opus", ClockRate: 48000, Channels: 2, Fmtp: "minptime=10;useinbandfec=1"}
	vp8  = sdp.Codec{PayloadType: 96, Name: "VP8", ClockRate: 90000, Feedback: []string{"nack", "nack pli", "ccm fir"}}
)

func run(ctx context.Context, o options) error {
	level := slog.LevelError
	if o.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	cert, err := dtls.GenerateCertificate()
	if err != nil {
		return err
	}
	// Memory is read after a forced GC (GET /metrics?gc=1): m0 before the publisher, mPub with the publisher up,
	// m1 with every player up (no media yet), mEnd at the end of the window (rings and queues filled by media).
	m0, _ := fetchMetricsGC(o.metrics)

	// The publisher.
	src := newSource(o)
	pub, err := connect(ctx, o, cert, log, nil, []sdp.Track{
		{Mid: "0", Kind: sdp.KindAudio, Codec: opus, SSRC: src.audioSSRC, Direction: sdp.DirSendOnly},
		{Mid: "1", Kind: sdp.KindVideo, Codec: vp8, SSRC: src.videoSSRC, Direction: sdp.DirSendOnly},
	})
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	defer pub.close()
	fmt.Printf("publisher up: %s, %.2f Mbit/s, %d fps; media starts once the players are up\n", o.stream, o.bitrate/1e6, o.fps)
	mPub, _ := fetchMetricsGC(o.metrics)

	// The players, o.concurrency at a time.
	players := make([]*player, o.players)
	var setupMu sync.Mutex
	var setups []time.Duration
	var failed atomic.Int64
	var up atomic.Int64
	sem := make(chan struct{}, o.concurrency)
	var wg sync.WaitGroup
	start := time.Now()
	progressStop := make(chan struct{})
	go progress(o, src, players, &up, &failed, progressStop)
	for i := range players {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			t0 := time.Now()
			pl := newPlayer(o.sampleEvery)
			sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			p, err := connect(sctx, o, cert, log, pl, []sdp.Track{
				{Mid: "0", Kind: sdp.KindAudio, Codec: opus, Direction: sdp.DirRecvOnly},
				{Mid: "1", Kind: sdp.KindVideo, Codec: vp8, Direction: sdp.DirRecvOnly},
			})
			if err != nil {
				failed.Add(1)
				log.Warn("player setup", "i", i, "err", err)
				return
			}
			pl.peer = p
			if o.fullRead {
				p.sess.SetSink(fullSink{pl})
			} else {
				p.sess.SetSink(pl)
			}
			setupMu.Lock()
			setups = append(setups, time.Since(t0))
			setupMu.Unlock()
			players[i] = pl
			up.Add(1)
		}()
	}
	wg.Wait()
	fmt.Printf("%d players up in %.1fs (%d failed)\n", up.Load(), time.Since(start).Seconds(), failed.Load())
	time.Sleep(500 * time.Millisecond) // the last handshakes' goroutines settle
	m1, _ := fetchMetricsGC(o.metrics)
	saveHeapProfile(o, "-players.pb.gz")
	// Media starts now (with a keyframe), so that setting players up does not compete with forwarding.
	pubCtx, stopPub := context.WithCancel(ctx)
	pubDone := make(chan struct{})
	go func() { defer close(pubDone); src.run(pubCtx, pub.sess) }()
	time.Sleep(1500 * time.Millisecond) // every player past its first keyframe

	// The measurement window.
	for _, pl := range players {
		if pl != nil {
			pl.resetWindow()
		}
	}
	in0 := src.sent.Load()
	cpu0 := cpuTime()
	mA, okA := fetchMetrics(o.metrics)
	t0 := time.Now()
	if o.cpuProfile != "" {
		if f, err := os.Create(o.cpuProfile); err == nil {
			if pprof.StartCPUProfile(f) == nil {
				defer f.Close()
				time.AfterFunc(o.duration, pprof.StopCPUProfile)
			}
		} else {
			fmt.Fprintln(os.Stderr, "load: -cpuprofile:", err)
		}
	}
	time.Sleep(o.duration)
	mB, okB := fetchMetrics(o.metrics)
	elapsed := time.Since(t0)
	cpu := cpuTime() - cpu0
	mEnd, okEnd := fetchMetricsGC(o.metrics) // after the window: the forced GC is not in its CPU figure
	saveHeapProfile(o, "-end.pb.gz")
	in := src.sent.Load() - in0
	stopPub()
	<-pubDone
	time.Sleep(time.Second) // what is in flight arrives
	close(progressStop)

	// Results.
	var budgetErr error
	var out, lost, expected uint64
	var lat histogram
	var samples uint64
	for _, pl := range players {
		if pl == nil {
			continue
		}
		r, e := pl.result(src)
		out += r
		expected += e
		pl.mu.Lock()
		lat.merge(&pl.lat)
		samples += pl.samples
		pl.mu.Unlock()
	}
	if expected > out {
		lost = expected - out
	}
	slices.Sort(setups)
	fmt.Println()
	fmt.Printf("%-28s %d (%d failed)\n", "players", up.Load(), failed.Load())
	fmt.Printf("%-28s %.0f\n", "packets/s in (publisher)", float64(in)/elapsed.Seconds())
	fmt.Printf("%-28s %.0f\n", "packets/s out (received)", float64(out)/elapsed.Seconds())
	fmt.Printf("%-28s %.4f %% (%d of %d)\n", "loss", 100*float64(lost)/math.Max(1, float64(expected)), lost, expected)
	fmt.Printf("%-28s p50 %s  p99 %s  max %s (%d samples, 1 in %d decrypted)\n", "latency (send → receive)",
		us(lat.quantile(0.5)), us(lat.quantile(0.99)), us(lat.quantile(1)), samples, max(1, o.sampleEvery))
	fmt.Printf("%-28s p50 %s  p99 %s\n", "setup (dial → DTLS done)", ms(pct(setups, 0.5)), ms(pct(setups, 0.99)))
	if okA && okB {
		fwd := mB.PacketsOut - mA.PacketsOut
		cpuS := mB.CPUSeconds - mA.CPUSeconds
		fmt.Printf("%-28s %.2f s (%.0f %% of a core)\n", "server CPU / 1M fwd pkts", cpuS/math.Max(1, float64(fwd))*1e6, 100*cpuS/elapsed.Seconds())
		fmt.Printf("%-28s %.0f (server count)\n", "server fwd pkts/s", float64(fwd)/elapsed.Seconds())
		if n := up.Load(); n > 0 && okEnd {
			mem := memoryReport(m0, mPub, m1, mEnd, n, o.maxPlayerBytes)
			fmt.Print(mem.text)
			budgetErr = mem.err
		}
	} else {
		fmt.Printf("%-28s unavailable (no %s)\n", "server CPU / memory", o.metrics)
	}
	fmt.Printf("%-28s %.0f %% of a core (%.2f s)\n", "load tool CPU", 100*cpu.Seconds()/elapsed.Seconds(), cpu.Seconds())
	for _, pl := range players {
		if pl != nil {
			pl.peer.close()
		}
	}
	return budgetErr
}

// errOverBudget: the server's live heap per player is above -max-player-kb.
var errOverBudget = errors.New("server heap per player over budget")

type memReport struct {
	text string
	err  error
}

// memoryReport turns the four forced-GC snapshots into the per-player and per-stream figures: a player is what
// setting up n players added (live heap, goroutines, their stacks, RSS); the stream is the publisher's session
// and stream at rest plus everything that grew once media flowed (rings, writer queues and batches, pools).
func memoryReport(m0, mPub, m1, mEnd metrics, n int64, budget float64) memReport {
	per := func(a, b uint64) float64 { return float64(int64(b)-int64(a)) / float64(n) }
	heap := per(mPub.HeapLive, m1.HeapLive)
	var b strings.Builder
	fmt.Fprintf(&b, "%-28s %.1f kB live heap (%.1f kB HeapInuse), %.1f goroutines (%.1f kB stacks), %.1f kB RSS\n",
		"server memory per player", heap/1e3, per(mPub.HeapBytes, m1.HeapBytes)/1e3,
		float64(m1.Goroutines-mPub.Goroutines)/float64(n), per(mPub.StackBytes, m1.StackBytes)/1e3,
		per(mPub.RSSBytes, m1.RSSBytes)/1e3)
	atRest := float64(int64(mPub.HeapLive) - int64(m0.HeapLive))
	fmt.Fprintf(&b, "%-28s %d / %d / %d / %d bytes (before the publisher, publisher up, players up, end of the window)\n",
		"server live heap after GC", m0.HeapLive, mPub.HeapLive, m1.HeapLive, mEnd.HeapLive)
	media := float64(int64(mEnd.HeapLive) - int64(m1.HeapLive))
	fmt.Fprintf(&b, "%-28s %.0f kB live heap: %.0f kB publisher + stream at rest, %.0f kB grown with media (rings, queues, batches)\n",
		"server memory per stream", (atRest+media)/1e3, atRest/1e3, media/1e3)
	fmt.Fprintf(&b, "%-28s %.1f MB live heap, %.1f MB stacks, %d goroutines, %.1f MB RSS at %d players\n", "server totals",
		float64(mEnd.HeapLive)/1e6, float64(mEnd.StackBytes)/1e6, mEnd.Goroutines, float64(mEnd.RSSBytes)/1e6, n)
	var err error
	if budget > 0 && heap > budget {
		err = fmt.Errorf("%w: %.1f kB > %.0f kB", errOverBudget, heap/1e3, budget/1e3)
		fmt.Fprintf(&b, "%-28s FAIL: %.1f kB of live heap per player > %.0f kB\n", "memory budget", heap/1e3, budget/1e3)
	} else if budget > 0 {
		fmt.Fprintf(&b, "%-28s ok: %.1f kB of live heap per player <= %.0f kB\n", "memory budget", heap/1e3, budget/1e3)
	}
	return memReport{text: b.String(), err: err}
}

// progress prints one line per second until stop.
func progress(o options, src *source, players []*player, up, failed *atomic.Int64, stop chan struct{}) {
	tk := time.NewTicker(time.Second)
	defer tk.Stop()
	var lastIn, lastOut uint64
	lastCPU := cpuTime()
	t0 := time.Now()
	for {
		select {
		case <-stop:
			return
		case <-tk.C:
		}
		var out uint64
		for _, pl := range players {
			if pl != nil {
				out += pl.total.Load()
			}
		}
		in := src.sent.Load()
		c := cpuTime()
		m, ok := fetchMetrics(o.metrics)
		srv := ""
		if ok {
			srv = fmt.Sprintf(" server: cpu %.1fs fwd %d", m.CPUSeconds, m.PacketsOut)
		}
		fmt.Printf("%5.0fs players %d/%d (failed %d) in %d/s out %d/s tool cpu %.0f%%%s\n",
			time.Since(t0).Seconds(), up.Load(), o.players, failed.Load(), in-lastIn, out-lastOut,
			100*(c-lastCPU).Seconds(), srv)
		lastIn, lastOut, lastCPU = in, out, c
	}
}

// metrics is what the load tool reads from the server's GET /metrics.
type metrics struct {
	CPUSeconds float64 `json:"cpuSeconds"`
	RSSBytes   uint64  `json:"rssBytes"`
	HeapBytes  uint64  `json:"heapBytes"`
	HeapLive   uint64  `json:"heapLiveBytes"`
	StackBytes uint64  `json:"stackBytes"`
	Goroutines int     `json:"goroutines"`
	GCs        uint32  `json:"gcCycles"`
	PacketsOut uint64  `json:"packetsOut"`
}

// saveHeapProfile writes the server's heap profile, taken after the GC that fetchMetricsGC just had run, to
// o.heapProfile+suffix.
func saveHeapProfile(o options, suffix string) {
	if o.pprofURL == "" || o.heapProfile == "" {
		return
	}
	c := http.Client{Timeout: 10 * time.Second}
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, o.pprofURL+"/debug/pprof/heap", nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "load: heap profile:", err)
		return
	}
	resp, err := c.Do(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, "load: heap profile:", err)
		return
	}
	defer resp.Body.Close()
	f, err := os.Create(o.heapProfile + suffix)
	if err == nil {
		_, err = io.Copy(f, resp.Body)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "load: heap profile:", err)
	}
}

// lastGC is when fetchMetricsGC's last collection answered, lastGCs the server's GC count then.
var (
	lastGC  time.Time
	lastGCs uint32
)

// fetchMetricsGC reads the metrics after the server ran a garbage collection (exact live heap). The server
// collects at most once a second, so it waits out the rest of that second first, and asks again if the GC count
// did not move.
func fetchMetricsGC(url string) (metrics, bool) {
	if url == "" {
		return metrics{}, false
	}
	for try := 0; ; try++ {
		if d := 1100*time.Millisecond - time.Since(lastGC); d > 0 {
			time.Sleep(d)
		}
		m, ok := fetchMetrics(url + "?gc=1")
		lastGC = time.Now()
		if !ok || m.GCs != lastGCs || try == 2 {
			lastGCs = m.GCs
			return m, ok
		}
	}
}

func fetchMetrics(url string) (metrics, bool) {
	var m metrics
	if url == "" {
		return m, false
	}
	c := http.Client{Timeout: 2 * time.Second}
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	if err != nil {
		return m, false
	}
	req.Header.Set("Accept", "application/json") // GET /metrics serves Prometheus text otherwise
	resp, err := c.Do(req)
	if err != nil {
		return m, false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&m) != nil {
		return m, false
	}
	return m, true
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func pct(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[min(len(d)-1, int(q*float64(len(d))))]
}

func us(d time.Duration) string { return fmt.Sprintf("%.0fµs", float64(d)/1e3) }
func ms(d time.Duration) string { return fmt.Sprintf("%.0fms", float64(d)/1e6) }
