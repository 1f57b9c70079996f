// relay-driver.mjs: an INTERACTIVE browser driver for the relay end-to-end tests (e2e/relay_test.go).
//
//   node relay-driver.mjs '<json config>'      config: {"y4m": ABS_PATH, "frames": N, "chromium": BIN}
//
// Unlike driver.mjs (one scripted run), this one launches Chromium once and then executes commands read from
// stdin, one JSON object per line, so that the Go test can interleave browser steps with REST calls and with
// killing and restarting server processes. Each command gets exactly one JSON reply line on stdout:
//   {"id": n, "ok": true, "result": ...}   or   {"id": n, "ok": false, "error": "..."}
// Commands ("page" names a browser tab; "handle" names a stream on it):
//   {"id":1, "do":"open",    "page":"A", "ws":"ws://127.0.0.1:P"}        an official-SDK page connected to P
//   {"id":2, "do":"publish", "page":"A", "handle":"pub", "name":"s", "timeoutMs":15000}
//   {"id":3, "do":"play",    "page":"B", "handle":"p1", "name":"s"}
//   {"id":4, "do":"stop"|"status"|"stats", "page":"B", "handle":"p1"}
//   {"id":5, "do":"wait",    "page":"B", "handle":"p1", "expect":["FAILED","STOPPED"], "timeoutMs":10000}
//   {"id":6, "do":"sample",  "player":{"page":"B","handle":"p1"}, "publisher":{"page":"A","handle":"pub"}, "seconds":3}
//   {"id":7, "do":"diag",    "page":"B"}     page console, peer connections, statuses
//   {"id":8, "do":"close"}                   closes Chromium and exits
// The SDK page and the official SDK bundle are the same files driver.mjs serves (sdk-page.html, node_modules).
// The page hooks below are copied from driver.mjs, which runs its own main() on import and so cannot be imported.
import { chromium } from 'playwright-core';
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

const PW_DISABLED = ['AvoidUnnecessaryBeforeUnloadCheckSync', 'DestroyProfileOnBrowserClose', 'HttpsUpgrades',
  'HttpsFirstBalancedModeAutoEnable', 'LensOverlay', 'MediaRouter', 'PaintHolding', 'ThirdPartyStoragePartitioning',
  'AvoidCorsURLLoaderRestartOnRedirect', 'OptimizationHints', 'NetworkTimeServiceQuerying', 'AimEnabled', 'PreconnectToSearch'];

