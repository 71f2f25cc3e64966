// What the console knows: calls (one per call_id), their legs (one per stream), alerts and their
// acknowledgements, built only from /v1/events (v2, and v1 events still in an older store) and the
// open-stream snapshot of /v1/dashboard/info. No DOM here.

export const MAX_WINDOWS = 3000;   // per leg: the whole timeline of a call of ~50 minutes at 1 s hops
export const MAX_HISTORY = 400;    // events kept per call for its history
export const MAX_ENDED = 300;      // ended calls kept; live calls are never dropped

// Label keys that say who is on the line, by source: SIP From/To, AudioHook ANI/DNIS and
// participant, Twilio custom parameters (From/To/caller), SIPREC participant name/AOR.
const CALLER_KEYS = ["from", "From", "ani", "caller", "Caller", "callerNumber", "caller_number", "aor"];
const CALLEE_KEYS = ["to", "To", "dnis", "called", "Called", "callee", "dialed"];
const NAME_KEYS = ["name", "aniName", "callerName", "caller_name", "CallerName"];
const QUEUE_KEYS = ["queue", "Queue", "queueName", "queue_name", "skill", "team"];

const pick = (labels, keys) => { for (const k of keys) if (labels[k]) return labels[k]; return ""; };

/** sip:+15551234567@pbx;user=phone -> +15551234567; "Alice" <sip:alice@x> -> alice@x */
export function shortParty(uri) {
  if (!uri) return "";
  let s = String(uri).trim();
  const angle = s.match(/<([^>]*)>/);
  if (angle) s = angle[1];
  s = s.replace(/^(sips?|tel):/i, "").split(";")[0];
  const at = s.indexOf("@");
  const user = at > 0 ? s.slice(0, at) : s;
  return /^\+?[\d\-\s().]+$/.test(user) ? user : s;
}

export class Model {
  constructor() {
    this.calls = new Map();     // call_id -> call
    this.streams = new Map();   // stream_id -> leg
    this.alerts = new Map();    // alert id -> alert
    this.sources = new Set(); this.legs = new Set(); this.queues = new Set();
    this.version = 0;           // bumps when the call list's order or filters' choices may change
    this.lastId = 0;
    this.liveFrom = Infinity;   // events with a larger id arrived after the snapshot
  }

  clear() {
    this.calls.clear(); this.streams.clear(); this.alerts.clear();
    this.version++;
  }

  call(stream, ts) {
    let c = this.calls.get(stream.call_id);
    if (!c) {
      c = { id: stream.call_id, legs: new Map(), labels: {}, source: stream.source, started: ts || "",
        endedAt: null, history: [], alertIds: [], v: 0, caller: "", callee: "", name: "", queue: "" };
      this.calls.set(c.id, c);
      this.version++;
      this.prune();
    }
    return c;
  }

  leg(stream, ts) {
    let st = this.streams.get(stream.stream_id);
    if (!st) {
      const c = this.call(stream, ts);
      st = { id: stream.stream_id, info: stream, call: c, windows: [], spans: [], alerting: false,
        alertId: null, ended: null, alertAtEnd: null, last: null, snapWindows: 0, liveWindows: 0 };
      this.streams.set(st.id, st);
      c.legs.set(st.id, st);
      Object.assign(c.labels, stream.labels || {});
      this.identify(c);
      this.sources.add(stream.source); this.legs.add(stream.leg);
      this.version++;
    }
    return st;
  }

  identify(c) {
    const l = c.labels;
    c.caller = shortParty(pick(l, CALLER_KEYS));
    c.callee = shortParty(pick(l, CALLEE_KEYS));
    c.name = pick(l, NAME_KEYS);
    c.queue = pick(l, QUEUE_KEYS);
    if (c.queue) this.queues.add(c.queue);
    c.search = [c.id, c.caller, c.callee, c.name, c.queue, ...[...c.legs.keys()],
      ...Object.entries(l).map(([k, v]) => `${k}=${v}`)].join("\n").toLowerCase();
  }

  /** The open streams of /v1/dashboard/info: drawn before any event arrives. */
  snapshot(info) {
    this.liveFrom = info.last_event_id || 0;
    for (const s of info.streams || []) {
      const st = this.leg(s.stream, new Date((s.started || 0) * 1000).toISOString());
      st.snapWindows = s.windows || 0;
      if (s.score !== null && s.score !== undefined && !st.last) st.last = { p: s.score, sm: s.smoothed, end: null };
      st.alerting = !!s.alerting;
      if (s.alerting && s.alert_id) this.alertFor(s.alert_id, st, null);
      st.call.v++;
    }
  }

