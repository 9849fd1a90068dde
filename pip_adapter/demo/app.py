"""The demo page: Gradio Blocks over a :class:`~pip_adapter.demo.session.DemoSession`, and the server.

Gradio is optional (``pip install -e ".[demo]"``) and imported only here, after the environment that keeps it
offline and inside the session's temporary folder is set (:func:`offline_environment`).
"""
from __future__ import annotations

import inspect
import logging
import os
from typing import Any, Dict, List, Optional

from pip_adapter.demo.session import ACCEPTED, DemoInputError, DemoSession, weights_from_values
from pip_adapter.image_io import IMAGE_EXTENSIONS

logger = logging.getLogger(__name__)

# one queue for every event that runs the model: requests of several users wait instead of sharing the CPU
MODEL_QUEUE = "model"
MAX_UPLOAD = "200mb"

# the before/after frame grows with the image up to this height (a fixed height cut the bottom of wide images)
COMPARE_MAX_HEIGHT = 640
STALE = "⟳ ω changed since this result: press **Restore** to update it"

CSS = """
#demo-message { color: #b91c1c; font-weight: 600; }
#demo-message:empty { display: none; }
#demo-stale { color: #92400e; font-weight: 600; }
#demo-stale:empty { display: none; }
"""


def offline_environment(workdir: str) -> Dict[str, str]:
    """Environment variables that keep Gradio from calling home and make it write only under ``workdir``.

    Set before gradio is imported (some of its modules read them at import time); returns what was set.
    """
    env = {
        "GRADIO_ANALYTICS_ENABLED": "False",   # no usage report, no version check
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_OFFLINE": "1",
        "GRADIO_TEMP_DIR": os.path.join(workdir, "gradio"),  # uploads and served files
        "GRADIO_RUN_HISTORY": "False",
        "GRADIO_SSR_MODE": "False",             # no Node server
        "GRADIO_MCP_SERVER": "False",
    }
    os.environ.update(env)
    return env


def _gradio():
    try:
        import gradio as gr
    except ImportError as err:
        raise ImportError("the demo page needs Gradio: pip install -e \".[demo]\" (or pip install gradio)") from err
    return gr


class UploadOnlyError(ValueError):
    """A client sent a URL where the page takes an uploaded file."""


def _is_url(value: Any) -> bool:
    return "://" in str(value) or str(value).startswith("//")


def uploads_only(component: Any) -> Any:
    """Make a Gradio file component refuse a URL in a client's file ``path`` (Gradio would download it on the
    server's behalf, to any host but this one): the page accepts uploaded files only.  Returns ``component``."""
    move_async = component.async_move_resource_to_block_cache
    move = component.move_resource_to_block_cache

    async def _move_async(url_or_file_path: Any, *args: Any, **kwargs: Any) -> Any:
        if _is_url(url_or_file_path):
            raise UploadOnlyError("the demo accepts uploaded files only, not URLs")
        return await move_async(url_or_file_path, *args, **kwargs)

    def _move(url_or_file_path: Any, *args: Any, **kwargs: Any) -> Any:
        if _is_url(url_or_file_path):
            raise UploadOnlyError("the demo accepts uploaded files only, not URLs")
        return move(url_or_file_path, *args, **kwargs)

    component.async_move_resource_to_block_cache = _move_async
    component.move_resource_to_block_cache = _move
    return component


