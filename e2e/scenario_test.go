package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var raceEnabled bool // set by race_test.go under -race: the server binary is then built with -race too

// Scenario is the JSON the browser driver runs (see e2e/browser/driver.mjs).
type Scenario struct {
	Pages      map[string]PageSpec `json:"pages"`
	Steps      []Step              `json:"steps"`
	Y4M        string              `json:"y4m,omitempty"`    // absolute path of the frame-ID video
	Frames     int                 `json:"frames,omitempty"` // frames in Y4M
	TimeoutMs  int                 `json:"timeoutMs,omitempty"`
	DeadlineMs int                 `json:"deadlineMs,omitempty"`
	Logs       bool                `json:"logs,omitempty"` // include page console logs even on success
}

// PageSpec is one browser page: Kind "sdk" (official SDK, connects to WS) or "ours" (URL of our page).
type PageSpec struct {
	Kind string `json:"kind"`
	WS   string `json:"ws,omitempty"`
	URL  string `json:"url,omitempty"`
}

// Step is one action of the driver; Expect is a status or a list of statuses, Info an exact info string.
type Step struct {
	Do        string   `json:"do"`
	Page      string   `json:"page,omitempty"`
	Handle    string   `json:"handle,omitempty"`
	Name      string   `json:"name,omitempty"`
	Expect    any      `json:"expect,omitempty"`
	Info      *string  `json:"info,omitempty"`
	TimeoutMs int      `json:"timeoutMs,omitempty"`
	Seconds   float64  `json:"seconds,omitempty"`
	As        string   `json:"as,omitempty"`
	Player    *PageRef `json:"player,omitempty"`
	Publisher *PageRef `json:"publisher,omitempty"`
}

// PageRef names a stream handle on a page.
type PageRef struct {
	Page   string `json:"page"`
	Handle string `json:"handle"`
}

// StreamView is a stream's status as a page reports it.
type StreamView struct {
	Name    string `json:"name"`
	ID      string `json:"id"`
	Status  string `json:"status"`
	Info    string `json:"info"`
	History []struct {
		Status string `json:"status"`
		Info   string `json:"info"`
	} `json:"history"`
}

// Sample is what the driver measured while a player played (see lib.mjs sample()).
type Sample struct {
	Decoded, Total   int
	FirstFrameMs     int // from the sample step's start (right after PLAYING) to the first decoded frame; -1 = none
	FramesDecoded    [2]int
	AudioPackets     [2]int
	VideoPacketsLost int
	FramesPerSecond  float64
	VideoCodec       string
	AudioCodec       string
	FrameSize        [2]int
	DistinctIDs      int `json:"distinctIds"`
	MaxLag           int
	MedianLag        int
	Lags             []int
	IDs              [][]int `json:"ids"`
	Pair             *struct {
		Local, Remote string
		RTT           float64
	}
}

// DriverResult is the driver's final JSON object.
type DriverResult struct {
	OK         bool   `json:"ok"`
	Error      string `json:"error"`
	FailedStep int    `json:"failedStep"`
	Steps      []struct {
		Do     string          `json:"do"`
		Page   string          `json:"page"`
		Handle string          `json:"handle"`
		Result json.RawMessage `json:"result"`
		Ms     int             `json:"ms"`
	} `json:"steps"`
	Samples map[string]*Sample         `json:"samples"`
	Timings map[string]int             `json:"timings"`
	Diag    map[string]json.RawMessage `json:"diag"`
	Raw     []byte                     `json:"-"`
	Stderr  string                     `json:"-"`
}

// StepView decodes the result of step i (counting the driver's "open" steps too) as a stream status.
func (r *DriverResult) StepView(do, page, handle string) *StreamView {
	for i := len(r.Steps) - 1; i >= 0; i-- {
		s := r.Steps[i]
		if s.Do == do && s.Page == page && s.Handle == handle {
			var v StreamView
			if json.Unmarshal(s.Result, &v) == nil {
				return &v
			}
		}
	}
	return nil
}

