"""Procedural example images (ours, CC0), so a fresh install can try wct with nothing else."""

from __future__ import annotations

import math
import random

from PIL import Image, ImageDraw, ImageFilter


def landscape(width: int = 512, height: int = 384, seed: int = 0) -> Image.Image:
    """A photo-like scene: graded sky, sun, layered hills, a lake with reflections."""
    rng = random.Random(seed)
    im = Image.new("RGB", (width, height))
    d = ImageDraw.Draw(im)
    horizon = int(height * 0.62)
    for y in range(horizon):
        t = y / horizon
        d.line([(0, y), (width, y)], fill=(int(70 + 150 * t), int(120 + 100 * t), int(200 + 40 * t)))
    sx, sy, r = int(width * 0.7), int(height * 0.25), height // 10
    d.ellipse([sx - r, sy - r, sx + r, sy + r], fill=(255, 230, 160))
    for layer, colour in enumerate([(90, 110, 130), (60, 100, 70), (40, 80, 45)]):
        base = horizon - 60 + layer * 30
        phase, amp = rng.uniform(0, 6.28), 25 + 10 * layer
        pts = [
            (x, base - amp * math.sin(x / width * 6 + phase) - rng.uniform(0, 6))
            for x in range(0, width + 8, 8)
        ]
        d.polygon(pts + [(width, horizon), (0, horizon)], fill=colour)
    for y in range(horizon, height):
        t = (y - horizon) / (height - horizon)
        d.line([(0, y), (width, y)], fill=(int(40 + 40 * t), int(70 + 50 * t), int(110 + 40 * t)))
    for _ in range(60):
        x, y = rng.uniform(0, width), rng.uniform(horizon, height)
        d.line([(x, y), (x + rng.uniform(10, 40), y)], fill=(200, 210, 230), width=1)
    return im.filter(ImageFilter.GaussianBlur(0.8))


def painting(width: int = 384, height: int = 384, seed: int = 1) -> Image.Image:
    """A painting-like texture: many short, bold, curved brush strokes in a warm-cool palette."""
    rng = random.Random(seed)
    palette = [(24, 44, 110), (238, 190, 40), (200, 70, 30), (30, 120, 150), (245, 240, 220), (20, 20, 30)]
    im = Image.new("RGB", (width, height), palette[0])
    d = ImageDraw.Draw(im)
    for _ in range(1400):
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        angle = math.sin(x / 40) + math.cos(y / 55) + rng.gauss(0, 0.2)
        length, colour = rng.uniform(8, 28), rng.choice(palette)
        pts = [
            (x + k * math.cos(angle + k * 0.05), y + k * math.sin(angle + k * 0.05))
            for k in range(0, int(length), 2)
        ]
        if len(pts) > 1:
            d.line(pts, fill=colour, width=rng.randint(2, 5))
    return im.filter(ImageFilter.SMOOTH)
