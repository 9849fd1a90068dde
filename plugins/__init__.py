"""Example plugins for pip-adapter: copy a folder, edit it, name it in ``plugins:`` or ``--plugin``.

See ``plugins/README.md`` and ``docs/EXTEND.md``.
"""
