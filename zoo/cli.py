"""The `zoo` command: a thin layer over the Python API. Heavy imports stay inside the commands."""

import itertools
import json
import math
import os
import sys

import click

from . import api
from .config import truthy
from .errors import BadInput, ZooError, require
from .files import as_path, check_writable
from .records import TASKS
from .runtime import ATTENTION
from .streaming import Failed
from .tables import PAGE_SECONDS, table, table_lines, visible

ANSWER = "\n\t"  # control characters a model's answer keeps on a terminal


class ZooGroup(click.Group):
    """The zoo command group: ZooErrors become one line and exit 1; command names have one owner."""

    owner = "zoo"  # the plugin whose register_commands hook is running

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from .plugins import Names

        self.names, self.own = Names("command"), {}

    def add_command(self, cmd, name=None):
        name = name or cmd.name
        self.names.add(name, cmd, self.owner, override=getattr(cmd, "override", False))
        super().add_command(cmd, name)
        if self.owner == "zoo":
            self.own[name] = cmd

    def forget_plugins(self):
        """Back to zoo's own commands, for build_cli to add those of the plugins loaded now."""
        from .plugins import Names

        self.commands, self.names = dict(self.own), Names("command")
        for name, cmd in self.own.items():
            self.names.add(name, cmd, "zoo")

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ZooError as e:
            click.echo(f"Error: {visible(e)}", err=True)
            ctx.exit(1)
        except (click.ClickException, click.exceptions.Exit, click.Abort, KeyboardInterrupt):
            raise
        except BrokenPipeError:  # the reader went away (zoo list | head): stop quietly, as SIGPIPE would
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the final flush cannot fail too
            ctx.exit(141)
        except Exception as e:
            if truthy("ZOO_DEBUG"):
                raise
            click.echo(f"Error: {visible(system_error(e) or unexpected(e))}", err=True)
            ctx.exit(1)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """Usage errors as one line (click prints three), the same in a terminal and under CliRunner."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as e:
            where = e.ctx.command_path if getattr(e, "ctx", None) else "zoo"
            click.echo(f"Error: {e.format_message()} (see '{where} --help')", err=True)
            sys.exit(e.exit_code)
        except click.Abort:
            click.echo("Aborted.", err=True)
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)


def system_error(error):
    """The system refusing a file (disk full, permission denied, ...): its own words, not reported as a bug."""
    if isinstance(error, OSError) and error.errno is not None and error.strerror:
        return f"{error.filename}: {error.strerror}." if error.filename else f"{error.strerror}."
    return None


def unexpected(error):
    message = " ".join(str(error).split())[:300]
    return (f"unexpected {type(error).__name__}: {message} (a bug in zoo or a plugin: please report it; "
            "ZOO_DEBUG=1 shows the traceback)")


def bars(as_json=False):
    """Progress bars go to a terminal only: in a log or a pipe, every redraw is another line of noise."""
    return sys.stderr.isatty() and not as_json


def emit_json(data):
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def emit_json_list(items):
    """The text emit_json(list(items)) prints, printed item by item as results come, so they are never all held;
    nothing when there are none."""
    count = 0
    for count, item in enumerate(items, 1):
        text = json.dumps(item, indent=2, ensure_ascii=False).replace("\n", "\n  ")
        click.echo(("[\n  " if count == 1 else ",\n  ") + text, nl=False)
    if count:
        click.echo("\n]")


def human_count(n):
    if n is None:
        return "-"
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


POSITIVE = click.IntRange(min=1)


class PathParam(click.ParamType):
    """A file or folder path, as typed; what no file system takes is a usage error (click.Path raises ValueError
    on a NUL byte)."""

    name = "path"

    def convert(self, value, param, ctx):
        try:
            as_path(value)
        except BadInput as e:
            self.fail(str(e), param, ctx)
        return value


PATH = PathParam()


class PositiveFloat(click.ParamType):
    """A finite number above zero (click's FloatRange lets nan through)."""

    name = "number"

    def convert(self, value, param, ctx):
        import math

        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number) or number <= 0:
            self.fail(f"{value} is not a finite number above 0.", param, ctx)
        return number


