"""Telephone-style fakes from Debian's TTS engines (espeak-ng, flite, festival), for training.

Why: in ../shared/data the only 8 kHz real speech is one IVR voice and the only 8 kHz fakes one
TTS, so "clean prompt at 8 kHz" reads as real. Robotic IVR and conversational lines from other
engines, through the same phone channel as the real calls, break that shortcut.
Writes ``out/<engine>-<voice>-<n>.wav`` (2-3 sentences each) and ``out/index.csv``.
"""

from __future__ import annotations

import csv
import random
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

IVR = [
    "Thank you for calling. Your call is important to us.",
    "Please listen carefully, as our menu options have recently changed.",
    "For billing questions, press one. For technical support, press two.",
    "To speak with a representative, please stay on the line.",
    "Please enter your account number followed by the pound key.",
    "We are experiencing higher than normal call volumes.",
    "Your estimated wait time is approximately four minutes.",
    "This call may be recorded for quality and training purposes.",
    "I'm sorry, I didn't understand your selection. Please try again.",
    "Please say or enter the last four digits of your social security number.",
    "Your payment of one hundred twenty dollars has been received.",
    "To repeat these options, press nine. To return to the main menu, press star.",
    "Our office hours are Monday through Friday, eight a.m. to six p.m.",
    "Please hold while I transfer your call.",
    "For security reasons, please verify your date of birth.",
]
CONV = [
    "Hi, it's me. I'm calling about the transfer we talked about yesterday.",
    "Yeah, I can hear you now. Sorry, the signal was really bad a minute ago.",
    "Listen, I need you to send the money today, it's really urgent.",
    "Hello grandma, it's me. I got into a bit of trouble and I need your help.",
    "Could you read me the code they just sent to your phone?",
    "I'm the manager at the branch, and we noticed a suspicious payment on your card.",
    "No, no, that's fine. We can do it on Thursday if that works better for you.",
    "Okay, so what I'm going to need from you is the full card number.",
    "I was wondering whether you had a chance to look at the invoice I sent.",
    "Honestly I don't remember, but let me check and call you back in five minutes.",
    "Hey, how are you doing? It's been a long time since we last talked.",
    "Please don't tell anyone about this call, I will explain everything later.",
    "Can you confirm the delivery address for the package, please?",
    "Good morning, this is the fraud prevention department of your bank.",
    "Um, yes, I think the meeting is at three, but let me double check.",
]
ES = [
    "Gracias por llamar. Para pagos, marque uno. Para soporte técnico, marque dos.",
    "Por favor, ingrese su número de cuenta seguido de la tecla numeral.",
    "Hola, soy yo. Necesito que me hagas una transferencia hoy mismo.",
]
RU = [
    "Здравствуйте. Вы позвонили в службу поддержки. Оставайтесь на линии.",
    "Пожалуйста, введите добавочный номер абонента или дождитесь ответа оператора.",
    "Привет, это я. Мне срочно нужна твоя помощь, перезвони мне.",
]


def _espeak(text: str, voice: str, path: Path, rng: random.Random) -> None:
    subprocess.run(
        [
            "espeak-ng",
            "-v",
            voice,
            "-s",
            str(rng.randint(140, 185)),
            "-p",
            str(rng.randint(30, 70)),
            "-w",
            str(path),
            text,
        ],
        check=True,
        capture_output=True,
    )


def _flite(text: str, voice: str, path: Path, rng: random.Random) -> None:
    subprocess.run(
        ["flite", "-voice", voice, "-t", text, "-o", str(path)], check=True, capture_output=True
    )


def _festival(text: str, voice: str, path: Path, rng: random.Random) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write(text)
    subprocess.run(["text2wave", "-o", str(path), f.name], check=True, capture_output=True)


ENGINES = {"espeak": "espeak-ng", "flite": "flite", "festival": "text2wave"}


def available_engines() -> list[str]:
    return [e for e, cmd in ENGINES.items() if shutil.which(cmd)]


def synthesize(out: Path, seed: int = 7) -> list[dict[str, object]]:
    """Synthesize (or reuse) the clip set; rows of index.csv. Engines that are missing are
    skipped."""
    index = out / "index.csv"
    if index.exists():
        with open(index, newline="") as f:
            return list(csv.DictReader(f))
    out.mkdir(parents=True, exist_ok=True)
    have = set(available_engines())
    rng = random.Random(seed)
    jobs = []
    en_es = [
        "en-us+m3",
        "en-us+f2",
        "en+m1",
        "en+f4",
        "en-gb-x-rp+m7",
        "en-us+klatt",
        "en+f5",
        "en-us+m5",
        "en-029+f1",
    ]
    for v in en_es:
        jobs += [("espeak", v, "en")] * 6
    jobs += [("espeak", "es+f3", "es")] * 3 + [("espeak", "es-419+m2", "es")] * 3
    jobs += [("espeak", "ru+m2", "ru")] * 3 + [("espeak", "ru+f3", "ru")] * 3
    for v in ["slt", "rms", "awb", "kal16", "kal"]:
        jobs += [("flite", v, "en")] * 10
    jobs += [("festival", "kal_diphone", "en")] * 12
    fn = {"espeak": _espeak, "flite": _flite, "festival": _festival}
    rows: list[dict[str, object]] = []
    for n, (engine, voice, lang) in enumerate(jobs):
        if engine not in have:
            continue
        pool = {"en": IVR + CONV, "es": ES, "ru": RU}[lang]
        k = 3 if lang == "en" else 2
        parts = []
        rate = 16000
        for s in rng.sample(pool, k):
            tmp = out / "tmp.wav"
            fn[engine](s, voice, tmp, rng)
            x, rate = sf.read(tmp, dtype="float32")
            parts += [x, np.zeros(int(rate * rng.uniform(0.3, 0.8)), dtype=np.float32)]
        y = np.concatenate(parts)
        y = y / max(1e-3, float(np.abs(y).max())) * rng.uniform(0.3, 0.9)
        name = f"{engine}-{voice.replace('+', '_')}-{n:03d}.wav"
        sf.write(out / name, y, rate)
        rows.append(
            {
                "path": name,
                "label": "fake",
                "system": f"{engine}:{voice}",
                "engine": engine,
                "rate": rate,
                "duration_s": round(len(y) / rate, 2),
            }
        )
    (out / "tmp.wav").unlink(missing_ok=True)
    if rows:
        with open(index, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    return rows
