// driver.mjs: runs browser end-to-end scenarios against rtcrelay in headless Debian Chromium.
//
//   node driver.mjs '<json>'        (or the JSON on stdin when no argument is given)
//
// The JSON names pages and a list of steps; the driver prints ONE JSON object as its last line of output:
//   {"ok": bool, "error": "...", "failedStep": n, "steps": [...], "samples": {...}, "diag": {...}}
//
// Pages: {"A": {"kind": "sdk", "ws": "ws://127.0.0.1:P"}, "B": {"kind": "ours", "url": "http://127.0.0.1:H/two-way-streaming.html"}}
//   sdk  = a page served by this driver that loads the OFFICIAL Flashphoner Web SDK bundle from node_modules
//   ours = one of rtcrelay's own pages, driven through its window.e2e hooks (slots "publish" and "play")
// Steps (every wait has a timeout; "expect" is a status or a list of statuses, "info" an exact info string):
//   {"do": "publish", "page": "A", "handle": "pub", "name": "s", "expect": "PUBLISHING"}
//   {"do": "play",    "page": "B", "handle": "p1",  "name": "s", "expect": "PLAYING"}
//   {"do": "stop",    "page": "B", "handle": "p1", "expect": "STOPPED"}
//   {"do": "wait",    "page": "B", "handle": "p1", "expect": ["FAILED", "STOPPED"], "timeoutMs": 10000}
//   {"do": "sample",  "as": "media", "player": {"page": "B", "handle": "p1"}, "publisher": {"page": "A", "handle": "pub"}, "seconds": 5}
//                     (waits up to firstFrameTimeoutMs, default 15000, for the first decoded frame, then samples)
//   {"do": "status",  "page": "A", "handle": "pub"}       (records the current status, no expectation needed)
//   {"do": "sleep",   "seconds": 1}
// Top-level options: "y4m" (absolute path of a frame-ID video for the fake camera), "frames" (its frame count,
// for lag arithmetic), "timeoutMs" (default per-wait timeout, 15000), "deadlineMs" (whole run, 120000),
// "chromium" (executable; default $CHROMIUM_BIN or /usr/bin/chromium), "logs" (include page console logs).
import { chromium } from 'playwright-core';
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const result = { ok: false, error: '', failedStep: -1, steps: [], samples: {}, timings: {}, diag: {} };
const t0 = Date.now();
let browser = null;
let server = null;
let printed = false;

function finish(code) {
  if (printed) return;
  printed = true;
  result.timings.totalMs = Date.now() - t0;
  process.stdout.write('\n' + JSON.stringify(result) + '\n');
  process.exitCode = code;
}

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

