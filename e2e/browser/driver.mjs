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
// The Chromium flags, page hooks, SDK page server, Page wrapper and sampler live in lib.mjs (shared with relay-driver.mjs).
import fs from 'node:fs';
import { INIT, Page, launchChromium, sample, serveSDK, sleep } from './lib.mjs';

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

function want(expect) {
  if (expect === undefined || expect === null) return null;
  return Array.isArray(expect) ? expect : [expect];
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
  browser = await launchChromium(cfg);
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
        case 'sleep': await sleep((step.seconds ?? 1) * 1000); r = null; break;
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
