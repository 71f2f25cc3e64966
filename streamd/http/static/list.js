// The call list, virtualised: only the rows in view (plus a few) exist in the DOM, recycled as the
// list scrolls, so 500 or 5000 calls cost the same per frame. A row is redrawn only when its call
// changed (call.v) or a second passed (durations tick).
import { drawSpark } from "./timeline.js";

export const ROW_H = 48;
const OVERSCAN = 6;

const fmt = (x, d = 3) => (typeof x === "number" && isFinite(x) ? x.toFixed(d) : "–");

export function duration(c, now) {
  const t0 = Date.parse(c.started);
  if (!isFinite(t0)) return "";
  const t1 = c.endedAt ? Date.parse(c.endedAt) : now;
  const s = Math.max(0, Math.round((t1 - t0) / 1000));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), ss = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

/** The leg a row speaks for: an alerting one, else the one with the highest smoothed score. */
export function worstLeg(c) {
  let best = null;
  for (const st of c.legs.values()) {
    const key = (st.alerting && !st.ended ? 2 : 0) + (st.last && typeof st.last.sm === "number" ? st.last.sm : -1);
    if (!best || key > best.key) best = { st, key };
  }
  return best ? best.st : null;
}

export function statusOf(model, c) {
  const rank = model.rank(c);
  const unacked = model.unacked(c);
  if (rank === 0) return ["alert", "ALERT"];
  if (rank === 1) {
    const a = model.alerts.get(c.alertIds[c.alertIds.length - 1]);
    return ["acked", `ACK ${a && a.ack ? a.ack.by : ""}`.trim()];
  }
  if (unacked.length) return ["alerted", c.endedAt ? "ended · alert" : "alert cleared"];
  return rank === 2 ? ["live", "live"] : ["ended", "ended"];
}

export class CallList {
  constructor(box, { model, onSelect, onAck, thresholds }) {
    this.box = box; this.model = model; this.onSelect = onSelect; this.onAck = onAck;
    this.thresholds = thresholds;
    this.spacer = document.createElement("div");
    this.spacer.className = "spacer";
    box.append(this.spacer);
    this.pool = [];
    this.order = [];
    this.selected = null;
    this.tick = 0;
    box.addEventListener("scroll", () => this.render(), { passive: true });
    box.addEventListener("click", (e) => {
      const row = e.target.closest(".row");
      if (!row || !row.call) return;
      if (e.target.closest("button.ack")) { e.stopPropagation(); this.onAck(row.call); return; }
      this.onSelect(row.call);
    });
    box.addEventListener("keydown", (e) => {
      if (e.key !== "Enter") return;
      const row = e.target.closest(".row");
      if (row && row.call) this.onSelect(row.call);
    });
  }

  setOrder(order) {
    this.order = order;
    this.spacer.style.height = `${order.length * ROW_H}px`;
  }

  /** Seconds passed: rows redraw their durations. */
  second() { this.tick++; }

  row() {
    const row = document.createElement("div");
    row.className = "row";
    row.tabIndex = 0;
    row.setAttribute("role", "row");
    row.innerHTML = `<span class="c-status"><span class="pill"></span></span>`
      + `<span class="c-who"><b class="caller"></b><small class="callee"></small></span>`
      + `<span class="c-src"></span><span class="c-queue"></span><span class="c-id"></span>`
      + `<span class="c-dur"></span><span class="c-p num"></span><span class="c-sm num"></span>`
      + `<canvas class="spark"></canvas>`
      + `<span class="c-act"><button type="button" class="ack">Acknowledge</button></span>`;
    row.q = (sel) => row.querySelector(sel);
    row.parts = {
      pill: row.q(".pill"), caller: row.q(".caller"), callee: row.q(".callee"), src: row.q(".c-src"),
      queue: row.q(".c-queue"), id: row.q(".c-id"), dur: row.q(".c-dur"), p: row.q(".c-p"),
      sm: row.q(".c-sm"), spark: row.q(".spark"), ack: row.q(".ack"),
    };
    this.spacer.append(row);
    return row;
  }

  render() {
    const top = this.box.scrollTop, h = this.box.clientHeight || 600;
    const first = Math.max(0, Math.floor(top / ROW_H) - OVERSCAN);
    const last = Math.min(this.order.length, Math.ceil((top + h) / ROW_H) + OVERSCAN);
    while (this.pool.length < last - first) this.pool.push(this.row());
    const now = Date.now();
    for (let i = 0; i < this.pool.length; i++) {
      const row = this.pool[i], idx = first + i;
      if (idx >= last) { if (!row.hidden) { row.hidden = true; row.call = null; } continue; }
      const c = this.order[idx];
      row.hidden = false;
      const y = idx * ROW_H;
      if (row.y !== y) { row.style.transform = `translateY(${y}px)`; row.y = y; }
      if (row.call !== c || row.v !== c.v || row.tick !== this.tick || row.sel !== (c === this.selected)) {
        this.fill(row, c, now);
      }
    }
  }

  fill(row, c, now) {
    const m = this.model, p = row.parts;
    row.call = c; row.v = c.v; row.tick = this.tick; row.sel = c === this.selected;
    row.dataset.call = c.id;
    const [kind, text] = statusOf(m, c);
    row.className = `row ${kind}${row.sel ? " selected" : ""}`;
    p.pill.className = `pill ${kind}`; p.pill.textContent = text;
    p.caller.textContent = c.name ? `${c.name} ${c.caller}`.trim() : c.caller || "unknown caller";
    p.callee.textContent = c.callee ? `→ ${c.callee}` : "";
    const legs = [...c.legs.values()].map((l) => l.info.leg).join(" + ");
    p.src.textContent = `${c.source} · ${legs}`;
    p.queue.textContent = c.queue || "";
    p.id.textContent = c.id.length > 14 ? c.id.slice(0, 13) + "…" : c.id;
    p.id.title = c.id;
    p.dur.textContent = duration(c, now);
    const st = worstLeg(c);
    const last = st && st.last;
    p.p.textContent = last ? fmt(last.p) : "–";
    p.sm.textContent = last ? fmt(last.sm) : "–";
    p.ack.hidden = !m.unacked(c).length;
    drawSpark(p.spark, st ? st.windows : [], this.thresholds(), st && st.alerting && !st.ended);
  }
}
