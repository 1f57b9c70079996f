#!/usr/bin/python3
"""Publish videotestsrc VP8 + audiotestsrc Opus to a WHIP endpoint with webrtcbin, for --duration seconds, then
DELETE the resource. Prints one JSON line: {"ok", "status", "location", "answered_ms", "ice", "delete", ...}.

    /usr/bin/python3 e2e/gst/whip.py http://127.0.0.1:8081/whip/cam --duration 10
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from webrtchttp import Gst, Session, log  # noqa: E402

PIPELINE = """
webrtcbin name=wb bundle-policy=max-bundle
videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1 ! videoconvert !
  vp8enc deadline=1 keyframe-max-dist=30 target-bitrate=400000 ! rtpvp8pay pt=96 picture-id-mode=15-bit !
  application/x-rtp,media=video,encoding-name=VP8,payload=96,clock-rate=90000,rtcp-fb-nack-pli=(boolean)true,rtcp-fb-nack=(boolean)true ! wb.
audiotestsrc is-live=true wave=sine volume=0.1 ! audioconvert ! audioresample ! opusenc ! rtpopuspay pt=111 !
  application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000 ! wb.
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--token")
    ap.add_argument("--no-audio", action="store_true")
    ap.add_argument("--keep", action="store_true", help="do not DELETE the resource at the end")
    a = ap.parse_args()
    Gst.init(None)
    desc = PIPELINE
    if a.no_audio:
        desc = desc[: desc.index("audiotestsrc")]
    s = Session(Gst.parse_launch(desc), a.url, a.token)
    s.run(a.duration)
    log("done")
    return s.finish(delete=not a.keep)


if __name__ == "__main__":
    sys.exit(main())
