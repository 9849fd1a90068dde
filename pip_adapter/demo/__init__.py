"""``pip-adapter demo``: a local web page to restore an image while steering ω with sliders.

``session`` holds the logic (no web dependencies); ``app`` builds the Gradio page from it and serves it.
This layer sits above ``restore`` and ``data`` and is imported by nothing below ``cli``.
"""
from pip_adapter.demo.session import DemoInputError, DemoResult, DemoSession, Example, LoadedInput

__all__ = ["DemoInputError", "DemoResult", "DemoSession", "Example", "LoadedInput"]
