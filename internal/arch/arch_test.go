package arch

import (
	"bytes"
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/rtcrelay/rtcrelay/"

// layer of every production package (path below the module). Tools and tests (bench/, e2e/) and internal/
// helpers are outside the graph.
var layer = map[string]int{
	"packet": 0, "pionlog": 0, "sdp": 0, "directory": 0, "netguard": 0, "limits": 0, "relayauth": 0, "twcc": 0, "bwe": 0,
	"ice": 1, "dtls": 1,
	"srtp":      2,
	"forwarder": 3, // owns the send-path interfaces that session implements
	"session":   4,
	"media":     5,
	"signaling": 6, "whip": 6, "resthook": 6, // the protocols: WCS WebSocket, WHIP/WHEP over HTTP; resthook beside signaling (which defines the Authorizer interface)
	"relay": 7,
	"web":   8, "rest": 8,
	"cmd/rtcrelay": 9,
}

// forbidden are dependencies (direct or not) a package must never have.
var forbidden = map[string][]string{
	"media":     {"signaling", "relay", "rest", "web", "whip"},
	"whip":      {"signaling", "relay", "rest", "web"},
	"forwarder": {"ice", "session", "dtls", "srtp"},
	"resthook":  {"signaling", "relay", "rest", "web"},
}

type pkg struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps=false", "-json", "../../...")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func TestImportsPointDown(t *testing.T) {
	pkgs := listPackages(t)
	seen := 0
	for _, p := range pkgs {
		name, ok := strings.CutPrefix(p.ImportPath, module)
		if !ok {
			continue
		}
		from, ok := layer[name]
		if !ok {
			if !strings.HasPrefix(name, "bench/") && !strings.HasPrefix(name, "internal/") && name != "e2e" {
				t.Errorf("package %s has no layer: add it to the table", name)
			}
			continue
		}
		seen++
		for _, imp := range p.Imports {
			dep, ok := strings.CutPrefix(imp, module)
			if !ok || strings.HasPrefix(dep, "internal/") {
				continue
			}
			to, known := layer[dep]
			if !known || to >= from {
				t.Errorf("%s (layer %d) imports %s (layer %d): imports must point down", name, from, dep, to)
			}
		}
		for _, dep := range p.Deps {
			d, ok := strings.CutPrefix(dep, module)
			if !ok {
				continue
			}
			for _, f := range forbidden[name] {
				if d == f {
					t.Errorf("%s depends on %s", name, f)
				}
			}
		}
	}
	if seen < len(layer) {
		t.Errorf("saw %d of the %d layered packages: is go list looking at the module?", seen, len(layer))
	}
}