device_option = click.option("--device", default=None, help="cpu, cuda, cuda:1 ... [cuda when present]")
dtype_option = click.option("--dtype", default=None, help="float32, bfloat16 or float16 [bf16 on CUDA, else fp32]")
batch_size_option = click.option("--batch-size", type=POSITIVE, default=None, help="Inputs per batch [the model's].")


def load_options(f):
    """The options of every command that loads a model: zoo.load's runtime options, its weights, its model options."""
    f = click.option("-o", "--option", "model_options", multiple=True, metavar="KEY=VALUE",
                     help="A model option (repeatable); 'zoo info NAME' and the plugin docs list them.")(f)
    f = click.option("--device-map", default=None,
                     help="auto or cpu: transformers places (and offloads) the layers of Florence-2, Qwen2-VL.")(f)
    f = click.option("--attention", type=click.Choice(ATTENTION), default=None, metavar="NAME",
                     help=f"{', '.join(ATTENTION)}: where the model can switch [the best it has].")(f)
    f = click.option("--workers", type=POSITIVE, default=None, help="Threads decoding the inputs [4].")(f)
    f = click.option("--compile", is_flag=True,
                     help="torch.compile the network (transformers models: compiled generation, a static cache).")(f)
    f = batch_size_option(f)
    f = click.option("--weights", type=PATH, default=None, help="Local weights file or folder.")(f)
    return device_option(dtype_option(f))


def load_model(name, load, capability=None, call_options=None):
    """Check the model options (and the call's) before loading anything, then load the model."""
    from .options import parse_assignments

    model_options = parse_assignments(load.pop("model_options", ()))
    api.check_options(name, capability, model_options, call_options)
    return api.load(name, **load, **model_options)


def given(**options):
    return {k: v for k, v in options.items() if v is not None}


@click.group(cls=ZooGroup)
@click.version_option(package_name="zoo")
def cli():
    """zoo: one interface, one CLI and one catalogue for vision models."""


@cli.command(name="list")
@click.argument("pattern", required=False)
@click.option("--task", type=click.Choice(TASKS), default=None, help="Only models with this task.")
@click.option("--plugin", default=None, help="Only models of this plugin.")
@click.option("--license", "licenses", default=None, help="Only these licences, comma-separated (apache-2.0,mit).")
@click.option("--where", default=None, help="Conditions on fields and metrics: 'params<5e7, imagenet_top1>=75'.")
@click.option("--sort", default=None, help="A field or metric to sort by; '-imagenet_top1' for descending.")
@click.option("--fields", default=None, help="Columns to show, comma-separated [name,plugin,tasks,params].")
@click.option("--json", "as_json", is_flag=True)
def list_command(pattern, task, plugin, licenses, where, sort, fields, as_json):
    """List models, optionally matching an fnmatch PATTERN (e.g. 'deit-*')."""
    from .catalogue import check_fields, matches, parse_where, sort_records, value_of

    conditions = parse_where(where)
    columns = [f.strip() for f in (fields or "name,plugin,tasks,params").split(",") if f.strip()]
    check_fields([c[0] for c in conditions] + columns + ([sort.lstrip("-")] if sort else []),
                 list(map(api.info, api.list_models())))
    allowed = {v.strip().lower() for v in licenses.split(",")} if licenses else None
    records = [r for r in map(api.info, api.list_models(pattern, task=task, plugin=plugin))
               if matches(r, conditions) and (allowed is None or (r.license or "").lower() in allowed)]
    records = sort_records(records, sort)
    if as_json:
        return emit_json([{c: value_of(r, c) for c in dict.fromkeys(["name", *columns, "license"])} for r in records])
    shown = [[human_count(v) if c == "params" else "-" if v is None else str(v)
              for c, v in ((c, value_of(r, c)) for c in columns)] for r in records]
    click.echo(table(shown, [c.upper() for c in columns]))


