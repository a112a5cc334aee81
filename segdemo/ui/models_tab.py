"""Tab: every registered model, what it was trained on, how well it does, and whether it is here."""

from __future__ import annotations

import gradio as gr

from segdemo.registry import list_models, model_info

COLUMNS = [
    "model",
    "task",
    "parameters",
    "weights",
    "training data",
    "validation metrics",
    "available",
    "description",
]


def _metrics_text(metrics: dict) -> str:
    shown = {k: v for k, v in metrics.items() if k.startswith("val_") or k.startswith("ms_")}
    return ", ".join(f"{k}={v}" for k, v in shown.items())


def models_table() -> list[list]:
    """One row per registered model, drawn from the registry."""
    rows = []
    for name in list_models():
        info = model_info(name)
        params = info["parameters"]
        rows.append(
            [
                name,
                info["task"],
                f"{params:,}" if params else "",
                info["weights"],
                info["data"],
                _metrics_text(info["metrics"]),
                "yes" if info["available"] else "no",
                info["description"],
            ]
        )
    return rows


def build_tab() -> None:
    with gr.Tab("Models", id="models", elem_id="models-tab"):
        gr.Markdown(
            "Every model the app uses comes from one registry. Shipped weights are trained by "
            "`python -m segdemo.train NAME` on the project's procedural data; metrics are on "
            "fresh validation images the model never saw."
        )
        table = gr.Dataframe(value=models_table, headers=COLUMNS, interactive=False, wrap=True)
        gr.Button("Refresh", size="sm").click(models_table, None, table, api_name="models")
