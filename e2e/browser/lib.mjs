// lib.mjs: what driver.mjs (one scripted run) and relay-driver.mjs (interactive, one command per stdin line) share:
// the Chromium flags and launch, the page init script (RTCPeerConnection registry, stats, frame-ID decoding),
// the loopback server for the official-SDK page, the Page wrapper and the media sampler.
import { chromium } from 'playwright-core';
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

// TERMINAL are the stream statuses after which nothing more happens to a stream.
export const TERMINAL = ['UNPUBLISHED', 'STOPPED', 'FAILED'];

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// PW_DISABLED is playwright-core 1.65.1's own --disable-features list: Chromium keeps only the LAST
// --disable-features switch, so ours must repeat it.
const PW_DISABLED = ['AvoidUnnecessaryBeforeUnloadCheckSync', 'DestroyProfileOnBrowserClose', 'HttpsUpgrades',
  'HttpsFirstBalancedModeAutoEnable', 'LensOverlay', 'MediaRouter', 'PaintHolding', 'ThirdPartyStoragePartitioning',
  'AvoidCorsURLLoaderRestartOnRedirect', 'OptimizationHints', 'NetworkTimeServiceQuerying', 'AimEnabled', 'PreconnectToSearch'];

export function chromiumArgs(y4m) {
  const args = [
    '--use-fake-device-for-media-stream',
    '--use-fake-ui-for-media-stream',
    '--allow-loopback-in-peer-connection',
    '--disable-features=' + [...PW_DISABLED, 'WebRtcHideLocalIpsWithMdns'].join(','),
    '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1',
    '--disable-gpu',
    '--disable-quic',
    '--autoplay-policy=no-user-gesture-required',
  ];
  if (y4m) args.push('--use-file-for-fake-video-capture=' + path.resolve(y4m));
  return args;
}

// launchChromium starts headless Chromium with chromiumArgs(cfg.y4m) and cfg.extraArgs (e.g. field trials);
// cfg.chromium overrides the executable
// (default $CHROMIUM_BIN or /usr/bin/chromium) and extra is merged into the launch options.
export function launchChromium(cfg, extra = {}) {
  return chromium.launch({
    executablePath: cfg.chromium || process.env.CHROMIUM_BIN || '/usr/bin/chromium',
    headless: true,
    args: [...chromiumArgs(cfg.y4m), ...(cfg.extraArgs || [])],
    timeout: 30000,
    ...extra,
  });
}

// INIT runs in every page before its scripts: it records every RTCPeerConnection and defines the helpers
// that read stats and frame IDs the same way on the SDK page and on our pages.
export const INIT = `(() => {
  window.__pcs = [];
  const Orig = window.RTCPeerConnection;
  if (Orig) {
    window.RTCPeerConnection = class extends Orig {
      constructor(...a) { super(...a); window.__pcs.push(this); }
    };
  }
  window.__e2eStats = async (pc) => {
    if (!pc) return null;
    const out = { connectionState: pc.connectionState, iceConnectionState: pc.iceConnectionState, video: {}, audio: {}, outVideo: {}, outAudio: {}, pair: null };
    const r = await pc.getStats();
    const codecs = {};
    r.forEach((s) => { if (s.type === 'codec') codecs[s.id] = s.mimeType; });
    r.forEach((s) => {
      if (s.type === 'inbound-rtp') {
        out[s.kind] = { packetsReceived: s.packetsReceived, bytesReceived: s.bytesReceived, packetsLost: s.packetsLost,
          framesDecoded: s.framesDecoded, framesReceived: s.framesReceived, framesDropped: s.framesDropped,
          framesPerSecond: s.framesPerSecond, keyFramesDecoded: s.keyFramesDecoded, frameWidth: s.frameWidth,
          frameHeight: s.frameHeight, nackCount: s.nackCount, pliCount: s.pliCount, codec: codecs[s.codecId] };
      } else if (s.type === 'outbound-rtp') {
        out[s.kind === 'video' ? 'outVideo' : 'outAudio'] = { packetsSent: s.packetsSent, bytesSent: s.bytesSent,
          framesEncoded: s.framesEncoded, framesPerSecond: s.framesPerSecond, codec: codecs[s.codecId] };
      } else if (s.type === 'transport' && s.selectedCandidatePairId) {
        const p = r.get(s.selectedCandidatePairId);
        const l = p && r.get(p.localCandidateId);
        const rc = p && r.get(p.remoteCandidateId);
        if (p) out.pair = { local: l && (l.address + ':' + l.port), remote: rc && (rc.address + ':' + rc.port), rtt: p.currentRoundTripTime };
      }
    });
    return out;
  };
  let canvas = null;
  window.__e2eFrameId = (v) => {
    if (!v || v.readyState < 2 || !v.videoWidth) return -1;
    canvas = canvas || document.createElement('canvas');
    canvas.width = 320; canvas.height = 240;
    const ctx = canvas.getContext('2d', { willReadFrequently: true });
    ctx.drawImage(v, 0, 0, 320, 240);
    const d = ctx.getImageData(0, 0, 320, 240).data;
    let bits = 0;
    for (let c = 0; c < 16; c++) {
      const cx = (c % 4) * 80 + 40, cy = Math.floor(c / 4) * 60 + 30;
      let s = 0, n = 0;
      for (let y = cy - 10; y < cy + 10; y += 2) for (let x = cx - 15; x < cx + 15; x += 3) {
        const i = (y * 320 + x) * 4; s += (d[i] + d[i + 1] + d[i + 2]) / 3; n++; }
      if (s / n > 128) bits |= 1 << c;
    }
    const id = bits & 0xfff;
    return ((id ^ id >> 4 ^ id >> 8 ^ 0xa) & 0xf) === (bits >> 12 & 0xf) ? id : -2;
  };
  window.__e2eDiag = () => window.__pcs.map((pc, i) => {
    const cands = (d) => (d && d.sdp ? d.sdp.split(/\\r?\\n/).filter((l) => l.startsWith('a=candidate')) : []);
    return { index: i, connectionState: pc.connectionState, iceConnectionState: pc.iceConnectionState,
      iceGatheringState: pc.iceGatheringState, signalingState: pc.signalingState,
      localCandidates: cands(pc.localDescription), remoteCandidates: cands(pc.remoteDescription),
      remoteSetup: pc.remoteDescription ? (pc.remoteDescription.sdp.match(/a=setup:\\w+/g) || []) : [] };
  });
})();`;

