// streamd dashboard: reads /v1/events (resuming with since= after a disconnect), draws one score
// timeline per stream, logs alerts, and can send this browser's microphone over WebRTC.
// Plain JavaScript, no build step: the daemon serves this file as it is.
"use strict";

(() => {
  const TOKEN = new URLSearchParams(location.search).get("token") || "";
  const MAX_STREAMS = 24;      // streams kept on the page (ended ones go first)
  const MAX_ALERTS = 200;
  const MAX_WINDOWS = 2000;    // per stream
  const BACKOFF_MAX_S = 30;
  const TIMELINE_S = 120;      // seconds of stream time shown; longer calls scroll

  const $ = (id) => document.getElementById(id);
  const state = {
    info: null, lastId: 0, streams: new Map(), alerts: [], dirty: new Set(),
    ws: null, attempt: 0, myStreamId: null,
  };
  window.streamdDashboard = state;  // for tests and the curious: read-only use

  const authHeaders = () => (TOKEN ? { Authorization: `Bearer ${TOKEN}` } : {});
  const withToken = (url) => (TOKEN ? `${url}${url.includes("?") ? "&" : "?"}token=${encodeURIComponent(TOKEN)}` : url);
  const fmt = (x, d = 3) => (typeof x === "number" && isFinite(x) ? x.toFixed(d) : "–");
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };

  // ---- connection ------------------------------------------------------------------------
  function setConn(kind, text) {
    $("conn").dataset.state = kind;
    $("conn-text").textContent = text;
  }

  async function loadInfo() {
    const r = await fetch("/v1/dashboard/info", { headers: authHeaders(), cache: "no-store" });
    if (r.status === 401) throw Object.assign(new Error("unauthorized"), { unauthorized: true });
    if (!r.ok) throw new Error(`info: HTTP ${r.status}`);
    state.info = await r.json();
    const m = state.info.model;
    $("model").textContent = m ? `model: ${m.name} · ${state.info.provider || "?"}` : "model: –";
    const t = state.info.thresholds;
    $("thresholds").textContent = t ? `Alert when the smoothed score stays ≥ ${fmt(t.raise, 2)}; clear at ≤ ${fmt(t.clear, 2)}.` : "";
    if (!state.info.webrtc) {
      $("mic-btn").disabled = true;
      $("mic-status").textContent = "WebRTC ingest is off on this daemon (sources.webrtc.enabled).";
    }
    state.dirty = new Set(state.streams.keys());
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
        $("mic-status").textContent = "This daemon needs a token: open the dashboard as /?token=<one of server.tokens>.";
        return;
      }
      scheduleReconnect("daemon unreachable");
      return;
    }
    if ((state.info.last_event_id || 0) < state.lastId) {
      // a new event store (ids restarted): what the page holds no longer matches, start over
      state.lastId = 0;
      state.streams.clear();
      $("streams").replaceChildren();
    }
    let since = state.lastId;
    if (!since) since = Math.max(0, (state.info.last_event_id || 0) - (state.info.replay_events || 0));
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(withToken(`${proto}//${location.host}/v1/events?since=${since}`));
    state.ws = ws;
    ws.onopen = () => { state.attempt = 0; setConn("live", "live"); };
    ws.onmessage = (msg) => {
      let ev;
      try { ev = JSON.parse(msg.data); } catch { return; }
      if (typeof ev.id === "number") {
        if (ev.id <= state.lastId) return;  // already seen (a replay overlapping what arrived live)
        state.lastId = ev.id;
      }
      handle(ev);
    };
    ws.onclose = (e) => {
      if (state.ws !== ws) return;
      state.ws = null;
      scheduleReconnect(e.code === 1013 ? "fell behind" : "disconnected");
    };
  }

  // ---- events ------------------------------------------------------------------------------
  function streamFor(ev) {
    const s = ev.stream || {};
    let st = state.streams.get(s.stream_id);
    if (!st) {
      st = { info: s, windows: [], spans: [], alerting: false, ended: null, started: ev.ts, last: null };
      state.streams.set(s.stream_id, st);
      prune();
    }
    return st;
  }

  function handle(ev) {
    switch (ev.type) {
      case "stream.started": streamFor(ev); break;
      case "window.scored": {
        const st = streamFor(ev);
        const w = { start: ev.window.start_s, end: ev.window.end_s, p: ev.score, sm: ev.smoothed, alerting: !!ev.alerting, at: performance.now() };
        st.windows.push(w);
        if (st.windows.length > MAX_WINDOWS) st.windows.shift();
        st.last = w;
        st.alerting = w.alerting;
        if (ev.stream.stream_id === state.myStreamId) mic.scored(w);
        break;
      }
      case "alert.raised":
      case "alert.cleared": {
        const st = streamFor(ev);
        const t = ev.window ? ev.window.end_s : 0;
        if (ev.type === "alert.raised") { st.spans.push([t, null]); st.alerting = true; }
        else { const open = st.spans[st.spans.length - 1]; if (open && open[1] === null) open[1] = t; st.alerting = false; }
        addAlert(ev);
        break;
      }
      case "stream.ended": streamFor(ev).ended = ev.summary || {}; break;
      default: return;
    }
    if (ev.stream) state.dirty.add(ev.stream.stream_id);
    requestDraw();
  }

  function prune() {
    if (state.streams.size <= MAX_STREAMS) return;
    const victims = [...state.streams.entries()].sort((a, b) => (!!b[1].ended - !!a[1].ended) || (a[1].started < b[1].started ? -1 : 1));
    for (const [id] of victims.slice(0, state.streams.size - MAX_STREAMS)) {
      state.streams.delete(id);
      const card = document.querySelector(`[data-stream="${CSS.escape(id)}"]`);
      if (card) card.remove();
    }
  }

  function addAlert(ev) {
    state.alerts.unshift(ev);
    state.alerts.length = Math.min(state.alerts.length, MAX_ALERTS);
    const list = $("alerts");
    const empty = list.querySelector(".empty");
    if (empty) empty.remove();
    const li = el("li", ev.type === "alert.raised" ? "raised" : "cleared");
    li.title = Object.entries(ev.stream.labels || {}).map(([k, v]) => `${k}=${v}`).join("\n");
    const when = new Date(ev.ts).toLocaleTimeString();
    li.append(el("span", "when", when), el("span", "what", ev.type === "alert.raised" ? "RAISED" : "cleared"),
      el("span", "who", describe(ev.stream)), el("span", "score", `score ${fmt(ev.score)} at ${fmt(ev.window && ev.window.end_s, 1)} s`));
    list.prepend(li);
    while (list.children.length > MAX_ALERTS) list.lastChild.remove();
  }

  const describe = (s) => `${s.leg} · ${s.source} · ${s.call_id.slice(0, 8)}`;

  // ---- drawing -----------------------------------------------------------------------------
  let drawPending = false;
  function requestDraw() {
    if (drawPending) return;
    drawPending = true;
    requestAnimationFrame(() => { drawPending = false; draw(); });
  }

  function draw() {
    const box = $("streams");
    const order = [...state.streams.entries()].sort((a, b) => (!!a[1].ended - !!b[1].ended) || (a[1].started < b[1].started ? 1 : -1));
    order.forEach(([id, st], i) => {
      let card = box.querySelector(`[data-stream="${CSS.escape(id)}"]`);
      if (!card) { card = buildCard(id, st); state.dirty.add(id); }
      if (box.children[i] !== card) box.insertBefore(card, box.children[i] || null);
      if (state.dirty.has(id)) updateCard(card, id, st);
    });
    state.dirty.clear();
    const live = order.filter(([, st]) => !st.ended).length;
    $("stream-count").textContent = state.streams.size ? `${live} live · ${state.streams.size - live} ended` : "";
    $("streams-empty").hidden = state.streams.size > 0;
  }

  function buildCard(id, st) {
    const card = el("article", "stream");
    card.dataset.stream = id;
    const head = el("header");
    head.append(el("span", "badge leg", st.info.leg), el("span", "badge source", st.info.source),
      el("span", "call", st.info.call_id.slice(0, 12)), el("span", "mine", "this browser"),
      el("span", "status"), el("span", "alert-badge", "ALERT"));
    const labels = el("div", "labels");
    for (const [k, v] of Object.entries(st.info.labels || {})) {
      const chip = el("span", "chip", `${k}=${v.length > 40 ? v.slice(0, 39) + "…" : v}`);
      chip.title = `${k}=${v}`;
      labels.append(chip);
    }
    const nums = el("div", "nums");
    const canvas = el("canvas", "timeline");
    canvas.setAttribute("role", "img");
    card.append(head, labels, nums, canvas);
    return card;
  }

  function updateCard(card, id, st) {
    const active = st.alerting && !st.ended;  // an ended stream's alert is history, not a live alarm
    card.classList.toggle("ended", !!st.ended);
    card.classList.toggle("alerting", active);
    card.classList.toggle("alerted", !active && (st.spans.length > 0 || !!(st.ended && st.ended.alert_raised)));
    card.querySelector(".alert-badge").textContent = active ? "ALERT" : "alert raised";
    card.classList.toggle("is-mine", id === state.myStreamId);
    card.querySelector(".status").textContent = st.ended ? `ended (${st.ended.reason || "done"})` : "live";
    const n = st.windows.length;
    const nums = card.querySelector(".nums");
    nums.replaceChildren();
    const item = (label, value, cls) => { const s = el("span", "num " + (cls || "")); s.append(el("small", "", label), el("b", "", value)); nums.append(s); };
    item("p_fake", st.last ? fmt(st.last.p) : "–", "p");
    item("smoothed", st.last ? fmt(st.last.sm) : "–", "sm");
    item("windows", String(n));
    if (st.ended) item("speech", `${fmt(st.ended.speech_s, 1)} s`);
    if (!n) nums.append(el("span", "waiting", st.ended ? "no window scored (not enough speech)" : "waiting for 2.5–4 s of speech…"));
    const canvas = card.querySelector("canvas");
    canvas.setAttribute("aria-label", `score timeline: ${n} windows, last p_fake ${st.last ? fmt(st.last.p) : "none"}`);
    drawTimeline(canvas, st);
  }

  function drawTimeline(canvas, st) {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || 600, h = canvas.clientHeight || 150;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr);
    }
    const g = canvas.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    const L = 34, R = 8, T = 8, B = 20;
    const last = st.windows.length ? st.windows[st.windows.length - 1].end : 0;
    const t1 = Math.max(30, Math.ceil(last / 10) * 10), t0 = Math.max(0, t1 - TIMELINE_S);
    const x = (t) => L + ((t - t0) / (t1 - t0)) * (w - L - R);
    const y = (p) => T + (1 - p) * (h - T - B);
    g.font = "11px system-ui, sans-serif";
    g.fillStyle = "#5b6472"; g.strokeStyle = "#e3e7ee"; g.lineWidth = 1;
    for (const p of [0, 0.25, 0.5, 0.75, 1]) {
      g.beginPath(); g.moveTo(L, y(p)); g.lineTo(w - R, y(p)); g.stroke();
      g.fillText(p.toFixed(2), 2, y(p) + 4);
    }
    const step = (t1 - t0) > 60 ? 20 : 10;
    for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) {
      const text = `${t} s`, tw = g.measureText(text).width;
      g.fillText(text, Math.min(w - R - tw, Math.max(L, x(t) - tw / 2)), h - 5);
    }
    g.fillStyle = "rgba(220, 38, 38, 0.12)";
    for (const [a, b] of st.spans) g.fillRect(x(Math.max(a, t0)), T, x(b === null ? last : b) - x(Math.max(a, t0)), h - T - B);
    const thr = state.info && state.info.thresholds;
    if (thr) {
      g.setLineDash([5, 4]); g.lineWidth = 1.5;
      // raise is labelled above its line and clear below it, so close thresholds stay readable
      for (const [p, color, label, dy] of [[thr.raise, "#dc2626", "raise", -4], [thr.clear, "#16a34a", "clear", 12]]) {
        g.strokeStyle = color; g.beginPath(); g.moveTo(L, y(p)); g.lineTo(w - R, y(p)); g.stroke();
        const text = `${label} ${p.toFixed(2)}`, tw = g.measureText(text).width;
        const ty = Math.min(h - B - 2, Math.max(T + 10, y(p) + dy));
        g.fillStyle = "rgba(255, 255, 255, 0.85)"; g.fillRect(w - R - tw - 4, ty - 10, tw + 4, 13);
        g.fillStyle = color; g.fillText(text, w - R - tw - 2, ty);
      }
      g.setLineDash([]);
    }
    const shown = st.windows.filter((win) => win.end >= t0);
    g.strokeStyle = "#4338ca"; g.lineWidth = 2; g.beginPath();
    shown.forEach((win, i) => (i ? g.lineTo(x(win.end), y(win.sm)) : g.moveTo(x(win.end), y(win.sm))));
    g.stroke();
    for (const win of shown) {
      g.fillStyle = thr && win.p >= thr.raise ? "#dc2626" : "#0891b2";
      g.beginPath(); g.arc(x(win.end), y(win.p), 3.5, 0, 2 * Math.PI); g.fill();
    }
  }

  new ResizeObserver(() => { state.dirty = new Set(state.streams.keys()); requestDraw(); }).observe($("streams"));

  // ---- microphone over WebRTC -------------------------------------------------------------
  const mic = {
    pc: null, media: null, audio: null, timer: null, t: {},
    async start() {
      const btn = $("mic-btn");
      btn.disabled = true;
      this.t = { clicked: performance.now() };
      try {
        this.status("Asking for the microphone…");
        this.media = await navigator.mediaDevices.getUserMedia({
          audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false },
        });
        this.t.mic = performance.now();
        this.meter(this.media);
        const ice = (state.info && state.info.webrtc && state.info.webrtc.ice_servers) || [];
        this.pc = new RTCPeerConnection({ iceServers: ice.map((u) => ({ urls: u })) });
        for (const track of this.media.getAudioTracks()) this.pc.addTransceiver(track, { direction: "sendonly", streams: [this.media] });
        this.pc.onconnectionstatechange = () => this.connState();
        this.status("Connecting…");
        await this.pc.setLocalDescription(await this.pc.createOffer());
        await this.gathered(this.pc, 5000);  // the server does not trickle: send every candidate at once
        const r = await fetch("/v1/webrtc/offer", {
          method: "POST", headers: { "Content-Type": "application/json", ...authHeaders() },
          body: JSON.stringify({ sdp: this.pc.localDescription.sdp, type: "offer", labels: { origin: "dashboard" } }),
        });
        const body = await r.json().catch(() => ({}));
        if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
        state.myStreamId = body.stream_id;
        await this.pc.setRemoteDescription({ type: body.type, sdp: body.sdp });
        btn.textContent = "Stop microphone";
        btn.classList.add("on");
        this.status("Streaming: speak for a few seconds; the first score comes after 2.5–4 s of speech.");
      } catch (err) {
        this.stop();
        this.status(`Microphone test failed: ${err.message || err}`, true);
      } finally {
        btn.disabled = false;
      }
    },
    gathered(pc, ms) {
      if (pc.iceGatheringState === "complete") return Promise.resolve();
      return new Promise((resolve) => {
        const done = () => { if (pc.iceGatheringState === "complete") { pc.removeEventListener("icegatheringstatechange", done); resolve(); } };
        pc.addEventListener("icegatheringstatechange", done);
        setTimeout(resolve, ms);  // send what was gathered rather than wait forever
      });
    },
    connState() {
      const s = this.pc && this.pc.connectionState;
      if (s === "connected") this.t.connected = performance.now();
      if (s === "failed") { this.stop(); this.status("The WebRTC connection failed (is the daemon reachable from this browser?)", true); }
    },
    scored(win) {
      if (this.t.firstScore || !this.t.mic) return;
      this.t.firstScore = performance.now();
      const s = (this.t.firstScore - this.t.mic) / 1000;
      this.status(`Streaming: first window scored ${s.toFixed(1)} s after the microphone opened (p_fake ${fmt(win.p)}).`);
    },
    meter(media) {
      try {
        this.audio = new AudioContext();
        const an = this.audio.createAnalyser();
        an.fftSize = 1024;
        this.audio.createMediaStreamSource(media).connect(an);
        const buf = new Float32Array(an.fftSize);
        this.timer = setInterval(() => {
          an.getFloatTimeDomainData(buf);
          let sum = 0;
          for (const v of buf) sum += v * v;
          const db = 10 * Math.log10(sum / buf.length + 1e-12);
          $("mic-level").style.width = `${Math.max(0, Math.min(100, ((db + 60) / 60) * 100))}%`;
          $("mic-level").title = `${db.toFixed(1)} dBFS`;
        }, 100);
      } catch { /* the meter is a convenience */ }
    },
    stop() {
      if (this.pc) this.pc.close();
      if (this.media) this.media.getTracks().forEach((t) => t.stop());
      if (this.audio) this.audio.close();
      clearInterval(this.timer);
      this.pc = this.media = this.audio = null;
      $("mic-level").style.width = "0";
      const btn = $("mic-btn");
      btn.textContent = "Test my microphone";
      btn.classList.remove("on");
    },
    status(text, error = false) {
      $("mic-status").textContent = text;
      $("mic-status").classList.toggle("error", error);
    },
  };
  window.streamdMic = mic;

  if (!window.isSecureContext || !navigator.mediaDevices || !window.RTCPeerConnection) {
    // browsers only open the microphone on https:// or http://localhost / 127.0.0.1
    $("mic-btn").disabled = true;
    $("mic-status").textContent = "This browser only opens the microphone on an https:// page or on localhost; open the dashboard that way to test your microphone.";
  }

  $("mic-btn").addEventListener("click", () => {
    if (mic.pc) { mic.stop(); mic.status("Stopped. The stream ends and its last window is scored."); }
    else mic.start();
  });

  connect();
})();
