"""Where the test data shipped with the project lives (tests/data/README.md says what each file is)."""
import json
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data"
MANIFEST_PATH = DATA_DIR / "state_dict_manifests.json"
GOLDEN_DIR = DATA_DIR / "golden"


def load_manifests() -> dict:
    """The official state-dict manifests (key → shape, config, parameter count) per release entry."""
    with open(MANIFEST_PATH, encoding="utf-8") as fh:
        return json.load(fh)
