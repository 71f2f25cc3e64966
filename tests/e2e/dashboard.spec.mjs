// Drives the streamd dashboard in Debian's headless Chromium with a WAV file as the microphone.
//
//   node dashboard.spec.mjs --url http://127.0.0.1:PORT/?token=T --wav speech.wav \
//        --screenshot artifacts/dashboard.png [--runs 1] [--timeout-s 60]
//
// Opens the page, waits for the events websocket, presses "Test my microphone", waits for the
// page to show this browser's stream and its window scores, takes a screenshot, stops the mic and
// waits for the stream to end. Repeats the mic part --runs times and reports, per run, the time
// from getUserMedia resolving (speech entering the browser) to the first window.scored event
// reaching the page. Prints one JSON object on stdout; exit code 1 on any failure. Never
// downloads a browser: it runs /usr/bin/chromium (or $CHROMIUM).
import { chromium } from "playwright-core";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

function args(argv) {
  const out = { runs: 1, "timeout-s": 60 };
  for (let i = 0; i < argv.length; i += 2) out[argv[i].replace(/^--/, "")] = argv[i + 1];
  for (const k of ["url", "wav", "screenshot"]) if (!out[k]) throw new Error(`--${k} is required`);
  out.runs = Number(out.runs);
  out["timeout-s"] = Number(out["timeout-s"]);
  return out;
}

const opt = args(process.argv.slice(2));
const timeout = opt["timeout-s"] * 1000;
const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "streamd-chromium-"));
const result = { ok: false, runs: [], console: [] };
let context;

try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    viewport: { width: 1360, height: 900 },
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
      `--use-file-for-fake-audio-capture=${path.resolve(opt.wav)}`,
    ],
  });
  const page = context.pages()[0] || (await context.newPage());
  page.setDefaultTimeout(timeout);
  page.on("console", (m) => result.console.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => result.console.push(`pageerror: ${e.message}`));
  result.websockets = [];
  page.on("websocket", (ws) => result.websockets.push(ws.url()));

  await page.goto(opt.url);
  await page.waitForSelector('#conn[data-state="live"]');
  result.title = await page.title();

  for (let run = 0; run < opt.runs; run++) {
    await page.evaluate(() => { window.streamdDashboard.myStreamId = null; });
    await page.click("#mic-btn");
    await page.waitForFunction(() => window.streamdDashboard.myStreamId !== null);
    const streamId = await page.evaluate(() => window.streamdDashboard.myStreamId);
    const card = page.locator(`#detail .leg-card[data-stream="${streamId}"]`);
    await card.waitFor();
    await page.waitForFunction(() => window.streamdMic.t.firstScore !== undefined);
    const t = await page.evaluate(() => window.streamdMic.t);
    const shown = await card.locator(".num.p b").textContent();
    const r = {
      stream_id: streamId,
      first_score_after_mic_s: (t.firstScore - t.mic) / 1000,
      connected_after_mic_s: t.connected ? (t.connected - t.mic) / 1000 : null,
      p_fake_shown: shown,
      leg: await card.locator(".badge.leg").textContent(),
      source: await card.locator(".badge.source").textContent(),
      mic_status: await page.locator("#mic-status").textContent(),
    };
    if (run === 0) {
      // a few more windows so the timeline has something to show, then the screenshot
      await page.waitForFunction((id) => (window.streamdDashboard.streams.get(id)?.windows.length || 0) >= 3, streamId);
      r.windows_shown = await page.evaluate((id) => window.streamdDashboard.streams.get(id).windows.length, streamId);
      fs.mkdirSync(path.dirname(path.resolve(opt.screenshot)), { recursive: true });
      await page.screenshot({ path: opt.screenshot, fullPage: true });
    }
    if (run === 0) {
      // Drop the events websocket, then stop the mic while the page is disconnected: the page
      // must reconnect with since=<last id> and get stream.ended from the replay.
      r.last_id_before_drop = await page.evaluate(() => window.streamdDashboard.lastId);
      await page.evaluate(() => window.streamdDashboard.ws.close());
      await page.click("#mic-btn");
      await page.waitForSelector('#conn[data-state="retry"]');
      await page.waitForSelector('#conn[data-state="live"]');
    } else {
      await page.click("#mic-btn");  // stop: the peer closes, the daemon ends the stream
    }
    await card.locator(".status", { hasText: "ended" }).waitFor();
    r.ended_status = await card.locator(".status").textContent();
    result.runs.push(r);
  }
  result.streams_on_page = await page.locator(".stream").count();
  result.ok = true;
} catch (err) {
  result.error = String(err && err.stack ? err.stack : err);
  try {
    const page = context && context.pages()[0];
    if (page) await page.screenshot({ path: opt.screenshot.replace(/\.png$/, "-failure.png"), fullPage: true });
  } catch { /* best effort */ }
} finally {
  if (context) await context.close().catch(() => {});
  fs.rmSync(userDataDir, { recursive: true, force: true });
}
process.stdout.write(JSON.stringify(result) + "\n");
process.exit(result.ok ? 0 : 1);
