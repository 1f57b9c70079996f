package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// repoRoot is the module root (the parent of this package's directory).
func repoRoot(t testing.TB) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(wd)
}

// ciMode is true under CI=true: missing prerequisites fail the test instead of skipping it.
func ciMode() bool { return os.Getenv("CI") == "true" }

// requireBrowser skips (or, in CI, fails) when Chromium, node or the npm test dependencies are missing.
func requireBrowser(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("browser e2e skipped in -short mode")
	}
	var missing []string
	if _, err := os.Stat(chromiumBin()); err != nil {
		missing = append(missing, "chromium ("+chromiumBin()+"; apt-get install chromium)")
	}
	if _, err := exec.LookPath("node"); err != nil {
		missing = append(missing, "node")
	}
	mods := filepath.Join(repoRoot(t), "e2e", "browser", "node_modules")
	for _, p := range []string{"playwright-core", "@flashphoner/websdk/flashphoner.js"} {
		if _, err := os.Stat(filepath.Join(mods, p)); err != nil {
			missing = append(missing, "e2e/browser/node_modules/"+p+" (npm ci --prefix e2e/browser)")
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := "browser e2e prerequisites missing: " + strings.Join(missing, ", ")
	if ciMode() {
		t.Fatal(msg + " (CI=true: not skipping)")
	}
	t.Skip(msg)
}

func chromiumBin() string {
	if b := os.Getenv("CHROMIUM_BIN"); b != "" {
		return b
	}
	return "/usr/bin/chromium"
}

// freePort returns a TCP (or UDP) port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB, network string) int {
	t.Helper()
	switch network {
	case "udp":
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	default:
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port
	}
}

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
	buildDir  string
)

// serverBinary builds ./cmd/rtcrelay once per test binary run and returns its path.
func serverBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "rtcrelay-e2e-bin-")
		if buildErr != nil {
			return
		}
		buildPath = filepath.Join(buildDir, "rtcrelay")
		args := []string{"build", "-o", buildPath}
		if raceEnabled && os.Getenv("E2E_NORACE") == "" { // a race in the server fails it: see its log
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, "./cmd/rtcrelay")...)
		cmd.Dir = repoRoot(t)
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ./cmd/rtcrelay: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, f := range cleanups {
		f()
	}
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// ServerOpts configures one rtcrelay process. Zero ports are replaced by free ones, except where Disable* says 0.
type ServerOpts struct {
	Name          string   // label in logs; default "rtcrelay"
	WSPort        int      // 0 → a free port
	HTTPPort      int      // 0 → a free port
	MediaPort     int      // 0 → a free UDP port
	WSSPort       int      // 0 = disabled unless TLSCert is set, then a free port
	HTTPSPort     int      // 0 = disabled unless TLSCert is set, then a free port
	TLSCert       string   // PEM files; enable the TLS listeners
	TLSKey        string   //
	Config        string   // --config FILE
	ExtraArgs     []string // appended to the command line
	Env           []string // extra KEY=VALUE
	ReadyTimeout  time.Duration
	KeepOnFailure bool // leave the log in the test output even on success
}

// Server is a running rtcrelay process.
type Server struct {
	Opts                                 ServerOpts
	WSPort, WSSPort, HTTPPort, HTTPSPort int
	MediaPort                            int
	WS, HTTP                             string // ws://127.0.0.1:P, http://127.0.0.1:P
	cmd                                  *exec.Cmd
	log                                  *logBuffer
	waitErr                              chan error
	stopped                              bool
}

// logBuffer keeps a process's stderr (bounded) for failure reports.
type logBuffer struct {
	mu    sync.Mutex
	lines []string
	total int
}

func (b *logBuffer) add(s string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.total++
	b.lines = append(b.lines, s)
	if len(b.lines) > 4000 {
		b.lines = b.lines[len(b.lines)-3000:]
	}
}

// String returns the kept log lines.
func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.lines, "\n")
}

// Log returns the server's stderr so far.
func (s *Server) Log() string { return s.log.String() }