@cli.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
def info(name, as_json):
    """Show a model's record, the model options it takes (-o KEY=VALUE) and each task's options."""
    from .options import listing
    from .registry import registry

    record = api.info(name)
    loader = registry().loader_for(record) if record.plugin in registry().loaders else None
    options = listing(loader.Options) if loader else None
    calls = {task: listing(loader.options_for(task)) for task in record.tasks} if loader else {}
    if as_json:
        return emit_json({**record.to_dict(), "options": options, "call_options": calls})
    shown = {**record.to_dict(), "load options": options, **{f"{task} options": v for task, v in calls.items()}}
    for key, value in shown.items():
        if value in (None, [], {}):
            continue
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        elif isinstance(value, list):
            value = ", ".join(map(str, value)) if len(value) <= 12 else f"{len(value)} items"
        click.echo(f"{key + ':':<18} {value}")


def bulk_options(f):
    """Inputs as a user has them (folders, globs, lists, manifests, videos) and results written to --out."""
    f = click.option("--concurrency", type=POSITIVE, default=None, help="Ray actors [2].")(f)
    f = click.option("--address", default=None, help="A Ray cluster to join [RAY_ADDRESS, else a local one].")(f)
    f = click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True)(f)
    f = click.option("--force", is_flag=True, help="Replace what --out holds (refused without --resume or this).")(f)
    f = click.option("--resume", is_flag=True, help="Skip the inputs --out already holds; append the rest.")(f)
    f = click.option("--out", type=PATH, default=None,
                     help="Write results here (.jsonl, .csv, .parquet; embeddings also .npy, .safetensors).")(f)
    f = click.option("--fps", type=PositiveFloat(), default=None, help="Video frames per second for image models [1].")(f)
    f = click.option("--column", default="path", show_default=True,
                     help="The column of a CSV/Parquet manifest holding paths (or, in Parquet, the images).")(f)
    f = click.option("--ext", default=None, help="File types a folder or glob keeps, e.g. jpg,png [images, videos].")(f)
    return click.option("-r", "--recursive", is_flag=True, help="Walk into sub-folders.")(f)


def reading_of(bulk):
    """How the inputs are read, as zoo.run names it."""
    return {"recursive": bulk["recursive"], "extensions": bulk["ext"], "column": bulk["column"], "fps": bulk["fps"]}


def check_flags(bulk, printed):
    """A flag that would do nothing is an error: bulk flags need --out, flags for printed results exclude it."""
    if bulk["out"]:
        mixed = [flag for flag, given in printed.items() if given]
        if mixed:
            raise ZooError(f"{mixed[0]} shapes results printed here; with --out they go to {bulk['out']}: leave out one.")
        return
    unused = [name for name in ("resume", "force", "address", "concurrency") if bulk[name]] + \
        (["engine"] if bulk["engine"] != "local" else [])
    if unused:
        raise ZooError(f"--{unused[0]} applies to a bulk run into a file: add --out (e.g. --out results.jsonl).")


def split_bulk(options):
    keys = ("recursive", "ext", "column", "fps", "out", "resume", "force", "engine", "address", "concurrency")
    return {k: options.pop(k) for k in keys}


def run_bulk(name, inputs, task, call_options, load, bulk):
    """--out: every input into a results file; a summary line, and exit 1 if any input failed."""
    from .bulk import run
    from .options import parse_assignments

    model_options = parse_assignments(load.pop("model_options", ()))
    api.check_options(name, task, model_options, call_options)
    try:
        summary = run(name, with_stdin(inputs), task=task, out=bulk["out"], resume=bulk["resume"], force=bulk["force"],
                      options=call_options, **reading_of(bulk), engine=bulk["engine"], address=bulk["address"],
                      concurrency=bulk["concurrency"], load={**{k: v for k, v in load.items() if v is not None},
                                                             **model_options})
    except KeyboardInterrupt:  # Ctrl-C: say how to go on, once, instead of click's "Aborted."
        click.echo(f"Interrupted: the rows already written are kept; the same command with --resume runs only "
                   f"the inputs {bulk['out']} lacks.", err=True)
        click.get_current_context().exit(130)
    click.echo(str(summary), err=True)
    if summary.failed:
        raise ZooError(f"{summary.failed} input(s) failed: their rows in {bulk['out']} say why.")


