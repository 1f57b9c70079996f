// Package arch holds the test that keeps rtcrelay's import graph pointing one way:
//
//	cmd → rest → relay → signaling → media → session → forwarder → {srtp, ice, dtls, sdp, packet}
//
// A package may import only packages of lower layers. media imports no protocol package (signaling, relay,
// rest, web): protocols map media's sentinel errors to their own words, not the other way round.
package arch