// Grep returns the log lines containing substr.
func (s *Server) Grep(substr string) []string {
	var out []string
	for _, l := range strings.Split(s.Log(), "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return out
}

// startServer starts rtcrelay with free loopback ports, waits for GET /healthz → 200 and stops it (SIGTERM, then
// SIGKILL to the process group) at cleanup. The log is printed when the test failed.
func startServer(t testing.TB, opts ServerOpts) *Server {
	t.Helper()
	bin := serverBinary(t)
	if opts.Name == "" {
		opts.Name = "rtcrelay"
	}
	s := &Server{Opts: opts, log: &logBuffer{}, waitErr: make(chan error, 1)}
	pick := func(p int, network string) int {
		if p == 0 {
			return freePort(t, network)
		}
		return p
	}
	s.WSPort = pick(opts.WSPort, "tcp")
	s.HTTPPort = pick(opts.HTTPPort, "tcp")
	s.MediaPort = pick(opts.MediaPort, "udp")
	s.WSSPort, s.HTTPSPort = opts.WSSPort, opts.HTTPSPort
	if opts.TLSCert != "" {
		s.WSSPort = pick(opts.WSSPort, "tcp")
		s.HTTPSPort = pick(opts.HTTPSPort, "tcp")
	}
	s.WS = "ws://127.0.0.1:" + strconv.Itoa(s.WSPort)
	s.HTTP = "http://127.0.0.1:" + strconv.Itoa(s.HTTPPort)
	args := []string{
		"--ws-port", strconv.Itoa(s.WSPort), "--wss-port", strconv.Itoa(s.WSSPort),
		"--http-port", strconv.Itoa(s.HTTPPort), "--https-port", strconv.Itoa(s.HTTPSPort),
		"--media-port", strconv.Itoa(s.MediaPort), "--ip", "127.0.0.1",
		"--accept-remote", "127.0.0.0/8,::1/128",
	}
	if opts.TLSCert != "" {
		args = append(args, "--tls-cert", opts.TLSCert, "--tls-key", opts.TLSKey)
	}
	if opts.Config != "" {
		args = append(args, "--config", opts.Config)
	}
	args = append(args, opts.ExtraArgs...)
	s.start(t, bin, args)
	return s
}

func (s *Server) start(t testing.TB, bin string, args []string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), s.Opts.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = cmd.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", s.Opts.Name, err)
	}
	s.cmd = cmd
	s.stopped = false
	s.waitErr = make(chan error, 1)
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			s.log.add(sc.Text())
		}
	}()
	go func() {
		<-copied
		s.waitErr <- cmd.Wait()
	}()
	t.Cleanup(func() {
		s.Stop(t)
		if t.Failed() || s.Opts.KeepOnFailure {
			t.Logf("---- %s log (%s) ----\n%s", s.Opts.Name, strings.Join(args, " "), tail(s.Log(), 400))
		}
	})
	timeout := s.Opts.ReadyTimeout
	if timeout == 0 {
		timeout = 20 * time.Second
	}
	if err := s.waitHealthy(timeout); err != nil {
		t.Fatalf("%s not healthy: %v\n%s", s.Opts.Name, err, tail(s.Log(), 100))
	}
}

func (s *Server) waitHealthy(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: time.Second}
	for {
		select {
		case err := <-s.waitErr:
			s.waitErr <- err
			return fmt.Errorf("exited: %w", err)
		default:
		}
		resp, err := client.Get(s.HTTP + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("GET %s/healthz for %v: %w", s.HTTP, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop ends the process: SIGTERM (graceful shutdown), then SIGKILL to the group after 5 s. Idempotent.
func (s *Server) Stop(t testing.TB) {
	if s.cmd == nil || s.stopped {
		return
	}
	s.stopped = true
	pid := s.cmd.Process.Pid
	_ = syscall.Kill(pid, syscall.SIGTERM)
	select {
	case <-s.waitErr:
	case <-time.After(5 * time.Second):
		t.Logf("%s: no exit 5 s after SIGTERM; killing the group", s.Opts.Name)
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-s.waitErr
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL) // anything left in the group
}

// Kill ends the process at once (SIGKILL to the group), as a crash would.
func (s *Server) Kill(t testing.TB) {
	if s.cmd == nil || s.stopped {
		return
	}
	s.stopped = true
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.waitErr
}

// Restart starts the process again with the same ports and arguments (after Stop or Kill).
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.start(t, s.cmd.Path, s.cmd.Args[1:])
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("... (%d lines cut)", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// restCall sends method (GET without body, else POST with body as JSON) to base+path and returns the status and
// body. base is e.g. srv.HTTP; path starts with "/rest-api/".
func restCall(t testing.TB, base, path string, body any) (int, []byte) {
	t.Helper()
	var req *http.Request
	var err error
	if body == nil {
		req, err = http.NewRequest(http.MethodGet, base+path, nil)
	} else {
		var b []byte
		if raw, ok := body.(string); ok {
			b = []byte(raw)
		} else if b, err = json.Marshal(body); err != nil {
			t.Fatal(err)
		}
		req, err = http.NewRequest(http.MethodPost, base+path, bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
	}
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, path, err)
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read: %v", req.Method, path, err)
	}
	return resp.StatusCode, rb
}

// runDriver runs e2e/browser/driver.mjs with the scenario (marshalled to JSON) and returns its parsed result.
// The node process and Chromium share a process group that is killed on timeout. A driver that printed no JSON
// fails the test; a result with ok=false is returned for the caller to report (see requireOK).
func runDriver(t testing.TB, scenario Scenario, timeout time.Duration) *DriverResult {
	t.Helper()
	if scenario.DeadlineMs == 0 {
		scenario.DeadlineMs = int(timeout/time.Millisecond) - 5000
	}
	arg, err := json.Marshal(scenario)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	driver := filepath.Join(repoRoot(t), "e2e", "browser", "driver.mjs")
	cmd := exec.CommandContext(ctx, "node", driver, string(arg))
	// Playwright leaves profiles in TMPDIR when a launch fails; keep the path short: Chromium's singleton socket
	// path must fit in a sockaddr_un (t.TempDir() names with long test names do not).
	tmp, err := os.MkdirTemp("", "pw")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	out, runErr := cmd.Output()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // no Chromium outlives its driver
	}
	res, perr := parseDriverOutput(out)
	if perr != nil {
		t.Fatalf("driver (%v, %v): %v\nstdout:\n%s\nstderr:\n%s", time.Since(start).Round(time.Millisecond), runErr, perr,
			tail(string(out), 60), tail(stderr.String(), 60))
	}
	res.Raw = out
	res.Stderr = stderr.String()
	return res
}

func parseDriverOutput(out []byte) (*DriverResult, error) {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if !strings.HasPrefix(l, "{") {
			continue
		}
		var r DriverResult
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			return nil, fmt.Errorf("last JSON line: %w", err)
		}
		return &r, nil
	}
	return nil, errors.New("no JSON result line")
}
