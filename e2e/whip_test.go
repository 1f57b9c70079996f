package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rtcrelay/rtcrelay/relay"
)

// gstPython is the interpreter with gi, Gst, GstWebRTC and GstSdp (Debian's python3-gst-1.0).
const gstPython = "/usr/bin/python3"

// requireGStreamer skips (or, in CI, fails) when GStreamer's webrtcbin or its Python bindings are missing.
func requireGStreamer(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("GStreamer e2e skipped in -short mode")
	}
	probe := `import gi
gi.require_version("Gst", "1.0"); gi.require_version("GstWebRTC", "1.0"); gi.require_version("GstSdp", "1.0")
from gi.repository import Gst, GstWebRTC, GstSdp
Gst.init(None)
missing = [e for e in ("webrtcbin", "vp8enc", "vp8dec", "opusenc", "videotestsrc", "decodebin") if Gst.ElementFactory.find(e) is None]
if missing: raise SystemExit("missing GStreamer elements: " + ", ".join(missing))`
	out, err := exec.Command(gstPython, "-c", probe).CombinedOutput()
	if err == nil {
		return
	}
	msg := fmt.Sprintf("GStreamer e2e prerequisites missing (%s -c probe: %v): %s", gstPython, err, strings.TrimSpace(string(out)))
	if ciMode() {
		t.Fatal(msg + " (CI=true: not skipping)")
	}
	t.Skip(msg)
}

// gstResult is the JSON line e2e/gst/whip.py and whep.py print.
type gstResult struct {
	OK           bool   `json:"ok"`
	Error        string `json:"error"`
	Status       int    `json:"status"`
	Location     string `json:"location"`
	AnsweredMs   int    `json:"answered_ms"`
	ICE          string `json:"ice"`
	Frames       int    `json:"frames"`
	FirstFrameMs int    `json:"first_frame_ms"`
	Width        int    `json:"width"`
	Height       int    `json:"height"`
	AudioBuffers int    `json:"audio_buffers"`
	Delete       *int   `json:"delete"`
}

// gstProc is a running GStreamer script.
type gstProc struct {
	cmd    *exec.Cmd
	out    strings.Builder
	stderr strings.Builder
	done   chan struct{} // closed once the process was reaped (out and stderr complete)
}

// startGst runs e2e/gst/<script> with args in its own process group (killed at cleanup).
func startGst(t testing.TB, script string, args ...string) *gstProc {
	t.Helper()
	path := filepath.Join(repoRoot(t), "e2e", "gst", script)
	p := &gstProc{cmd: exec.Command(gstPython, append([]string{path}, args...)...), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.stderr
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", script, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		if t.Failed() {
			t.Logf("---- %s %v stderr ----\n%s", script, args, tail(p.stderr.String(), 80))
		}
	})
	return p
}

// wait waits for the script's end (at most timeout) and parses its JSON line.
func (p *gstProc) wait(t testing.TB, timeout time.Duration) gstResult {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		t.Fatalf("%v did not finish within %v\n%s", p.cmd.Args, timeout, tail(p.stderr.String(), 60))
	}
	var r gstResult
	lines := strings.Split(strings.TrimSpace(p.out.String()), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &r); err != nil {
		t.Fatalf("%v printed no result (%v): %q\n%s", p.cmd.Args, err, p.out.String(), tail(p.stderr.String(), 60))
	}
	return r
}

