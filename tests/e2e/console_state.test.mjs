// The console's model (streamd/http/static/state.js) on its own, in Node: no browser needed.
//   node console_state.test.mjs   -> prints {"ok": true, ...} or exits 1 with what failed
import assert from "node:assert/strict";
import { Model, MAX_ENDED, shortParty } from "../../streamd/http/static/state.js";

let id = 0;
const stream = (call, leg = "caller", labels = {}) => ({ stream_id: `${call}:${leg}`, call_id: call, leg, source: "sip", labels });
const ev = (type, s, extra = {}) => ({ v: 2, id: ++id, type, ts: new Date(Date.UTC(2026, 0, 1, 0, 0, 0, id)).toISOString(), stream: s, ...extra });
const win = (s, t, p, sm, alerting = false) => ev("window.scored", s, { score: p, smoothed: sm, alerting, window: { start_s: t, end_s: t + 4 } });
const checks = [];
const check = (name, fn) => { fn(); checks.push(name); };

check("live and alerting calls are never pruned, ended ones oldest first", () => {
  const m = new Model();
  const alerting = stream("alerting");
  m.handle(ev("stream.started", alerting));
  m.handle(ev("alert.raised", alerting, { score: 0.9, smoothed: 0.8, window: { start_s: 0, end_s: 4 } }));
  for (let i = 0; i < 600; i++) m.handle(ev("stream.started", stream(`live${i}`)));
  for (let i = 0; i < MAX_ENDED + 50; i++) {
    const s = stream(`ended${i}`);
    m.handle(ev("stream.started", s));
    m.handle(ev("stream.ended", s, { summary: { reason: "bye" }, alert: { raised_at_end: false, raised: 0 } }));
  }
  assert.ok(m.calls.has("alerting") && m.calls.get("alerting").legs.size === 1);
  for (let i = 0; i < 600; i++) assert.ok(m.calls.has(`live${i}`), `live${i} was dropped`);
  const ended = [...m.calls.values()].filter((c) => c.endedAt !== null).map((c) => c.id);
  assert.equal(ended.length, MAX_ENDED);
  assert.ok(!m.calls.has("ended0") && m.calls.has(`ended${MAX_ENDED + 49}`));
  assert.equal(m.view({})[0].id, "alerting");  // pinned on top of 900 calls
});

check("acknowledging unpins below unacknowledged alerts; replayed acks apply", () => {
  const m = new Model();
  const a = stream("a"), b = stream("b");
  m.handle(ev("stream.started", a)); m.handle(ev("stream.started", b));
  const ra = ev("alert.raised", a, { score: 0.9, smoothed: 0.8, window: { start_s: 0, end_s: 4 } });
  m.handle(ra);
  const rb = ev("alert.raised", b, { score: 0.9, smoothed: 0.8, window: { start_s: 0, end_s: 4 } });
  m.handle(rb);
  m.handle(ev("stream.started", stream("quiet")));
  assert.deepEqual(m.view({}).map((c) => c.id), ["b", "a", "quiet"]);  // rank 0, newest first
  m.handle(ev("alert.acknowledged", b, { alert_id: rb.id, by: "Dana" }));
  assert.equal(m.rank(m.calls.get("b")), 1);
  assert.deepEqual(m.view({}).map((c) => c.id), ["a", "b", "quiet"]);
  assert.deepEqual(m.view({ alertingOnly: true }).map((c) => c.id), ["a", "b"]);
  assert.equal(m.unacked(m.calls.get("b")).length, 0);
  // an ack for an alert raised before this page's replay still lands on its call
  const c = stream("c");
  m.handle(ev("alert.acknowledged", c, { alert_id: 1, by: "Sam" }));
  assert.equal(m.alerts.get(1).ack.by, "Sam");
});

check("an alert closed at stream end leaves a live-less call, still to acknowledge", () => {
  const m = new Model();
  const s = stream("x");
  m.handle(ev("stream.started", s));
  m.handle(win(s, 0, 0.95, 0.95));
  m.handle(ev("alert.raised", s, { score: 0.95, smoothed: 0.95, window: { start_s: 0, end_s: 4 } }));
  m.handle(win(s, 1, 0.97, 0.96, true));
  assert.equal(m.rank(m.calls.get("x")), 0);
  m.handle(ev("alert.cleared", s, { score: 0.97, smoothed: 0.96, reason: "stream_ended", window: { start_s: 1, end_s: 5 } }));
  m.handle(ev("stream.ended", s, { summary: { reason: "bye" }, alert: { raised_at_end: true, raised: 1 } }));
  const call = m.calls.get("x");
  assert.equal(m.rank(call), 3);
  assert.equal(m.unacked(call).length, 1);
  assert.equal(call.legs.get("x:caller").spans[0][1], 5);  // the alert span closed at the last window
});

check("v1 events from an older store still draw (no smoothed: the score is used)", () => {
  const m = new Model();
  const s = stream("old");
  m.handle({ ...ev("window.scored", s, { score: 0.3, window: { start_s: 0, end_s: 4 } }), v: 1 });
  assert.equal(m.streams.get("old:caller").last.sm, 0.3);
});

check("identity from SIP, AudioHook and Twilio labels; search and filters", () => {
  const m = new Model();
  m.handle(ev("stream.started", stream("sip1", "caller", { from: '"Ann" <sip:+15551230000@pbx;user=phone>', to: "sip:+18005550100@cc" })));
  m.handle(ev("stream.started", { ...stream("ah1", "external", { ani: "tel:+15559870000", dnis: "tel:+18005550199", aniName: "Bob", queue: "billing" }), source: "audiohook" }));
  m.handle(ev("stream.started", { ...stream("tw1", "inbound", { From: "+15550001111", To: "+18005550100", callSid: "CA1" }), source: "twilio" }));
  const sip = m.calls.get("sip1"), ah = m.calls.get("ah1"), tw = m.calls.get("tw1");
  assert.deepEqual([sip.caller, sip.callee], ["+15551230000", "+18005550100"]);
  assert.deepEqual([ah.caller, ah.callee, ah.name, ah.queue], ["+15559870000", "+18005550199", "Bob", "billing"]);
  assert.deepEqual([tw.caller, tw.callee], ["+15550001111", "+18005550100"]);
  assert.deepEqual(m.view({ q: "+1555987" }).map((c) => c.id), ["ah1"]);
  assert.deepEqual(m.view({ q: "callsid=ca1" }).map((c) => c.id), ["tw1"]);
  assert.deepEqual(m.view({ source: "audiohook" }).map((c) => c.id), ["ah1"]);
  assert.deepEqual(m.view({ leg: "inbound" }).map((c) => c.id), ["tw1"]);
  assert.deepEqual(m.view({ queue: "billing" }).map((c) => c.id), ["ah1"]);
  assert.equal(shortParty("sips:alice@example.com"), "alice@example.com");
});

check("a replay overlapping live events counts each once", () => {
  const m = new Model();
  const s = stream("d");
  const e1 = ev("stream.started", s), e2 = win(s, 0, 0.1, 0.1);
  for (const e of [e1, e2, e1, e2]) m.handle(e);
  assert.equal(m.streams.get("d:caller").windows.length, 1);
});

process.stdout.write(JSON.stringify({ ok: true, checks }) + "\n");
