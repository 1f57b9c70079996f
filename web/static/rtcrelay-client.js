// rtcrelay-client.js: a small client of the WCS WebSocket signaling protocol, as rtcrelay speaks it.
//
//   const session = await connect('ws://host:8080', {onStatus: (s) => ...});
//   const pub = session.publish('name', mediaStream, {onStatus: (st) => ...});
//   const sub = session.play('name', {onTrack: (stream) => video.srcObject = stream, onStatus: ...});
//   pub.stop(); sub.stop(); session.close();
//
// Messages are {"message": name, "data": [payload]}. The offer SDP is sent as soon as createOffer returns
// (no trickle ICE, like the Flashphoner Web SDK); the server answers with a positional
// setRemoteSDP [mediaSessionId, sdp] and reports notifyStreamStatusEvent statuses.

export const TERMINAL = new Set(['UNPUBLISHED', 'STOPPED', 'FAILED']);

// uuid returns a random v4 UUID; crypto.randomUUID exists only in secure contexts.
export function uuid() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

// serverURL builds the signaling URL for this page from /rtcrelay-config.json: ws on http pages, wss on https.
export async function serverURL(loc = window.location) {
  const override = new URLSearchParams(loc.search).get('server');
  if (override) return override;
  const cfg = await (await fetch('/rtcrelay-config.json', { cache: 'no-store' })).json();
  const secure = loc.protocol === 'https:' && cfg.wssPort > 0;
  const port = secure ? cfg.wssPort : cfg.wsPort;
  const host = loc.hostname.includes(':') ? `[${loc.hostname}]` : loc.hostname;
  return `${secure ? 'wss' : 'ws'}://${host}:${port}`;
}

// A Stream is one publish or play: one RTCPeerConnection and its server-side status.
export class Stream {
  constructor(session, name, published, opts) {
    this.session = session;
    this.id = uuid();
    this.name = name;
    this.published = published;
    this.status = 'NEW';
    this.info = '';
    this.history = [];
    this.opts = opts;
    this.pc = null;
    this.done = new Promise((resolve) => { this.resolveDone = resolve; });
  }

  setStatus(status, info = '') {
    this.status = status;
    this.info = info || '';
    this.history.push({ status, info: this.info, t: Date.now() });
    try { this.opts.onStatus?.(this); } catch (e) { console.error(e); }
    if (TERMINAL.has(status)) this.finish();
  }

  finish() {
    this.session.streams.delete(this.id);
    if (this.pc) { this.pc.close(); }
    this.resolveDone(this);
  }

  // waitFor resolves with this stream when its status is one of statuses or terminal, or after timeoutMs.
  waitFor(statuses, timeoutMs = 15000) {
    const want = new Set(statuses);
    return new Promise((resolve) => {
      const check = () => {
        if (want.has(this.status) || TERMINAL.has(this.status)) { clearInterval(iv); clearTimeout(to); resolve(this); }
      };
      const iv = setInterval(check, 50);
      const to = setTimeout(() => { clearInterval(iv); resolve(this); }, timeoutMs);
      check();
    });
  }

  async start(media) {
    this.setStatus('PENDING');
    const pc = new RTCPeerConnection({ iceServers: [], bundlePolicy: 'max-bundle' });
    this.pc = pc;
    if (this.published) {
      for (const track of media.getTracks()) pc.addTransceiver(track, { direction: 'sendonly', streams: [media] });
    } else {
      pc.addTransceiver('audio', { direction: 'recvonly' });
      pc.addTransceiver('video', { direction: 'recvonly' });
      pc.ontrack = (ev) => {
        const stream = ev.streams[0] || new MediaStream([ev.track]);
        try { this.opts.onTrack?.(stream, ev); } catch (e) { console.error(e); }
      };
    }
    pc.onconnectionstatechange = () => { try { this.opts.onConnectionState?.(pc.connectionState, this); } catch (e) { console.error(e); } };
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    if (TERMINAL.has(this.status)) return;
    this.session.send(this.published ? 'publishStream' : 'playStream', {
      mediaSessionId: this.id,
      name: this.name,
      published: this.published,
      hasVideo: this.published ? media.getVideoTracks().length > 0 : true,
      hasAudio: this.published ? media.getAudioTracks().length > 0 : true,
      status: 'PENDING',
      record: false,
      mediaProvider: 'WebRTC',
      sdp: offer.sdp,
      bitrate: 0, minBitrate: 0, maxBitrate: 0,
      ...(this.published ? {} : { width: 0, height: 0, quality: 0 }),
      ...(this.opts.custom ? { custom: this.opts.custom } : {}),
    });
  }