  alertFor(id, st, ev) {
    let a = this.alerts.get(id);
    if (!a) {
      a = { id, stream: st.id, leg: st.info.leg, call: st.call, raised: ev, cleared: null, ack: null };
      this.alerts.set(id, a);
      st.call.alertIds.push(id);
    }
    if (ev && !a.raised) a.raised = ev;
    return a;
  }

  handle(ev) {
    if (typeof ev.id === "number") {
      if (ev.id <= this.lastId) return null;  // already seen (replay overlapping live)
      this.lastId = ev.id;
    }
    if (!ev.stream || !ev.stream.stream_id) return null;
    const st = this.leg(ev.stream, ev.ts);
    const c = st.call;
    switch (ev.type) {
      case "stream.started": break;
      case "window.scored": {
        const sm = typeof ev.smoothed === "number" ? ev.smoothed : ev.score;
        const w = { start: ev.window.start_s, end: ev.window.end_s, p: ev.score, sm };
        st.windows.push(w);
        if (st.windows.length > MAX_WINDOWS) st.windows.splice(0, st.windows.length - MAX_WINDOWS);
        if (ev.id > this.liveFrom) st.liveWindows++;
        st.last = w;
        if (st.alerting !== !!ev.alerting) this.version++;
        st.alerting = !!ev.alerting;
        break;
      }
      case "alert.raised": {
        st.spans.push([ev.window ? ev.window.end_s : 0, null]);
        st.alerting = true; st.alertId = ev.id;
        this.alertFor(ev.id, st, ev);
        this.version++;
        break;
      }
      case "alert.cleared": {
        const open = st.spans[st.spans.length - 1];
        if (open && open[1] === null) open[1] = ev.window ? ev.window.end_s : 0;
        st.alerting = false;
        const a = st.alertId !== null ? this.alerts.get(st.alertId) : null;
        if (a && !a.cleared) a.cleared = ev;
        this.version++;
        break;
      }
      case "alert.acknowledged": {
        const a = this.alertFor(ev.alert_id, st, null);
        a.ack = { by: ev.by, ts: ev.ts, note: ev.note || "" };
        this.version++;
        break;
      }
      case "stream.ended": {
        st.ended = ev.summary || {};
        st.alertAtEnd = ev.alert || null;
        st.alerting = false;
        if ([...c.legs.values()].every((l) => l.ended)) c.endedAt = ev.ts;
        this.version++;
        this.prune();
        break;
      }
      default: return null;
    }
    c.history.push(ev);
    if (c.history.length > MAX_HISTORY) c.history.splice(0, c.history.length - MAX_HISTORY);
    c.v++;
    return c;
  }

  // ---- derived state, per call -----------------------------------------------------------
  alerting(c) { for (const st of c.legs.values()) if (st.alerting && !st.ended) return true; return false; }
  unacked(c) { return c.alertIds.map((id) => this.alerts.get(id)).filter((a) => a && !a.ack); }
  live(c) { return c.endedAt === null; }

  /** 0 alerting and unacknowledged, 1 alerting and acknowledged, 2 live, 3 ended: the pin order. */
  rank(c) {
    if (this.alerting(c)) return this.unacked(c).length ? 0 : 1;
    return this.live(c) ? 2 : 3;
  }

  prune() {
    let ended = 0;
    for (const c of this.calls.values()) if (c.endedAt !== null) ended++;
    if (ended <= MAX_ENDED) return;
    // oldest-ended first, acknowledged (or never alerted) before unacknowledged
    const victims = [...this.calls.values()].filter((c) => c.endedAt !== null)
      .sort((a, b) => (this.unacked(a).length > 0) - (this.unacked(b).length > 0) || (a.endedAt < b.endedAt ? -1 : 1));
    for (const c of victims.slice(0, ended - MAX_ENDED)) {
      this.calls.delete(c.id);
      for (const id of c.legs.keys()) this.streams.delete(id);
      for (const id of c.alertIds) this.alerts.delete(id);
    }
    this.version++;
  }

  /** Calls that pass the filters, pinned order: alerting first, then live, newest first. */
  view(f) {
    const q = (f.q || "").trim().toLowerCase();
    const out = [];
    for (const c of this.calls.values()) {
      if (f.source && c.source !== f.source) continue;
      if (f.leg && ![...c.legs.values()].some((l) => l.info.leg === f.leg)) continue;
      if (f.queue && c.queue !== f.queue) continue;
      if (f.alertingOnly && this.rank(c) > 1) continue;
      if (f.hideEnded && c.endedAt !== null) continue;
      if (q && !q.split(/\s+/).every((t) => c.search.includes(t))) continue;
      out.push(c);
    }
    const ranks = new Map(out.map((c) => [c, this.rank(c)]));
    return out.sort((a, b) => ranks.get(a) - ranks.get(b) || (a.started < b.started ? 1 : a.started > b.started ? -1 : 0));
  }
}
