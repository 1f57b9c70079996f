package e2e

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rtcrelay/rtcrelay/relay"
)

// relayBrowser is one headless Chromium driven interactively by e2e/browser/relay-driver.mjs: every call sends one
// command line and waits for its reply line, so tests can interleave browser steps with REST calls and with
// killing and restarting servers.
type relayBrowser struct {
	t       testing.TB
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	replies chan driverReply
	stderr  *logBuffer
	mu      sync.Mutex
	nextID  int
	pages   []string
}

type driverReply struct {
	ID     int             `json:"id"`
	OK     bool            `json:"ok"`
	Error  string          `json:"error"`
	Result json.RawMessage `json:"result"`
}

// startRelayBrowser launches the interactive driver with the frame-ID video as the fake camera; it is closed at
// cleanup (the node process group is killed in any case, so no Chromium outlives the test).
func startRelayBrowser(t testing.TB) *relayBrowser {
	t.Helper()
	return startRelayBrowserWith(t, map[string]any{"y4m": frameIDVideo(t), "frames": y4mFrames})
}

// startRelayBrowserWith launches the interactive driver with config (relay-driver.mjs's: "y4m", "frames",
// "extraArgs"); "chromium" is set here.
func startRelayBrowserWith(t testing.TB, config map[string]any) *relayBrowser {
	t.Helper()
	config["chromium"] = chromiumBin()
	cfg, _ := json.Marshal(config)
	driver := filepath.Join(repoRoot(t), "e2e", "browser", "relay-driver.mjs")
	cmd := exec.Command("node", driver, string(cfg))
	// A short TMPDIR (Playwright's profile lives there): Chromium's singleton socket path must fit in a
	// sockaddr_un, which t.TempDir() with long test names may not.
	tmp, err := os.MkdirTemp("", "pw")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	b := &relayBrowser{t: t, cmd: cmd, replies: make(chan driverReply, 16), stderr: &logBuffer{}}
	if b.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start relay driver: %v", err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			b.stderr.add(sc.Text())
		}
	}()
	go func() {
		defer close(b.replies)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 8<<20)
		for sc.Scan() {
			var r driverReply
			if json.Unmarshal(sc.Bytes(), &r) == nil {
				b.replies <- r
			}
		}
	}()
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range b.pages {
				if r, err := b.call(map[string]any{"do": "diag", "page": p}, 10*time.Second); err == nil {
					t.Logf("page %s diag: %s", p, truncate(string(r), 4000))
				}
			}
			if s := b.stderr.String(); s != "" {
				t.Logf("relay driver stderr:\n%s", tail(s, 40))
			}
		}
		_, _ = b.call(map[string]any{"do": "close"}, 10*time.Second)
		_ = b.stdin.Close()
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	select {
	case r, ok := <-b.replies:
		if !ok || !r.OK {
			t.Fatalf("relay driver did not start: %+v\n%s", r, b.stderr.String())
		}
	case <-time.After(45 * time.Second):
		t.Fatalf("relay driver: no ready line in 45 s\n%s", b.stderr.String())
	}
	return b
}

// call sends one command and waits for its reply.
func (b *relayBrowser) call(cmd map[string]any, timeout time.Duration) (json.RawMessage, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.nextID++
	id := b.nextID
	cmd["id"] = id
	line, err := json.Marshal(cmd)
	if err != nil {
		return nil, err
	}
	if _, err := b.stdin.Write(append(line, '\n')); err != nil {
		return nil, fmt.Errorf("relay driver: write: %w", err)
	}
	deadline := time.After(timeout)
	for {
		select {
		case r, ok := <-b.replies:
			if !ok {
				return nil, fmt.Errorf("relay driver exited (%v)", cmd["do"])
			}
			if r.ID != id {
				continue // a late reply to an earlier, timed-out command
			}
			if !r.OK {
				return nil, fmt.Errorf("%v: %s", cmd["do"], r.Error)
			}
			return r.Result, nil
		case <-deadline:
			return nil, fmt.Errorf("relay driver: no reply to %v in %v", cmd["do"], timeout)
		}
	}
}

// do runs a command whose own timeout is timeoutMs (default 15 s) and fails the test on error.
func (b *relayBrowser) do(cmd map[string]any) json.RawMessage {
	b.t.Helper()
	ms, _ := cmd["timeoutMs"].(int)
	if ms == 0 {
		ms = 15000
	}
	if s, ok := cmd["seconds"].(float64); ok {
		ms += int(s * 1000)
	}
	r, err := b.call(cmd, time.Duration(ms)*time.Millisecond+20*time.Second)
	if err != nil {
		b.t.Fatal(err)
	}
	return r
}

// open opens an official-SDK page connected to srv's ws:// port.
func (b *relayBrowser) open(page string, srv *Server) {
	b.t.Helper()
	b.pages = append(b.pages, page)
	b.do(map[string]any{"do": "open", "page": page, "ws": srv.WS})
}

func (b *relayBrowser) view(cmd map[string]any) *StreamView {
	b.t.Helper()
	var v StreamView
	r := b.do(cmd)
	if err := json.Unmarshal(r, &v); err != nil {
		b.t.Fatalf("%v: %v (%s)", cmd["do"], err, r)
	}
	return &v
}

// publish publishes name from page (handle) and requires PUBLISHING.
func (b *relayBrowser) publish(page, handle, name string) {
	b.t.Helper()
	if v := b.view(map[string]any{"do": "publish", "page": page, "handle": handle, "name": name}); v.Status != "PUBLISHING" {
		b.t.Fatalf("publish %s on %s: %s %q", name, page, v.Status, v.Info)
	}
}