  async onAnswer(sdp) {
    try {
      await this.pc.setRemoteDescription({ type: 'answer', sdp });
    } catch (e) {
      console.error('setRemoteDescription', e);
      this.setStatus('FAILED', `Local error: ${e.message}`);
    }
  }

  // stop asks the server to end the stream; the terminal status arrives as a notifyStreamStatusEvent.
  stop() {
    if (TERMINAL.has(this.status)) return this.done;
    this.session.send(this.published ? 'unPublishStream' : 'stopStream', {
      mediaSessionId: this.id, name: this.name, published: this.published,
      hasVideo: true, hasAudio: true, status: this.status, record: false,
    });
    if (this.pc) this.pc.close();
    return this.done;
  }
}

// A Session is one WebSocket connection to the server.
export class Session {
  constructor(url, opts = {}) {
    this.url = url;
    this.opts = opts;
    this.status = 'PENDING';
    this.streams = new Map();
    this.userData = null;
  }

  setStatus(status) {
    this.status = status;
    try { this.opts.onStatus?.(status, this); } catch (e) { console.error(e); }
  }

  open(timeoutMs = 10000) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url);
      this.ws = ws;
      const timer = setTimeout(() => { ws.close(); reject(new Error(`connect ${this.url}: timeout`)); }, timeoutMs);
      ws.onopen = () => {
        this.setStatus('CONNECTED');
        this.send('connection', {
          appKey: this.opts.appKey || 'defaultApp',
          mediaProviders: ['WebRTC'],
          clientVersion: '2.0',
          clientOSVersion: navigator.appVersion,
          clientBrowserVersion: navigator.userAgent,
          ...(this.opts.custom ? { custom: this.opts.custom } : {}),
        });
      };
      ws.onerror = () => {
        clearTimeout(timer);
        this.setStatus('FAILED');
        reject(new Error(`connect ${this.url}: failed`));
      };
      ws.onclose = () => {
        clearTimeout(timer);
        if (this.status !== 'FAILED') this.setStatus('DISCONNECTED');
        for (const st of [...this.streams.values()]) st.setStatus('FAILED', 'Session disconnected');
      };
      ws.onmessage = (ev) => {
        if (typeof ev.data !== 'string') return;
        let msg;
        try { msg = JSON.parse(ev.data); } catch { console.warn('bad frame', ev.data); return; }
        const d0 = Array.isArray(msg.data) ? msg.data[0] : undefined;
        if (msg.message === 'getUserData') {
          clearTimeout(timer);
          this.userData = d0;
          this.setStatus('ESTABLISHED');
          resolve(this);
        } else {
          this.handle(msg.message, msg.data || [], d0);
        }
      };
    });
  }

  handle(name, data, d0) {
    switch (name) {
      case 'ping':
        this.send('pong', null);
        break;
      case 'setRemoteSDP': {
        const st = this.streams.get(data[0]);
        if (st) st.onAnswer(data[1]);
        break;
      }
      case 'notifyStreamStatusEvent': {
        const st = d0 && this.streams.get(d0.mediaSessionId);
        if (st && d0.status) st.setStatus(d0.status, d0.info);
        break;
      }
      case 'fail': {
        const st = d0 && d0.apiMethod === 'StreamStatusEvent' && this.streams.get(d0.id);
        if (st) st.setStatus('FAILED', d0.info);
        break;
      }
      case 'notifyStreamEvent': {
        const st = d0 && this.streams.get(d0.mediaSessionId);
        if (st) { try { st.opts.onEvent?.(d0); } catch (e) { console.error(e); } }
        break;
      }
      default:
        break; // unknown messages are ignored, as the protocol requires
    }
  }

  send(message, payload) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ message, data: [payload] }));
  }

  // publish sends media (a MediaStream) as the stream `name`.
  publish(name, media, opts = {}) {
    const st = new Stream(this, name, true, opts);
    this.streams.set(st.id, st);
    st.start(media).catch((e) => st.setStatus('FAILED', `Local error: ${e.message}`));
    return st;
  }

  // play receives the stream `name`; opts.onTrack gets the remote MediaStream.
  play(name, opts = {}) {
    const st = new Stream(this, name, false, opts);
    this.streams.set(st.id, st);
    st.start(null).catch((e) => st.setStatus('FAILED', `Local error: ${e.message}`));
    return st;
  }

  close() { if (this.ws) this.ws.close(); }
}

