package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rtcrelay/rtcrelay/relay"
)

// throttle is a UDP proxy on loopback between a browser and the server's media port that can limit the
// server → browser direction to a rate, like a bottleneck link: packets leave at most at rate, wait in a
// drop-tail queue of at most queue, and are dropped (counted) beyond it. The other direction passes untouched.
type throttle struct {
	t      testing.TB
	listen *net.UDPConn // the browser talks to this
	up     *net.UDPConn // connected to the server
	client atomic.Pointer[net.UDPAddr]
	rate   atomic.Int64 // bits/s, 0 = unlimited
	queue  time.Duration

	mu      sync.Mutex
	next    time.Time // when the link is free again
	sendq   chan timed
	dropped atomic.Uint64
	passed  atomic.Uint64
}

type timed struct {
	b  []byte
	at time.Time
}

func startThrottle(t testing.TB, serverPort int) *throttle {
	t.Helper()
	l, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	up, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: serverPort})
	if err != nil {
		t.Fatal(err)
	}
	th := &throttle{t: t, listen: l, up: up, queue: 300 * time.Millisecond, sendq: make(chan timed, 4096)}
	t.Cleanup(func() { _ = l.Close(); _ = up.Close(); close(th.sendq) })
	go func() { // browser → server
		buf := make([]byte, 2048)
		for {
			n, from, err := l.ReadFromUDP(buf)
			if err != nil {
				return
			}
			th.client.Store(from)
			_, _ = up.Write(buf[:n])
		}
	}()
	go func() { // server → browser, through the link
		buf := make([]byte, 2048)
		for {
			n, err := up.Read(buf)
			if err != nil {
				return
			}
			th.admit(append([]byte(nil), buf[:n]...))
		}
	}()
	go func() {
		for p := range th.sendq {
			if d := time.Until(p.at); d > 0 {
				time.Sleep(d)
			}
			if c := th.client.Load(); c != nil {
				_, _ = l.WriteToUDP(p.b, c)
				th.passed.Add(1)
			}
		}
	}()
	return th
}

func (th *throttle) port() int { return th.listen.LocalAddr().(*net.UDPAddr).Port }

// set limits the link to bps (0: unlimited).
func (th *throttle) set(bps int64) { th.rate.Store(bps) }

func (th *throttle) admit(b []byte) {
	rate := th.rate.Load()
	now := time.Now()
	th.mu.Lock()
	if th.next.Before(now) {
		th.next = now
	}
	if rate > 0 && th.next.Sub(now) > th.queue {
		th.mu.Unlock()
		th.dropped.Add(1)
		return
	}
	at := th.next
	if rate > 0 {
		th.next = th.next.Add(time.Duration(int64(len(b)+28) * 8 * int64(time.Second) / rate))
	}
	th.mu.Unlock()
	select {
	case th.sendq <- timed{b: b, at: at}:
	default:
		th.dropped.Add(1)
	}
}

// whipPublishJS publishes the fake camera (640x360) as three simulcast layers over WHIP.
const whipPublishJS = `(async () => {
  const s = await navigator.mediaDevices.getUserMedia({audio: true, video: {width: 640, height: 360, frameRate: 30}});
  const pc = new RTCPeerConnection();
  pc.addTransceiver(s.getAudioTracks()[0], {direction: 'sendonly'});
  const tr = pc.addTransceiver(s.getVideoTracks()[0], {direction: 'sendonly', sendEncodings: [
    {rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150000},
    {rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 450000},
    {rid: 'f', maxBitrate: 1300000}]});
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((r) => { if (pc.iceGatheringState === 'complete') r(); pc.onicegatheringstatechange = () => { if (pc.iceGatheringState === 'complete') r(); }; setTimeout(r, 3000); });
  const res = await fetch('URL', {method: 'POST', headers: {'Content-Type': 'application/sdp'}, body: pc.localDescription.sdp});
  const answer = await res.text();
  if (res.status !== 201) throw new Error('WHIP ' + res.status + ': ' + answer);
  await pc.setRemoteDescription({type: 'answer', sdp: answer});
  // A loaded machine must not make Chromium scale the layers down: each layer keeps its size, which is how
  // the players' frameWidth tells them apart.
  const p = tr.sender.getParameters();
  p.degradationPreference = 'maintain-resolution';
  await tr.sender.setParameters(p);
  window.pub = pc;
  return {status: res.status, simulcast: answer.includes('a=simulcast:recv')};
})()`

