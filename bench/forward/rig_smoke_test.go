package forward

import (
	"maps"
	"testing"
)

// TestRigSmoke runs the forwarder, the kernel blast and the ingest bound once each at a small size, so that the
// benchmark rig (the idle receivers' drain, the phases, the flow control) cannot rot unnoticed between the runs
// that measure: every datagram sent must be counted, none lost. It asserts no figure: timings are for the
// benchmarks.
func TestRigSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	saved := maps.Clone(results)
	t.Cleanup(func() { results = saved })
	for name, f := range map[string]func(*testing.B){
		"forwarder/subs=10": func(b *testing.B) { runForwarder(b, 10, 0, false) },
		"kernel/subs=10":    func(b *testing.B) { runBoundKernel(b, 10) },
		"kernel/subs=1":     func(b *testing.B) { runBoundKernel(b, 1) },
		"ingest":            runBoundIngest,
	} {
		results = map[string]result{}
		r := testing.Benchmark(f)
		if r.N == 0 {
			t.Fatalf("%s: the benchmark failed", name)
		}
		if len(results) != 1 {
			t.Fatalf("%s: %d results recorded", name, len(results))
		}
		for _, res := range results {
			if res.fwd == 0 || res.lost != 0 {
				t.Errorf("%s: %d forwarded, %d lost", name, res.fwd, res.lost)
			}
		}
	}
}
