// Package forwarder routes media from one publisher to many players: the stream registry (sharded by name),
// published streams and their tracks, the per-track packet rings (which are also the NACK caches and know the
// last keyframe), the copy-on-write subscriber snapshots, the writer goroutines that rewrite and send, and the
// RTCP policy (PLI/FIR throttling, NACK replies, sender-report rewriting, receiver reports).
//
// The packet path: the publisher session's reader goroutine calls Stream.HandleRTP with a decrypted
// *packet.Buffer. The stream finds the track by SSRC (a scan of a tiny slice), Retains the buffer into the
// track's ring and once per writer that serves a player of the track, and pushes a reference into each writer's
// single-producer queue. A writer, for each of its players, copies the plaintext into the next slot of its
// BatchSender for the player's Sender (an ice.Batch in production) while rewriting SSRC, sequence number,
// payload type and header extensions, and calls Downstream.WriteRTPBatch, which encrypts in place and queues;
// the writer flushes (sendmmsg, GSO) when its queue is empty. There is one send path, the same in tests. No lock, no map lookup and no allocation per packet; a full queue drops (counted).
//
// Everything the players' RTCP needs from the ring (NACK retransmissions) is served on the publisher's reader
// goroutine, which owns the ring: the players' RTCP goroutines post requests to a bounded channel that
// HandleRTP drains. The ring therefore needs no lock and no compare-and-swap retain.
package forwarder

import "errors"

// Sentinel errors.
var (
	// ErrNameInUse: a stream of that name is already published.
	ErrNameInUse = errors.New("forwarder: stream name is already in use")
	// ErrNotFound: no stream of that name.
	ErrNotFound = errors.New("forwarder: stream not found")
	// ErrPublisherStopped is the cause players end with when their publisher stops.
	ErrPublisherStopped = errors.New("forwarder: publisher stopped")
	// ErrPlayerClosed is the cause of a player that was closed by its owner.
	ErrPlayerClosed = errors.New("forwarder: player closed")
	// ErrStreamClosed: Subscribe on a stream that has stopped.
	ErrStreamClosed = errors.New("forwarder: stream closed")
	// ErrNoTracks: nothing to publish, or none of a player's tracks matches the stream's.
	ErrNoTracks = errors.New("forwarder: no matching tracks")
	// ErrTooManyTracks: a stream has more tracks than the forwarder supports.
	ErrTooManyTracks = errors.New("forwarder: too many tracks")
)

// Header extension URIs the forwarder treats specially.
const (
	extMid            = "urn:ietf:params:rtp-hdrext:sdes:mid"
	extAbsSendTime    = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
	extTransportCC    = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
	extRTPStreamID    = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
	extRepairStreamID = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
)
