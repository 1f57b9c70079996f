package main

import (
	"flag"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "rtcrelay.conf")
	if err := os.WriteFile(file, []byte("# comment\nws_port=9000\nhttp-port = 9001\nip=192.0.2.7\nwcs_agent_ssl=true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig([]string{"--config", file, "--http-port", "9101", "--accept-remote=127.0.0.0/8,::1/128"},
		[]string{"RTCRELAY_WS_PORT=9100", "RTCRELAY_HTTP_PORT=9200", "RTCRELAY_ICE_TIMEOUT=3s", "OTHER=1"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.WSPort != 9100 { // env beats file
		t.Errorf("ws-port = %d, want 9100", c.WSPort)
	}
	if c.HTTPPort != 9101 { // flag beats env
		t.Errorf("http-port = %d, want 9101", c.HTTPPort)
	}
	if len(c.IPs) != 1 || c.IPs[0] != netip.MustParseAddr("192.0.2.7") {
		t.Errorf("ip = %v", c.IPs)
	}
	if c.MediaBind != "0.0.0.0" { // a public --ip needs a media socket others can reach
		t.Errorf("media-bind = %q", c.MediaBind)
	}
	if !c.AgentSSL || c.ICETimeout != 3*time.Second || len(c.AcceptRemote) != 2 {
		t.Errorf("config = %+v", c)
	}
}

func TestLoadConfigJSONAndErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "c.json")
	if err := os.WriteFile(file, []byte(`{"media-port": 40000, "ip": ["127.0.0.1", "::1"]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig([]string{"--config=" + file}, nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.MediaPort != 40000 || len(c.IPs) != 2 {
		t.Errorf("config = %+v", c)
	}
	for _, tc := range []struct {
		name string
		args []string
		env  []string
	}{
		{"bad port", []string{"--ws-port", "70000"}, nil},
		{"bad ip", []string{"--ip", "nope"}, nil},
		{"half tls", []string{"--tls-cert", "x"}, nil},
		{"bad env value", nil, []string{"RTCRELAY_WS_PORT=x"}},
		{"stray arg", []string{"extra"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := LoadConfig(tc.args, tc.env, io.Discard); err == nil {
				t.Fatal("no error")
			}
		})
	}
}

// TestSampleConfig loads examples/rtcrelay.conf through the real loader and checks that it names every setting
// (set, or commented out as "# key = ..."), so the sample stays valid and complete.
func TestSampleConfig(t *testing.T) {
	file := filepath.Join("..", "..", "examples", "rtcrelay.conf")
	c, err := LoadConfig([]string{"--config", file}, nil, io.Discard)
	if err != nil {
		t.Fatalf("the sample config does not load: %v", err)
	}
	if c.ListenHost != "0.0.0.0" || c.WSPort != 8080 || c.HTTPPort != 8081 || c.MediaPort != 31001 || c.ICETimeout != 10*time.Second {
		t.Errorf("sample config = %+v", c)
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]bool{}
	for line := range strings.SplitSeq(string(raw), "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "#"))
		if k, _, ok := strings.Cut(line, "="); ok && !strings.Contains(strings.TrimSpace(k), " ") {
			keys[strings.TrimSpace(k)] = true
		}
	}
	new(Config).flagSet().VisitAll(func(f *flag.Flag) {
		if f.Name != "config" && !keys[f.Name] {
			t.Errorf("examples/rtcrelay.conf does not mention %q", f.Name)
		}
	})
}

func TestHookConfig(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "rtcrelay.json")
	conf := `{"rest_request_timeout": 3, "apps": [{"name": "a", "appKey": "defaultApp", "url": "http://127.0.0.1:9/h", "methods": ["connect", "publishStream"]}]}`
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig([]string{"--config", file}, nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.RESTTimeout != 3*time.Second || len(c.AppList) != 1 || c.AppList[0].AppKey != "defaultApp" {
		t.Fatalf("timeout %v apps %+v", c.RESTTimeout, c.AppList)
	}
	if _, err := LoadConfig([]string{"--apps", `[{"appKey":"k","methods":["bogus"]}]`}, nil, io.Discard); err == nil {
		t.Fatal("bad apps accepted")
	}
	if _, err := LoadConfig([]string{"--rest-hook-send-hash"}, nil, io.Discard); err == nil {
		t.Fatal("send-hash without a key accepted")
	}
}
