// Command soak runs connect/publish/play/disconnect cycles against a running rtcrelay and fails when the
// server does not give back what the cycles took: goroutines, open file descriptors or live heap that grew
// beyond a small bound once the server has settled.
//
// Each cycle is a real client pair of ours (signaling.Client + session: ICE, DTLS, SRTP): a publisher publishes
// a fresh stream and sends RTP, a player plays it until a packet arrives, and they leave in one of three ways,
// in turn: graceful (stopStream, unPublishStream, close), the publisher's WebSocket dropped first (the stream
// then waits out --publisher-grace), or the player's WebSocket dropped without a word.
//
//	go run ./bench/soak -server ws://127.0.0.1:8080 -metrics http://127.0.0.1:8081/metrics -cycles 1000
//
// Exit status 3 when a bound is exceeded, 1 on other errors.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"

	"github.com/rtcrelay/rtcrelay/dtls"
	"github.com/rtcrelay/rtcrelay/ice"
	"github.com/rtcrelay/rtcrelay/packet"
	"github.com/rtcrelay/rtcrelay/sdp"
	"github.com/rtcrelay/rtcrelay/session"
	"github.com/rtcrelay/rtcrelay/signaling"
)

type options struct {
	server, metrics string
	cycles, conc    int
	bind            netip.Addr
	settle          time.Duration
	maxGoroutines   int
	maxFDs          int
	maxHeapKB       float64
}

var errOverBound = errors.New("over bound")

func main() {
	var o options
	var bind string
	flag.StringVar(&o.server, "server", "ws://127.0.0.1:8080", "signaling URL of the running rtcrelay")
	flag.StringVar(&o.metrics, "metrics", "http://127.0.0.1:8081/metrics", "the server's metrics URL (JSON with ?format=json)")
	flag.IntVar(&o.cycles, "cycles", 1000, "connect/publish/play/disconnect cycles")
	flag.IntVar(&o.conc, "concurrency", 8, "cycles at once")
	flag.StringVar(&bind, "bind", "127.0.0.1", "local address of the clients' UDP sockets")
	flag.DurationVar(&o.settle, "settle", 30*time.Second, "how long to wait for the server to give back goroutines and FDs (covers --publisher-grace)")
	flag.IntVar(&o.maxGoroutines, "max-goroutines", 10, "allowed growth in goroutines after settling")
	flag.IntVar(&o.maxFDs, "max-fds", 10, "allowed growth in open file descriptors after settling")
	flag.Float64Var(&o.maxHeapKB, "max-heap-kb", 512, "allowed growth in live heap (after a GC) over the second half of the cycles, kB (1 kB per cycle at 1000)")
	flag.Parse()
	a, err := netip.ParseAddr(bind)
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak: -bind:", err)
		os.Exit(1)
	}
	o.bind = a
	if err := run(context.Background(), o); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		if errors.Is(err, errOverBound) {
			os.Exit(3)
		}
		os.Exit(1)
	}
}

// metrics is what the soak reads from GET /metrics?format=json.
type metrics struct {
	HeapLive   uint64 `json:"heapLiveBytes"`
	Goroutines int    `json:"goroutines"`
	OpenFDs    int    `json:"openFDs"`
	Streams    int    `json:"streams"`
	Players    int    `json:"players"`
	GCs        uint32 `json:"gcCycles"`
}