// serveSDK starts a tiny loopback HTTP server for the SDK test page and the SDK bundle.
export function serveSDK() {
  const sdk = path.join(here, 'node_modules', '@flashphoner', 'websdk', 'flashphoner.js');
  if (!fs.existsSync(sdk)) throw new Error(`official SDK bundle missing: ${sdk} (run npm ci in e2e/browser)`);
  const files = {
    '/sdk-page.html': [path.join(here, 'sdk-page.html'), 'text/html; charset=utf-8'],
    '/flashphoner.js': [sdk, 'text/javascript; charset=utf-8'],
  };
  const srv = http.createServer((req, res) => {
    const f = files[new URL(req.url, 'http://x').pathname];
    if (!f) { res.writeHead(404); res.end(); return; }
    res.writeHead(200, { 'Content-Type': f[1], 'Cache-Control': 'no-store' });
    fs.createReadStream(f[0]).pipe(res);
  });
  return new Promise((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => resolve(srv));
  });
}

// Page wraps one browser tab: kind "sdk" (default) is the official-SDK page served by serveSDK and connected to
// spec.ws; kind "ours" is one of rtcrelay's own pages (spec.url), driven through its window.e2e hooks, where a
// handle names the slot ("publish" or "play") it was started in.
export class Page {
  constructor(name, spec, page) {
    this.name = name;
    this.spec = spec;
    this.page = page;
    this.kind = spec.kind || 'sdk';
    this.slots = {}; // handle -> "publish"|"play" on our pages
    this.console = [];
    page.on('console', (m) => { this.console.push(`${m.type()}: ${m.text()}`.slice(0, 500)); if (this.console.length > 200) this.console.shift(); });
    page.on('pageerror', (e) => this.console.push(`pageerror: ${e.message}`));
  }

  ref(handle) { return this.kind === 'ours' ? (this.slots[handle] || handle) : handle; }

  async open(sdkBase, timeoutMs) {
    if (this.kind === 'ours') {
      await this.page.goto(this.spec.url, { timeout: timeoutMs });
      await this.page.waitForFunction(() => window.e2e, null, { timeout: timeoutMs });
      return { url: this.spec.url };
    }
    await this.page.goto(sdkBase + '/sdk-page.html', { timeout: timeoutMs });
    const opts = { appKey: this.spec.appKey, custom: this.spec.custom };
    const r = await this.page.evaluate(([u, t, o]) => window.e2e.connect(u, t, o), [this.spec.ws, timeoutMs, opts]);
    if (this.spec.expectFail) return r; // the caller checks the session status (a refused connect)
    if (r.status !== 'ESTABLISHED') throw new Error(`page ${this.name}: session ${r.status} (${r.history.join(',')}) at ${this.spec.ws}`);
    return r;
  }

  async start(op, handle, name, timeoutMs) {
    if (this.kind === 'ours') {
      this.slots[handle] = op;
      return this.page.evaluate(([o, n, t]) => window.e2e[o](n, t), [op, name, timeoutMs]);
    }
    return this.page.evaluate(([o, h, n, t]) => window.e2e[o](h, n, t), [op, handle, name, timeoutMs]);
  }

  async stop(handle, timeoutMs) {
    if (this.kind === 'ours') {
      await this.page.evaluate((s) => window.e2e.stop(s), this.ref(handle));
      return this.wait(handle, TERMINAL, timeoutMs);
    }
    return this.page.evaluate(([h, t]) => window.e2e.stop(h, t), [handle, timeoutMs]);
  }

