// One call opened: who is on the line, its alerts and their acknowledgements, every leg's whole
// score timeline, and the call's event history. Also the side feed of recent alerts.
import { drawTimeline } from "./timeline.js";
import { duration } from "./list.js";

const fmt = (x, d = 3) => (typeof x === "number" && isFinite(x) ? x.toFixed(d) : "–");
const time = (ts) => (ts ? new Date(ts).toLocaleTimeString([], { hourCycle: "h23" }) : "");

export function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = text;
  return e;
}

function describeEvent(ev) {
  const w = ev.window ? ` at ${fmt(ev.window.end_s, 1)} s` : "";
  switch (ev.type) {
    case "stream.started": return "stream started";
    case "window.scored": return `window ${fmt(ev.window.start_s, 1)}–${fmt(ev.window.end_s, 1)} s: p_fake ${fmt(ev.score)}, smoothed ${fmt(typeof ev.smoothed === "number" ? ev.smoothed : ev.score)}`;
    case "alert.raised": return `ALERT raised${w}: smoothed ${fmt(ev.smoothed ?? ev.score)} ≥ ${fmt(ev.thresholds && ev.thresholds.raise, 2)}`;
    case "alert.cleared": return ev.reason === "stream_ended" ? `alert closed: stream ended while raised${w}` : `alert cleared${w}: smoothed ${fmt(ev.smoothed ?? ev.score)}`;
    case "alert.acknowledged": return `alert #${ev.alert_id} acknowledged by ${ev.by}${ev.note ? ` (${ev.note})` : ""}`;
    case "stream.ended": {
      const s = ev.summary || {};
      return `stream ended (${s.reason || "done"}): ${s.windows ?? 0} windows, ${fmt(s.speech_s, 1)} s speech${ev.alert && ev.alert.raised_at_end ? ", alert still raised" : ""}`;
    }
    default: return ev.type;
  }
}

export class Detail {
  constructor(box, { model, onAck, onClose, thresholds }) {
    this.box = box; this.model = model; this.onAck = onAck; this.thresholds = thresholds;
    this.call = null; this.v = -1;
    box.addEventListener("click", (e) => {
      const b = e.target.closest("button");
      if (!b) return;
      if (b.dataset.ack) this.onAck(this.call, Number(b.dataset.ack));
      else if (b.classList.contains("close")) onClose();
    });
  }

  show(c) { this.call = c; this.v = -1; this.render(true); }

