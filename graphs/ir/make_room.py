#!/usr/bin/env python3
"""Writes room.wav: a synthetic stereo room impulse response for graphs/room.ron (0.5 s at 48 kHz, 24-bit).

A direct sound, eight early reflections per channel, and a tail of noise decaying by 60 dB in 0.45 s,
brighter at first (a one-pole low-pass that closes as it decays, as air and walls absorb the highs).
Deterministic: `python3 make_room.py` writes the same file every time; then `flac --best room.wav` makes
room.flac, the file the graph reads.
"""

import math
import random
import struct

RATE, SECONDS, RT60 = 48000, 0.5, 0.45


def channel(seed):
    rng = random.Random(seed)
    n = int(RATE * SECONDS)
    h = [0.0] * n
    h[0] = 1.0
    for _ in range(8):
        t = rng.randint(int(0.004 * RATE), int(0.04 * RATE))
        h[t] += rng.choice((-1, 1)) * rng.uniform(0.2, 0.5)
    lp = 0.0
    for i in range(int(0.01 * RATE), n):
        decay = math.exp(math.log(1e-3) * i / (RT60 * RATE))
        a = 0.2 + 0.75 * (1.0 - decay)  # the low-pass closes as the tail decays
        lp = (1 - a) * rng.uniform(-1, 1) + a * lp
        h[i] += 0.35 * decay * lp
    return h


def main():
    left, right = channel(1), channel(2)
    peak = max(abs(x) for x in left + right)
    data = bytearray()
    for a, b in zip(left, right):
        for x in (a, b):
            v = max(-(1 << 23), min((1 << 23) - 1, round(x / peak * 0.9 * (1 << 23))))
            data += struct.pack("<i", v)[:3]
    header = b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " + struct.pack(
        "<IHHIIHH", 16, 1, 2, RATE, RATE * 6, 6, 24) + b"data" + struct.pack("<I", len(data))
    with open("room.wav", "wb") as f:
        f.write(header + bytes(data))


if __name__ == "__main__":
    main()
