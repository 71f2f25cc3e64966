// "Test my microphone": this browser's microphone to the daemon over WebRTC, as one more call.
const $ = (id) => document.getElementById(id);
const fmt = (x, d = 3) => (typeof x === "number" && isFinite(x) ? x.toFixed(d) : "–");
const hooks = { info: () => null, mine: () => {}, authHeaders: () => ({}) };

/** The app tells the mic where the daemon's facts are and who to tell about its stream id. */
export function connectMic(h) { Object.assign(hooks, h); }

export const mic = {
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
      const ice = (hooks.info() && hooks.info().webrtc && hooks.info().webrtc.ice_servers) || [];
      this.pc = new RTCPeerConnection({ iceServers: ice.map((u) => ({ urls: u })) });
      for (const track of this.media.getAudioTracks()) this.pc.addTransceiver(track, { direction: "sendonly", streams: [this.media] });
      this.pc.onconnectionstatechange = () => this.connState();
      this.status("Connecting…");
      await this.pc.setLocalDescription(await this.pc.createOffer());
      await this.gathered(this.pc, 5000);  // the server does not trickle: send every candidate at once
      const r = await fetch("/v1/webrtc/offer", {
        method: "POST", headers: { "Content-Type": "application/json", ...hooks.authHeaders() },
        body: JSON.stringify({ sdp: this.pc.localDescription.sdp, type: "offer", labels: { origin: "dashboard" } }),
      });
      const body = await r.json().catch(() => ({}));
      if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
      hooks.mine(body.stream_id);
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
