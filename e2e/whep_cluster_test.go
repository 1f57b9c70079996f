package e2e

import (
	"testing"
	"time"
)

// TestWHEPClusterEdge: a WHEP player at an edge of a cluster gets a stream that GStreamer publishes at the origin
// over WHIP: the WHEP handler asks the same on-demand edge pull as a WebSocket play (relay.Edge.Acquire).
func TestWHEPClusterEdge(t *testing.T) {
	requireGStreamer(t)
	r := startRedis(t)
	origin := clusterServer(t, "origin", r)
	edge := clusterServer(t, "edge1", r)
	startGst(t, "whip.py", origin.HTTP+"/whip/clu", "--duration", "30")
	waitWHIPPublishers(t, origin, 1, 15*time.Second)
	start := time.Now()
	play := startGst(t, "whep.py", edge.HTTP+"/whep/clu", "--duration", "5")
	pr := play.wait(t, 40*time.Second)
	if !pr.OK || pr.Status != 201 || pr.Frames < 30 {
		t.Fatalf("WHEP player at the edge: %+v", pr)
	}
	t.Logf("WHEP player at the edge (cold pull): answer %d ms, first decoded frame %d ms after its start; %d frames in 5 s (%v in all)",
		pr.AnsweredMs, pr.FirstFrameMs, pr.Frames, time.Since(start).Round(time.Millisecond))
	found := false
	for _, a := range agents(t, edge) {
		found = found || a.LocalStreamName == "clu" && a.Origin == "directory"
	}
	if !found {
		t.Errorf("no directory pull of %q at the edge: %s", "clu", agentsJSON(agents(t, edge)))
	}
}
