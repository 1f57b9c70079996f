package main

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDockerfileBuild runs the Dockerfile's `go build` command (its environment and flags, with the output
// redirected) and checks that it makes a static binary that starts: what the distroless/static stage needs.
// Docker itself is not required. Skipped with -short (a cold -trimpath build takes a while).
func TestDockerfileBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	root := filepath.Join("..", "..")
	df, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var line string
	for l := range strings.SplitSeq(string(df), "\n") {
		if strings.HasPrefix(l, "RUN ") && strings.Contains(l, " go build ") {
			line = strings.TrimPrefix(l, "RUN ")
		}
	}
	if line == "" || !strings.Contains(line, "CGO_ENABLED=0") {
		t.Fatalf("no RUN CGO_ENABLED=0 go build line in the Dockerfile")
	}
	out := filepath.Join(t.TempDir(), "rtcrelay")
	cmd := exec.CommandContext(t.Context(), "sh", "-c", strings.Replace(line, "-o /out/rtcrelay", "-o "+out, 1))
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", line, err, b)
	}
	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("the binary has an ELF interpreter: not static")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the binary needs shared libraries %v", libs)
	}
	if b, err := exec.CommandContext(t.Context(), out, "--help").CombinedOutput(); !strings.Contains(string(b), "listen-host") {
		t.Errorf("rtcrelay --help: %v\n%s", err, b)
	}
}
