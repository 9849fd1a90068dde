"""Data helpers for the tests (a plain module): the tiny built-in size and a fake standard layout."""
import os

import numpy as np

from pip_adapter.image_io import write_image_file



TINY_BUILTIN = dict(image_size=64, crop_size=32, crops_per_image=2, val_size=32, max_train_images=2,
                    max_val_images=1, seed=0, progress=False)


def _img(rng, h=24, w=28):
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def make_standard_layout(root: str, seed: int = 0) -> dict:
    """Write a tiny standard layout under ``root``; return counts per task (for assertions)."""
    rng = np.random.default_rng(seed)
    d = os.path.join(root, "data")
    counts = {}
    # noise: clean images only, one not in the list file (must be ignored)
    for name in ("a.png", "b.png", "c.png", "extra.png"):
        write_image_file(os.path.join(d, "Train", "Denoise", name), _img(rng))
    counts["noise"] = 3
    # rain (Rain100L naming)
    for i in (1, 2):
        g = _img(rng)
        write_image_file(os.path.join(d, "Train", "Derain", "gt", f"norain-{i}.png"), g)
        write_image_file(os.path.join(d, "Train", "Derain", "rainy", f"rain-{i}.png"), 255 - g)
    counts["rain"] = 2
    # haze (RESIDE/OTS naming): 2 clean images, 3 hazy versions of the first and 1 of the second
    hz = {"0001": ["0001_0.8_0.2.png", "0001_0.9_0.16.png", "0001_1_0.08.png"], "0002": ["0002_0.8_0.2.png"]}
    for stem, hazy in hz.items():
        g = _img(rng)
        write_image_file(os.path.join(d, "Train", "Dehaze", "original", f"{stem}.png"), g)
        for j, h in enumerate(hazy):
            write_image_file(os.path.join(d, "Train", "Dehaze", "synthetic", f"part{j + 1}", h), 255 - g)
    counts["haze"] = 4
    # blur (GoPro, per sequence)
    for seq in ("GOPR0001_00_00", "GOPR0002_00_00"):
        g = _img(rng)
        write_image_file(os.path.join(d, "Train", "Deblur", seq, "sharp", "000001.png"), g)
        write_image_file(os.path.join(d, "Train", "Deblur", seq, "blur", "000001.png"), 255 - g)
    counts["blur"] = 2
    # low light (LOL)
    g = _img(rng)
    write_image_file(os.path.join(d, "Train", "LOL", "our485", "high", "1.png"), g)
    write_image_file(os.path.join(d, "Train", "LOL", "our485", "low", "1.png"), 255 - g)
    counts["low_light"] = 1
    # list files (PromptIR data_dir beside data/)
    lists = os.path.join(root, "data_dir")
    os.makedirs(os.path.join(lists, "noisy"), exist_ok=True)
    os.makedirs(os.path.join(lists, "rainy"), exist_ok=True)
    os.makedirs(os.path.join(lists, "hazy"), exist_ok=True)
    with open(os.path.join(lists, "noisy", "denoise_airnet.txt"), "w") as fh:
        fh.write("a.png\nb.png\nc.png\n")
    with open(os.path.join(lists, "rainy", "rainTrain.txt"), "w") as fh:
        fh.write("rainy/rain-1.png\nrainy/rain-2.png\n")
    with open(os.path.join(lists, "hazy", "hazy_outside.txt"), "w") as fh:
        for stem, hazy in hz.items():
            for j, h in enumerate(hazy):
                fh.write(f"synthetic/part{j + 1}/{h}\n")
    # test sets
    for name in ("t1.png", "t2.png"):
        write_image_file(os.path.join(d, "test", "denoise", "bsd68", name), _img(rng, 40, 36))
    g = _img(rng, 40, 36)
    write_image_file(os.path.join(d, "test", "derain", "Rain100L", "target", "1.png"), g)
    write_image_file(os.path.join(d, "test", "derain", "Rain100L", "input", "1.png"), 255 - g)
    write_image_file(os.path.join(d, "test", "dehaze", "target", "0005.png"), g)
    write_image_file(os.path.join(d, "test", "dehaze", "input", "0005_0.8_0.2.png"), 255 - g)
    return counts