// whepPlayJS plays over WHEP; when FROM is not 0 the server's candidate port FROM is replaced by TO (the
// throttle). It samples the video every 100 ms into window.series: [ms, framesDecoded, frameWidth].
const whepPlayJS = `(async () => {
  const pc = new RTCPeerConnection();
  pc.addTransceiver('audio', {direction: 'recvonly'});
  pc.addTransceiver('video', {direction: 'recvonly'});
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((r) => { if (pc.iceGatheringState === 'complete') r(); pc.onicegatheringstatechange = () => { if (pc.iceGatheringState === 'complete') r(); }; setTimeout(r, 3000); });
  const res = await fetch('URL', {method: 'POST', headers: {'Content-Type': 'application/sdp'}, body: pc.localDescription.sdp});
  let answer = await res.text();
  if (res.status !== 201) throw new Error('WHEP ' + res.status + ': ' + answer);
  if (FROM) answer = answer.split(' FROM typ host').join(' TO typ host');
  await pc.setRemoteDescription({type: 'answer', sdp: answer});
  window.play = pc;
  window.series = [];
  const t0 = performance.now();
  setInterval(async () => {
    const r = await pc.getStats();
    r.forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video') window.series.push([Math.round(performance.now() - t0), s.framesDecoded || 0, s.frameWidth || 0]); });
  }, 100);
  return {status: res.status, location: res.headers.get('Location')};
})()`

// videoSeries accumulates a player page's samples.
type videoSeries struct {
	page    string
	id      string   // the WHEP resource ID: the player's mediaSessionId
	samples [][3]int // ms since the page's start, framesDecoded, frameWidth
}

func (v *videoSeries) poll(t *testing.T, br *relayBrowser) {
	t.Helper()
	r := br.do(map[string]any{"do": "eval", "page": v.page, "expr": `window.series ? window.series.splice(0) : []`})
	var s [][3]int
	if err := json.Unmarshal(r, &s); err != nil {
		t.Fatalf("%s series: %v (%s)", v.page, err, r)
	}
	v.samples = append(v.samples, s...)
}

// width is the latest frame width, 0 before any.
func (v *videoSeries) width() int {
	if len(v.samples) == 0 {
		return 0
	}
	return v.samples[len(v.samples)-1][2]
}

// steady reports whether every sample of the last ms had frame width w.
func (v *videoSeries) steady(w, ms int) bool {
	if len(v.samples) == 0 || v.now() < ms {
		return false
	}
	for i := len(v.samples) - 1; i >= 0 && v.samples[i][0] >= v.now()-ms; i-- {
		if v.samples[i][2] != w {
			return false
		}
	}
	return true
}

// maxFreeze is the longest time without a newly decoded frame between from and to (ms of the page's clock),
// counted from the first decoded frame, and when it began.
func (v *videoSeries) maxFreeze(from, to int) (worst, at int) {
	lastAt, lastN := -1, 0
	for _, s := range v.samples {
		if s[0] < from || s[0] > to {
			continue
		}
		if s[1] > lastN {
			if lastAt >= 0 && s[0]-lastAt > worst {
				worst, at = s[0]-lastAt, lastAt
			}
			lastAt, lastN = s[0], s[1]
		}
	}
	if lastAt >= 0 && to-lastAt > worst {
		worst, at = to-lastAt, lastAt
	}
	return worst, at
}

// now is the page's clock (ms) at its latest sample.
func (v *videoSeries) now() int {
	if len(v.samples) == 0 {
		return 0
	}
	return v.samples[len(v.samples)-1][0]
}

