// Package bwe is a per-player send-side bandwidth estimator for the SFU: a
// simplified Google Congestion Control (draft-ietf-rmcat-gcc-02), fed by the
// packet path (Sent) and by the player's RTCP (Feedback, ReceiverReport, REMB).
//
// # Send history
//
// Sent stores the send time and size of every packet in a fixed ring of 256
// slots indexed by the transport-wide sequence number. It runs once per packet
// per player, so it takes no lock and allocates nothing: the single writer
// invalidates a slot, writes the send time and then publishes the sequence
// number packed with the size (all atomics); a reader accepts a slot only when
// the word it reads before and after the send time is the same and carries the
// sequence number it looks for (a seqlock).
//
// # Transport-cc feedback
//
// Feedback walks the packet status chunks and receive deltas of a transport-cc
// packet (draft-holmer-rmcat-transport-wide-cc-extensions-01). Sequence numbers
// the ring does not hold (never sent, or overwritten) are ignored; the others
// count as received or lost, once: a packet reported again is ignored, unless
// it was reported lost and now arrived late (the twcc package's receivers
// re-report those), when it moves from lost to received. Each received packet
// feeds three things:
//
//   - the acked receive rate: bytes that arrived in the last second of arrival
//     time, divided by the span they cover;
//   - the delay-based detector: packets sent within 5 ms of a group's first
//     packet form one group; for consecutive groups the delay variation
//     d = (arrival delta − send delta) is accumulated, smoothed (α = 0.9) and
//     a least-squares slope is fitted over the last 20 groups, as in GCC's
//     TrendlineEstimator. The slope times min(groups, 60) times a gain of 4 is
//     the modified trend, compared with an adaptive threshold (initially
//     12.5 ms, k_up 0.0087, k_down 0.039, kept in [6, 600] ms): above it for
//     more than 10 ms and two groups while growing is overuse, below its
//     negative is underuse, else normal. Groups that arrive out of order are
//     skipped, and a delay variation beyond 3 s (a clock jump or a lie)
//     resets the delay history;
//   - the loss window: reported packets are counted until at least 20 are in
//     it, then the window's loss fraction drives the loss-based controller.
//
// # Rate control
//
// The delay-based estimate reacts to the detector once per feedback: overuse
// lowers it to 0.85 × the receive rate (state "decrease"); normal grows it by
// 8 % per second of elapsed time (state "increase"), but once a receive rate
// is known it does not grow past 1.5 × receive rate + 100 kbit/s, so an idle
// or application-limited sender does not run away (an estimate above that
// limit is kept, not lowered to it, as in libwebrtc's AimdRateControl: a
// player that gets only audio for a moment keeps its estimate); underuse holds it ("hold")
// while the queues drain.
//
// The loss-based estimate: a loss fraction above 10 % multiplies it by
// (1 − 0.5 × loss) of the current estimate, at most once per 300 ms + RTT
// (the RTT being now minus the send time of the newest packet a feedback
// reports) so that one loss episode, still reported for an RTT after the
// back-off, counts once; below 2 % it grows by 8 % per second; between the two
// it holds.
//
// The estimate is the minimum of the delay-based and loss-based estimates and
// of the last REMB (which expires 5 s after it arrived), clamped to
// [Config.Min, Config.Max].
//
// # Receiver reports
//
// For players without transport-cc, ReceiverReport feeds the fraction lost of
// a receiver report to the loss-based controller alone; it is ignored while
// transport-cc feedback arrives (within the last 5 s), whose loss counts are
// more precise.
//
// Everything is deterministic: time comes only from the callers' timestamps.
package bwe
