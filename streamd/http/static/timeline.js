// Canvas drawing: a leg's whole score timeline (detail view) and a small trend line (list rows).

export const SPARK_W = 100, SPARK_H = 26;
const RED = "#dc2626", CYAN = "#0891b2", INDIGO = "#4338ca", GREEN = "#16a34a";

function fit(canvas, width, height) {
  // callers pass the CSS size they know, so drawing never forces a layout in the middle of a frame
  const dpr = window.devicePixelRatio || 1;
  const w = width, h = height;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr);
  }
  const g = canvas.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  return { g, w, h };
}

/** Every window of one leg, from 0 s to its last window: p_fake dots, smoothed line, thresholds. */
export function drawTimeline(canvas, st, thr, width) {
  const { g, w, h } = fit(canvas, width || 420, 130);
  const L = 34, R = 8, T = 8, B = 20;
  const last = st.windows.length ? st.windows[st.windows.length - 1].end : 0;
  const t0 = st.windows.length ? Math.floor(st.windows[0].start / 10) * 10 : 0;
  const t1 = Math.max(t0 + 30, Math.ceil(last / 10) * 10);
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (w - L - R);
  const y = (p) => T + (1 - p) * (h - T - B);
  g.font = "11px system-ui, sans-serif";
  g.fillStyle = "#5b6472"; g.strokeStyle = "#e3e7ee"; g.lineWidth = 1;
  for (const p of [0, 0.5, 1]) {
    g.beginPath(); g.moveTo(L, y(p)); g.lineTo(w - R, y(p)); g.stroke();
    g.fillText(p.toFixed(1), 6, y(p) + 4);
  }
  const span = t1 - t0, step = span > 1200 ? 300 : span > 600 ? 120 : span > 240 ? 60 : span > 60 ? 20 : 10;
  for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) {
    const text = t >= 120 ? `${Math.floor(t / 60)}:${String(t % 60).padStart(2, "0")}` : `${t} s`;
    const tw = g.measureText(text).width;
    g.fillText(text, Math.min(w - R - tw, Math.max(L, x(t) - tw / 2)), h - 5);
  }
  g.fillStyle = "rgba(220, 38, 38, 0.12)";
  for (const [a, b] of st.spans) {
    const a0 = Math.max(a, t0);
    g.fillRect(x(a0), T, x(b === null ? last : b) - x(a0), h - T - B);
  }
  if (thr) {
    g.setLineDash([5, 4]); g.lineWidth = 1.5;
    for (const [p, color] of [[thr.raise, RED], [thr.clear, GREEN]]) {
      g.strokeStyle = color; g.beginPath(); g.moveTo(L, y(p)); g.lineTo(w - R, y(p)); g.stroke();
    }
    g.setLineDash([]);
  }
  g.strokeStyle = INDIGO; g.lineWidth = 2; g.beginPath();
  st.windows.forEach((win, i) => (i ? g.lineTo(x(win.end), y(win.sm)) : g.moveTo(x(win.end), y(win.sm))));
  g.stroke();
  const r = st.windows.length > 400 ? 1.5 : 3;
  for (const win of st.windows) {
    g.fillStyle = thr && win.p >= thr.raise ? RED : CYAN;
    g.beginPath(); g.arc(x(win.end), y(win.p), r, 0, 2 * Math.PI); g.fill();
  }
}

/** The last ~40 smoothed scores of a leg as a line, with the raise threshold. */
export function drawSpark(canvas, windows, thr, alerting) {
  const { g, w, h } = fit(canvas, SPARK_W, SPARK_H);
  const n = Math.min(40, windows.length);
  if (thr) {
    g.strokeStyle = "rgba(220, 38, 38, .45)"; g.setLineDash([3, 3]); g.lineWidth = 1;
    const yr = 2 + (1 - thr.raise) * (h - 4);
    g.beginPath(); g.moveTo(0, yr); g.lineTo(w, yr); g.stroke(); g.setLineDash([]);
  }
  if (!n) return;
  const base = windows.length - n;
  g.strokeStyle = alerting ? RED : INDIGO; g.lineWidth = 1.5; g.beginPath();
  for (let i = 0; i < n; i++) {
    const px = n === 1 ? w / 2 : (i / (n - 1)) * (w - 2) + 1, py = 2 + (1 - windows[base + i].sm) * (h - 4);
    i ? g.lineTo(px, py) : g.moveTo(px, py);
  }
  g.stroke();
}