// TestSimulcastAdaptation: Chromium publishes three simulcast layers over WHIP; two Chromium players play over
// WHEP, B through a rate-limited link. Both climb to the top layer; when B's link is throttled, B drops to a
// lower layer within 5 s while A stays on the top; when the throttle is lifted B comes back to the top; frames
// keep decoding on both all along (no freeze over 1 s).
func TestSimulcastAdaptation(t *testing.T) {
	requireBrowser(t)
	srv := startServer(t, ServerOpts{})
	th := startThrottle(t, srv.MediaPort)
	br := startRelayBrowserWith(t, map[string]any{"extraArgs": []string{
		// Chromium sends fewer simulcast layers than asked below 960x540 unless told not to.
		"--force-fieldtrials=WebRTC-LegacySimulcastLayerLimit/Disabled/"}})
	for _, p := range []string{"pub", "A", "B"} {
		br.do(map[string]any{"do": "goto", "page": p, "url": srv.HTTP + "/"})
	}
	r := br.do(map[string]any{"do": "eval", "page": "pub", "expr": strings.ReplaceAll(whipPublishJS, "URL", srv.HTTP+"/whip/sim")})
	if !strings.Contains(string(r), `"simulcast":true`) {
		t.Fatalf("WHIP publish: %s (want a simulcast answer)", r)
	}
	play := func(page string, from, to int) *videoSeries {
		js := strings.ReplaceAll(whepPlayJS, "URL", srv.HTTP+"/whep/sim")
		js = strings.ReplaceAll(js, "FROM", fmt.Sprint(from))
		js = strings.ReplaceAll(js, " TO ", fmt.Sprintf(" %d ", to))
		var res struct{ Location string }
		if err := json.Unmarshal(br.do(map[string]any{"do": "eval", "page": page, "expr": js}), &res); err != nil || res.Location == "" {
			t.Fatalf("WHEP play %s: %v %+v", page, err, res)
		}
		return &videoSeries{page: page, id: res.Location[strings.LastIndex(res.Location, "/")+1:]}
	}
	a := play("A", 0, 0)
	b := play("B", srv.MediaPort, th.port())
	const top = 640
	var lastLog time.Time
	var view simView
	poll := func() {
		a.poll(t, br)
		b.poll(t, br)
		view = simMetrics(t, srv, "sim")
		if time.Since(lastLog) >= time.Second {
			lastLog = time.Now()
			t.Logf("A %dpx B %dpx | %s", a.width(), b.width(), view.digest)
		}
	}
	wait := func(what string, d time.Duration, ok func() bool) time.Duration {
		t.Helper()
		start := time.Now()
		for time.Since(start) < d {
			poll()
			if ok() {
				return time.Since(start)
			}
			time.Sleep(250 * time.Millisecond)
		}
		t.Fatalf("%s: not within %v (A %dpx, B %dpx); server: %s", what, d, a.width(), b.width(), view.digest)
		return 0
	}
	onTop := func(v *videoSeries) bool { return v.steady(top, 1000) && view.layer[v.id] == "f" }
	climb := wait("both players on the top layer", 40*time.Second, func() bool { return onTop(a) && onTop(b) })
	t.Logf("both players on the top layer %v after the start", climb.Round(time.Millisecond))
	time.Sleep(2 * time.Second)
	poll()
	mark := b.now()

	// A link between the middle and the top layers' rates (plus audio and packet overhead): the top layer no
	// longer fits, the middle one does.
	limit := int64((view.rate["h"]+view.rate["f"])/2) + 60_000
	th.set(limit)
	throttledAt := b.now()
	down := wait("throttled player B below the top layer", 5*time.Second, func() bool { w := b.width(); return w > 0 && w < top })
	t.Logf("B (link %d kbit/s; layers h %.0f, f %.0f kbit/s) left the top layer %v after the throttle",
		limit/1000, view.rate["h"]/1000, view.rate["f"]/1000, down.Round(time.Millisecond))
	for end := time.Now().Add(8 * time.Second); time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
		poll() // B lives on the throttled link for a while
	}
	if w := b.width(); w >= top {
		t.Errorf("B back on the top layer while throttled")
	}
	th.set(0)
	liftedAt := b.now()
	up := wait("B back on the top layer after the throttle is lifted", 40*time.Second, func() bool { return onTop(b) })
	t.Logf("B back on the top layer %v after the throttle was lifted; the link dropped %d packets and passed %d",
		up.Round(time.Millisecond), th.dropped.Load(), th.passed.Load())
	time.Sleep(2 * time.Second)
	poll()
	for _, v := range []*videoSeries{a, b} {
		if f, at := v.maxFreeze(mark, v.now()); f > 1000 {
			t.Errorf("player %s froze %d ms from %d ms (throttled at %d ms, lifted at %d ms)", v.page, f, at, throttledAt, liftedAt)
		} else {
			t.Logf("player %s: longest gap between decoded frames %d ms (at %d ms; throttled at %d ms, lifted at %d ms)",
				v.page, f, at, throttledAt, liftedAt)
		}
	}
	for _, s := range a.samples {
		if s[0] > mark && s[2] != top {
			t.Errorf("unthrottled A not on the top layer at %d ms: width %d", s[0], s[2])
			break
		}
	}
	if view.switches[a.id] > 1 {
		t.Errorf("unthrottled A switched layers %.0f times", view.switches[a.id])
	}
	if view.switches[b.id] < 3 {
		t.Errorf("B switched layers %.0f times, want at least 3 (in, down, up)", view.switches[b.id])
	}
}

