"""Shared code of the WHIP publisher and WHEP player scripts: webrtcbin driven over plain HTTP (Debian's
GStreamer 1.22 has no whipsink/whepsrc). Loopback only: libnice gathers on 127.0.0.1 and the offer carries only
127.0.0.1 UDP candidates."""

import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

T0 = time.monotonic()
KEEP = []  # objects that must outlive everything (see Session.__init__)


def log(*args):
    print("[%6.3f]" % (time.monotonic() - T0), *args, file=sys.stderr, flush=True)


def elapsed_ms():
    return round((time.monotonic() - T0) * 1000)


def loopback_only(sdp):
    """Drop every candidate that is not UDP on 127.0.0.1 (and TCP ones)."""
    out = []
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            f = line.split()
            if len(f) < 6 or f[2].lower() != "udp" or f[4] != "127.0.0.1":
                continue
        out.append(line)
    return "\r\n".join(out) + "\r\n"


class Session:
    """One webrtcbin peer that POSTs its complete offer (no trickle) and applies the answer."""

    def __init__(self, pipeline, url, token=None, extra_headers=None):
        self.pipeline = pipeline
        self.url = url
        self.token = token
        self.headers = extra_headers or {}
        self.wb = pipeline.get_by_name("wb")
        self.loop = GLib.MainLoop()
        self.result = {"url": url}
        self.location = None
        self.posted = None
        # GStreamer 1.22's webrtcbin hands its ICE agent to Python without a reference of its own, so the Python
        # wrapper owns the only one: keep it for the life of the process (KEEP), or the agent is freed under
        # webrtcbin. libnice skips loopback unless told: gather on 127.0.0.1 only, UDP only.
        ice = self.wb.get_property("ice-agent")
        KEEP.append(ice)
        ice.set_property("ice-tcp", False)
        ice.emit("add-local-ip-address", "127.0.0.1")
        self.wb.connect("on-negotiation-needed", self.on_negotiation_needed)
        self.wb.connect("notify::ice-gathering-state", self.on_gathering)
        self.wb.connect("notify::ice-connection-state", self.on_ice_state)
        self.offer_sent = False
        bus = pipeline.get_bus()
        bus.add_signal_watch()
        bus.connect("message::error", self.on_error)

    def on_error(self, _bus, msg):
        err, dbg = msg.parse_error()
        self.fail("pipeline error: %s (%s)" % (err, dbg))

    def fail(self, why):
        log("FAIL:", why)
        self.result.setdefault("error", why)
        self.loop.quit()

    def on_ice_state(self, wb, _pspec):
        st = wb.get_property("ice-connection-state")
        log("ice-connection-state", st.value_nick)
        self.result["ice"] = st.value_nick
        if st == GstWebRTC.WebRTCICEConnectionState.FAILED:
            self.fail("ICE failed")

    def on_negotiation_needed(self, wb):
        log("negotiation needed")
        promise = Gst.Promise.new_with_change_func(self.on_offer, wb, None)
        wb.emit("create-offer", None, promise)

    def on_offer(self, promise, wb, _):
        reply = promise.get_reply()
        offer = reply.get_value("offer")
        wb.emit("set-local-description", offer, Gst.Promise.new())
        self.maybe_post()

    def on_gathering(self, wb, _pspec):
        st = wb.get_property("ice-gathering-state")
        log("ice-gathering-state", st.value_nick)
        if st == GstWebRTC.WebRTCICEGatheringState.COMPLETE:
            GLib.idle_add(self.maybe_post)

    def maybe_post(self):
        if self.offer_sent:
            return False
        if self.wb.get_property("ice-gathering-state") != GstWebRTC.WebRTCICEGatheringState.COMPLETE:
            return False
        desc = self.wb.get_property("local-description")
        if desc is None:
            return False
        self.offer_sent = True
        sdp = loopback_only(desc.sdp.as_text())
        if "a=candidate:" not in sdp:
            self.fail("no 127.0.0.1 UDP candidate gathered")
            return False
        headers = {"Content-Type": "application/sdp"}
        headers.update(self.headers)
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        req = urllib.request.Request(self.url, data=sdp.encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                status, answer = resp.status, resp.read().decode()
                self.location = resp.headers.get("Location")
        except urllib.error.HTTPError as e:
            self.result["status"] = e.code
            self.fail("POST %s: %d %s" % (self.url, e.code, e.read().decode().strip()))
            return False
        except OSError as e:
            self.fail("POST %s: %s" % (self.url, e))
            return False
        self.posted = elapsed_ms()
        self.result.update(status=status, location=self.location, answered_ms=self.posted)
        log("POST", status, "Location", self.location)
        ok, msg = GstSdp.SDPMessage.new_from_text(answer)
        if ok != GstSdp.SDPResult.OK:
            self.fail("bad answer SDP")
            return False
        desc = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, msg)
        if os.environ.get("WHIP_GST_DEBUG"):
            log("offer:\n" + sdp + "\nanswer:\n" + answer)
        self.wb.emit("set-remote-description", desc, Gst.Promise.new_with_change_func(self.on_remote_set, None, None))
        return False

    def on_remote_set(self, promise, *_):
        reply = promise.get_reply()
        if reply is not None and reply.has_field("error"):
            self.fail("set-remote-description: %s" % reply.get_value("error"))
        else:
            log("remote description set")

    def delete(self):
        if not self.location:
            return None
        url = urllib.parse.urljoin(self.url, self.location)
        headers = {"Authorization": "Bearer " + self.token} if self.token else {}
        req = urllib.request.Request(url, headers=headers, method="DELETE")
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return resp.status
        except urllib.error.HTTPError as e:
            return e.code
        except OSError:
            return None

    def run(self, seconds):
        self.pipeline.set_state(Gst.State.PLAYING)
        GLib.timeout_add(int(seconds * 1000), self.loop.quit)
        self.loop.run()

    def finish(self, delete=True):
        if delete:
            self.result["delete"] = self.delete()
        self.pipeline.set_state(Gst.State.NULL)
        self.result["ok"] = "error" not in self.result
        print(json.dumps(self.result), flush=True)
        sys.stderr.flush()
        os._exit(0 if self.result["ok"] else 1)  # no interpreter teardown: it would free KEEP's borrowed agent