func fetch(url string, gc bool) (metrics, error) {
	var m metrics
	q := "?format=json"
	if gc {
		q += "&gc=1"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+q, nil)
	if err != nil {
		return m, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return m, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return m, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return m, json.NewDecoder(resp.Body).Decode(&m)
}

// snapshot reads the metrics after a GC; the server collects at most once a second, so it waits that out.
func snapshot(url string) (metrics, error) {
	time.Sleep(1100 * time.Millisecond)
	return fetch(url, true)
}

var (
	opus = sdp.Codec{PayloadType: 111, Name: "opus", ClockRate: 48000, Channels: 2, Fmtp: "minptime=10;useinbandfec=1"}
	vp8  = sdp.Codec{PayloadType: 96, Name: "VP8", ClockRate: 90000, Feedback: []string{"nack", "nack pli"}}
)

// client is one of our peers: a socket, a session and a signaling connection.
type client struct {
	sock *ice.Socket
	sess *session.Session
	sig  *signaling.Client
	id   string
}

func (c *client) close() {
	if c.sess != nil {
		c.sess.Close(nil)
	}
	if c.sig != nil {
		_ = c.sig.Close()
	}
	if c.sock != nil {
		_ = c.sock.Close()
	}
}

func dial(ctx context.Context, o options, cert *dtls.Certificate, log *slog.Logger, name string, tracks []sdp.Track, publish bool) (*client, error) {
	c := &client{id: signaling.NewMediaSessionID()}
	var err error
	if c.sock, err = ice.Listen(ice.SocketConfig{Addr: netip.AddrPortFrom(o.bind, 0), Logger: log}); err != nil {
		return nil, err
	}
	go func() { _ = c.sock.Serve(context.Background()) }()
	if c.sess, err = session.NewOfferer(session.Config{Socket: c.sock, Certificate: cert, Logger: log}); err != nil {
		c.close()
		return nil, err
	}
	offer, err := sdp.BuildOffer(c.sess.Transport(), tracks, "soak", "soak")
	if err == nil {
		c.sig, err = signaling.Dial(ctx, o.server, signaling.ClientConfig{Logger: log})
	}
	var answer string
	if err == nil && publish {
		answer, err = c.sig.Publish(ctx, name, c.id, offer, nil)
	} else if err == nil {
		answer, err = c.sig.Play(ctx, name, c.id, offer, nil)
	}
	var d *sdp.Description
	if err == nil {
		d, err = sdp.Parse(answer)
	}
	if err == nil {
		err = c.sess.SetRemote(d)
	}
	if err == nil {
		err = c.sess.Start(ctx)
	}
	if err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

type firstRTP struct {
	once sync.Once
	got  chan struct{}
}

func (f *firstRTP) HandleRTP(*packet.Buffer) { f.once.Do(func() { close(f.got) }) }
func (f *firstRTP) HandleRTCP([]byte)        {}

// cycle is one publish + play + leave.
func cycle(ctx context.Context, o options, cert *dtls.Certificate, log *slog.Logger, n int) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	name := fmt.Sprintf("soak-%d-%d", os.Getpid(), n)
	const audioSSRC, videoSSRC = 0x50a1, 0x50a2
	pub, err := dial(ctx, o, cert, log, name, []sdp.Track{
		{Mid: "0", Kind: sdp.KindAudio, Codec: opus, SSRC: audioSSRC, Direction: sdp.DirSendOnly},
		{Mid: "1", Kind: sdp.KindVideo, Codec: vp8, SSRC: videoSSRC, Direction: sdp.DirSendOnly},
	}, true)
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	defer pub.close()
	stop := make(chan struct{})
	sent := make(chan struct{})
	go func() { // a keyframe and audio every 20 ms until the player has something
		defer close(sent)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			for _, h := range []rtp.Header{
				{Version: 2, PayloadType: vp8.PayloadType, SequenceNumber: uint16(i), Timestamp: uint32(i * 1800), SSRC: videoSSRC, Marker: true},
				{Version: 2, PayloadType: opus.PayloadType, SequenceNumber: uint16(i), Timestamp: uint32(i * 960), SSRC: audioSSRC},
			} {
				payload := make([]byte, 100)
				payload[0] = 0x10 // VP8: S=1, a keyframe (P=0); opus does not care
				raw, _ := (&rtp.Packet{Header: h, Payload: payload}).Marshal()
				_ = pub.sess.WriteRTP(append(make([]byte, 0, len(raw)+16), raw...))
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	defer func() { close(stop); <-sent }()

	ply, err := dial(ctx, o, cert, log, name, []sdp.Track{
		{Mid: "0", Kind: sdp.KindAudio, Direction: sdp.DirRecvOnly},
		{Mid: "1", Kind: sdp.KindVideo, Direction: sdp.DirRecvOnly},
	}, false)
	if err != nil {
		return fmt.Errorf("play: %w", err)
	}
	defer ply.close()
	f := &firstRTP{got: make(chan struct{})}
	ply.sess.SetSink(f)
	select {
	case <-f.got:
	case <-ctx.Done():
		return fmt.Errorf("play: no RTP: %w", context.Cause(ctx))
	}
	switch n % 3 {
	case 0: // graceful
		if err := ply.sig.Stop(ctx, ply.id); err != nil {
			return fmt.Errorf("stopStream: %w", err)
		}
		if err := pub.sig.Stop(ctx, pub.id); err != nil {
			return fmt.Errorf("unPublishStream: %w", err)
		}
	case 1: // the publisher's WebSocket drops first
		_ = pub.sig.Close()
	default: // the player vanishes
		_ = ply.sig.Close()
	}
	return nil
}

func run(ctx context.Context, o options) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	cert, err := dtls.GenerateCertificate()
	if err != nil {
		return err
	}
	// A warm-up round first, at full concurrency, so that pools and lazily made state (packet buffers, TLS and
	// DTLS caches, the runtime's own) are in the baseline: what grows after it grows with the cycles.
	warm := 4 * o.conc
	if f, _ := cycles(ctx, o, cert, log, -warm, 0, false); f > 0 {
		return fmt.Errorf("warm-up: %d of %d cycles failed", f, warm)
	}
	if _, err := settle(o, metrics{}, false); err != nil {
		return err
	}
	before, err := snapshot(o.metrics)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	fmt.Printf("before   %d goroutines, %d FDs, %.0f kB live heap (after %d warm-up cycles)\n", before.Goroutines, before.OpenFDs, float64(before.HeapLive)/1e3, warm)

	// Two halves: a leak grows the second half too; pools, caches and the runtime's own state (threads made
	// at the peak of concurrency) grow once. The heap bound applies to the second half.
	half := o.cycles / 2
	start := time.Now()
	failed, firstErr := cycles(ctx, o, cert, log, 0, half, true)
	mid, err := settle(o, before, true)
	if err != nil {
		return err
	}
	f2, err2 := cycles(ctx, o, cert, log, half, o.cycles, true)
	failed += f2
	if firstErr == nil {
		firstErr = err2
	}
	elapsed := time.Since(start)
	fmt.Printf("cycles   %d in %.1fs (%.0f/s), %d failed\n", o.cycles, elapsed.Seconds(), float64(o.cycles)/elapsed.Seconds(), failed)
	if firstErr != nil {
		fmt.Printf("first failure: %v\n", firstErr)
	}
	after, err := settle(o, before, true)
	if err != nil {
		return err
	}
	fmt.Printf("halfway  %d goroutines, %d FDs, %.0f kB live heap\n", mid.Goroutines, mid.OpenFDs, float64(mid.HeapLive)/1e3)
	dg, dfd := after.Goroutines-before.Goroutines, after.OpenFDs-before.OpenFDs
	dh := (float64(after.HeapLive) - float64(mid.HeapLive)) / 1e3
	fmt.Printf("after    %d goroutines (%+d), %d FDs (%+d), %.0f kB live heap (%+.0f kB since the start, %+.0f kB in the second half), %d streams, %d players\n",
		after.Goroutines, dg, after.OpenFDs, dfd, float64(after.HeapLive)/1e3, (float64(after.HeapLive)-float64(before.HeapLive))/1e3, dh,
		after.Streams, after.Players)
	var errs []error
	if failed > 0 {
		errs = append(errs, fmt.Errorf("%d of %d cycles failed", failed, o.cycles))
	}
	if dg > o.maxGoroutines {
		errs = append(errs, fmt.Errorf("%w: goroutines grew by %d (bound %d)", errOverBound, dg, o.maxGoroutines))
	}
	if dfd > o.maxFDs {
		errs = append(errs, fmt.Errorf("%w: open FDs grew by %d (bound %d)", errOverBound, dfd, o.maxFDs))
	}
	if dh > o.maxHeapKB {
		errs = append(errs, fmt.Errorf("%w: live heap grew by %.0f kB in the second %d cycles (bound %.0f kB)", errOverBound, dh, o.cycles-half, o.maxHeapKB))
	}
	if after.Streams != 0 || after.Players != 0 {
		errs = append(errs, fmt.Errorf("%w: %d streams and %d players left", errOverBound, after.Streams, after.Players))
	}
	if len(errs) == 0 {
		fmt.Println("ok       within bounds")
	}
	return errors.Join(errs...)
}

// cycles runs cycles from..to-1 (negative numbers for the warm-up), o.conc at a time, and returns how many
// failed and the first error.
func cycles(ctx context.Context, o options, cert *dtls.Certificate, log *slog.Logger, from, to int, report bool) (int64, error) {
	var next, done, failed atomic.Int64
	next.Store(int64(from))
	var firstErr atomic.Pointer[error]
	start := time.Now()
	var wg sync.WaitGroup
	for range o.conc {
		wg.Go(func() {
			for {
				n := int(next.Add(1)) - 1
				if n >= to {
					return
				}
				if err := cycle(ctx, o, cert, log, n); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, &err)
				}
				if d := done.Add(1); report && d%100 == 0 {
					fmt.Printf("%6d cycles  %5.1fs  %d failed\n", d, time.Since(start).Seconds(), failed.Load())
				}
			}
		})
	}
	wg.Wait()
	if p := firstErr.Load(); p != nil {
		return failed.Load(), *p
	}
	return failed.Load(), nil
}

// settle waits until the server has no streams and, when check, its goroutines and FDs are back within the
// bounds of base (or o.settle passed), and returns the metrics after a GC.
func settle(o options, base metrics, check bool) (metrics, error) {
	deadline := time.Now().Add(o.settle)
	for {
		m, err := fetch(o.metrics, false)
		if err != nil {
			return m, fmt.Errorf("metrics: %w", err)
		}
		ok := m.Streams == 0 && m.Players == 0
		if check {
			ok = ok && m.Goroutines-base.Goroutines <= o.maxGoroutines && m.OpenFDs-base.OpenFDs <= o.maxFDs
		}
		if ok || time.Now().After(deadline) {
			return snapshot(o.metrics)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
