"""``PIPConfig``: what rebuilds a wrapped model (backbone option, degradation names, level names, PIP level
options, probe size), as data with ``to_dict`` / ``from_dict`` (the JSON form written into exported files)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional

#: today's format tag of the JSON form; :meth:`PIPConfig.from_dict` also reads dicts written without one
FORMAT = "pip_adapter.pipnet/1"
_READABLE = (FORMAT, None)


@dataclass
class PIPConfig:
    """Everything :func:`pip_adapter.wrap.pipnet.build_pipnet` needs to rebuild a wrapped model."""

    degradations: List[str]
    levels: List[str]                                  # level names as ``levels=`` takes them
    pip_levels: List[Dict[str, Any]]                   # ``PIPLevel.config()`` of every level
    backbone: Optional[Dict[str, Any]] = None          # ``{"type": ..., **kwargs}``; None when wrapped from a module
    backbone_class: str = ""                           # ``module.QualName`` of the backbone (informative)
    example_input_size: Optional[List[int]] = None     # the probe's input size, when not the default
    format: str = field(default=FORMAT)

    def to_dict(self) -> Dict[str, Any]:
        """The JSON-able dict (the form ``pip_config()`` returns and exported files store)."""
        return {
            "format": self.format,
            "backbone": dict(self.backbone) if self.backbone is not None else None,
            "backbone_class": self.backbone_class,
            "degradations": list(self.degradations),
            "levels": list(self.levels),
            "pip_levels": [dict(c) for c in self.pip_levels],
            "example_input_size": list(self.example_input_size) if self.example_input_size else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "PIPConfig":
        """Read a dict written by :meth:`to_dict` (format ``pip_adapter.pipnet/1``, or untagged)."""
        if isinstance(data, PIPConfig):
            return data
        if not isinstance(data, Mapping):
            raise ValueError(f"a PIP config must be the dict returned by pip_config(), got {type(data).__name__}")
        missing = [k for k in ("degradations", "levels", "pip_levels") if k not in data]
        if missing:
            raise ValueError(f"build_pipnet: the config lacks {missing}; give the dict returned by pip_config()")
        tag = data.get("format")
        if tag not in _READABLE:
            raise ValueError(f"unknown PIP config format {tag!r}; this version reads {FORMAT!r}")
        if len(data["levels"]) != len(data["pip_levels"]):
            raise ValueError(f"the PIP config names {len(data['levels'])} levels but configures "
                             f"{len(data['pip_levels'])} PIP levels")
        size = data.get("example_input_size")
        return cls(degradations=list(data["degradations"]), levels=list(data["levels"]),
                   pip_levels=[dict(c) for c in data["pip_levels"]],
                   backbone=dict(data["backbone"]) if data.get("backbone") else None,
                   backbone_class=str(data.get("backbone_class") or ""),
                   example_input_size=list(size) if size else None, format=FORMAT)
