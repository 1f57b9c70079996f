package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// redisServer is a real redis-server (Debian's package) on a free loopback port, stopped at cleanup.
type redisServer struct {
	t    testing.TB
	port int
	dir  string
	cmd  *exec.Cmd
	log  *logBuffer
}

// URL is the --directory value for this Redis.
func (r *redisServer) URL() string { return "redis://127.0.0.1:" + strconv.Itoa(r.port) + "/0" }

func redisBin() string {
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p
	}
	return "/usr/bin/redis-server"
}

// startRedis starts redis-server; the test skips when it is not installed (and fails under CI=true).
func startRedis(t testing.TB) *redisServer {
	t.Helper()
	if _, err := os.Stat(redisBin()); err != nil {
		if ciMode() {
			t.Fatalf("redis-server is required under CI (apt-get install redis-server): %v", err)
		}
		t.Skipf("redis-server not installed: %v", err)
	}
	r := &redisServer{t: t, port: freePort(t, "tcp"), dir: t.TempDir(), log: &logBuffer{}}
	r.start()
	t.Cleanup(func() {
		r.Kill()
		if t.Failed() {
			t.Logf("redis log:\n%s", tail(r.log.String(), 20))
		}
	})
	return r
}

func (r *redisServer) start() {
	r.t.Helper()
	cmd := exec.Command(redisBin(), "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", r.dir, "--logfile", "")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		r.t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		r.t.Fatalf("start redis-server: %v", err)
	}
	r.cmd = cmd
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			r.log.add(sc.Text())
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if redisPing(r.port) == nil {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("redis-server on %d did not answer PING in 10 s:\n%s", r.port, r.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// redisPing sends an inline PING and expects +PONG.
func redisPing(port int) error {
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return errors.New("redis answered " + line)
	}
	return nil
}

// Kill stops Redis at once (SIGKILL).
func (r *redisServer) Kill() {
	if r.cmd == nil {
		return
	}
	_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
	_ = r.cmd.Wait()
	r.cmd = nil
}

// Restart starts Redis again on the same port (empty: nothing was saved).
func (r *redisServer) Restart() { r.start() }

// clusterServer starts rtcrelay with the Redis directory.
func clusterServer(t *testing.T, name string, r *redisServer, extra ...string) *Server {
	t.Helper()
	args := append([]string{"--server-id", name, "--directory", r.URL(), "--directory-ttl", "3s",
		"--edge-idle-timeout", "3s"}, extra...)
	return startServer(t, ServerOpts{Name: name, ExtraArgs: args})
}

// tcpProxy forwards loopback TCP connections to a target; Cut drops every connection and refuses new ones
// until Restore: a relay's WebSocket link that breaks and comes back.
type tcpProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

func startProxy(t testing.TB, target string) *tcpProxy {
	t.Helper()
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() {
		_ = ln.Close()
		p.Cut()
		p.wg.Wait()
	})
	return p
}

// URI is the ws:// address of the proxy.
func (p *tcpProxy) URI() string { return "ws://" + p.ln.Addr().String() }

func (p *tcpProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		up, err := (&net.Dialer{Timeout: time.Second}).Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		pipe := func(dst, src net.Conn) {
			defer p.wg.Done()
			_, _ = io.Copy(dst, src)
			_ = dst.Close()
			_ = src.Close()
		}
		go pipe(up, c)
		go pipe(c, up)
	}
}

// Cut closes every proxied connection and refuses new ones.
func (p *tcpProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		_ = c.Close()
		delete(p.conns, c)
	}
}

// Restore accepts connections again.
func (p *tcpProxy) Restore() {
	p.mu.Lock()
	p.cut = false
	p.mu.Unlock()
}

// playersOf counts srv's players of name in /rest-api/stream/find_all.
func playersOf(t testing.TB, srv *Server, name string) int {
	t.Helper()
	code, body := restCall(t, srv.HTTP, "/rest-api/stream/find_all", nil)
	if code == 404 {
		return 0
	}
	var streams []struct {
		Name      string `json:"name"`
		Published bool   `json:"published"`
	}
	if code != 200 || json.Unmarshal(body, &streams) != nil {
		t.Fatalf("%s /stream/find_all: %d %s", srv.Opts.Name, code, body)
	}
	n := 0
	for _, s := range streams {
		if s.Name == name && !s.Published {
			n++
		}
	}
	return n
}

// stop stops a stream of the page (stopStream/unPublishStream through the SDK).
func (b *relayBrowser) stop(page, handle string) {
	b.t.Helper()
	b.do(map[string]any{"do": "stop", "page": page, "handle": handle})
}
