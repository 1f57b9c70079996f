// page.js: the glue shared by the Two Way Streaming and Player pages: one signaling session,
// status lines a person can read, a stats line, and the window.e2e hooks the browser tests drive.
import { connect, serverURL, summarizeStats, frameId, TERMINAL } from './rtcrelay-client.js';

const $ = (id) => document.getElementById(id);

function cls(status) {
  if (['ESTABLISHED', 'PUBLISHING', 'PLAYING'].includes(status)) return 'ok';
  if (['FAILED', 'DISCONNECTED'].includes(status)) return 'bad';
  return 'wait';
}

function render(el, label, status, info) {
  if (!el) return;
  el.innerHTML = '';
  const b = document.createElement('b');
  b.textContent = `${label}: `;
  const s = document.createElement('span');
  s.className = cls(status);
  s.textContent = status + (info ? ` (${info})` : '');
  el.append(b, s);
}

// App owns the session and the page's publish/play slots.
export class App {
  constructor() {
    this.session = null;
    this.connecting = null;
    this.slots = { publish: null, play: null };
    this.canvas = document.createElement('canvas');
    setInterval(() => this.showStats(), 1000);
  }

  async ensureSession() {
    if (this.session && this.session.status === 'ESTABLISHED') return this.session;
    if (!this.connecting) {
      this.connecting = (async () => {
        const url = await serverURL();
        render($('sessionStatus'), `Server ${url}`, 'CONNECTING');
        return connect(url, { onStatus: (s) => render($('sessionStatus'), `Server ${url}`, s) });
      })().finally(() => { this.connecting = null; });
    }
    this.session = await this.connecting;
    return this.session;
  }

  async publish(name) {
    const slot = 'publish';
    await this.stop(slot);
    try {
      const session = await this.ensureSession();
      const media = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 320, height: 240 } });
      this.localMedia = media;
      const v = $('localVideo');
      if (v) { v.srcObject = media; v.play().catch(() => {}); }
      this.slots[slot] = session.publish(name, media, { onStatus: (st) => this.onStatus(slot, st) });
    } catch (e) {
      render($('publishStatus'), 'Publish', 'FAILED', e.message);
      this.slots[slot] = { status: 'FAILED', info: e.message, history: [{ status: 'FAILED', info: e.message }], pc: null, name };
    }
    return this.slots[slot];
  }

  async play(name) {
    const slot = 'play';
    await this.stop(slot);
    try {
      const session = await this.ensureSession();
      this.slots[slot] = session.play(name, {
        onStatus: (st) => this.onStatus(slot, st),
        onTrack: (stream) => {
          const v = $('remoteVideo');
          if (v && v.srcObject !== stream) { v.srcObject = stream; v.play().catch(() => {}); }
        },
      });
    } catch (e) {
      render($('playStatus'), 'Play', 'FAILED', e.message);
      this.slots[slot] = { status: 'FAILED', info: e.message, history: [{ status: 'FAILED', info: e.message }], pc: null, name };
    }
    return this.slots[slot];
  }

  async stop(slot) {
    const st = this.slots[slot];
    if (st && st.stop && !TERMINAL.has(st.status)) await st.stop();
    if (slot === 'publish' && this.localMedia) {
      this.localMedia.getTracks().forEach((t) => t.stop());
      this.localMedia = null;
    }
  }

  onStatus(slot, st) {
    const label = slot === 'publish' ? `Publish "${st.name}"` : `Play "${st.name}"`;
    render($(`${slot}Status`), label, st.status, st.info);
    const btn = $(`${slot}Btn`);
    if (btn) btn.textContent = TERMINAL.has(st.status) ? (slot === 'publish' ? 'Publish' : 'Play') : 'Stop';
  }

  async showStats() {
    for (const slot of ['publish', 'play']) {
      const st = this.slots[slot];
      const el = $(`${slot}Stats`);
      if (!el || !st || !st.pc || TERMINAL.has(st.status)) continue;
      const s = await summarizeStats(st.pc);
      if (slot === 'publish') {
        el.textContent = `sent: video ${s.outVideo.framesEncoded ?? 0} frames, ${Math.round((s.outVideo.bytesSent ?? 0) / 1024)} KiB; audio ${s.outAudio.packetsSent ?? 0} packets; ${s.connectionState}`;
      } else {
        el.textContent = `received: video ${s.video.framesDecoded ?? 0} frames ${s.video.frameWidth ?? '-'}x${s.video.frameHeight ?? '-'} @ ${s.video.framesPerSecond ?? 0} fps, ${s.video.codec ?? ''}; audio ${s.audio.packetsReceived ?? 0} packets; ${s.connectionState}`;
      }
    }
  }

  // wire connects a button that toggles between start and stop, and an input with the stream name.
  wire(slot, inputId) {
    const btn = $(`${slot}Btn`);
    if (!btn) return;
    btn.addEventListener('click', () => {
      const st = this.slots[slot];
      if (st && !TERMINAL.has(st.status)) this.stop(slot);
      else this[slot]($(inputId).value.trim());
    });
  }

  // installHooks exposes window.e2e for the browser tests: the same calls a person makes with the buttons.
  installHooks() {
    const view = (st) => (st ? { name: st.name, id: st.id, status: st.status, info: st.info, history: st.history } : null);
    window.e2e = {
      publish: async (name, timeoutMs = 15000) => view(await (await this.publish(name)).waitFor?.(['PUBLISHING'], timeoutMs) ?? this.slots.publish),
      play: async (name, timeoutMs = 15000) => view(await (await this.play(name)).waitFor?.(['PLAYING'], timeoutMs) ?? this.slots.play),
      stop: async (slot) => { await this.stop(slot); return view(this.slots[slot]); },
      status: () => ({ session: this.session ? this.session.status : 'NONE', publish: view(this.slots.publish), play: view(this.slots.play) }),
      pc: (slot) => (this.slots[slot] ? this.slots[slot].pc : null),
      video: (slot) => $(slot === 'publish' ? 'localVideo' : 'remoteVideo'),
      stats: async (slot = 'play') => (this.slots[slot]?.pc ? summarizeStats(this.slots[slot].pc) : null),
      frameId: (slot = 'play') => frameId($(slot === 'publish' ? 'localVideo' : 'remoteVideo'), this.canvas),
    };
  }
}