def loaded(name, inputs, task, options, load, printed, keep_values=False):
    """(model, its Printed results) for results printed here; None when --out ran a bulk run instead.
    `printed`: {flag: whether given} for the flags that shape printed results."""
    bulk = split_bulk(load)
    check_flags(bulk, printed)
    if bulk["out"]:
        return run_bulk(name, inputs, task, options, load, bulk)
    model = load_model(name, load, task, options)
    return model, Printed(model, task, inputs, bulk, options, keep_values)


class Printed:
    """The results of a command that prints them, input by input as the model gives them: a folder's images,
    a video's frames and their results are never all in memory. As in a bulk run (and FiftyOne's skip_failures),
    an input that fails does not stop the others: iterating yields (item, result) for those that worked (with the
    input's value when `keep_values`), and `report()`, once they are printed, names each that failed on stderr and
    exits 1."""

    def __init__(self, model, task, inputs, bulk, options, keep_values=False):
        from .sources import sources_for

        items = sources_for(model.reads_video, **reading_of(bulk)).items(with_stdin(inputs))
        self.first = list(itertools.islice(items, 2))  # enough to know whether there is one input, or none
        if not self.first:
            raise ZooError("No inputs found: the folders and globs hold no files of the kinds --ext names.")
        self.model, self.task, self.options, self.keep_values = model, task, options, keep_values
        self.items, self.failed, self.total = itertools.chain(self.first, items), [], 0

    @property
    def single(self):
        return len(self.first) == 1

    def __iter__(self):
        from .bulk import Summary, paired

        results = paired(self.model, self.task, self.items, set(), self.options, Summary(), self.keep_values)
        for item, result in results:
            self.total += 1
            if not isinstance(result, Failed):
                yield item, result
            else:
                self.fail(item, result.error)

    def streamed(self):
        """Each input's answer token by token as it is generated, one input after another (named when several)."""
        for item in self.items:
            self.total += 1
            try:
                if isinstance(item.value, Failed):  # its source could not read it
                    raise BadInput(item.value.error)
                pieces = self.model.stream_text(item.value, **self.options)
                first = next(pieces, "")  # reading the input and the first token: where a bad input fails
            except BadInput as e:
                self.fail(item, str(e))
                continue
            click.echo(self.named(item) + visible(first, ANSWER), nl=False)
            for piece in pieces:
                click.echo(visible(piece, ANSWER), nl=False)
            click.echo()

    def named(self, item):
        """What comes before an input's answer: its name when there are several, nothing for a single input (so
        `caption=$(zoo describe NAME photo.jpg)` is the caption)."""
        return "" if self.single else f"{visible(item.key)}: "

    def print_table(self, rows, headers):
        """Print the results' table as its rows come. Inputs that worked but gave no row (an image in which nothing
        was detected) still get the header, an empty table rather than silence; inputs that all failed get nothing.
        In a terminal the first page waits at most PAGE_SECONDS; a file or pipe gets widths that do not depend on
        timing, so the same run writes the same text."""
        printed, wait = 0, PAGE_SECONDS if sys.stdout.isatty() else math.inf
        for printed, line in enumerate(table_lines(rows, headers, wait=wait), 1):
            click.echo(line)
        if not printed and self.total > len(self.failed):
            click.echo(table([], headers))

    def fail(self, item, error):
        self.failed.append(error if item.key in error else f"{item.key}: {error}")

    def report(self):
        """Once the results are printed: each input that failed as an 'Error:' line, then exit 1."""
        if not self.failed:
            return
        if self.total == 1:
            raise ZooError(self.failed[0])
        for error in self.failed:
            click.echo(f"Error: {visible(error)}", err=True)
        worked = self.total - len(self.failed)
        raise ZooError(f"{len(self.failed)} of {self.total} inputs failed, each named above" +
                       (f"; the results of the other {worked} are printed." if worked else "."))


