"""The photo set: real photographs from Debian packages and scikit-image whose licences allow shipping weights
trained on them, split into training photos and a held-out split no training run sees.

``prepare_photos(out)`` writes::

    out/
      train/*.png          training photos (shorter side resized to ``short_side``)
      heldout/*.png        held-out photos (same size rule), never used for training
      val/gt/*.png         the held-out photos resized to ``val_short_side`` (validation during training
                           stays cheap on a CPU)
      val/<set>/*.png      fixed, seeded degraded copies of val/gt, one folder per set in ``VAL_SETS``
                           (same file names), for BasicSR validation
      manifest.json        per photo: file, split, source package, original path, licence, content, sha256
                           of the written PNG; and the val sets with their synthesisers and parameters
      README.md            counts per package and licence

Nothing is downloaded: a photo is read from the installed package; a missing package stops the build with
the ``apt-get install`` line that brings it.  The split is fixed (``HELDOUT``), so it never depends on which
other photos exist.  docs/DATA.md lists the set and why each package's licence allows it.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from pip_adapter.degradations import PHOTO_SYNTHESIZERS, get_synthesizer, physical_order
from pip_adapter.image_io import read_image_file, write_image_file
from pip_adapter.utils.io import sha256_file

from .builtin import _resize_short, _seed, skimage_data_dir
from .outdir import read_manifest, staged_dir, write_manifest

logger = logging.getLogger(__name__)

PHOTOS_VERSION = 1


class Photo(NamedTuple):
    """One photo of the set: where it comes from and what it shows."""

    name: str        # output file stem
    package: str     # Debian package, or "scikit-image"
    path: str        # absolute path (Debian) or file name inside skimage/data
    licence: str     # SPDX-like identifier, from the package's copyright file / the data's docstring
    content: str     # a few words: what the photo shows


_BG = "/usr/share/backgrounds"
_WP = "/usr/share/wallpapers"
_PAL = "/usr/share/palapeli/collection"


def _lomiri(stem: str, lic: str, content: str, pkg: str = "lomiri-wallpapers-16.04") -> Photo:
    return Photo("lomiri_" + stem.split("_by_")[0].lower(), pkg, f"{_BG}/{stem}.jpg", lic, content)


def _mate(stem: str, content: str) -> Photo:
    return Photo("mate_" + stem.lower(), "mate-backgrounds", f"{_BG}/mate/nature/{stem}.jpg", "GPL-2+", content)


def _plasma(folder: str, size: str, content: str) -> Photo:
    return Photo("plasma_" + folder.lower(), "plasma-workspace-wallpapers", f"{_WP}/{folder}/contents/images/{size}.jpg",
                 "GPL-2+", content)


def _palapeli(stem: str, content: str) -> Photo:
    return Photo("palapeli_" + stem.replace("-", "_"), "palapeli-data", f"{_PAL}/{stem}.jpg", "GPL-2+", content)


def _sk(file: str, lic: str, content: str) -> Photo:
    return Photo("skimage_" + os.path.splitext(file)[0], "scikit-image", file, lic, content)


# Photographs only: the renders, paintings, abstract patterns and logos of these packages are left out (each
# package's wallpapers were looked at one by one).  Licences as each package's /usr/share/doc/<pkg>/copyright
# gives them (mate-backgrounds, plasma-workspace-wallpapers and palapeli-data: "Files: *" GPL-2+), and as
# scikit-image's data docstrings give them.
PHOTOS: Tuple[Photo, ...] = (
    _lomiri("Bridge_by_Sander_Klootwijk", "CC-BY-SA-4.0", "bridge cables, sky, mud flats"),
    _lomiri("Dragonfly_by_Bolly", "CC-BY-SA-4.0", "plant stem and leaves against sky"),
    _lomiri("Picture_0B_by_freespace", "CC-BY-4.0", "fig on a red plate, concrete"),
    _lomiri("Picture_1A_by_freespace", "CC-BY-4.0", "paint brushes, close-up"),
    _lomiri("Wine_by_Jakkub_Mede", "CC-BY-4.0", "indoor: drum, table, wine bottle, loudspeaker"),
    _lomiri("aitzgorri_by_Aitzol_Berasategi", "CC-BY-4.0", "mountain, autumn forest, meadow"),
    _lomiri("free_by_Peter_Nerlich", "CC-BY-SA-4.0", "indoor: bird figure under ceiling lamps"),
    _lomiri("friends_by_Aitzol_Berasategi", "CC-BY-4.0", "two dogs at a wooden house door"),
    _lomiri("greentock_by_Peter_Nerlich", "CC-BY-SA-4.0", "forest stream over rocks"),
    _lomiri("life_by_Aitzol_Berasategi", "CC-BY-4.0", "wall clock, close-up"),
    _lomiri("picosdeeuropa_by_Aitzol_Berasategi", "CC-BY-4.0", "mountain path, rocks, clouds"),
    _lomiri("seeding_by_Clements_Engelhardt", "CC0-1.0", "dandelion clocks at dusk"),
    _lomiri("sunset_by_Aitzol_Berasategi", "CC-BY-4.0", "sunset over hills, backlight"),
    _lomiri("Kleiber_by_Lukas_Baubkus", "CC-BY-SA-3.0", "nuthatch on a tree trunk, bokeh",
            pkg="lomiri-wallpapers-20.04"),
    _mate("Aqua", "water drop splash, macro"),
    _mate("Blinds", "green leaf stripes, macro"),
    _mate("Dune", "dune grass, sea"),
    _mate("FreshFlower", "orange flower, macro"),
    _mate("Garden", "red marigold"),
    _mate("GreenMeadow", "grass blades"),
    _mate("LadyBird", "ladybird on a grass stem, forget-me-nots"),
    _mate("RainDrops", "rain drops on leaves"),
    _mate("Storm", "storm clouds over a plain, motion"),
    _mate("TwoWings", "seeds flying over orange flowers"),
    _mate("Wood", "wooden plank surface"),
    _mate("YellowFlower", "yellow flower petals"),
    _plasma("BytheWater", "2560x1440", "dock at dusk, shallow focus"),
    _plasma("ColdRipple", "2560x1440", "pier in fog, grey"),
    _plasma("ColorfulCups", "2560x1600", "stacked coloured cups"),
    _plasma("DarkestHour", "2560x1440", "lake in blue night fog (dark)"),
    _plasma("EveningGlow", "2560x1440", "rowing boats on a shore at sunset"),
    _plasma("FallenLeaf", "2560x1440", "autumn leaves on the ground, bokeh"),
    _plasma("Grey", "2560x1440", "architecture, curved facade (black and white)"),
    _plasma("Kite", "2560x1440", "sky with clouds"),
    _plasma("OneStandsOut", "2560x1440", "moss seen from above"),
    _plasma("Path", "2560x1440", "forest path between pines"),
    _plasma("summer_1am", "2560x1440", "lake at night twilight, reeds"),
    _palapeli("castle-maintenon", "castle, garden, blue sky"),
    _palapeli("cincinnati-bridge", "suspension bridge at night, city lights"),
    _palapeli("citrus-fruits", "citrus slices, backlit"),
    _palapeli("european-honey-bee", "honey bee on an aster"),
    _palapeli("panther-chameleon-female", "chameleon on a branch"),
    _sk("astronaut.png", "public-domain", "person: astronaut portrait (NASA)"),
    _sk("chelsea.png", "CC0-1.0", "cat"),
    _sk("coffee.png", "CC0-1.0", "cup of coffee, indoor"),
    _sk("rocket.jpg", "public-domain", "rocket on a launch pad (SpaceX)"),
    _sk("hubble_deep_field.jpg", "public-domain", "night sky: galaxies (NASA)"),
    _sk("retina.jpg", "CC0-1.0", "retina fundus photo"),
    _sk("ihc.png", "public-domain", "microscopy: immunohistochemistry stain"),
    _sk("camera.png", "CC0-1.0", "person with a camera (grey)"),
    _sk("text.png", "public-domain", "text on paper, photographed (grey)"),
    _sk("coins.png", "public-domain", "coins (grey)"),
    _sk("brick.png", "CC0-1.0", "brick wall (grey)"),
    _sk("gravel.png", "CC0-1.0", "gravel (grey)"),
    _sk("grass.png", "CC0-1.0", "grass (grey)"),
)

# every licence in the catalogue: public domain / CC0 (no condition), CC-BY (attribution), CC-BY-SA and
# GPL-2+ (share-alike)
LICENCES: Tuple[str, ...] = ("public-domain", "CC0-1.0", "CC-BY-4.0", "CC-BY-SA-3.0", "CC-BY-SA-4.0", "GPL-2+")

# the held-out split: fixed by name (people-free scenes, animals, city at night, indoor, text, nature), so
# adding photos to the catalogue never moves a photo between splits
HELDOUT: Tuple[str, ...] = (
    "skimage_chelsea", "skimage_rocket", "skimage_text", "palapeli_castle_maintenon", "palapeli_cincinnati_bridge",
    "lomiri_wine", "lomiri_friends", "lomiri_picosdeeuropa", "mate_ladybird", "plasma_eveningglow", "plasma_path",
    "plasma_colorfulcups",
)

# Fixed degraded copies of the held-out photos: name -> steps [(type, synthesiser, params)].  Parameters that
# are ranges are drawn once per photo from a seed, so every run of the command writes the same images.
VAL_SETS: Dict[str, List[Tuple[str, str, Dict[str, Any]]]] = {
    "noise_s15": [("noise", "noise_photo", {"sigma": 15})],
    "noise_s25": [("noise", "noise_photo", {"sigma": 25})],
    "noise_s50": [("noise", "noise_photo", {"sigma": 50})],
    "rain": [("rain", "rain_photo", {})],
    "haze": [("haze", "haze_photo", {})],
    "blur": [("blur", "blur_photo", {})],
    "low_light": [("low_light", "low_light_photo", {})],
    "low_light+noise": [("low_light", "low_light_photo", {}), ("noise", "noise_photo", {"sigma": [10, 30]})],
    "haze+noise": [("haze", "haze_photo", {}), ("noise", "noise_photo", {"sigma": [10, 30]})],
    "blur+noise": [("blur", "blur_photo", {}), ("noise", "noise_photo", {"sigma": [10, 30]})],
    "rain+haze": [("haze", "haze_photo", {}), ("rain", "rain_photo", {})],
}


def photo_source_path(photo: Photo) -> str:
    """Where ``photo`` is read from on this machine."""
    if photo.package == "scikit-image":
        return os.path.join(skimage_data_dir(), photo.path)
    return photo.path


def missing_packages(photos: Sequence[Photo] = PHOTOS) -> Dict[str, List[str]]:
    """{package: [missing files]} for the photos whose file is not installed."""
    out: Dict[str, List[str]] = {}
    for p in photos:
        src = photo_source_path(p)
        if not os.path.isfile(src):
            out.setdefault(p.package, []).append(src)
    return out


def check_installed(photos: Sequence[Photo] = PHOTOS) -> None:
    """Raise ``FileNotFoundError`` naming the ``apt-get install`` line when a package's photos are missing."""
    missing = missing_packages(photos)
    if not missing:
        return
    debs = sorted(p for p in missing if p != "scikit-image")
    first = next(iter(missing.values()))[0]
    parts = []
    if debs:
        parts.append(f"install them with `sudo apt-get install {' '.join(debs)}`")
    if "scikit-image" in missing:
        parts.append("reinstall scikit-image (pip install --force-reinstall scikit-image)")
    n = sum(len(v) for v in missing.values())
    raise FileNotFoundError(f"{n} photo(s) of the photo set are missing (first: {first}) from package(s) "
                            f"{', '.join(sorted(missing))}; {' and '.join(parts)}, then rerun")


