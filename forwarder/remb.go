package forwarder

import (
	"slices"

	"github.com/pion/rtcp"
)

// REMB policy for streams without simulcast: every player gets the same bitrate, so the publisher should not
// send more than the players can take; but one player on a bad link must not lower the picture of all the
// others. The cap sent to the publisher (goog-remb, once a second) is the lowest estimate among the players
// that gave feedback, but never below a floor: half the median player's estimate, and never below rembFloor.
// Simulcast streams get no REMB: each player takes the layer that fits it, and the publisher's own
// transport-cc estimate decides how many layers it can send.
const rembFloor = 300_000

// rembCap computes the cap from players' estimates (bits/s); ok is false when there is none.
func rembCap(ests []int64) (int64, bool) {
	if len(ests) == 0 {
		return 0, false
	}
	slices.Sort(ests)
	floor := max(ests[len(ests)/2]/2, rembFloor)
	return max(ests[0], floor), true
}

// sendREMB sends the publisher the REMB cap; housekeeping goroutine.
func (st *Stream) sendREMB() {
	if !st.remb {
		return
	}
	st.mu.Lock()
	var ests []int64
	for _, p := range st.players {
		if est := p.est.Load(); est != nil {
			ests = append(ests, est.Estimate())
		}
	}
	st.mu.Unlock()
	bps, ok := rembCap(ests)
	if !ok {
		return
	}
	var ssrcs []uint32
	for _, t := range st.tracks {
		if t.known.Load() {
			ssrcs = append(ssrcs, t.ssrc.Load())
		}
	}
	buf, err := (&rtcp.ReceiverEstimatedMaximumBitrate{SenderSSRC: st.ssrc, Bitrate: float32(bps), SSRCs: ssrcs}).Marshal()
	if err == nil {
		err = st.up.WriteRTCP(buf)
	}
	if err != nil {
		st.log.Debug("remb", "err", err)
		return
	}
	st.rembsSent.Add(1)
	st.rembLast.Store(bps)
}