// waitWHIPPublishers waits until srv's /healthz counts n live WHIP publishers.
func waitWHIPPublishers(t testing.TB, srv *Server, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var h struct {
			WHIP struct {
				Publishers int `json:"publishers"`
			} `json:"whip"`
		}
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, srv.HTTP+"/healthz", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_ = json.NewDecoder(resp.Body).Decode(&h)
			resp.Body.Close()
			if h.WHIP.Publishers >= n {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d WHIP publishers after %v, want %d", srv.Opts.Name, h.WHIP.Publishers, timeout, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestWHIPGStreamer: GStreamer's webrtcbin publishes VP8 + Opus to the real server binary over WHIP, a second
// webrtcbin plays it over WHEP and decodes the video; both DELETE their resources at the end.
func TestWHIPGStreamer(t *testing.T) {
	requireGStreamer(t)
	srv := startServer(t, ServerOpts{Name: "whip"})
	pub := startGst(t, "whip.py", srv.HTTP+"/whip/gst", "--duration", "12")
	waitWHIPPublishers(t, srv, 1, 15*time.Second)
	play := startGst(t, "whep.py", srv.HTTP+"/whep/gst", "--duration", "5")
	pr := play.wait(t, 30*time.Second)
	if !pr.OK || pr.Status != http.StatusCreated || pr.Frames < 30 || pr.Width != 320 || pr.Height != 240 {
		t.Fatalf("WHEP player: %+v (want ≥ 30 decoded 320x240 frames)", pr)
	}
	if pr.Delete == nil || *pr.Delete != http.StatusOK {
		t.Errorf("WHEP player's DELETE: %v", pr.Delete)
	}
	if pr.AudioBuffers == 0 {
		t.Errorf("WHEP player decoded no audio: %+v", pr)
	}
	t.Logf("WHEP player: answer %d ms, first decoded frame %d ms after its start (%d ms after the answer), %d frames and %d audio buffers in 5 s",
		pr.AnsweredMs, pr.FirstFrameMs, pr.FirstFrameMs-pr.AnsweredMs, pr.Frames, pr.AudioBuffers)
	r := pub.wait(t, 30*time.Second)
	if !r.OK || r.Status != http.StatusCreated || !strings.HasPrefix(r.Location, "/whip/gst/") || r.Delete == nil || *r.Delete != http.StatusOK {
		t.Fatalf("WHIP publisher: %+v", r)
	}
	// the stream ended with the DELETE
	code, body := whepPost(t, srv.HTTP+"/whep/gst")
	if code != http.StatusNotFound {
		t.Errorf("WHEP POST after the publisher's DELETE: %d %s", code, body)
	}
	var h struct {
		WHIP struct{ Refused, Created int } `json:"whip"`
	}
	if _, b := restCall(t, srv.HTTP, "/healthz", nil); json.Unmarshal(b, &h) != nil || h.WHIP.Refused != 1 || h.WHIP.Created != 2 {
		t.Errorf("/healthz whip counters %+v, want 2 created, 1 refused (the last POST)", h.WHIP)
	}
}

// TestWHIPGStreamerWCSEndpoint publishes through WCS's own WHIP endpoint (/rest-api/stream/publish/<name>,
// 202 Accepted) of the real binary: the /rest-api/ route must not swallow it.
func TestWHIPGStreamerWCSEndpoint(t *testing.T) {
	requireGStreamer(t)
	srv := startServer(t, ServerOpts{Name: "whip", ExtraArgs: []string{"--whip-token", "tok"}})
	pub := startGst(t, "whip.py", srv.HTTP+"/rest-api/stream/publish/wcs", "--duration", "9", "--token", "tok")
	waitWHIPPublishers(t, srv, 1, 15*time.Second)
	play := startGst(t, "whep.py", srv.HTTP+"/whep/wcs", "--duration", "4", "--token", "tok")
	pr := play.wait(t, 30*time.Second)
	if !pr.OK || pr.Frames < 20 {
		t.Fatalf("WHEP player: %+v", pr)
	}
	r := pub.wait(t, 30*time.Second)
	if !r.OK || r.Status != http.StatusAccepted {
		t.Fatalf("WCS WHIP endpoint: %+v (want 202)", r)
	}
}

// whepPost posts a syntactically valid recvonly offer (no working peer behind it) and returns the status.
func whepPost(t testing.TB, url string) (int, string) {
	t.Helper()
	offer := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n" +
		"m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=recvonly\r\na=rtcp-mux\r\n" +
		"a=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\na=setup:actpass\r\n" +
		"a=fingerprint:sha-256 " + strings.TrimSuffix(strings.Repeat("AB:", 32), ":") + "\r\na=rtpmap:96 VP8/90000\r\n"
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, url, strings.NewReader(offer))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/sdp")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b := make([]byte, 512)
	n, _ := resp.Body.Read(b)
	return resp.StatusCode, string(b[:n])
}

// whipCounts is srv's /healthz "whip" object.
func whipCounts(t testing.TB, srv *Server) (publishers, players int) {
	t.Helper()
	var h struct {
		WHIP struct {
			Publishers int `json:"publishers"`
			Players    int `json:"players"`
		} `json:"whip"`
	}
	code, body := restCall(t, srv.HTTP, "/healthz", nil)
	if code != http.StatusOK {
		t.Fatalf("%s /healthz: %d", srv.Opts.Name, code)
	}
	if err := json.Unmarshal(body, &h); err != nil {
		t.Fatal(err)
	}
	return h.WHIP.Publishers, h.WHIP.Players
}

// TestWHIPRelay: three real server processes. GStreamer publishes "src" at A over WHIP; A pushes it to B's WHIP
// endpoint (/pull/push with an http uri) as "mid"; C pulls B's WHEP endpoint (/pull/pull with an http uri) as
// "edge"; a GStreamer WHEP player at C decodes frames. Terminating the agents removes the remote resources.
func TestWHIPRelay(t *testing.T) {
	requireGStreamer(t)
	a := startServer(t, ServerOpts{Name: "A", ExtraArgs: []string{"--server-id", "A"}})
	b := startServer(t, ServerOpts{Name: "B", ExtraArgs: []string{"--server-id", "B"}})
	c := startServer(t, ServerOpts{Name: "C", ExtraArgs: []string{"--server-id", "C"}})
	pub := startGst(t, "whip.py", a.HTTP+"/whip/src", "--duration", "25")
	waitWHIPPublishers(t, a, 1, 15*time.Second)

	start := time.Now()
	relayCall(t, a, "push", relaySpec{URI: b.HTTP + "/whip/mid", LocalStreamName: "src", RemoteStreamName: "mid"}, http.StatusOK)
	push := waitAgent(t, a, "src", 15*time.Second, "PROCESSED_REMOTE", hasStatus("PROCESSED_REMOTE"))
	t.Logf("push A → B's WHIP endpoint established after %v", time.Since(start).Round(time.Millisecond))
	if p, _ := whipCounts(t, b); p != 1 {
		t.Fatalf("B has %d WHIP publishers, want 1 (the push)", p)
	}
	// a push back into A's own stream would be a loop: B's stream came from A
	relayCall(t, b, "push", relaySpec{URI: a.HTTP + "/whip/back", LocalStreamName: "mid", RemoteStreamName: "back"}, http.StatusConflict)

	start = time.Now()
	relayCall(t, c, "pull", relaySpec{URI: b.HTTP + "/whep/mid", LocalStreamName: "edge", RemoteStreamName: "mid"}, http.StatusOK)
	waitAgent(t, c, "edge", 15*time.Second, "PROCESSED_REMOTE", hasStatus("PROCESSED_REMOTE"))
	t.Logf("pull C ← B's WHEP endpoint established after %v", time.Since(start).Round(time.Millisecond))
	if _, pl := whipCounts(t, b); pl != 1 {
		t.Fatalf("B has %d WHEP players, want 1 (the pull)", pl)
	}

	play := startGst(t, "whep.py", c.HTTP+"/whep/edge", "--duration", "5")
	pr := play.wait(t, 30*time.Second)
	if !pr.OK || pr.Frames < 30 {
		t.Fatalf("WHEP player at C: %+v (want ≥ 30 decoded frames)", pr)
	}
	t.Logf("player at C (A → B → C over WHIP/WHEP): first decoded frame %d ms after its answer, %d frames in 5 s",
		pr.FirstFrameMs-pr.AnsweredMs, pr.Frames)

	relayCall(t, c, "terminate", relaySpec{LocalStreamName: "edge"}, http.StatusOK)
	relayCall(t, a, "terminate", relaySpec{LocalStreamName: "src"}, http.StatusOK)
	deadline := time.Now().Add(10 * time.Second)
	for {
		p, pl := whipCounts(t, b)
		if p == 0 && pl == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("B still has %d WHIP publishers and %d WHEP players after terminate", p, pl)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := len(b.Grep(`msg="session deleted"`)); got != 2 {
		t.Errorf("B logged %d DELETEs, want 2 (the push's and the pull's resource)", got)
	}
	if push.Direction != "push" || pub == nil {
		t.Errorf("push agent %+v", push)
	}
}

// TestWHIPChromiumSDKPlayer: GStreamer publishes over WHIP, headless Chromium with the official Flashphoner Web
// SDK plays the stream over the WCS WebSocket protocol and decodes it.
func TestWHIPChromiumSDKPlayer(t *testing.T) {
	requireGStreamer(t)
	requireBrowser(t)
	srv := startServer(t, ServerOpts{Name: "whip"})
	startGst(t, "whip.py", srv.HTTP+"/whip/gstsdk", "--duration", "60")
	waitWHIPPublishers(t, srv, 1, 15*time.Second)
	r := runDriver(t, Scenario{
		Pages: map[string]PageSpec{"P": pageFor(srv, "sdk", "")},
		Steps: []Step{
			{Do: "play", Page: "P", Handle: "p", Name: "gstsdk", Expect: "PLAYING"},
			{Do: "sleep", Seconds: 3},
			{Do: "stats", Page: "P", Handle: "p"},
			{Do: "stop", Page: "P", Handle: "p", Expect: "STOPPED"},
		},
	}, driverTimeout)
	requireOK(t, r, srv)
	var st struct {
		Video struct {
			FramesDecoded int `json:"framesDecoded"`
			FrameWidth    int `json:"frameWidth"`
		} `json:"video"`
	}
	var stats json.RawMessage
	playMs := 0
	for _, s := range r.Steps {
		switch s.Do {
		case "stats":
			stats = s.Result
		case "play":
			playMs = s.Ms
		}
	}
	if err := json.Unmarshal(stats, &st); err != nil {
		t.Fatalf("stats: %v (%s)", err, stats)
	}
	if st.Video.FramesDecoded < 30 || st.Video.FrameWidth != 320 {
		t.Fatalf("SDK player of the WHIP stream: %s", stats)
	}
	t.Logf("SDK player: PLAYING after %d ms, %d frames decoded 3 s later", playMs, st.Video.FramesDecoded)
}

// TestWHIPRelayReconnect: a push to a WHIP endpoint whose server restarts reconnects by itself (a new POST) and
// shows FAILED with the reason while the endpoint is down; a push to a closed port fails with the POST's error.
func TestWHIPRelayReconnect(t *testing.T) {
	requireGStreamer(t)
	a := startServer(t, ServerOpts{Name: "A", ExtraArgs: []string{"--server-id", "A"}})
	b := startServer(t, ServerOpts{Name: "B", ExtraArgs: []string{"--server-id", "B"}})
	startGst(t, "whip.py", a.HTTP+"/whip/src", "--duration", "40")
	waitWHIPPublishers(t, a, 1, 15*time.Second)

	closed := fmt.Sprintf("http://127.0.0.1:%d/whip/x", closedPort(t))
	relayCall(t, a, "push", relaySpec{URI: closed, LocalStreamName: "src", RemoteStreamName: "x"}, http.StatusOK)
	f := waitAgent(t, a, "src", 10*time.Second, "FAILED", func(ai relay.AgentInfo) bool { return ai.URI == closed && ai.Status == "FAILED" })
	if !strings.Contains(f.Info, "connection refused") {
		t.Errorf("push to a closed port: info %q", f.Info)
	}
	relayCall(t, a, "terminate", relaySpec{URI: closed}, http.StatusOK)

	relayCall(t, a, "push", relaySpec{URI: b.HTTP + "/whip/mid", LocalStreamName: "src", RemoteStreamName: "mid"}, http.StatusOK)
	waitAgent(t, a, "src", 15*time.Second, "PROCESSED_REMOTE", hasStatus("PROCESSED_REMOTE"))
	b.Stop(t)
	down := time.Now()
	waitAgent(t, a, "src", 15*time.Second, "to notice B is gone", func(ai relay.AgentInfo) bool { return ai.Status != "PROCESSED_REMOTE" })
	b.Restart(t)
	up := time.Now()
	ai := waitAgent(t, a, "src", 20*time.Second, "PROCESSED_REMOTE again", func(ai relay.AgentInfo) bool {
		return ai.Status == "PROCESSED_REMOTE" && ai.Reconnects > 0
	})
	t.Logf("B down for %v; the push was back %v after B's restart (%d reconnects)", up.Sub(down).Round(time.Millisecond),
		time.Since(up).Round(time.Millisecond), ai.Reconnects)
	if p, _ := whipCounts(t, b); p != 1 {
		t.Fatalf("B has %d WHIP publishers after the reconnect, want 1", p)
	}
	play := startGst(t, "whep.py", b.HTTP+"/whep/mid", "--duration", "3")
	if pr := play.wait(t, 30*time.Second); !pr.OK || pr.Frames < 20 {
		t.Fatalf("WHEP player at B after the reconnect: %+v", pr)
	}
}