def load_source_photo(photo: Photo) -> np.ndarray:
    """The original photo as uint8 H×W×3 RGB (grey photos as three equal channels)."""
    return read_image_file(photo_source_path(photo))


def degrade_val(img: np.ndarray, set_name: str, photo_name: str, seed: int = 0) -> np.ndarray:
    """The fixed degraded copy of one held-out photo for val set ``set_name`` (seeded by set, photo and seed)."""
    if set_name not in VAL_SETS:
        raise ValueError(f"unknown photo val set {set_name!r}; known: {', '.join(VAL_SETS)}")
    rng = np.random.default_rng(_seed("photo-val", set_name, photo_name, seed))
    steps = {t: (s, p) for t, s, p in VAL_SETS[set_name]}
    out = img
    for t in physical_order(list(steps)):
        synth_name, params = steps[t]
        out = get_synthesizer(synth_name)(out, rng, **params)
    return out


def prepare_photos(out_dir: str, overwrite: bool = False, short_side: int = 448, val_short_side: int = 256,
                   seed: int = 0, val_sets: Optional[Sequence[str]] = None, licences: Optional[Sequence[str]] = None,
                   progress: bool = True) -> str:
    """Build the photo set in ``out_dir`` (layout in the module docstring) and return its absolute path.

    ``short_side``: photos are resized (area interpolation) so their shorter side is this (never enlarged);
    ``val_short_side``: the same for the validation copies under val/ (the held-out photos at
    ``short_side`` stay in heldout/ for full-size evaluation);
    ``val_sets``: which of ``VAL_SETS`` to write (default all); ``seed``: the val sets' seed; ``licences``:
    keep only photos under these licences (default: all of ``LICENCES``), e.g. without the share-alike ones.  Missing
    packages raise before anything is written; an existing non-empty ``out_dir`` is refused unless
    ``overwrite`` and it was made by this package.  Complete photo data of this version with the same
    settings is kept as it is.
    """
    from tqdm import tqdm

    for what, v in (("short_side", short_side), ("val_short_side", val_short_side)):
        if int(v) < 64:
            raise ValueError(f"{what} must be >= 64 pixels, got {v}")
    sets = list(VAL_SETS) if val_sets is None else [str(s) for s in val_sets]
    unknown = [s for s in sets if s not in VAL_SETS]
    if unknown:
        raise ValueError(f"unknown photo val set(s) {unknown}; known: {', '.join(VAL_SETS)}")
    names = [p.name for p in PHOTOS]
    if len(set(names)) != len(names) or not set(HELDOUT) <= set(names):
        raise RuntimeError("the photo catalogue is inconsistent (duplicate names or an unknown held-out photo)")
    keep = sorted({p.licence for p in PHOTOS}) if licences is None else [str(x) for x in licences]
    bad = sorted(set(keep) - set(LICENCES))
    if bad or not keep:
        raise ValueError(f"unknown licence(s) {bad or keep}; the photo set's licences are: {', '.join(LICENCES)}")
    chosen = [p for p in PHOTOS if p.licence in keep]
    held = sum(p.name in HELDOUT for p in chosen)
    for split, n in (("train", len(chosen) - held), ("heldout", held)):
        if n == 0:
            raise ValueError(f"licences {keep} leave no {split} photo; allow more of: {', '.join(LICENCES)}")
    check_installed(chosen)
    out_abs = os.path.abspath(os.fspath(out_dir))
    wanted = {"kind": "photos", "version": PHOTOS_VERSION, "short_side": int(short_side),
              "val_short_side": int(val_short_side), "seed": int(seed), "val_set_names": sets, "licences": keep}
    existing = read_manifest(out_abs)
    if (existing is not None and not overwrite and existing.get("complete")
            and all(existing.get(k) == v for k, v in wanted.items())):
        logger.info("photo set in %s is already complete (same settings): nothing to do", out_abs)
        return out_abs
    t0 = time.time()
    with staged_dir(out_abs, overwrite) as stage:
        files: List[Dict[str, Any]] = []
        heldout: Dict[str, np.ndarray] = {}
        for p in tqdm(chosen, desc="photos", unit="photo", disable=not progress):
            split = "heldout" if p.name in HELDOUT else "train"
            img = _resize_short(load_source_photo(p), int(short_side))
            rel = f"{split}/{p.name}.png"
            write_image_file(os.path.join(stage, rel), img)
            if split == "heldout":
                heldout[p.name] = _resize_short(img, int(val_short_side))
                write_image_file(os.path.join(stage, "val", "gt", p.name + ".png"), heldout[p.name])
            files.append({"file": rel, "split": split, "package": p.package, "source": photo_source_path(p),
                          "licence": p.licence, "content": p.content, "size": [int(img.shape[0]), int(img.shape[1])],
                          "sha256": sha256_file(os.path.join(stage, rel))})
        for s in tqdm(sets, desc="val sets", unit="set", disable=not progress):
            for name, img in heldout.items():
                write_image_file(os.path.join(stage, "val", s, name + ".png"), degrade_val(img, s, name, seed))
        man = dict(wanted, files=files, val_sets=[val_set_record(s) for s in sets],
                   photo_synthesizers=dict(PHOTO_SYNTHESIZERS), seconds=round(time.time() - t0, 1))
        with open(os.path.join(stage, "README.md"), "w", encoding="utf-8") as fh:
            fh.write(_readme(man))
        write_manifest(stage, man)
    logger.info("photo set written to %s: %d training, %d held-out photos, %d val sets", out_abs,
                sum(f["split"] == "train" for f in files), len(heldout), len(sets))
    return out_abs


