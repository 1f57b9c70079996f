// console.js: the relay console. It polls the REST API every second (/stream/metrics, /pull/find_all), keeps
// a 60-sample history per stream and per relay, and plots bitrate and loss on a canvas per row. The bearer
// token (--rest-token) is kept in sessionStorage. window.consoleState exposes the series for the browser tests.
const $ = (id) => document.getElementById(id);
const HISTORY = 60;
const TOKEN_KEY = 'rtcrelay-rest-token';

const state = { polls: 0, errors: 0, lastError: '', streams: {}, relays: {} };
window.consoleState = state;

function token() { return sessionStorage.getItem(TOKEN_KEY) || ''; }

async function rest(path, body) {
  const headers = { 'Content-Type': 'application/json' };
  if (token()) headers.Authorization = 'Bearer ' + token();
  const r = await fetch('rest-api' + path, { method: 'POST', headers, body: JSON.stringify(body || {}) });
  const text = await r.text();
  if (r.status !== 200) {
    let msg = text;
    try { msg = JSON.parse(text).error || text; } catch { /* not JSON */ }
    const e = new Error(`${path}: ${r.status} ${msg}`);
    e.status = r.status;
    throw e;
  }
  return text ? JSON.parse(text) : null;
}

function setStatus(el, text, cls) {
  el.textContent = text;
  el.className = 'status ' + (cls || '');
}

function kbps(bits) { return (bits / 1000).toFixed(0) + ' kbit/s'; }

// series keeps the last HISTORY samples of {rate, loss}; loss is the per-second delta of a lost counter.
function push(series, rate, lostTotal) {
  const loss = series.lastLost === undefined ? 0 : Math.max(0, lostTotal - series.lastLost);
  series.lastLost = lostTotal;
  series.samples.push({ t: Date.now(), rate, loss });
  if (series.samples.length > HISTORY) series.samples.shift();
}

function plot(canvas, series) {
  const g = canvas.getContext('2d');
  const w = canvas.width, h = canvas.height;
  g.fillStyle = '#fafafa';
  g.fillRect(0, 0, w, h);
  g.strokeStyle = '#ddd';
  g.strokeRect(0.5, 0.5, w - 1, h - 1);
  const s = series.samples;
  if (!s.length) return;
  const maxRate = Math.max(1, ...s.map((x) => x.rate));
  const maxLoss = Math.max(1, ...s.map((x) => x.loss));
  const dx = w / (HISTORY - 1);
  const x0 = w - (s.length - 1) * dx;
  g.fillStyle = '#c62828';
  s.forEach((p, i) => {
    if (p.loss > 0) {
      const bh = (p.loss / maxLoss) * (h / 3);
      g.fillRect(x0 + i * dx - 1, h - bh, 3, bh);
    }
  });
  g.strokeStyle = '#1565c0';
  g.lineWidth = 1.5;
  g.beginPath();
  s.forEach((p, i) => {
    const y = h - 2 - (p.rate / maxRate) * (h - 14);
    if (i === 0) g.moveTo(x0, y); else g.lineTo(x0 + i * dx, y);
  });
  g.stroke();
  g.fillStyle = '#333';
  g.font = '10px system-ui, sans-serif';
  g.fillText(`${kbps(s[s.length - 1].rate)}  max ${kbps(maxRate)}`, 4, 11);
}

// row returns the table row of key in tbody, creating it with cells (and a canvas) when missing.
function row(tbody, key, ncells, withPlot) {
  let tr = tbody.querySelector(`tr[data-key="${CSS.escape(key)}"]`);
  if (!tr) {
    tr = document.createElement('tr');
    tr.dataset.key = key;
    for (let i = 0; i < ncells; i++) tr.append(document.createElement('td'));
    if (withPlot) {
      const td = document.createElement('td');
      const c = document.createElement('canvas');
      c.width = 240; c.height = 48; c.className = 'plot';
      td.append(c);
      tr.append(td);
    }
    tbody.append(tr);
  }
  return tr;
}

function prune(tbody, keys) {
  for (const tr of [...tbody.querySelectorAll('tr')]) if (!keys.has(tr.dataset.key)) tr.remove();
}

function fill(tr, values) { values.forEach((v, i) => { tr.children[i].textContent = v ?? ''; }); }

