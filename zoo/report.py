"""Pictures and a self-contained HTML page for benchmark results."""

import base64
import html
import io

from .errors import ZooError, require
from .files import atomic_path, write_text
from .results import SUMMARY, fmt


def figure_png(rows, classes, confusion_model=None):
    """Accuracy against throughput (one labelled point per model) beside one model's confusion matrix."""
    require("matplotlib", "plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r.get("status") == "ok"]
    if not ok:
        raise ZooError("No model finished, so there is nothing to plot.")
    chosen = next((r for r in ok if r["model"] == confusion_model), None) or max(ok, key=lambda r: r["top1"])
    if confusion_model and chosen["model"] != confusion_model:
        raise ZooError(f"--confusion {confusion_model}: no finished row for that model in this run.")
    fig, (scatter, matrix) = plt.subplots(1, 2, figsize=(13, 5.5))
    for r in ok:
        scatter.scatter(r["throughput"], r["top1"] * 100, s=40)
        scatter.annotate(f"{r['model']} ({r['protocol']})", (r["throughput"], r["top1"] * 100),
                         textcoords="offset points", xytext=(5, 4), fontsize=8)
    speeds = [r["throughput"] for r in ok]
    wide = max(speeds) > 10 * min(speeds)  # a log axis only helps when speeds differ by orders of magnitude
    if wide:
        scatter.set_xscale("log")
    scatter.margins(0.25)
    scatter.set_xlabel("throughput (images/s" + (", log scale)" if wide else ")"))
    scatter.set_ylabel("top-1 accuracy (%)")
    scatter.set_title(f"{ok[0]['dataset']} {ok[0]['split']}, {ok[0]['n']} images")
    scatter.grid(alpha=0.3)
    image = matrix.imshow(chosen["confusion"], cmap="Blues")
    matrix.set_xticks(range(len(classes)), classes, rotation=60, ha="right", fontsize=8)
    matrix.set_yticks(range(len(classes)), classes, fontsize=8)
    matrix.set_xlabel("predicted")
    matrix.set_ylabel("true")
    matrix.set_title(f"confusion: {chosen['model']}")
    fig.colorbar(image, ax=matrix, fraction=0.046)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def save_plot(path, png):
    with atomic_path(path) as tmp:
        tmp.write_bytes(png)


def save_report(path, rows, png=None):
    """One HTML file: the summary table, failures with reasons, per-class accuracy, and the picture."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in SUMMARY)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(fmt(r.get(c), c))}</td>" for c in SUMMARY) + "</tr>" for r in rows
    )
    failures = "".join(f"<li><b>{html.escape(r['model'])}</b>: {html.escape(r['error'] or '')}</li>"
                       for r in rows if r.get("status") != "ok")
    per_class = ""
    ok = [r for r in rows if r.get("status") == "ok"]
    if ok:
        classes = list(ok[0]["per_class"])
        per_class = "<h2>Per-class top-1</h2><table><tr><th>model</th>" + "".join(
            f"<th>{html.escape(c)}</th>" for c in classes) + "</tr>" + "".join(
            f"<tr><td>{html.escape(r['model'])}</td>" + "".join(
                f"<td>{r['per_class'][c]:.3f}</td>" for c in classes) + "</tr>" for r in ok) + "</table>"
    picture = f'<img alt="accuracy against throughput" src="data:image/png;base64,{base64.b64encode(png).decode()}">' \
        if png else ""
    first = rows[0] if rows else {}
    write_text(path, f"""<!doctype html>
<html><head><meta charset="utf-8"><title>zoo bench: {html.escape(str(first.get('dataset', '')))}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}img{{max-width:100%}}</style></head>
<body><h1>zoo bench: {html.escape(str(first.get('dataset', '')))} {html.escape(str(first.get('split', '')))}</h1>
<p>run {html.escape(str(first.get('run_id', '')))}, {html.escape(str(first.get('created_at', '')))},
{first.get('n', 0)} images, device {html.escape(str(first.get('device', '')))}</p>
<table><tr>{head}</tr>{body}</table>
{f'<h2>Failures</h2><ul>{failures}</ul>' if failures else ''}
{per_class}
{picture}
</body></html>
""")
