"""``pip-adapter extend``: add degradation types to a trained PIP checkpoint (new prompts at >= 90°)."""
from __future__ import annotations

import argparse
from typing import Any, List

from pip_adapter.cli.common import add_model_argument, load_cli_plugins, resolve_model_arg, with_basicsr_archs
from pip_adapter.plugins import add_plugin_argument


def check_type_names(names: List[str]) -> List[str]:
    """The ``--add`` names in canonical form; each must be an identifier (``snow``, ``jpeg_q10``) so that
    ``--degradation NAME`` and ``--omega NAME=w`` can address it later, and none may repeat."""
    from pip_adapter.omega import RESERVED_NAMES, canonical_name

    out = []
    for raw in names:
        name = canonical_name(raw)
        if not name.isidentifier():
            raise ValueError(f"--add {raw!r}: a degradation type name must be a non-empty identifier (letters, "
                             "digits and _, not starting with a digit, e.g. snow or jpeg_q10) so that "
                             "--degradation and --omega can name it")
        if name in RESERVED_NAMES:
            raise ValueError(f"--add {raw!r}: '{name}' is reserved (--degradation {name} asks the classifier), "
                             "so no type could be selected by it; choose another name")
        if name in out:
            raise ValueError(f"--add {raw!r} is given twice")
        out.append(name)
    return out


def run(args: argparse.Namespace) -> int:
    """Extend ``--model`` with every ``--add`` type and write ``--out``; prints what was done."""
    from pip_adapter.restore.extend import extend_checkpoint

    args.add = check_type_names(args.add)  # before anything is read or written
    load_cli_plugins(args, (args.opt,))
    args.model = resolve_model_arg(args.model)
    info = with_basicsr_archs(lambda: extend_checkpoint(args.model, args.add, args.out, opt=args.opt,
                                                        overwrite=args.overwrite, seed=args.seed))
    print(f"wrote {info['out']} ({info['format']} checkpoint)")
    print(f"  degradations: {', '.join(info['degradations'])}  (added: {', '.join(info['added'])})")
    for lv in info["levels"]:
        print(f"  level {lv['level']}: D={lv['prompt_dim']}, T={lv['types']}, smallest angle of a new prompt: "
              f"{lv['min_angle_new']}°")
    if info.get("dropped_classifier"):
        print("  note: the bundled degradation classifier was left out (it does not know the new types)")
    if info["format"] == "basicsr":
        print("fine-tune the new prompts only (old types stay bit-identical) with an option file whose network_g "
              f"is the old one plus 'added_degradations: [{', '.join(info['network_g'].get('added_degradations') or info['added'])}]', "
              "path.pretrain_network_g pointing here and 'train: {trainable: new_prompts}' "
              "(example: plugins/snow/extend_snow.yml)")
    return 0


def register(subparsers: Any) -> None:
    """Add the ``extend`` sub-command."""
    p = subparsers.add_parser(
        "extend", help="add degradation types (one new prompt per PIP level each) to a trained checkpoint",
        description="Add degradation types to a trained PIP model: every PIP level gets one new degradation "
                    "prompt per type, initialised at >= 90° to all existing prompts (so L_ddl starts at 0). "
                    "Outputs for the old types do not change. Fine-tune the new prompts afterwards with "
                    "'train: {trainable: new_prompts}' (see docs/EXTEND.md).")
    add_model_argument(p, help="BasicSR net_g_<iter>.pth (with --opt, unless it carries its network) or an "
                               "exported file")
    p.add_argument("--opt", default=None, help="the option YAML the checkpoint was trained with (its network_g)")
    p.add_argument("--add", action="append", required=True, metavar="NAME",
                   help="degradation type to add (repeatable: --add snow --add jpeg)")
    p.add_argument("--out", required=True,
                   help="output file; .pth keeps the input's format, .safetensors writes an exported file")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--seed", type=int, default=0, help="seed of the new prompts' initialisation (default 0)")
    add_plugin_argument(p)
    p.set_defaults(func=run)