def build_app(session: DemoSession) -> Any:
    """The page as ``gradio.Blocks`` for ``session`` (call :func:`offline_environment` first)."""
    gr = _gradio()
    names = session.degradations
    examples = session.examples()
    file_types = list(IMAGE_EXTENSIONS)

    def _message(err: Exception) -> str:
        return f"⚠ {err}"

    # a new input clears the previous result (the download never offers another image's result), the classifier's
    # bars (they were another image's) and the note that the result is out of date
    def cleared() -> tuple:
        return (None, "", gr.update(value=None, interactive=False, label="Download the restored image"),
                None, "", None)

    def on_upload(path: Optional[str]):
        if not path:
            return (None, "", "") + cleared()
        try:
            loaded = session.load(path)
        except DemoInputError as err:
            return (None, "", _message(err)) + cleared()
        return (loaded.preview, loaded.description, "") + cleared()

    def on_example(label: Optional[str]):
        if not label:
            return gr.update(), gr.update()
        ex = session.example(label)
        return ex.path, ex.gt

    def on_pure(name: Optional[str]):
        if not name:
            return [gr.update() for _ in names]
        w = session.pure(name)
        return [w[n] for n in names]

    def on_auto(path: Optional[str]):
        try:
            probs = session.classify(path)
        except DemoInputError as err:
            return [gr.update(), _message(err)] + [gr.update() for _ in names]
        # the sliders get the top type one-hot, as `restore -d auto` does by default (its argmax mode); the bars
        # keep every probability in view, so a user who wants a mix can set it from them
        top = max(names, key=lambda n: probs[n])
        return [probs, ""] + [1.0 if n == top else 0.0 for n in names]

    def on_omega(last: Optional[List[float]], *values: float):
        # the pure-type radio shows the type the sliders hold one-hot, and nothing for a mix; a result made with
        # other weights than the sliders show now is marked as out of date
        hot = [n for n, v in zip(names, values) if float(v or 0) > 0]
        one_hot = len(hot) == 1 and abs(float(values[names.index(hot[0])]) - 1.0) < 1e-9
        stale = last is not None and [round(float(v or 0), 4) for v in values] != last
        return (hot[0] if one_hot else None,
                STALE if stale else "")

    def on_restore(path: Optional[str], gt: Optional[str], tile: Optional[float], *values: float,
                   progress=gr.Progress()):
        def _progress(done: int, total: int) -> None:
            progress((done, total), desc="tiles", unit="tiles")

        try:
            res = session.restore(path, weights_from_values(names, values), tile=int(tile or 0), gt=gt,
                                  progress=_progress)
        except DemoInputError as err:
            return gr.update(), gr.update(), gr.update(), _message(err), gr.update(), gr.update()
        return ((res.before, res.after), res.summary(),
                gr.update(value=res.output, interactive=True, label=f"Download {os.path.basename(res.output)}"),
                "", [round(float(v or 0), 4) for v in values], "")

    with gr.Blocks(title="pip-adapter demo", analytics_enabled=False) as app:
        gr.Markdown("# pip-adapter: Prompt-In-Prompt restoration\n"
                    "Upload an image (" + ACCEPTED + ") or choose a built-in example, set ω — the mix of "
                    "degradations to remove — with the sliders, a pure type or *auto*, and restore.")
        message = gr.Markdown("", elem_id="demo-message")
        with gr.Row():
            with gr.Column(scale=1, min_width=260):
                upload = uploads_only(gr.File(label="image", file_types=file_types, type="filepath",
                                              elem_id="demo-upload"))
                example = gr.Dropdown(choices=[ex.label for ex in examples], value=None,
                                      label="or a built-in example (photo · degradation)", elem_id="demo-example")
                preview = gr.Image(label="input", type="numpy", interactive=False, height=200, buttons=[],
                                   elem_id="demo-preview")
                info = gr.Markdown("", elem_id="demo-info")
                gt = uploads_only(gr.File(label="ground truth (optional): PSNR/SSIM", file_types=file_types,
                                          type="filepath", elem_id="demo-gt"))
            with gr.Column(scale=1, min_width=260):
                pure = gr.Radio(choices=names, value=None, label="pure type (one click)", elem_id="demo-pure")
                sliders = [gr.Slider(0.0, 1.0, value=0.0, step=0.01, label=f"ω {n}", elem_id=f"demo-omega-{i}")
                           for i, n in enumerate(names)]
                if session.has_classifier:
                    auto = gr.Button("auto: let the classifier choose", elem_id="demo-auto")
                    probs = gr.Label(label="classifier probabilities", num_top_classes=len(names),
                                     elem_id="demo-probs")
                else:
                    auto = gr.Button("auto (not available)", interactive=False, elem_id="demo-auto")
                    probs = None
                    gr.Markdown("*auto* is off: this model file has no degradation classifier "
                                "(export it with `--classifier` to bundle one).", elem_id="demo-auto-note")
                tile = gr.Number(value=session.tile, precision=0, minimum=0,
                                 label="tile size in pixels (0: whole image); larger images restore in tiles",
                                 elem_id="demo-tile")
                run = gr.Button("Restore", variant="primary", elem_id="demo-restore")
            with gr.Column(scale=2, min_width=360):
                stale = gr.Markdown("", elem_id="demo-stale")
                compare = gr.ImageSlider(label="before / after (drag the handle)", type="numpy",
                                         interactive=False, max_height=COMPARE_MAX_HEIGHT, elem_id="demo-compare")
                summary = gr.Markdown("", elem_id="demo-result")
                last_omega = gr.State(None)   # the slider values of the result on screen (None: no result)
                download = gr.DownloadButton("Download the restored image", value=None, interactive=False,
                                             elem_id="demo-download")

        # the classifier's bars are cleared with the input (the page has none without a classifier: a State then)
        bars = probs if probs is not None else gr.State(None)
        upload.change(on_upload, inputs=upload,
                      outputs=[preview, info, message, compare, summary, download, bars, stale, last_omega],
                      concurrency_limit=None)
        example.change(on_example, inputs=example, outputs=[upload, gt], concurrency_limit=None)
        # .input: a user's click only; the radio also follows the sliders (on_omega) without setting them again
        pure.input(on_pure, inputs=pure, outputs=sliders, concurrency_limit=None)
        for slider in sliders:
            slider.change(on_omega, inputs=[last_omega] + sliders, outputs=[pure, stale], concurrency_limit=None)
        if probs is not None:
            auto.click(on_auto, inputs=upload, outputs=[probs, message] + sliders,
                       concurrency_limit=1, concurrency_id=MODEL_QUEUE)
        run.click(on_restore, inputs=[upload, gt, tile] + sliders,
                  outputs=[compare, summary, download, message, last_omega, stale],
                  concurrency_limit=1, concurrency_id=MODEL_QUEUE)
    return app


def launch(session: DemoSession, host: str = "127.0.0.1", port: int = 7860, block: bool = True) -> Any:
    """Serve the page on ``host:port`` (127.0.0.1 by default: only this machine) until interrupted.

    With ``block=False`` returns the running app at once (tests); ``app.close()`` stops it.
    """
    offline_environment(session.workdir)
    gr = _gradio()
    app = build_app(session)
    app.queue(default_concurrency_limit=1)
    options = dict(footer_links=[], ssr_mode=False, pwa=False, mcp_server=False, run_history=False,
                   enable_monitoring=False)
    accepted = inspect.signature(app.launch).parameters
    # options a Gradio 6 release may lack are dropped; the environment of offline_environment covers them
    app.launch(server_name=host, server_port=int(port), share=False, inbrowser=False, show_error=True,
               allowed_paths=[session.workdir], max_file_size=MAX_UPLOAD, prevent_thread_lock=not block,
               quiet=True, css=CSS, theme=gr.themes.Default(),
               **{k: v for k, v in options.items() if k in accepted})
    return app


__all__: List[str] = ["build_app", "launch", "offline_environment"]
