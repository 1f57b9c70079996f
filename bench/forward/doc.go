// Package forward holds the fan-out benchmarks of rtcrelay (forward_test.go): the forwarder over real SRTP
// and loopback UDP, the bare read→decrypt→encrypt→send ceiling on the same primitives, and the pion/webrtc
// TrackLocalStaticRTP baseline, in one binary. See ../README.md for how to run them and what they measured.
package forward