def with_stdin(inputs):
    """The inputs, '-' standing for one path or URL a line of standard input (find ... | zoo classify NAME -),
    read lazily: a bulk run starts before the list ends and never holds it whole."""
    if "-" not in inputs:
        return list(inputs)
    if inputs.count("-") > 1:
        raise BadInput("'-' (standard input) can be given once.")
    return (value for given in inputs for value in (stdin_lines() if given == "-" else [given]))


def stdin_lines():
    from .sources import bounded_lines, named_lines

    # Bytes decoded as the file system names files, not as text: a name need not be UTF-8.
    return named_lines(os.fsdecode(line) for line in bounded_lines(sys.stdin.buffer, "standard input"))


@cli.command()
@click.argument("name")
@click.argument("inputs", nargs=-1, required=True)
@click.option("--top-k", type=POSITIVE, default=None, help="How many predictions per input [5].")
@click.option("--labels", default=None, help="Comma-separated label names to choose among.")
@click.option("--json", "as_json", is_flag=True)
@load_options
@bulk_options
def classify(name, inputs, top_k, labels, as_json, **load):
    """Classify images: top-K labels with probabilities (--out: every input into a results file)."""
    options = given(top_k=top_k, labels=[s.strip() for s in labels.split(",") if s.strip()] if labels else None)
    found = loaded(name, inputs, "classify", options, load, {"--json": as_json})
    if found is None:  # --out: a bulk run wrote them
        return
    model, shown = found
    if as_json:
        emit_json_list({"input": item.key, "predictions": [p.to_dict() for p in r]} for item, r in shown)
    else:
        rows = ((item.key, rank + 1, p.label, f"{p.score:.4f}") for item, r in shown for rank, p in enumerate(r))
        shown.print_table(rows, ["INPUT", "RANK", "LABEL", "SCORE"])
    shown.report()


@cli.command()
@click.argument("name")
@click.argument("inputs", nargs=-1, required=True)
@click.option("--prompt", default=None, help="A question or instruction about each input.")
@click.option("--task", default=None, help="A model-specific task (Florence-2: caption, detailed_caption, ocr ...).")
@click.option("--max-new-tokens", type=POSITIVE, default=None, help="Longest answer in tokens [the model card's].")
@click.option("--stream/--no-stream", default=None,
              help="Print answers token by token (beam search: each whole) [on for one input in a terminal].")
@click.option("--json", "as_json", is_flag=True)
@load_options
@bulk_options
def describe(name, inputs, prompt, task, max_new_tokens, stream, as_json, **load):
    """Describe images or videos (captions, OCR, answers to --prompt).

    One input prints its answer alone; several print a line `INPUT: ANSWER` each."""
    options = given(prompt=prompt, task=task, max_new_tokens=max_new_tokens)
    if stream and as_json:
        raise ZooError("--stream prints answers as they come, --json all of them at the end: leave out one.")
    found = loaded(name, inputs, "describe", options, load, {"--json": as_json, "--stream": stream is not None})
    if found is None:  # --out: a bulk run wrote them
        return
    model, shown = found
    if stream is None:
        stream = shown.single and sys.stdout.isatty() and not as_json
    if stream and hasattr(model, "stream_text"):
        shown.streamed()
    elif as_json:
        emit_json_list({"input": item.key, "text": text} for item, text in shown)
    else:
        for item, text in shown:  # each as it is written: answers are slow to come
            click.echo(shown.named(item) + visible(text, ANSWER))
    shown.report()


@cli.command()
@click.argument("name")
@click.argument("inputs", nargs=-1, required=True)
@click.option("--patch-tokens", is_flag=True, help="Patch tokens instead of the pooled embedding (flattened).")
@load_options
@bulk_options
def embed(name, inputs, patch_tokens, **load):
    """Write one embedding row per input to --out (.parquet, .npy or .safetensors with an index of inputs)."""
    bulk = split_bulk(load)
    if not bulk["out"]:
        raise ZooError("zoo embed writes its vectors to a file: pass --out feats.parquet (or .npy, .safetensors).")
    run_bulk(name, inputs, "embed", {"patch_tokens": True} if patch_tokens else {}, load, bulk)


