// streamd console: every call the daemon scores, alerting calls pinned on top, filters and search,
// alert acknowledgement, and one call opened with both legs, its whole timeline and its events.
// Reads /v1/events (resuming with since= after a disconnect) after a snapshot of the open streams
// from /v1/dashboard/info. Plain JavaScript modules, no build step: the daemon serves these files.
import { Model } from "./state.js";
import { CallList } from "./list.js";
import { Detail, el, renderFeed } from "./detail.js";
import { mic, connectMic } from "./mic.js";

const TOKEN = new URLSearchParams(location.search).get("token") || "";
const BACKOFF_MAX_S = 30;

const $ = (id) => document.getElementById(id);
const model = new Model();
const state = {
  info: null, model, ws: null, attempt: 0, myStreamId: null, replayed: false,
  filters: { q: "", source: "", leg: "", queue: "", alertingOnly: false, hideEnded: false },
  streams: model.streams,  // stream_id -> leg (tests read windows.length here)
  get lastId() { return model.lastId; },
};
window.streamdDashboard = state;  // for tests and the curious: read-only use
window.streamdMic = mic;

const authHeaders = () => (TOKEN ? { Authorization: `Bearer ${TOKEN}` } : {});
const withToken = (url) => (TOKEN ? `${url}${url.includes("?") ? "&" : "?"}token=${encodeURIComponent(TOKEN)}` : url);
const fmt = (x, d = 2) => (typeof x === "number" && isFinite(x) ? x.toFixed(d) : "–");
const thresholds = () => state.info && state.info.thresholds;

// ---- views -----------------------------------------------------------------------------------
const list = new CallList($("list"), { model, thresholds, onSelect: select, onAck: (c) => ackCall(c) });
const detail = new Detail($("detail"), { model, thresholds, onAck: (c, id) => ackCall(c, id), onClose: () => select(null) });

function select(c) {
  list.selected = c;
  detail.show(c);
  $("feed").hidden = !!c;
  requestDraw();
}

// ---- acknowledging -----------------------------------------------------------------------------
const whoInput = $("who");
whoInput.value = localStorage.getItem("streamd.who") || "";
whoInput.addEventListener("change", () => localStorage.setItem("streamd.who", whoInput.value.trim()));

function toast(text, error = false) {
  const t = $("toast");
  t.textContent = text;
  t.classList.toggle("error", error);
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 5000);
}

/** Acknowledge one alert (alertId) or every unacknowledged alert of a call. */
async function ackCall(c, alertId) {
  const by = whoInput.value.trim();
  if (!by) { whoInput.focus(); toast("Type your name in “Acknowledge as” first.", true); return; }
  localStorage.setItem("streamd.who", by);
  const ids = alertId ? [alertId] : model.unacked(c).map((a) => a.id);
  for (const id of ids) {
    const r = await fetch(`/v1/alerts/${id}/acknowledge`, {
      method: "POST", headers: { "Content-Type": "application/json", ...authHeaders() }, body: JSON.stringify({ by }),
    });
    const body = await r.json().catch(() => ({}));
    if (r.ok || r.status === 409) {
      const ev = r.ok ? body : body.event;
      if (ev) { model.handle(ev); requestDraw(); }  // the websocket brings it too; ids de-duplicate
      if (r.status === 409) toast(body.detail || "already acknowledged");
    } else {
      toast(`Could not acknowledge alert #${id}: ${body.detail || body.error || `HTTP ${r.status}`}`, true);
    }
  }
}

// ---- toolbar -----------------------------------------------------------------------------------
const filterInputs = { q: $("q"), source: $("f-source"), leg: $("f-leg"), queue: $("f-queue"), alertingOnly: $("f-alerting"), hideEnded: $("f-hide-ended") };
for (const [key, input] of Object.entries(filterInputs)) {
  input.addEventListener(input.type === "checkbox" ? "change" : "input", () => {
    state.filters[key] = input.type === "checkbox" ? input.checked : input.value;
    list.box.scrollTop = 0;
    requestDraw();
  });
}
document.addEventListener("keydown", (e) => {
  if (e.key === "Escape" && list.selected) select(null);
  if (e.key === "/" && document.activeElement.tagName !== "INPUT") { e.preventDefault(); $("q").focus(); }
});
$("feed-list").addEventListener("click", (e) => {
  const li = e.target.closest("li[data-call]");
  if (li) select(model.calls.get(li.dataset.call) || null);
});

let choices = "";
function syncChoices() {
  const key = [model.sources.size, model.legs.size, model.queues.size].join(",");
  if (key === choices) return;
  choices = key;
  for (const [sel, values, all] of [[$("f-source"), model.sources, "all sources"], [$("f-leg"), model.legs, "all legs"], [$("f-queue"), model.queues, "all queues"]]) {
    const keep = sel.value;
    sel.replaceChildren(el("option", "", all), ...[...values].sort().map((v) => el("option", "", v)));
    sel.firstChild.value = "";
    sel.value = keep;
  }
}

// ---- drawing -----------------------------------------------------------------------------------
let drawPending = false, lastVersion = -1, lastFilters = "", feedVersion = -1;
function requestDraw() {
  if (drawPending) return;
  drawPending = true;
  requestAnimationFrame(() => { drawPending = false; draw(); });
}

const work = { handle_ms: 0, draw_ms: 0, events: 0, draws: 0, marks: {} };
const mark = (name) => { if (!(name in work.marks)) work.marks[name] = Math.round(performance.now()); };
window.streamdWork = work;  // script time spent on events and drawing (the console test reads it)

function draw() {
  const t = performance.now();
  drawNow();
  work.draw_ms += performance.now() - t; work.draws++;
}