  render(force = false) {
    const c = this.call;
    this.box.hidden = !c;
    if (!c || (!force && this.v === c.v)) return;
    this.v = c.v;
    const m = this.model;
    this.box.dataset.call = c.id;
    const head = el("header", "detail-head");
    const who = el("h2", "who", `${c.name ? c.name + " " : ""}${c.caller || "unknown caller"}${c.callee ? " → " + c.callee : ""}`);
    head.append(who, el("button", "close", "×"));
    head.lastChild.type = "button"; head.lastChild.title = "close (Esc)";
    const ident = el("dl", "identity");
    const row = (k, v) => { if (v) ident.append(el("dt", "", k), el("dd", "", v)); };
    row("caller", c.caller); row("called", c.callee); row("name", c.name); row("queue", c.queue);
    row("source", c.source); row("call id", c.id); row("started", time(c.started));
    row("duration", `${duration(c, Date.now())}${c.endedAt ? " (ended)" : ""}`);
    const alerts = el("div", "call-alerts");
    for (const id of c.alertIds) {
      const a = m.alerts.get(id);
      if (!a) continue;
      const li = el("div", `call-alert ${a.ack ? "acked" : "open"}`);
      const r = a.raised;
      li.append(el("b", "", `${a.leg} alert #${id}`),
        el("span", "", r ? `raised ${time(r.ts)} at ${fmt(r.window && r.window.end_s, 1)} s (smoothed ${fmt(r.smoothed ?? r.score)})` : "raised before this page's replay"),
        el("span", "", a.cleared ? (a.cleared.reason === "stream_ended" ? "closed at stream end" : `cleared ${time(a.cleared.ts)}`) : "still raised"));
      if (a.ack) li.append(el("span", "ack-by", `acknowledged by ${a.ack.by} at ${time(a.ack.ts)}`));
      else { const b = el("button", "ack", "Acknowledge"); b.type = "button"; b.dataset.ack = String(id); li.append(b); }
      alerts.append(li);
    }
    if (!c.alertIds.length) alerts.append(el("p", "muted", "No alert on this call."));
    const legs = el("div", "legs");
    for (const st of c.legs.values()) legs.append(this.legCard(st));
    const labels = el("details", "labels");
    labels.append(el("summary", "", `labels (${Object.keys(c.labels).length})`));
    for (const [k, v] of Object.entries(c.labels)) labels.append(el("span", "chip", `${k}=${v}`));
    const hist = el("ol", "history");
    for (const ev of c.history.slice(-200).reverse()) {
      const li = el("li", ev.type.replace(".", "-"));
      li.append(el("span", "when", time(ev.ts)), el("span", "leg", ev.stream.leg), el("span", "what", describeEvent(ev)));
      hist.append(li);
    }
    const width = this.box.clientWidth - 52;  // read once, before the new content is laid out
    this.box.replaceChildren(head, ident, el("h3", "", "Alerts"), alerts, el("h3", "", "Legs"), legs, labels,
      el("h3", "", `Event history (${c.history.length}${c.history.length >= 400 ? ", latest" : ""})`), hist);
    for (const card of legs.children) drawTimeline(card.querySelector("canvas"), m.streams.get(card.dataset.stream), this.thresholds(), width);
  }

  legCard(st) {
    const card = el("article", "leg-card");
    card.dataset.stream = st.id;
    const active = st.alerting && !st.ended;
    card.classList.toggle("alerting", active);
    card.classList.toggle("ended", !!st.ended);
    const head = el("header");
    head.append(el("span", "badge leg", st.info.leg), el("span", "badge source", st.info.source),
      el("span", "status", st.ended ? `ended (${st.ended.reason || "done"})` : "live"));
    if (active) head.append(el("span", "alert-badge", "ALERT"));
    const nums = el("div", "nums");
    const item = (label, value, cls) => { const s = el("span", "num " + (cls || "")); s.append(el("small", "", label), el("b", "", value)); nums.append(s); };
    item("p_fake", st.last ? fmt(st.last.p) : "–", "p");
    item("smoothed", st.last ? fmt(st.last.sm) : "–", "sm");
    item("windows", String(Math.max(st.windows.length, st.snapWindows + st.liveWindows)));
    if (st.ended) item("speech", `${fmt(st.ended.speech_s, 1)} s`);
    const canvas = el("canvas", "timeline");
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", `score timeline of the ${st.info.leg} leg: ${st.windows.length} windows`);
    card.append(head, nums, canvas);
    return card;
  }
}

/** Recent alerts across all calls, newest first, each with its call and ack state. */
export function renderFeed(list, model, limit = 60) {
  const items = [...model.alerts.values()].filter((a) => a.raised).sort((a, b) => b.id - a.id).slice(0, limit);
  if (!items.length) { list.replaceChildren(el("li", "empty", "No alerts.")); return; }
  list.replaceChildren(...items.map((a) => {
    const c = a.call;
    const li = el("li", a.ack ? "acked" : a.cleared ? "cleared" : "raised");
    li.dataset.call = c.id;
    li.append(el("span", "when", time(a.raised.ts)),
      el("span", "who", `${c.caller || c.id.slice(0, 10)} · ${a.leg}`),
      el("span", "state", a.ack ? `ack ${a.ack.by}` : a.cleared ? (a.cleared.reason === "stream_ended" ? "call ended" : "cleared") : "RAISED"));
    return li;
  }));
}