// simView is what /rest-api/stream/find with metrics says of a simulcast stream: its layers' rates (by RID)
// and its players' layers and switches (by mediaSessionId).
type simView struct {
	rate     map[string]float64
	layer    map[string]string
	switches map[string]float64
	digest   string
}

func simMetrics(t testing.TB, srv *Server, name string) simView {
	v := simView{rate: map[string]float64{}, layer: map[string]string{}, switches: map[string]float64{}}
	code, body := restCall(t, srv.HTTP, "/rest-api/stream/find", map[string]any{"name": name, "display": []string{"metrics"}})
	var list []struct {
		MediaSessionID string         `json:"mediaSessionId"`
		Published      bool           `json:"published"`
		Metrics        map[string]any `json:"metrics"`
	}
	if code != 200 || json.Unmarshal(body, &list) != nil {
		v.digest = fmt.Sprintf("%d %s", code, truncate(string(body), 2000))
		return v
	}
	var b strings.Builder
	for _, s := range list {
		m := s.Metrics
		if s.Published {
			if ls, ok := m["VIDEO_LAYERS"].([]any); ok {
				for _, l := range ls {
					l, _ := l.(map[string]any)
					rid, _ := l["RID"].(string)
					v.rate[rid] = num(l["RATE"])
					fmt.Fprintf(&b, "[%s %.0fk %vx%v %.0ffps] ", rid, num(l["RATE"])/1000, l["WIDTH"], l["HEIGHT"], num(l["FPS"]))
				}
			}
			continue
		}
		v.layer[s.MediaSessionID], _ = m["VIDEO_LAYER"].(string)
		v.switches[s.MediaSessionID] = num(m["VIDEO_LAYER_SWITCHES"])
		fmt.Fprintf(&b, "{%.6s: %v→%v est %.0fk rx %.0fk loss %.2f %v sw %v nack %v} ", s.MediaSessionID, m["VIDEO_LAYER"],
			m["VIDEO_TARGET_LAYER"], num(m["BWE_ESTIMATE"])/1000, num(m["BWE_RECEIVE_RATE"])/1000, num(m["BWE_LOSS"]),
			m["BWE_STATE"], m["VIDEO_LAYER_SWITCHES"], m["NACKS"])
	}
	v.digest = b.String()
	return v
}

func num(v any) float64 {
	f, _ := v.(float64)
	return f
}

