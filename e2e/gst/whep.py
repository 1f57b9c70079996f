#!/usr/bin/python3
"""Play a WHEP endpoint with webrtcbin for --duration seconds, decode the video (decodebin) and count the
decoded frames, then DELETE the resource. Prints one JSON line:
{"ok", "status", "frames", "first_frame_ms", "answered_ms", "width", "height", "audio_buffers", ...}
(times in ms since the script started).

    /usr/bin/python3 e2e/gst/whep.py http://127.0.0.1:8081/whep/cam --duration 5
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from webrtchttp import Gst, GstWebRTC, Session, elapsed_ms, log  # noqa: E402


class Player(Session):
    def __init__(self, url, token):
        pipeline = Gst.Pipeline.new("whep")
        wb = Gst.ElementFactory.make("webrtcbin", "wb")
        wb.set_property("bundle-policy", "max-bundle")
        pipeline.add(wb)
        super().__init__(pipeline, url, token)
        self.result.update(frames=0, audio_buffers=0)
        for caps in (
            "application/x-rtp,media=video,encoding-name=VP8,payload=96,clock-rate=90000,rtcp-fb-nack-pli=(boolean)true",
            "application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000,encoding-params=(string)2",
        ):
            wb.emit("add-transceiver", GstWebRTC.WebRTCRTPTransceiverDirection.RECVONLY, Gst.Caps.from_string(caps))
        wb.connect("pad-added", self.on_pad)

    def on_pad(self, _wb, pad):
        if pad.get_direction() != Gst.PadDirection.SRC:
            return
        log("webrtcbin pad", pad.get_current_caps().to_string())
        dec = Gst.ElementFactory.make("decodebin")
        dec.connect("pad-added", self.on_decoded)
        self.pipeline.add(dec)
        dec.sync_state_with_parent()
        pad.link(dec.get_static_pad("sink"))

    def on_decoded(self, _dec, pad):
        caps = pad.get_current_caps()
        name = caps.get_structure(0).get_name()
        sink = Gst.ElementFactory.make("fakesink")
        sink.set_property("sync", False)
        sink.set_property("signal-handoffs", True)
        if name.startswith("video/"):
            st = caps.get_structure(0)
            self.result["width"], self.result["height"] = st.get_value("width"), st.get_value("height")
            sink.connect("handoff", self.on_frame)
        else:
            sink.connect("handoff", self.on_audio)
        self.pipeline.add(sink)
        sink.sync_state_with_parent()
        pad.link(sink.get_static_pad("sink"))
        log("decoded", caps.to_string())

    def on_frame(self, *_):
        if self.result["frames"] == 0:
            self.result["first_frame_ms"] = elapsed_ms()
            log("first decoded frame")
        self.result["frames"] += 1

    def on_audio(self, *_):
        self.result["audio_buffers"] += 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--duration", type=float, default=5)
    ap.add_argument("--token")
    a = ap.parse_args()
    Gst.init(None)
    p = Player(a.url, a.token)
    p.run(a.duration)
    log("done: %d frames" % p.result["frames"])
    return p.finish()


if __name__ == "__main__":
    sys.exit(main())
