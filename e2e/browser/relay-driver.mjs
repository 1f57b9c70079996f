// relay-driver.mjs: an INTERACTIVE browser driver for the relay end-to-end tests (e2e/relay_test.go).
//
//   node relay-driver.mjs '<json config>'      config: {"y4m": ABS_PATH, "frames": N, "chromium": BIN, "extraArgs": [...]}
//
// Unlike driver.mjs (one scripted run), this one launches Chromium once and then executes commands read from
// stdin, one JSON object per line, so that the Go test can interleave browser steps with REST calls and with
// killing and restarting server processes. Each command gets exactly one JSON reply line on stdout:
//   {"id": n, "ok": true, "result": ...}   or   {"id": n, "ok": false, "error": "..."}
// Commands ("page" names a browser tab; "handle" names a stream on it):
//   {"id":1, "do":"open",    "page":"A", "ws":"ws://127.0.0.1:P"}        an official-SDK page connected to P
//        optional "appKey", "custom" (createSession options) and "expectFail" (return the session status, even FAILED)
//   {"id":2, "do":"publish", "page":"A", "handle":"pub", "name":"s", "timeoutMs":15000}
//   {"id":3, "do":"play",    "page":"B", "handle":"p1", "name":"s"}
//   {"id":4, "do":"stop"|"status"|"stats", "page":"B", "handle":"p1"}
//   {"id":5, "do":"wait",    "page":"B", "handle":"p1", "expect":["FAILED","STOPPED"], "timeoutMs":10000}
//   {"id":6, "do":"sample",  "player":{"page":"B","handle":"p1"}, "publisher":{"page":"A","handle":"pub"}, "seconds":3}
//   {"id":7, "do":"diag",    "page":"B"}     page console, peer connections, statuses
//   {"id":8, "do":"close"}                   closes Chromium and exits
// Plain pages (any URL, e.g. the server's own console), for the console test:
//   {"do":"goto",  "page":"C", "url":"http://127.0.0.1:P/console.html"}   opens (or navigates) a plain tab
//   {"do":"eval",  "page":"C", "expr":"JS expression"}                    its value (awaited, JSON)
//   {"do":"fill",  "page":"C", "selector":"#uri", "value":"ws://…"}      fills an input or selects an option
//   {"do":"click", "page":"C", "selector":"#start"}
//   {"do":"screenshot", "page":"C", "path":"/abs/file.png"}
// The Chromium flags, page hooks, SDK page server, Page wrapper and sampler come from lib.mjs, shared with driver.mjs;
// "sample" waits (up to firstFrameTimeoutMs, default 15000) for the first decoded frame, as driver.mjs's does.
import readline from 'node:readline';
import { INIT, Page, launchChromium, sample, serveSDK } from './lib.mjs';

async function main() {
  const cfg = JSON.parse(process.argv[2] || '{}');
  const frames = cfg.frames ?? 150;
  const server = await serveSDK();
  const sdkBase = `http://127.0.0.1:${server.address().port}`;
  const browser = await launchChromium(cfg, {
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
  const plain = {}; // plain tabs (goto), by name
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
    if (['goto', 'eval', 'fill', 'click', 'screenshot'].includes(cmd.do)) {
      let pp = plain[cmd.page];
      if (cmd.do === 'goto') {
        if (!pp) {
          pp = plain[cmd.page] = await ctx.newPage();
          pp.on('console', (m) => { if (m.type() === 'error') process.stderr.write(`[${cmd.page}] ${m.text()}\n`); });
        }
        await pp.goto(cmd.url, { timeout: t });
        return { url: pp.url() };
      }
      if (!pp) throw new Error(`unknown plain page ${cmd.page}`);
      switch (cmd.do) {
        case 'eval': return await pp.evaluate(cmd.expr);
        case 'fill': {
          const tag = await pp.$eval(cmd.selector, (el) => el.tagName);
          if (tag === 'SELECT') await pp.selectOption(cmd.selector, cmd.value, { timeout: t });
          else await pp.fill(cmd.selector, cmd.value, { timeout: t });
          return null;
        }
        case 'click': await pp.click(cmd.selector, { timeout: t }); return null;
        case 'screenshot': await pp.screenshot({ path: cmd.path, fullPage: true }); return { path: cmd.path };
      }
    }
    const p = cmd.page ? pages[cmd.page] : null;
    if (cmd.page && !p && cmd.do !== 'open') throw new Error(`unknown page ${cmd.page}`);
    switch (cmd.do) {
      case 'open': {
        if (p) throw new Error(`page ${cmd.page} already open`);
        const np = new Page(cmd.page, { kind: 'sdk', ws: cmd.ws, appKey: cmd.appKey, custom: cmd.custom, expectFail: cmd.expectFail },
          await ctx.newPage());
        pages[cmd.page] = np;
        return np.open(sdkBase, t);
      }
      case 'publish': case 'play': return p.start(cmd.do, cmd.handle, cmd.name, t);
      case 'stop': return p.stop(cmd.handle, t);
      case 'status': return p.status(cmd.handle);
      case 'wait': return p.wait(cmd.handle, cmd.expect || [], t);
      case 'stats': return p.stats(cmd.handle);
      case 'sample': {
        const r = await sample(pages, cmd, frames);
        delete r.stats; // the per-second stats stay out of the reply line
        return r;
      }
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