@cli.command()
@click.argument("name")
@click.argument("inputs", nargs=-1, required=True)
@click.option("--task", default=None, help="Model-specific: od, dense_region_caption, phrase_grounding, ocr_with_region.")
@click.option("--phrase", default=None, help="The text to ground (phrase_grounding).")
@click.option("--draw", type=PATH, default=None, help="Save each image with its boxes into this folder.")
@click.option("--json", "as_json", is_flag=True)
@load_options
@bulk_options
def detect(name, inputs, task, phrase, draw, as_json, **load):
    """Detect objects or regions: boxes in pixel coordinates with labels."""
    options = given(task=task, phrase=phrase)
    found = loaded(name, inputs, "detect", options, load, {"--json": as_json, "--draw": bool(draw)},
                   keep_values=bool(draw))
    if found is None:  # --out: a bulk run wrote them
        return
    model, shown = found
    results = drawn(shown, draw) if draw else ((item.key, detections) for item, detections in shown)
    if as_json:
        emit_json_list({"input": i, "detections": [d.to_dict() for d in r]} for i, r in results)
    else:
        rows = ((i, d.label, ",".join(f"{v:.1f}" for v in d.box)) for i, r in results for d in r)
        shown.print_table(rows, ["INPUT", "LABEL", "BOX"])
    shown.report()


def drawn(shown, folder):
    """(input, detections) as each image is saved with its boxes drawn into `folder`."""
    from .drawing import Drawer

    drawer = Drawer(as_path(folder))
    for item, detections in shown:
        click.echo(f"Drew {visible(drawer.draw(item.value, detections, item.key))}", err=True)
        yield item.key, detections


@cli.command()
@click.option("--json", "as_json", is_flag=True)
def plugins(as_json):
    """List loaded plugins, their hooks, and plugins that failed."""
    from .plugins import failures, plugin_list
    from .registry import registry

    registry()  # registering models is when most plugin errors surface
    rows = plugin_list()
    if as_json:
        return emit_json({"plugins": rows, "failures": [f.__dict__ for f in failures]})
    click.echo(table([(r["name"], r["package"], ", ".join(r["hooks"])) for r in rows], ["PLUGIN", "PACKAGE", "HOOKS"]))
    for f in failures:
        click.echo(f"FAILED {f.plugin} ({f.stage}): {f.error}")


@cli.command(name="eval")
@click.argument("name")
@click.option("--dataset", default="cifar10", show_default=True)
@click.option("--data-root", type=PATH, default=None)
@click.option("--split", default="test", show_default=True)
@click.option("--limit", type=POSITIVE, default=None, help="A seeded random subset of N images.")
@click.option("--json", "as_json", is_flag=True)
@load_options
def evaluate(name, dataset, data_root, split, limit, as_json, **load):
    """Top-1/top-5 accuracy of a classifier on a dataset."""
    from .datasets import get_dataset
    from .evaluate import accuracy

    model = load_model(name, load, "classify", {})
    data = get_dataset(dataset, data_root, split).subset(limit)
    result = accuracy(model, data, progress=bars(as_json))
    if as_json:
        return emit_json({"model": name, "dataset": data.name, "split": data.split, "n": len(data), **result})
    click.echo(f"{name} on {data.name} {data.split} ({len(data)} images): "
               f"top-1 {result['top1']:.4f}, top-5 {result['top5']:.4f}")


@cli.command()
@click.argument("models", nargs=-1, required=True)
@click.option("--dataset", default="cifar10", show_default=True, help="A registered dataset or an image folder.")
@click.option("--data-root", type=PATH, default=None)
@click.option("--split", default="test", show_default=True)
@click.option("--limit", type=POSITIVE, default=None, help="A seeded random subset of N images (the same every run).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--protocol", type=click.Choice(["auto", "head", "probe", "knn", "zero-shot"]), default="auto",
              show_default=True)