function renderStreams(list) {
  const tbody = $('streams').tBodies[0];
  const seen = new Set();
  for (const st of list.filter((x) => x.published)) {
    const m = st.metrics || {};
    const rate = (m.VIDEO_RATE || 0) + (m.AUDIO_RATE || 0);
    const lost = (m.VIDEO_LOST || 0) + (m.AUDIO_LOST || 0);
    const sr = state.streams[st.name] || (state.streams[st.name] = { samples: [] });
    push(sr, rate, lost);
    sr.players = m.PLAYERS || 0;
    seen.add(st.name);
    const tr = row(tbody, st.name, 7, true);
    const size = m.VIDEO_WIDTH ? ` ${m.VIDEO_WIDTH}×${m.VIDEO_HEIGHT}` : '';
    fill(tr, [st.name, String(sr.players), (m.VIDEO_CODEC_NAME || '') + size, m.AUDIO_CODEC_NAME || '', kbps(rate),
      m.VIDEO_FPS !== undefined ? m.VIDEO_FPS.toFixed(1) : '', String(lost)]);
    plot(tr.querySelector('canvas'), sr);
  }
  for (const k of Object.keys(state.streams)) if (!seen.has(k)) delete state.streams[k];
  prune(tbody, seen);
}

function renderPlayers(list) {
  const tbody = $('players').tBodies[0];
  const seen = new Set();
  for (const st of list.filter((x) => !x.published)) {
    seen.add(st.mediaSessionId);
    fill(row(tbody, st.mediaSessionId, 4, false), [st.name, st.status, st.mediaSessionId, st.sessionId]);
  }
  prune(tbody, seen);
}

function renderRelays(list) {
  const tbody = $('relays').tBodies[0];
  const seen = new Set();
  for (const a of list) {
    const key = a.localMediaSessionId;
    seen.add(key);
    // A push's loss is what the remote reports; a pull's is the local stream's (it is published here).
    let lost = a.packetsLost || 0;
    if (a.direction === 'pull' && state.streams[a.localStreamName]) lost = state.streams[a.localStreamName].lastLost || 0;
    const sr = state.relays[key] || (state.relays[key] = { samples: [] });
    push(sr, a.bitrate || 0, lost);
    Object.assign(sr, { direction: a.direction, localStreamName: a.localStreamName, remoteStreamName: a.remoteStreamName, uri: a.uri, status: a.status });
    const tr = row(tbody, key, 7, true);
    fill(tr, [a.direction, a.localStreamName, a.remoteStreamName, a.uri, a.status + (a.info ? ` (${a.info})` : ''), kbps(a.bitrate || 0), String(lost)]);
    plot(tr.querySelector('canvas'), sr);
    if (tr.children.length === 8) {
      const td = document.createElement('td');
      const b = document.createElement('button');
      b.textContent = 'Terminate';
      b.className = 'terminate';
      b.addEventListener('click', async () => {
        b.disabled = true;
        try {
          await rest('/pull/terminate', { localMediaSessionId: key });
          setStatus($('formStatus'), `terminated ${a.direction} ${a.localStreamName}`, 'ok');
        } catch (e) {
          setStatus($('formStatus'), e.message, 'bad');
          b.disabled = false;
        }
      });
      td.append(b);
      tr.append(td);
    }
  }
  for (const k of Object.keys(state.relays)) if (!seen.has(k)) delete state.relays[k];
  prune(tbody, seen);
}

async function poll() {
  try {
    const [streams, relays] = await Promise.all([rest('/stream/metrics'), rest('/pull/find_all')]);
    renderStreams(streams || []);
    renderPlayers(streams || []);
    renderRelays(relays || []);
    state.polls++;
    setStatus($('pollStatus'), `updated ${new Date().toLocaleTimeString()}`, 'ok');
  } catch (e) {
    state.errors++;
    state.lastError = e.message;
    setStatus($('pollStatus'), e.status === 401 ? 'unauthorized: enter the REST token' : e.message, 'bad');
  }
}

$('token').value = token();
$('tokenForm').addEventListener('submit', (ev) => {
  ev.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $('token').value.trim());
  poll();
});

$('relayForm').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const dir = $('direction').value;
  const spec = { uri: $('uri').value.trim(), localStreamName: $('localStreamName').value.trim(), remoteStreamName: $('remoteStreamName').value.trim() };
  $('start').disabled = true;
  try {
    await rest('/pull/' + dir, spec);
    setStatus($('formStatus'), `${dir} ${spec.localStreamName} → ${spec.uri} started`, 'ok');
    poll();
  } catch (e) {
    setStatus($('formStatus'), e.message, 'bad');
  } finally {
    $('start').disabled = false;
  }
});

poll();
setInterval(poll, 1000);