function drawNow() {
  const f = JSON.stringify(state.filters);
  if (model.version !== lastVersion || f !== lastFilters) {
    lastVersion = model.version; lastFilters = f;
    syncChoices();
    const order = model.view(state.filters);
    list.setOrder(order);
    let live = 0, alerting = 0, unacked = 0;
    for (const c of model.calls.values()) {
      const r = model.rank(c);
      if (r < 3) live++;
      if (r < 2) alerting++;
      if (r === 0) unacked++;
    }
    $("n-live").textContent = String(live);
    $("n-alerting").textContent = String(alerting);
    $("n-unacked").textContent = String(unacked);
    $("alerting-stat").classList.toggle("hot", unacked > 0);
    $("shown").textContent = order.length === model.calls.size ? `${order.length} calls` : `${order.length} of ${model.calls.size} calls`;
    const empty = $("list-empty");
    empty.hidden = order.length > 0;
    empty.textContent = !state.replayed ? "Loading calls…" : model.calls.size ? "No call matches these filters." : "No calls yet. Calls appear here when they start.";
  }
  list.render();
  if (list.order.length) mark("first_row");
  detail.render();
  if (!$("feed").hidden && feedVersion !== model.version) { feedVersion = model.version; renderFeed($("feed-list"), model); }
}

setInterval(() => { list.second(); requestDraw(); }, 1000);
new ResizeObserver(() => { detail.v = -1; requestDraw(); }).observe(document.body);

// ---- connection ----------------------------------------------------------------------------------
function setConn(kind, text) {
  $("conn").dataset.state = kind;
  $("conn-text").textContent = text;
}

async function loadInfo() {
  const r = await fetch("/v1/dashboard/info", { headers: authHeaders(), cache: "no-store" });
  if (r.status === 401) throw Object.assign(new Error("unauthorized"), { unauthorized: true });
  if (!r.ok) throw new Error(`info: HTTP ${r.status}`);
  state.info = await r.json();
  mark("info");
  const m = state.info.model;
  $("model").textContent = m ? `model: ${m.name} · ${state.info.provider || "?"}` : "model: –";
  const t = state.info.thresholds;
  $("thresholds").textContent = t ? `Alert when the smoothed score stays ≥ ${fmt(t.raise)}; clear at ≤ ${fmt(t.clear)}.` : "";
  if (!state.info.webrtc) {
    $("mic-btn").disabled = true;
    $("mic-status").textContent = "WebRTC ingest is off on this daemon (sources.webrtc.enabled).";
  }
}

function scheduleReconnect(reason) {
  const delay = Math.min(BACKOFF_MAX_S, 2 ** Math.min(state.attempt, 5)) * (0.75 + Math.random() * 0.5);
  state.attempt += 1;
  let left = Math.ceil(delay);
  setConn("retry", `${reason}: reconnecting in ${left} s`);
  const tick = setInterval(() => {
    left -= 1;
    if (left > 0) setConn("retry", `${reason}: reconnecting in ${left} s`);
  }, 1000);
  setTimeout(() => { clearInterval(tick); connect(); }, delay * 1000);
}

async function connect() {
  setConn("connecting", state.attempt ? "reconnecting…" : "connecting…");
  try {
    await loadInfo();
  } catch (err) {
    if (err.unauthorized) {
      setConn("error", "unauthorized: add ?token=… to the URL");
      $("mic-btn").disabled = true;
      $("list-empty").textContent = "This daemon needs a token: open the console as /?token=<one of server.tokens>.";
      return;
    }
    scheduleReconnect("daemon unreachable");
    return;
  }
  const last = state.info.last_event_id || 0;
  if (last < model.lastId) {  // a new event store (ids restarted): start over
    model.clear(); model.lastId = 0; select(null);
  }
  let since = model.lastId;
  if (!since) {
    model.snapshot(state.info);  // open streams at once, even those older than the replay
    since = Math.max(0, last - (state.info.replay_events || 0));
  }
  if (last <= since) state.replayed = true;
  requestDraw();
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(withToken(`${proto}//${location.host}/v1/events?since=${since}`));
  state.ws = ws;
  ws.onopen = () => { state.attempt = 0; setConn("live", "live"); mark("ws_open"); };
  ws.onmessage = (msg) => {
    const t = performance.now();
    let ev;
    try { ev = JSON.parse(msg.data); } catch { return; }
    const c = model.handle(ev);
    work.handle_ms += performance.now() - t; work.events++;
    mark("first_event");
    if (!state.replayed && model.lastId >= last) { state.replayed = true; mark("replayed"); }
    if (!c) return;
    if (ev.type === "window.scored" && ev.stream.stream_id === state.myStreamId) mic.scored(model.streams.get(ev.stream.stream_id).last);
    requestDraw();
  };
  ws.onclose = (e) => {
    if (state.ws !== ws) return;
    state.ws = null;
    scheduleReconnect(e.code === 1013 ? "fell behind" : "disconnected");
  };
}

// ---- microphone ---------------------------------------------------------------------------------
connectMic({
  info: () => state.info,
  authHeaders,
  mine: (id) => {
    state.myStreamId = id;
    // open this browser's call as soon as its stream appears
    const open = () => { const st = model.streams.get(id); if (st) select(st.call); else setTimeout(open, 100); };
    open();
  },
});
if (!window.isSecureContext || !navigator.mediaDevices || !window.RTCPeerConnection) {
  // browsers only open the microphone on https:// or http://localhost / 127.0.0.1
  $("mic-btn").disabled = true;
  $("mic-status").textContent = "The microphone test needs an https:// page or localhost.";
}
$("mic-btn").addEventListener("click", () => {
  if (mic.pc) { mic.stop(); mic.status("Stopped. The stream ends and its last window is scored."); }
  else mic.start();
});

mark("script");
connect();
