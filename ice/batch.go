package ice

import "github.com/rtcrelay/rtcrelay/packet"

// BatchSlotSize is the capacity of each datagram slot of a Batch: a packet of up to packet.Size bytes, grown by
// a header rewrite, plus the SRTP tag.
const BatchSlotSize = packet.Size + 128

// DefaultSendBatch is the number of datagrams a Batch queues before it sends them with one sendmmsg.
const DefaultSendBatch = 64

// DefaultSendBatchBytes is the size of a Batch's slab (SocketConfig.SendBatchBytes): about 13 of the 1.2 kB
// video packets browsers send, or 64 audio packets. Forwarding to 100 or 1000 players cost the same CPU per
// packet with 16, 32 and 64 kB slabs and 64 fixed slots (109 kB), within the noise of three runs (bench/forward
// BenchmarkForwardSlab); the slab is most of a writer's memory.
const DefaultSendBatchBytes = 16 << 10

// maxGSOSegments bounds the datagrams coalesced into one UDP_SEGMENT message (the kernel's limit is 64 on
// older kernels, 128 on newer), and maxGSOBytes their total size.
const (
	maxGSOSegments = 64
	maxGSOBytes    = 65000
)

// BatchStats are the counters of the socket's batched send path (included in SocketStats).
type BatchStats struct {
	Syscalls    uint64 // sendmmsg/sendto calls
	GSOMessages uint64 // messages that carried more than one datagram (UDP_SEGMENT)
	GSOFailures uint64 // GSO refused by the kernel: GSO was switched off and the datagrams resent one by one
}