function chromiumArgs(y4m) {
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

// INIT (from driver.mjs): records every RTCPeerConnection, reads stats and frame IDs.
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
    const out = { connectionState: pc.connectionState, iceConnectionState: pc.iceConnectionState, video: {}, audio: {}, pair: null };
    const r = await pc.getStats();
    const codecs = {};
    r.forEach((s) => { if (s.type === 'codec') codecs[s.id] = s.mimeType; });
    r.forEach((s) => {
      if (s.type === 'inbound-rtp') {
        out[s.kind] = { packetsReceived: s.packetsReceived, bytesReceived: s.bytesReceived, packetsLost: s.packetsLost,
          framesDecoded: s.framesDecoded, framesReceived: s.framesReceived, framesDropped: s.framesDropped,
          framesPerSecond: s.framesPerSecond, keyFramesDecoded: s.keyFramesDecoded, frameWidth: s.frameWidth,
          frameHeight: s.frameHeight, pliCount: s.pliCount, codec: codecs[s.codecId] };
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
      localCandidates: cands(pc.localDescription), remoteCandidates: cands(pc.remoteDescription) };
  });
})();`;

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

const TERMINAL = ['UNPUBLISHED', 'STOPPED', 'FAILED'];

class Page {
  constructor(name, page) {
    this.name = name;
    this.page = page;
    this.console = [];
    page.on('console', (m) => { this.console.push(`${m.type()}: ${m.text()}`.slice(0, 500)); if (this.console.length > 200) this.console.shift(); });
    page.on('pageerror', (e) => this.console.push(`pageerror: ${e.message}`));
  }

  async open(sdkBase, ws, timeoutMs) {
    await this.page.goto(sdkBase + '/sdk-page.html', { timeout: timeoutMs });
    const r = await this.page.evaluate(([u, t]) => window.e2e.connect(u, t), [ws, timeoutMs]);
    if (r.status !== 'ESTABLISHED') throw new Error(`page ${this.name}: session ${r.status} (${r.history.join(',')}) at ${ws}`);
    return r;
  }

  start(op, handle, name, timeoutMs) {
    return this.page.evaluate(([o, h, n, t]) => window.e2e[o](h, n, t), [op, handle, name, timeoutMs]);
  }

  stop(handle, timeoutMs) { return this.page.evaluate(([h, t]) => window.e2e.stop(h, t), [handle, timeoutMs]); }

  status(handle) { return this.page.evaluate((h) => window.e2e.status(h), handle); }

  async wait(handle, statuses, timeoutMs) {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const v = await this.status(handle);
      if (v && (statuses.includes(v.status) || TERMINAL.includes(v.status))) return v;
      if (Date.now() > end) return v;
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  stats(handle) { return this.page.evaluate((h) => window.__e2eStats(window.e2e.pc(h)), handle); }

  frameId(handle) { return this.page.evaluate((h) => window.__e2eFrameId(window.e2e.video(h)), handle); }

  async diag() {
    const d = { console: this.console.slice(-60) };
    try { d.pcs = await this.page.evaluate(() => window.__e2eDiag()); } catch (e) { d.error = e.message; }
    try { d.e2eStatus = await this.page.evaluate(() => (window.e2e ? window.e2e.status() : null)); } catch (e) { d.statusError = e.message; }
    return d;
  }
}

// sample (from driver.mjs): frame IDs of the player and the publisher's preview every 100 ms, stats every second.
async function sample(pages, cmd, frames) {
  const player = pages[cmd.player.page];
  const pub = cmd.publisher ? pages[cmd.publisher.page] : null;
  if (!player || (cmd.publisher && !pub)) throw new Error('sample: unknown page');
  const seconds = cmd.seconds ?? 3;
  const out = { seconds, stats: [], ids: [], decoded: 0, total: 0, lags: [] };
  const end = Date.now() + seconds * 1000;
  let nextStats = 0;
  while (Date.now() < end) {
    const tick = Date.now();
    if (tick >= nextStats) {
      const s = await player.stats(cmd.player.handle);
      out.stats.push({ t: tick, video: s && s.video, audio: s && s.audio, pair: s && s.pair });
      nextStats = tick + 1000;
    }
    const [rid, lid] = await Promise.all([
      player.frameId(cmd.player.handle),
      pub ? pub.frameId(cmd.publisher.handle) : Promise.resolve(null),
    ]);
    out.total++;
    if (rid >= 0) out.decoded++;
    out.ids.push(lid === null ? [rid] : [rid, lid]);
    if (rid >= 0 && lid !== null && lid >= 0) out.lags.push((((lid - rid) % frames) + frames) % frames);
    const wait = 100 - (Date.now() - tick);
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  }
  const s = await player.stats(cmd.player.handle);
  out.stats.push({ t: Date.now(), video: s && s.video, audio: s && s.audio, pair: s && s.pair });
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
  out.distinctIds = new Set(out.ids.map((x) => x[0]).filter((x) => x >= 0)).size;
  out.maxLag = out.lags.length ? Math.max(...out.lags) : -1;
  out.medianLag = out.lags.length ? [...out.lags].sort((a, b) => a - b)[Math.floor(out.lags.length / 2)] : -1;
  delete out.stats;
  return out;
}

async function main() {
  const cfg = JSON.parse(process.argv[2] || '{}');
  const frames = cfg.frames ?? 150;
  const server = await serveSDK();
  const sdkBase = `http://127.0.0.1:${server.address().port}`;
  const browser = await chromium.launch({
    executablePath: cfg.chromium || process.env.CHROMIUM_BIN || '/usr/bin/chromium',
    headless: true,
    args: chromiumArgs(cfg.y4m),
    timeout: 30000,
    // Only the Go test ends this driver (close command, stdin EOF or SIGKILL of the group); a stray signal must
    // not close Chromium behind its back, so each one is logged to stderr instead.
    handleSIGINT: false,
    handleSIGTERM: false,
    handleSIGHUP: false,
  });
  let closing = false;
  browser.on('disconnected', () => { if (!closing) process.stderr.write('relay-driver: Chromium disconnected unexpectedly\n'); });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => process.stderr.write(`relay-driver: got ${sig}\n`));
  const ctx = await browser.newContext();
  await ctx.addInitScript(INIT);
  const pages = {};
  const reply = (o) => process.stdout.write(JSON.stringify(o) + '\n');
  const shutdown = async () => {
    closing = true;
    try { await browser.close(); } catch { /* closing anyway */ }
    server.close();
    process.exit(0);
  };
  reply({ id: 0, ok: true, result: { ready: true } });

  const handle = async (cmd) => {
    const t = cmd.timeoutMs ?? 15000;
    const p = cmd.page ? pages[cmd.page] : null;
    if (cmd.page && !p && cmd.do !== 'open') throw new Error(`unknown page ${cmd.page}`);
    switch (cmd.do) {
      case 'open': {
        if (p) throw new Error(`page ${cmd.page} already open`);
        const np = new Page(cmd.page, await ctx.newPage());
        pages[cmd.page] = np;
        return np.open(sdkBase, cmd.ws, t);
      }
      case 'publish': case 'play': return p.start(cmd.do, cmd.handle, cmd.name, t);
      case 'stop': return p.stop(cmd.handle, t);
      case 'status': return p.status(cmd.handle);
      case 'wait': return p.wait(cmd.handle, cmd.expect || [], t);
      case 'stats': return p.stats(cmd.handle);
      case 'sample': return sample(pages, cmd, frames);
      case 'diag': return p.diag();
      default: throw new Error(`unknown command ${cmd.do}`);
    }
  };

  // Commands run one at a time, in order.
  const rl = readline.createInterface({ input: process.stdin });
  let chain = Promise.resolve();
  rl.on('line', (line) => {
    if (!line.trim()) return;
    chain = chain.then(async () => {
      let cmd;
      try { cmd = JSON.parse(line); } catch (e) { reply({ id: -1, ok: false, error: `bad JSON: ${e.message}` }); return; }
      if (cmd.do === 'close') { reply({ id: cmd.id, ok: true }); await shutdown(); return; }
      try {
        reply({ id: cmd.id, ok: true, result: (await handle(cmd)) ?? null });
      } catch (e) {
        reply({ id: cmd.id, ok: false, error: String(e && e.message ? e.message : e) });
      }
    });
  });
  rl.on('close', () => { process.stderr.write('relay-driver: stdin closed\n'); chain.then(shutdown); });
}

main().catch((e) => {
  process.stdout.write(JSON.stringify({ id: 0, ok: false, error: String(e && e.message ? e.message : e) }) + '\n');
  process.exit(1);
});