// TestSimulcastRelay: Chromium publishes three simulcast layers over WHIP to A; A pushes the stream to B
// (REST /pull/push), C pulls it from B (REST /pull/pull). Every hop carries all three layers (B's and C's
// /stream/find metrics list them with their RIDs), and a Chromium player at C gets the top layer.
func TestSimulcastRelay(t *testing.T) {
	requireBrowser(t)
	a, b, c := relayServer(t, "A"), relayServer(t, "B"), relayServer(t, "C")
	br := startRelayBrowserWith(t, map[string]any{"extraArgs": []string{
		"--force-fieldtrials=WebRTC-LegacySimulcastLayerLimit/Disabled/"}})
	br.do(map[string]any{"do": "goto", "page": "pub", "url": a.HTTP + "/"})
	r := br.do(map[string]any{"do": "eval", "page": "pub", "expr": strings.ReplaceAll(whipPublishJS, "URL", a.HTTP+"/whip/sim")})
	if !strings.Contains(string(r), `"simulcast":true`) {
		t.Fatalf("WHIP publish: %s (want a simulcast answer)", r)
	}
	layers := func(srv *Server) int { // the layers that carry media
		n := 0
		for _, r := range simMetrics(t, srv, "sim").rate {
			if r > 0 {
				n++
			}
		}
		return n
	}
	waitLayers := func(srv *Server, what string) {
		t.Helper()
		deadline := time.Now().Add(relayUp)
		for layers(srv) < 3 {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d simulcast layers of sim within %v, want 3: %s", what, layers(srv), relayUp, simMetrics(t, srv, "sim").digest)
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Logf("%s: %s", what, simMetrics(t, srv, "sim").digest)
	}
	// The relays start at once, before the layers' first packets reach A (and so B): each hop learns the
	// layers' SSRCs from their RIDs and asks for their keyframes when it does.
	relayCall(t, a, "push", relaySpec{URI: b.WS, LocalStreamName: "sim", RemoteStreamName: "sim"}, 200)
	relayEstablished(t, a, "sim", relay.DirectionPush, b.WS)
	relayCall(t, c, "pull", relaySpec{URI: b.WS, LocalStreamName: "sim", RemoteStreamName: "sim"}, 200)
	relayEstablished(t, c, "sim", relay.DirectionPull, b.WS)
	waitLayers(a, "A (the publisher's server)")
	waitLayers(b, "B (pushed to by A)")
	waitLayers(c, "C (pulled from B)")

	br.do(map[string]any{"do": "goto", "page": "P", "url": c.HTTP + "/"})
	js := strings.ReplaceAll(whepPlayJS, "URL", c.HTTP+"/whep/sim")
	js = strings.ReplaceAll(js, "FROM", "0")
	var res struct{ Location string }
	if err := json.Unmarshal(br.do(map[string]any{"do": "eval", "page": "P", "expr": js}), &res); err != nil || res.Location == "" {
		t.Fatalf("WHEP play at C: %v %+v", err, res)
	}
	p := &videoSeries{page: "P"}
	deadline := time.Now().Add(40 * time.Second)
	for !p.steady(640, 1000) {
		if time.Now().After(deadline) {
			t.Fatalf("C's player not on the top layer (640 px) within 40 s: width %d; C: %s", p.width(), simMetrics(t, c, "sim").digest)
		}
		time.Sleep(250 * time.Millisecond)
		p.poll(t, br)
	}
	n0, t0 := p.samples[len(p.samples)-1][1], p.now()
	time.Sleep(2 * time.Second)
	p.poll(t, br)
	n1, t1 := p.samples[len(p.samples)-1][1], p.now()
	if n1-n0 < 20 {
		t.Errorf("C's player decoded %d frames in %d ms on the top layer, want at least 20", n1-n0, t1-t0)
	}
	t.Logf("C's player: 640 px, %d frames decoded in %d ms; C: %s", n1-n0, t1-t0, simMetrics(t, c, "sim").digest)
}
