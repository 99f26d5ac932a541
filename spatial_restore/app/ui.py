"""The Gradio page and the ``/restore`` API over ``PhotoRestorer``; offline and private by construction.

Nothing here leaves the machine: analytics off (the Blocks option, which also stops Hugging Face
telemetry), no share link, server-side rendering off (it would need Node), and a theme of system fonts
only, so the page loads no font, script or style from anywhere but this server.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import gradio as gr

from . import engine
from .restore import MAX_SIGMA, PhotoRestorer, RestoreError, Result

MAX_UPLOAD = "200mb"  # per file; the pixel limit (--max-pixels) is what bounds the work
THEME = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                          font_mono=["ui-monospace", "monospace"])  # strings: system fonts, never fetched
FILE_TYPES = list(engine.IMAGE_SUFFIXES)
BLUR_CHOICES = ["none", "defocus:9", "linear:15", "linear:15:45", "trajectory:19"]  # a few of the training kernels


def _escape(message: str) -> str:
    """Gradio renders messages as HTML, and these name uploaded files."""
    return html.escape(message, quote=False)


def _error(err: RestoreError) -> gr.Error:
    return gr.Error(_escape(str(err)), print_exception=False)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} dB"


def report(results: list[Result], failures: list[str]) -> str:
    """A markdown line per image: size, time, PSNR when blur or noise was added, the library's notes; then
    why each refused file was refused."""
    lines = []
    for r in results:
        line = f"**{_escape(r.name)}**: {r.width}x{r.height}, {r.model}, {r.seconds:.1f} s"
        if r.psnr is not None:
            added = [f"blur {_escape(r.blur)}"] if r.blur else []
            added += [f"noise σ={r.sigma:g}"] if r.sigma else []
            line += f"; PSNR with {' and '.join(added)}: {_fmt(r.psnr_input)}, restored: {_fmt(r.psnr)}"
        lines.append("- " + line + "".join(f"<br>{_escape(note)}" for note in r.notes))
    lines += [f"- not restored: {_escape(message)}" for message in failures]
    return "\n".join(lines)


def build(restorer: PhotoRestorer) -> gr.Blocks:
    """The page (upload, model, noise, before/after, downloads) and the API endpoint ``/restore``."""

    def restore_uploads(files: list[str] | None, model: str, sigma: float, blur: str,
                        progress=gr.Progress()):  # noqa: B008 (how Gradio hands a handler its progress bar)
        if not files:
            raise gr.Error("Add one or more images first.", print_exception=False)
        results: list[Result] = []
        failures: list[str] = []  # as in inference.py, one refused file does not stop the others
        for index, path in enumerate(files):
            name = Path(path).name

            def tick(done: int, total: int, index: int = index, name: str = name) -> None:
                """Each file an equal share of the bar, filled tile by tile."""
                progress((index * total + done, len(files) * total), desc=f"{name}: tile {done} of {total}")

            progress((index, len(files)), desc=f"{name}: starting")
            try:
                results.append(restorer.restore(path, model, sigma, tick, blur))
            except RestoreError as err:
                failures.append(str(err))
        if not results:
            raise gr.Error("<br>".join(map(_escape, failures)), print_exception=False)
        for message in failures:
            gr.Warning(_escape(message))
        return ([str(r.output) for r in results], (str(results[0].before), str(results[0].output)),
                gr.Dropdown(choices=[r.name for r in results], value=results[0].name, visible=len(results) > 1),
                report(results, failures), results)

    def show(name: str, results: list[Result]):
        chosen = next((r for r in results if r.name == name), None)
        return None if chosen is None else (str(chosen.before), str(chosen.output))

    def restore(image: str, model: str = "default", sigma: float = 0.0, blur: str = "") -> tuple[str, dict[str, Any]]:
        """Restore one image file: returns the restored PNG (bit depth, grey and alpha as the input) and a summary."""
        try:
            result = restorer.restore(image, model, sigma, blur=blur)
        except RestoreError as err:
            raise _error(err) from err
        return str(result.output), result.summary()

    with gr.Blocks(title="spatial_restore", analytics_enabled=False) as blocks:
        gr.Markdown("## Restore photos\nDrop one or more images, pick a model, press *Restore*. "
                    "Everything runs on this machine.")
        with gr.Row():
            with gr.Column(scale=1):
                files = gr.File(label="Images", file_count="multiple", file_types=FILE_TYPES,
                                elem_id="images")
                model = gr.Dropdown(restorer.models, value=restorer.models[0], label="Model")
                sigma = gr.Slider(0, 75, value=0, step=1, label="Add noise σ (0-255 scale)",
                                  info="Try a denoiser on a clean photo: noise is added first and PSNR is shown. "
                                       "0: restore the image as it is.", elem_id="sigma")
                blur = gr.Dropdown(BLUR_CHOICES, value="none", label="Add blur", allow_custom_value=True,
                                   info=f"Try the deblurrer on a sharp photo: blurred first (before the noise), "
                                        f"PSNR shown; or type {engine.BLUR_SPECS} (odd sizes, px).",
                                   elem_id="blur")
                run = gr.Button("Restore", variant="primary", elem_id="restore")
            with gr.Column(scale=2):
                slider = gr.ImageSlider(label="Before / after", type="filepath", interactive=False,
                                        elem_id="before-after")
                shown = gr.Dropdown(label="Showing", choices=[], visible=False, interactive=True)
                summary = gr.Markdown(elem_id="report")
                downloads = gr.File(label="Restored PNGs", file_count="multiple", interactive=False,
                                    elem_id="downloads")
        results = gr.State([])
        run.click(restore_uploads, [files, model, sigma, blur], [downloads, slider, shown, summary, results],
                  api_visibility="private", concurrency_id="restore")
        shown.change(show, [shown, results], slider, api_visibility="private")
        with gr.Row(visible=False):  # the API's own components: one file in, the PNG and a summary out
            image = gr.File(label="image", file_types=FILE_TYPES)
            api_sigma = gr.Number(0, minimum=0, maximum=MAX_SIGMA, label="sigma")  # the page's slider stops at 75
            api_blur = gr.Textbox("", label="blur")
            restored = gr.File(label="restored")
            details = gr.JSON(label="summary")
            call = gr.Button()
        call.click(restore, [image, model, api_sigma, api_blur], [restored, details], api_name="restore",
                   concurrency_id="restore")
    return blocks


def launch(blocks: gr.Blocks, host: str, port: int, workdir: Path) -> None:
    """Serve on ``host:port`` until interrupted, with every outgoing feature off."""
    blocks.queue(default_concurrency_limit=1).launch(
        server_name=host, server_port=port, share=False, ssr_mode=False, pwa=False, mcp_server=False,
        enable_monitoring=False, inbrowser=False, show_error=False, max_file_size=MAX_UPLOAD, theme=THEME,
        allowed_paths=[str(workdir)])