// INIT runs in every page before its scripts: it records every RTCPeerConnection and defines the helpers
// that read stats and frame IDs the same way on the SDK page and on our pages.
const INIT = `(() => {
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
function serveSDK() {
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

function want(expect) {
  if (expect === undefined || expect === null) return null;
  return Array.isArray(expect) ? expect : [expect];
}

class Page {
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
    const r = await this.page.evaluate(([u, t]) => window.e2e.connect(u, t), [this.spec.ws, timeoutMs]);
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
      return this.wait(handle, ['UNPUBLISHED', 'STOPPED', 'FAILED'], timeoutMs);
    }
    return this.page.evaluate(([h, t]) => window.e2e.stop(h, t), [handle, timeoutMs]);
  }

  async status(handle) {
    if (this.kind === 'ours') return this.page.evaluate((s) => window.e2e.status()[s], this.ref(handle));
    return this.page.evaluate((h) => window.e2e.status(h), handle);
  }

  async wait(handle, statuses, timeoutMs) {
    const end = Date.now() + timeoutMs;
    const terminal = ['UNPUBLISHED', 'STOPPED', 'FAILED'];
    for (;;) {
      const v = await this.status(handle);
      if (v && (statuses.includes(v.status) || terminal.includes(v.status))) return v;
      if (Date.now() > end) return v;
      await new Promise((r) => setTimeout(r, 50));
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

// sample reads frame IDs (player and publisher preview together) every 100 ms and stats every second.
async function sample(pages, step, frames) {
  const player = pages[step.player.page];
  const pub = step.publisher ? pages[step.publisher.page] : null;
  const seconds = step.seconds ?? 5;
  const out = { seconds, stats: [], ids: [], decoded: 0, total: 0, lags: [], firstFrameMs: -1 };
  // wait for the first decoded frame (a late player waits for a keyframe), then sample for `seconds`
  const w0 = Date.now();
  const firstBy = w0 + (step.firstFrameTimeoutMs ?? 15000);
  for (;;) {
    const s = await player.stats(step.player.handle);
    if (s && s.video && s.video.framesDecoded > 0 && (await player.frameId(step.player.handle)) !== -1) { out.firstFrameMs = Date.now() - w0; break; }
    if (Date.now() > firstBy) { out.firstFrameMs = -1; out.noFirstFrame = s; break; }
    await new Promise((r) => setTimeout(r, 50));
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
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
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

async function run(cfg) {
  const timeoutMs = cfg.timeoutMs ?? 15000;
  const frames = cfg.frames ?? 150;
  const needSDK = Object.values(cfg.pages || {}).some((p) => (p.kind || 'sdk') === 'sdk');
  let sdkBase = '';
  if (needSDK) {
    server = await serveSDK();
    sdkBase = `http://127.0.0.1:${server.address().port}`;
  }
  const tl = Date.now();
  browser = await chromium.launch({
    executablePath: cfg.chromium || process.env.CHROMIUM_BIN || '/usr/bin/chromium',
    headless: true,
    args: chromiumArgs(cfg.y4m),
    timeout: 30000,
  });
  result.timings.launchMs = Date.now() - tl;
  const ctx = await browser.newContext();
  await ctx.addInitScript(INIT);
  const pages = {};
  for (const [name, spec] of Object.entries(cfg.pages || {})) {
    pages[name] = new Page(name, spec, await ctx.newPage());
  }
  try {
    for (const [name, p] of Object.entries(pages)) {
      const ts = Date.now();
      const r = await p.open(sdkBase, timeoutMs);
      result.steps.push({ do: 'open', page: name, result: r, ms: Date.now() - ts });
    }
    for (let i = 0; i < (cfg.steps || []).length; i++) {
      const step = cfg.steps[i];
      const ts = Date.now();
      const st = step.timeoutMs ?? timeoutMs;
      const p = pages[step.page];
      if (step.page && !p) throw new Error(`step ${i}: unknown page ${step.page}`);
      let r;
      switch (step.do) {
        case 'publish': case 'play': r = await p.start(step.do, step.handle, step.name, st); break;
        case 'stop': r = await p.stop(step.handle, st); break;
        case 'wait': r = await p.wait(step.handle, want(step.expect) || [], st); break;
        case 'status': r = await p.status(step.handle); break;
        case 'stats': r = await p.stats(step.handle); break;
        case 'sample': r = await sample(pages, step, frames); result.samples[step.as || `step${i}`] = r; break;
        case 'sleep': await new Promise((res) => setTimeout(res, (step.seconds ?? 1) * 1000)); r = null; break;
        default: throw new Error(`step ${i}: unknown action ${step.do}`);
      }
      const rec = { ...step, result: step.do === 'sample' ? { decoded: r.decoded, total: r.total } : r, ms: Date.now() - ts };
      result.steps.push(rec);
      const w = want(step.expect);
      const bad = (w && (!r || !w.includes(r.status))) || (step.info !== undefined && (!r || r.info !== step.info));
      if (bad) {
        result.failedStep = i;
        throw new Error(`step ${i} ${step.do} ${step.page}/${step.handle}: got ${r ? r.status : 'nothing'}` +
          `${r && r.info ? ` (${r.info})` : ''}, want ${w ? w.join('|') : ''}${step.info !== undefined ? ` info "${step.info}"` : ''}`);
      }
    }
    result.ok = true;
  } finally {
    if (!result.ok || cfg.logs) {
      for (const [name, p] of Object.entries(pages)) result.diag[name] = await p.diag();
    }
  }
}

async function main() {
  let raw = process.argv[2];
  if (!raw) raw = fs.readFileSync(0, 'utf8');
  const cfg = JSON.parse(raw);
  const deadline = setTimeout(() => {
    result.error = result.error || `driver deadline ${cfg.deadlineMs ?? 120000} ms exceeded`;
    finish(3);
    process.exit(3);
  }, cfg.deadlineMs ?? 120000);
  try {
    await run(cfg);
  } catch (e) {
    result.error = String(e && e.message ? e.message : e);
  } finally {
    clearTimeout(deadline);
    try { if (browser) await browser.close(); } catch { /* closing anyway */ }
    if (server) server.close();
    finish(result.ok ? 0 : 1);
  }
}

main();
