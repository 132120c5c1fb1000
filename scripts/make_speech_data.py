#!/usr/bin/env python
"""Make the spoken-digit corpus of chapter 4 (example 9): xentlib/data/speech_digits.npz.

Needs eSpeak NG (Debian/Ubuntu: ``apt-get install -y espeak-ng``); readers and CI
do not: they use the committed .npz, which ships inside xentlib as package data.
Run from the repository root:

    .venv/bin/python scripts/make_speech_data.py

What it does, deterministically (seeded; same espeak-ng version -> same file):

1. Synthesises each English digit word ("zero" ... "nine") with eSpeak NG for
   every voice (an accent + a voice variant, e.g. ``en-gb-scotland+f2``) at
   3 speeds (words per minute) x 3 pitches, and trims the synthesiser's
   leading/trailing silence.
2. Builds utterances of 1-3 random digits by concatenating those clips with
   random pauses (50-250 ms) and adds white noise (about 30 dB SNR). Because
   the clips are concatenated, every sample's label is known: silence or digit
   d. (Real connected speech would coarticulate across word boundaries; this
   corpus does not. That is its main limitation, stated in the book.)
3. Featurises each utterance with NumPy/SciPy only: 40 ms Hann windows every
   20 ms, power spectrum, 16 triangular mel filters (60 Hz - 8 kHz), natural
   log. Frame label = label of the sample at the frame's centre
   (0 = silence, d + 1 = digit d).
4. Splits by voice: the test voices never occur in training.

Stored as float16 features and int8 labels in one compressed .npz (ragged
arrays concatenated, with per-utterance lengths); xentlib.sequences.load_speech_digits
reads it back.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from scipy.io import wavfile
from scipy.signal import get_window

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
TRAIN_VOICES = ("en-us+m1", "en-us+f2", "en-gb+m3", "en-gb+f4", "en-gb-scotland+m1",
                "en-gb-x-rp+f2", "en-gb-x-gbclan+m3", "en-gb-x-gbcwmd+f4", "en-029+m1")
TEST_VOICES = ("en-us+f3", "en-gb-scotland+m4", "en-029+f4")
SPEEDS = (140, 175, 210)        # words per minute (espeak-ng -s)
PITCHES = (35, 50, 65)          # 0-99 (espeak-ng -p)
SR = 22050                      # espeak-ng's output sample rate
WIN, HOP, N_FFT, N_MELS = 882, 441, 1024, 16    # 40 ms window, 20 ms hop
FMIN, FMAX = 60.0, 8000.0


def synthesise(word, voice, speed, pitch, tmpdir):
    path = os.path.join(tmpdir, "x.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch),
                    "-w", path, word], check=True, capture_output=True)
    sr, x = wavfile.read(path)
    assert sr == SR, sr
    x = x.astype(np.float32) / 32768.0
    loud = np.flatnonzero(np.abs(x) > 0.02 * np.abs(x).max())
    return x[loud[0]:loud[-1] + 1]


def mel_filterbank(sr=SR, n_fft=N_FFT, n_mels=N_MELS, fmin=FMIN, fmax=FMAX):
    """Triangular filters equally spaced on the mel scale (HTK formula)."""
    mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)
    hz = lambda m: 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    edges = hz(np.linspace(mel(fmin), mel(fmax), n_mels + 2))
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    fb = np.zeros((n_mels, freqs.size))
    for m in range(n_mels):
        lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
        fb[m] = np.clip(np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)), 0, None)
    return fb


def log_mel(x, fb):
    n = 1 + max(0, (len(x) - WIN) // HOP)
    idx = np.arange(WIN)[None, :] + HOP * np.arange(n)[:, None]
    frames = x[idx] * get_window("hann", WIN, fftbins=True)
    power = np.abs(np.fft.rfft(frames, n=N_FFT, axis=1)) ** 2
    return np.log(power @ fb.T + 1e-6), idx[:, WIN // 2]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="xentlib/data/speech_digits.npz")
    ap.add_argument("--per-voice", type=int, default=80, help="utterances per voice")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    version = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True,
                             check=True).stdout.strip()
    rng = np.random.default_rng(args.seed)
    fb = mel_filterbank()
    voices = TRAIN_VOICES + TEST_VOICES
    feats, flabs, digits, n_frames, n_digits, voice_ids = [], [], [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for v, voice in enumerate(voices):
            clips = {(d, s, p): synthesise(DIGITS[d], voice, s, p, tmp)
                     for d in range(10) for s in SPEEDS for p in PITCHES}
            for _ in range(args.per_voice):
                seq = rng.integers(0, 10, size=rng.integers(1, 4))
                s, p = SPEEDS[rng.integers(3)], PITCHES[rng.integers(3)]
                pieces, labels = [], []
                for k, d in enumerate(seq):
                    gap = int(SR * rng.uniform(0.10, 0.20) if k == 0 else SR * rng.uniform(0.05, 0.25))
                    pieces += [np.zeros(gap, np.float32), clips[(int(d), s, p)]]
                    labels += [np.zeros(gap, np.int64), np.full(len(pieces[-1]), int(d) + 1)]
                tail = int(SR * rng.uniform(0.10, 0.20))
                pieces.append(np.zeros(tail, np.float32))
                labels.append(np.zeros(tail, np.int64))
                x, lab = np.concatenate(pieces), np.concatenate(labels)
                rms = np.sqrt(np.mean(x[lab > 0] ** 2))
                x = x + rng.normal(0, rms * 10 ** (-30 / 20), size=x.shape).astype(np.float32)
                f, centre = log_mel(x, fb)
                feats.append(f.astype(np.float16))
                flabs.append(lab[centre].astype(np.int8))
                digits.append(seq.astype(np.int8))
                n_frames.append(len(f))
                n_digits.append(len(seq))
                voice_ids.append(v)
            print(f"{voice:22s} {args.per_voice} utterances")
    voice_ids = np.array(voice_ids, np.int8)
    split = np.where(voice_ids < len(TRAIN_VOICES), "train", "test")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out, features=np.concatenate(feats), frame_labels=np.concatenate(flabs),
        digits=np.concatenate(digits), n_frames=np.array(n_frames, np.int32),
        n_digits=np.array(n_digits, np.int8), voice=voice_ids, voices=np.array(voices),
        split=split, meta_espeak=version, meta_sample_rate=SR, meta_hop_ms=1000 * HOP / SR,
        meta_window_ms=1000 * WIN / SR, meta_n_mels=N_MELS, meta_fmin=FMIN, meta_fmax=FMAX,
        meta_speeds=",".join(map(str, SPEEDS)), meta_pitches=",".join(map(str, PITCHES)),
        meta_script="scripts/make_speech_data.py")
    print(f"{out}: {len(n_frames)} utterances, {sum(n_frames)} frames, "
          f"{out.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
