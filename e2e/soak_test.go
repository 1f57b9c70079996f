package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSoak runs bench/soak against the real binary: 1000 connect/publish/play/disconnect cycles by clients of
// ours (ICE, DTLS, SRTP, the WCS protocol), leaving gracefully, by a dropped publisher WebSocket and by a
// vanished player in turn; it fails on goroutine, FD or heap growth beyond its bounds after the server settled.
// SOAK_CYCLES overrides the count.
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	cycles := 1000
	if s := os.Getenv("SOAK_CYCLES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatal(err)
		}
		cycles = n
	}
	bin := filepath.Join(t.TempDir(), "soak")
	build := exec.Command("go", "build", "-o", bin, "./bench/soak")
	build.Dir = repoRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./bench/soak: %v\n%s", err, out)
	}
	srv := startServer(t, ServerOpts{Name: "soak", ExtraArgs: []string{"--publisher-grace", "2s"}})
	cmd := exec.Command(bin, "-server", srv.WS, "-metrics", srv.HTTP+"/metrics", "-cycles", strconv.Itoa(cycles),
		"-concurrency", "4", "-settle", "20s")
	timer := time.AfterFunc(10*time.Minute, func() { _ = cmd.Process.Kill() })
	defer timer.Stop()
	out, err := cmd.CombinedOutput()
	t.Logf("bench/soak:\n%s", out)
	if err != nil {
		t.Fatalf("soak: %v\nserver log tail:\n%s", err, tail(srv.Log(), 30))
	}
	if !strings.Contains(string(out), "within bounds") {
		t.Fatal("soak did not report its bounds")
	}
}