@click.option("--train-limit", type=POSITIVE, default=5000, show_default=True, help="Training images for probe/k-NN.")
@batch_size_option
@device_option
@dtype_option
@click.option("--db", type=PATH, default=None, help="Results database [$ZOO_HOME/results.db].")
@click.option("--plot", type=PATH, default=None, help="PNG: accuracy against throughput, and a confusion matrix.")
@click.option("--confusion", default=None, help="The model whose confusion matrix is drawn [the most accurate].")
@click.option("--report", type=PATH, default=None, help="A self-contained HTML page of the results.")
@click.option("--json", "as_json", is_flag=True)
def bench(models, dataset, data_root, split, limit, seed, protocol, train_limit, batch_size, device, dtype, db, plot,
          confusion, report, as_json):
    """Compare MODELS on one dataset: accuracy and speed side by side; every run is kept."""
    from .bench import compare
    from .datasets import get_dataset

    for path in (plot, report):
        if path:
            check_writable(path)
    if plot or report:
        require("matplotlib", "plot")  # before the run, not after it
    if confusion and not (plot or report):
        raise ZooError("--confusion picks the model drawn by --plot or --report: add one of them.")
    if confusion and confusion not in models:
        raise ZooError(f"--confusion {confusion}: not one of the models benchmarked ({', '.join(models)}).")

    rows = compare(list(models), dataset=dataset, data_root=data_root, split=split, limit=limit, seed=seed,
                   protocol=protocol, train_limit=train_limit, batch_size=batch_size, device=device, dtype=dtype,
                   db=db, progress=bars(as_json))
    if as_json:
        emit_json(rows.rows)
    else:
        click.echo(str(rows))
    if plot or report:
        from .report import figure_png, save_plot, save_report

        png = figure_png(rows.rows, get_dataset(dataset, data_root, split).classes, confusion) \
            if any(r["status"] == "ok" for r in rows) else None
        if plot and png:
            save_plot(plot, png)
        if report:
            save_report(report, rows.rows, png)
    if all(r["status"] != "ok" for r in rows):
        raise ZooError("Every model failed; see the reasons above.")


@cli.command()
@click.option("--dataset", default=None)
@click.option("--model", default=None)
@click.option("--last", type=POSITIVE, default=None, help="Only the newest N runs.")
@click.option("--db", type=PATH, default=None, help="Results database [$ZOO_HOME/results.db].")
@click.option("--export", "export_format", type=click.Choice(["csv", "json", "md"]), default=None)
@click.option("--json", "as_json", is_flag=True)
@click.argument("file", required=False, type=PATH)
def results(dataset, model, last, db, export_format, as_json, file):
    """List kept benchmark results (DELTA: top-1 change from the model's previous run); or --export FORMAT FILE."""
    from . import results as store

    rows = store.query(db, dataset=dataset, model=model, last=last)
    if export_format:
        if not file:
            raise ZooError("--export needs a FILE to write, e.g. zoo results --export csv results.csv")
        store.export(rows, export_format, file)
        return click.echo(f"Wrote {len(rows)} rows to {file}")
    if file:
        raise ZooError(f"{file}: results are written to a file with --export FORMAT (csv, json or md).")
    if as_json:
        return emit_json(rows)
    columns = ["created_at", "run_id", "model", "dataset", "protocol", "n", "top1", "delta_top1", "throughput", "status"]
    columns += ["error"] if any(r["error"] for r in rows) else []
    click.echo(table([[store.fmt(r.get(c), c) for c in columns] for r in rows],
                     [c.upper().replace("DELTA_TOP1", "DELTA") for c in columns]))


def build_cli():
    from .plugins import call_each

    def arguments(owner):
        cli.owner = owner
        return {"cli": cli}

    cli.forget_plugins()
    call_each("register_commands", arguments)
    cli.owner = "zoo"
    return cli


def main():
    import warnings

    # A failing plugin is worth one line on stderr, not a warning's source location.
    warnings.showwarning = lambda message, *args, **kwargs: click.echo(f"Warning: {message}", err=True)
    if not bars():  # hub downloads and transformers' weight loading draw bars of their own, read once at import
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    build_cli()(prog_name="zoo")
