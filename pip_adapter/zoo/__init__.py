"""The registry of models shipped inside the package (``pip-adapter models``; ``Restorer.from_pretrained``).

Maintainers add a model with ``python -m pip_adapter.zoo add NAME FILE --summary ...`` (see ``__main__``).
"""
from pip_adapter.zoo.registry import (BUDGET_BYTES, ZOO_ENV, ZooEntry, ZooError, add_model, check_zoo,
                                      default_model, get_model, list_models, package_zoo_dir, remove_model,
                                      resolve_model, verify, zoo_dir)

__all__ = ["BUDGET_BYTES", "ZOO_ENV", "ZooEntry", "ZooError", "add_model", "check_zoo", "default_model",
           "get_model", "list_models", "package_zoo_dir", "remove_model", "resolve_model", "verify", "zoo_dir"]