// play plays name on page (handle) and returns the status it reached (PLAYING or a terminal one).
func (b *relayBrowser) play(page, handle, name string) *StreamView {
	b.t.Helper()
	return b.view(map[string]any{"do": "play", "page": page, "handle": handle, "name": name})
}

func (b *relayBrowser) mustPlay(page, handle, name string) {
	b.t.Helper()
	if v := b.play(page, handle, name); v.Status != "PLAYING" {
		b.t.Fatalf("play %s on %s: %s %q", name, page, v.Status, v.Info)
	}
}

func (b *relayBrowser) status(page, handle string) *StreamView {
	b.t.Helper()
	return b.view(map[string]any{"do": "status", "page": page, "handle": handle})
}

// wait waits (up to timeout) for one of the statuses or a terminal one and returns the last view.
func (b *relayBrowser) wait(page, handle string, timeout time.Duration, statuses ...string) *StreamView {
	b.t.Helper()
	return b.view(map[string]any{"do": "wait", "page": page, "handle": handle, "expect": statuses, "timeoutMs": int(timeout / time.Millisecond)})
}

// sample measures what player receives for seconds, comparing frame IDs with the publisher's preview.
func (b *relayBrowser) sample(player, publisher PageRef, seconds float64) *Sample {
	b.t.Helper()
	cmd := map[string]any{"do": "sample", "player": player, "seconds": seconds}
	if publisher.Page != "" {
		cmd["publisher"] = publisher
	}
	var s Sample
	if err := json.Unmarshal(b.do(cmd), &s); err != nil {
		b.t.Fatal(err)
	}
	return &s
}

// framesDecoded is the player's inbound video framesDecoded now.
func (b *relayBrowser) framesDecoded(page, handle string) int {
	b.t.Helper()
	var st struct {
		Video struct {
			FramesDecoded int `json:"framesDecoded"`
		} `json:"video"`
	}
	_ = json.Unmarshal(b.do(map[string]any{"do": "stats", "page": page, "handle": handle}), &st)
	return st.Video.FramesDecoded
}

// ---- REST helpers ----

// relaySpec is the body of /pull/push, /pull/pull and /pull/terminate.
type relaySpec struct {
	URI              string `json:"uri,omitempty"`
	LocalStreamName  string `json:"localStreamName,omitempty"`
	RemoteStreamName string `json:"remoteStreamName,omitempty"`
}

// relayCall posts spec to srv's /rest-api/pull/<method> and requires status want.
func relayCall(t testing.TB, srv *Server, method string, spec relaySpec, want int) []byte {
	t.Helper()
	code, body := restCall(t, srv.HTTP, "/rest-api/pull/"+method, spec)
	if code != want {
		t.Fatalf("%s /pull/%s %+v: %d %s, want %d", srv.Opts.Name, method, spec, code, body, want)
	}
	return body
}

// agents is srv's /pull/find_all.
func agents(t testing.TB, srv *Server) []relay.AgentInfo {
	t.Helper()
	code, body := restCall(t, srv.HTTP, "/rest-api/pull/find_all", nil)
	if code == 404 {
		return nil
	}
	if code != 200 {
		t.Fatalf("%s /pull/find_all: %d %s", srv.Opts.Name, code, body)
	}
	var out []relay.AgentInfo
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatalf("%s /pull/find_all: %v (%s)", srv.Opts.Name, err, body)
	}
	return out
}

// waitAgent polls srv's agents until one with localStreamName name satisfies ok, and returns it.
func waitAgent(t testing.TB, srv *Server, name string, timeout time.Duration, what string, ok func(relay.AgentInfo) bool) relay.AgentInfo {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last []relay.AgentInfo
	for {
		last = agents(t, srv)
		for _, a := range last {
			if a.LocalStreamName == name && ok(a) {
				return a
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no agent for %q %s within %v; agents: %s", srv.Opts.Name, name, what, timeout, agentsJSON(last))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func agentsJSON(a []relay.AgentInfo) string {
	b, _ := json.Marshal(a)
	return string(b)
}

func hasStatus(s string) func(relay.AgentInfo) bool {
	return func(a relay.AgentInfo) bool { return a.Status == s }
}

// streamNames lists the names in srv's /stream/find_all.
func streamNames(t testing.TB, srv *Server) []string {
	t.Helper()
	code, body := restCall(t, srv.HTTP, "/rest-api/stream/find_all", nil)
	if code == 404 {
		return nil
	}
	if code != 200 {
		t.Fatalf("%s /stream/find_all: %d %s", srv.Opts.Name, code, body)
	}
	var streams []struct {
		Name      string `json:"name"`
		Published bool   `json:"published"`
	}
	if err := json.Unmarshal(body, &streams); err != nil {
		t.Fatalf("%s /stream/find_all: %v (%s)", srv.Opts.Name, err, body)
	}
	var names []string
	for _, s := range streams {
		if s.Published {
			names = append(names, s.Name)
		}
	}
	return names
}

// closedPort returns a loopback TCP port nothing listens on.
func closedPort(t testing.TB) int { return freePort(t, "tcp") }

// selfSignedCert writes a self-signed ECDSA certificate for IP 127.0.0.1 (also usable as its own root, for
// --agent-ca) and its key to dir, and returns the two paths.
func selfSignedCert(t testing.TB, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "rtcrelay e2e"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// checkRelayMedia is checkMedia for a relayed stream: the same frame-ID, growth and loopback checks.
func checkRelayMedia(t testing.TB, s *Sample, seconds float64) {
	t.Helper()
	checkMedia(t, s, seconds)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
