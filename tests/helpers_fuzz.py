"""The size-bounded fuzz test's pieces (a plain module): mutating documents and image headers, and the child.

``python -m tests.helpers_fuzz CASES.json RESULTS.json`` runs every case of CASES.json (``{"name", "args"}``) as
``pip-adapter`` in this one process and writes, per case, the exit status, stdout, stderr, whether an exception
escaped and the CPU seconds taken; the parent starts it under a memory limit (``resource.setrlimit``).
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import random
import resource
import struct
import sys
import time
import traceback
import zlib
from typing import Any, Iterator, List, Tuple

# values a hostile file puts where a size, a name or an option is expected
def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


HOSTILE: List[Any] = [10 ** 12, 2 ** 63, -8, 0, 4096, 8.7, 1e39, "abc", "", "hf-hub:evil/model", "/dev/zero",
                      "../../../etc/passwd", None, True, [], {}, "a,b=c", _nested(40)]


def _locations(doc: Any, path: Tuple = ()) -> Iterator[Tuple]:
    """Every location inside a JSON value, as a key path."""
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for key, value in items:
        yield path + (key,)
        yield from _locations(value, path + (key,))


def mutate_doc(doc: Any, rng: random.Random, edits: int = 2) -> Any:
    """A copy of ``doc`` with ``edits`` random edits: a value replaced by a hostile one, or a key deleted."""
    doc = copy.deepcopy(doc)
    for _ in range(edits):
        locations = list(_locations(doc))
        if not locations:
            break
        path = rng.choice(locations)
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        if isinstance(parent, dict) and rng.random() < 0.2:
            del parent[path[-1]]
        else:
            parent[path[-1]] = copy.deepcopy(rng.choice(HOSTILE))
    return doc


def png_with_ihdr(data: bytes, width: int, height: int, depth: int = 8, colour: int = 2) -> bytes:
    """``data`` (a PNG) with its IHDR chunk rewritten, checksum included (so that decoders believe it)."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return data[:8] + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk) & 0xFFFFFFFF) + data[33:]


def flip_bytes(data: bytes, rng: random.Random, start: int, stop: int, count: int = 3) -> bytes:
    """``data`` with ``count`` random bytes in ``[start, stop)`` replaced by random values."""
    out = bytearray(data)
    for _ in range(count):
        out[rng.randrange(start, min(stop, len(out)))] = rng.randrange(256)
    return bytes(out)


def run_cases(cases_path: str, results_path: str) -> None:
    """Run each case's ``pip-adapter`` command in this process; record what it printed and returned."""
    from pip_adapter.cli import main

    with open(cases_path, encoding="utf-8") as fh:
        cases = json.load(fh)
    results = []
    for case in cases:
        logging.getLogger().handlers.clear()  # each command makes its own console handler on the captured stderr
        out, err = io.StringIO(), io.StringIO()
        escaped = None
        start = time.process_time()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(case["args"])
            except SystemExit as exc:  # argparse
                code = exc.code if isinstance(exc.code, int) else 2
            except BaseException:  # noqa: BLE001 - what the fuzz test looks for: anything escaping the command
                code, escaped = -1, traceback.format_exc()
        results.append({"name": case["name"], "code": code, "stdout": out.getvalue(), "stderr": err.getvalue(),
                        "escaped": escaped, "cpu_s": time.process_time() - start})
    limit = resource.getrlimit(resource.RLIMIT_DATA)[0]
    with open(results_path, "w", encoding="utf-8") as fh:
        json.dump({"rlimit_data": limit, "results": results}, fh)


if __name__ == "__main__":
    run_cases(sys.argv[1], sys.argv[2])