// requireOK fails the test with the driver's error, diagnostics and the servers' log tails when ok=false.
func requireOK(t testing.TB, r *DriverResult, servers ...*Server) {
	t.Helper()
	if r.OK {
		var b strings.Builder
		for _, s := range r.Steps {
			fmt.Fprintf(&b, " %s:%s/%s=%dms", s.Do, s.Page, s.Handle, s.Ms)
		}
		t.Logf("driver ok in %d ms (launch %d ms); steps:%s", r.Timings["totalMs"], r.Timings["launchMs"], b.String())
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "driver failed: %s (step %d)\n", r.Error, r.FailedStep)
	for _, s := range r.Steps {
		fmt.Fprintf(&b, "  step %s %s/%s %dms: %s\n", s.Do, s.Page, s.Handle, s.Ms, truncate(string(s.Result), 600))
	}
	for page, d := range r.Diag {
		fmt.Fprintf(&b, "  page %s diag: %s\n", page, truncate(string(d), 6000))
	}
	if r.Stderr != "" {
		fmt.Fprintf(&b, "  driver stderr: %s\n", truncate(r.Stderr, 2000))
	}
	for _, s := range servers {
		fmt.Fprintf(&b, "---- %s log tail ----\n%s\n", s.Opts.Name, tail(s.Log(), 80))
	}
	t.Fatal(b.String())
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + fmt.Sprintf("... (%d more bytes)", len(s)-n)
}

func str(s string) *string { return &s }

// Y4M geometry of the frame-ID video (browser-e2e.md §7).
const (
	y4mW, y4mH, y4mFPS = 320, 240, 30
	y4mFrames          = 150
)

var (
	y4mOnce sync.Once
	y4mFile string
	y4mErr  error
)

// frameIDVideo returns the absolute path of the frame-ID y4m (generated once per test binary run).
func frameIDVideo(t testing.TB) string {
	t.Helper()
	y4mOnce.Do(func() {
		dir, err := os.MkdirTemp("", "rtcrelay-e2e-y4m-")
		if err != nil {
			y4mErr = err
			return
		}
		y4mFile = filepath.Join(dir, "frames.y4m")
		y4mErr = writeFrameIDVideo(y4mFile, y4mW, y4mH, y4mFPS, y4mFrames)
		cleanups = append(cleanups, func() { os.RemoveAll(dir) })
	})
	if y4mErr != nil {
		t.Fatal(y4mErr)
	}
	return y4mFile
}

var cleanups []func()

// frameBits is the 16-cell pattern of frame id: bits 0-11 the id, bits 12-15 a check nibble.
func frameBits(id int) int {
	return id&0xFFF | ((id^id>>4^id>>8^0xA)&0xF)<<12
}

// decodeFrameBits is the inverse of frameBits (-2 when the check nibble does not match).
func decodeFrameBits(bits int) int {
	id := bits & 0xFFF
	if (id^id>>4^id>>8^0xA)&0xF != bits>>12&0xF {
		return -2
	}
	return id
}

// writeFrameIDVideo writes a YUV4MPEG2 (4:2:0) file whose frame i shows frameBits(i) as a 4x4 black/white grid.
func writeFrameIDVideo(path string, w, h, fps, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	fmt.Fprintf(bw, "YUV4MPEG2 W%d H%d F%d:1 Ip A1:1 C420jpeg\n", w, h, fps)
	y := make([]byte, w*h)
	uv := make([]byte, w/2*h/2)
	for i := range uv {
		uv[i] = 128
	}
	for id := range n {
		bits := frameBits(id)
		for py := range h {
			for px := range w {
				cell := (py/(h/4))*4 + px/(w/4)
				y[py*w+px] = 16
				if bits>>cell&1 == 1 {
					y[py*w+px] = 235
				}
			}
		}
		bw.WriteString("FRAME\n")
		bw.Write(y)
		bw.Write(uv)
		bw.Write(uv)
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