// connect opens a session and resolves once the server sent getUserData (ESTABLISHED).
export function connect(url, opts = {}) {
  return new Session(url, opts).open(opts.timeoutMs);
}

// summarizeStats reduces pc.getStats() to the numbers a person (or a test) looks at.
export async function summarizeStats(pc) {
  const out = { connectionState: pc.connectionState, iceConnectionState: pc.iceConnectionState, video: {}, audio: {}, outVideo: {}, outAudio: {}, pair: null };
  const r = await pc.getStats();
  const codecs = {};
  r.forEach((s) => { if (s.type === 'codec') codecs[s.id] = s.mimeType; });
  r.forEach((s) => {
    if (s.type === 'inbound-rtp') {
      out[s.kind] = {
        packetsReceived: s.packetsReceived, bytesReceived: s.bytesReceived, packetsLost: s.packetsLost,
        framesDecoded: s.framesDecoded, framesReceived: s.framesReceived, framesDropped: s.framesDropped,
        framesPerSecond: s.framesPerSecond, keyFramesDecoded: s.keyFramesDecoded, frameWidth: s.frameWidth,
        frameHeight: s.frameHeight, nackCount: s.nackCount, pliCount: s.pliCount, codec: codecs[s.codecId],
      };
    } else if (s.type === 'outbound-rtp') {
      out[s.kind === 'video' ? 'outVideo' : 'outAudio'] = {
        packetsSent: s.packetsSent, bytesSent: s.bytesSent, framesEncoded: s.framesEncoded,
        framesPerSecond: s.framesPerSecond, codec: codecs[s.codecId],
      };
    } else if (s.type === 'transport' && s.selectedCandidatePairId) {
      const p = r.get(s.selectedCandidatePairId);
      const l = p && r.get(p.localCandidateId);
      const rc = p && r.get(p.remoteCandidateId);
      if (p) out.pair = { local: l && `${l.address}:${l.port}`, remote: rc && `${rc.address}:${rc.port}`, rtt: p.currentRoundTripTime };
    }
  });
  return out;
}

// frameId decodes the 4x4 black/white frame-ID grid of the test video (bits 0-11 id, 12-15 check nibble).
// It returns -1 when the video has no picture yet and -2 when the cells do not decode.
export function frameId(video, canvas) {
  if (!video || video.readyState < 2 || !video.videoWidth) return -1;
  const c = canvas || document.createElement('canvas');
  c.width = 320; c.height = 240;
  const ctx = c.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(video, 0, 0, 320, 240);
  const d = ctx.getImageData(0, 0, 320, 240).data;
  let bits = 0;
  for (let cell = 0; cell < 16; cell++) {
    const cx = (cell % 4) * 80 + 40;
    const cy = Math.floor(cell / 4) * 60 + 30;
    let s = 0;
    let n = 0;
    for (let y = cy - 10; y < cy + 10; y += 2) {
      for (let x = cx - 15; x < cx + 15; x += 3) {
        const i = (y * 320 + x) * 4;
        s += (d[i] + d[i + 1] + d[i + 2]) / 3;
        n++;
      }
    }
    if (s / n > 128) bits |= 1 << cell;
  }
  const id = bits & 0xfff;
  return ((id ^ (id >> 4) ^ (id >> 8) ^ 0xa) & 0xf) === ((bits >> 12) & 0xf) ? id : -2;
}
