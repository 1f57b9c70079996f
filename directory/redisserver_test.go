package directory

import (
	"bufio"
	"bytes"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"
)

// redisServer is a real redis-server child process on a loopback port, stopped in t.Cleanup.
type redisServer struct {
	t    testing.TB
	bin  string
	port int
	dir  string

	mu     sync.Mutex
	cmd    *exec.Cmd
	output *bytes.Buffer
}

// startRedis starts redis-server (the Debian package) on a free loopback port. Without the binary the
// test is skipped, unless CI=true, where it fails.
func startRedis(t testing.TB) *redisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("redis-server is required under CI=true (apt-get install redis-server): %v", err)
		}
		t.Skipf("redis-server not found (apt-get install redis-server); skipping the Redis tests: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	s := &redisServer{t: t, bin: bin, port: port, dir: t.TempDir()}
	s.start()
	t.Cleanup(s.kill)
	return s
}

func (s *redisServer) url() string { return "redis://127.0.0.1:" + strconv.Itoa(s.port) + "/0" }

func (s *redisServer) addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// start runs redis-server and waits until it answers PING.
func (s *redisServer) start() {
	s.t.Helper()
	cmd := exec.Command(s.bin, "--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.dir)
	out := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	s.mu.Lock()
	s.cmd, s.output = cmd, out
	s.mu.Unlock()
	// An external process has no readiness signal but its port: dial until PING answers.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if s.pong() {
			return
		}
		if time.Now().After(deadline) {
			s.kill()
			s.t.Fatalf("redis-server on %s did not answer PING within 10s; output:\n%s", s.addr(), out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *redisServer) pong() bool {
	c, err := net.DialTimeout("tcp", s.addr(), 200*time.Millisecond)
	if err != nil {
		return false
	}
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && line == "+PONG\r\n"
}

// kill stops the server at once (SIGKILL), as a crash would. It is idempotent.
func (s *redisServer) kill() {
	s.mu.Lock()
	cmd := s.cmd
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
}