def val_set_record(name: str) -> Dict[str, Any]:
    """The manifest entry of a val set: its types, true ω (as the dataset gives composites), folders and steps."""
    steps = VAL_SETS[name]
    types = physical_order([t for t, _, _ in steps])
    return {"name": name, "degradation": types if len(types) > 1 else types[0],
            "omega": {t: 1.0 / len(types) for t in types}, "lq_dir": f"val/{name}", "gt_dir": "val/gt",
            "steps": [{"type": t, "synthesizer": n, "params": p} for t, n, p in steps]}


def photo_counts(files: Sequence[Mapping[str, Any]]) -> Dict[Tuple[str, str, str], int]:
    """{(split, package, licence): count} of a manifest's ``files``."""
    out: Dict[Tuple[str, str, str], int] = {}
    for f in files:
        key = (f["split"], f["package"], f["licence"])
        out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items()))


def _readme(man: Mapping[str, Any]) -> str:
    lines = ["# Photo set (pip-adapter prepare-data --photos)", "",
             f"Version {man['version']}, shorter side {man['short_side']} px (val/: {man['val_short_side']} px), "
             f"val seed {man['seed']}.", "",
             "| split | package | licence | photos |", "|---|---|---|---|"]
    for (split, pkg, lic), n in photo_counts(man["files"]).items():
        lines.append(f"| {split} | {pkg} | {lic} | {n} |")
    lines += ["", "Val sets (fixed degraded copies of val/gt, the held-out photos, same file names): "
              + ", ".join(f"`{s['lq_dir']}`" for s in man["val_sets"]), "",
              "Every file's source, licence and SHA-256 are in manifest.json.", ""]
    return "\n".join(lines)


def photo_manifest(out_dir: str) -> Dict[str, Any]:
    """The manifest of a photo set made by ``prepare_photos``; anything else raises naming the command."""
    man = read_manifest(os.path.abspath(out_dir))
    if man is None or man.get("kind") != "photos":
        raise FileNotFoundError(f"{out_dir} is not a photo set; build it with `pip-adapter prepare-data --photos "
                                f"{out_dir}`")
    return man