  async status(handle) {
    if (this.kind === 'ours') return this.page.evaluate((s) => window.e2e.status()[s], this.ref(handle));
    return this.page.evaluate((h) => window.e2e.status(h), handle);
  }

  async wait(handle, statuses, timeoutMs) {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const v = await this.status(handle);
      if (v && (statuses.includes(v.status) || TERMINAL.includes(v.status))) return v;
      if (Date.now() > end) return v;
      await sleep(50);
    }
  }

  stats(handle) { return this.page.evaluate((h) => window.__e2eStats(window.e2e.pc(h)), this.ref(handle)); }

  frameId(handle) { return this.page.evaluate((h) => window.__e2eFrameId(window.e2e.video(h)), this.ref(handle)); }

  async diag() {
    const d = { kind: this.kind, console: this.console.slice(-60) };
    try { d.pcs = await this.page.evaluate(() => window.__e2eDiag()); } catch (e) { d.error = e.message; }
    try { d.e2eStatus = await this.page.evaluate(() => (window.e2e ? window.e2e.status() : null)); } catch (e) { d.statusError = e.message; }
    return d;
  }
}

// sample measures what a player receives. step: {player: {page, handle}, publisher: {page, handle} (optional),
// seconds (default 5), firstFrameTimeoutMs (default 15000)}; frames is the looping video's frame count. It waits
// for the first decoded frame (a late player waits for a keyframe), then reads frame IDs (player and publisher
// preview together) every 100 ms and stats every second for `seconds`.
export async function sample(pages, step, frames) {
  const player = pages[step.player.page];
  const pub = step.publisher ? pages[step.publisher.page] : null;
  if (!player || (step.publisher && !pub)) throw new Error('sample: unknown page');
  const seconds = step.seconds ?? 5;
  const out = { seconds, stats: [], ids: [], decoded: 0, total: 0, lags: [], firstFrameMs: -1 };
  const w0 = Date.now();
  const firstBy = w0 + (step.firstFrameTimeoutMs ?? 15000);
  for (;;) {
    const s = await player.stats(step.player.handle);
    if (s && s.video && s.video.framesDecoded > 0 && (await player.frameId(step.player.handle)) !== -1) { out.firstFrameMs = Date.now() - w0; break; }
    if (Date.now() > firstBy) { out.firstFrameMs = -1; out.noFirstFrame = s; break; }
    await sleep(50);
  }
  const end = Date.now() + seconds * 1000;
  let nextStats = 0;
  while (Date.now() < end) {
    const tick = Date.now();
    if (tick >= nextStats) {
      const s = await player.stats(step.player.handle);
      out.stats.push({ t: tick, video: s && s.video, audio: s && s.audio, pair: s && s.pair, connectionState: s && s.connectionState });
      nextStats = tick + 1000;
    }
    const [rid, lid] = await Promise.all([
      player.frameId(step.player.handle),
      pub ? pub.frameId(step.publisher.handle) : Promise.resolve(null),
    ]);
    out.total++;
    if (rid >= 0) out.decoded++;
    out.ids.push(lid === null ? [rid] : [rid, lid]);
    if (rid >= 0 && lid !== null && lid >= 0) {
      // publisher preview minus player, modulo the looping video, in (-frames/2, frames/2]: ~0..few frames
      let lag = (((lid - rid) % frames) + frames) % frames;
      if (lag > frames / 2) lag -= frames;
      out.lags.push(lag);
    }
    const wait = 100 - (Date.now() - tick);
    if (wait > 0) await sleep(wait);
  }
  const s = await player.stats(step.player.handle);
  out.stats.push({ t: Date.now(), video: s && s.video, audio: s && s.audio, pair: s && s.pair, connectionState: s && s.connectionState });
  const first = out.stats[0];
  const last = out.stats[out.stats.length - 1];
  out.framesDecoded = [first.video?.framesDecoded ?? 0, last.video?.framesDecoded ?? 0];
  out.audioPackets = [first.audio?.packetsReceived ?? 0, last.audio?.packetsReceived ?? 0];
  out.videoPacketsLost = last.video?.packetsLost ?? 0;
  out.framesPerSecond = last.video?.framesPerSecond ?? 0;
  out.videoCodec = last.video?.codec;
  out.audioCodec = last.audio?.codec;
  out.frameSize = [last.video?.frameWidth ?? 0, last.video?.frameHeight ?? 0];
  out.pair = last.pair;
  const distinct = new Set(out.ids.map((x) => x[0]).filter((x) => x >= 0));
  out.distinctIds = distinct.size;
  out.maxLag = out.lags.length ? Math.max(...out.lags.map(Math.abs)) : -1;
  out.medianLag = out.lags.length ? [...out.lags].sort((a, b) => a - b)[Math.floor(out.lags.length / 2)] : -1;
  return out;
}
