"""Commands for the weights cache: zoo pull, zoo cache ls/verify/rm, zoo lock export/import."""

import click

from . import cache, lock
from .cli import PATH, emit_json, human_count
from .errors import ZooError
from .files import as_path
from .tables import table


@click.command()
@click.argument("names", nargs=-1)
@click.option("--all", "every", is_flag=True, help="Every model with hub or URL weights.")
@click.option("--revision", default=None, help="A branch, tag or commit of the hub repository.")
def pull(names, every, revision):
    """Download NAMES (fnmatch patterns allowed), verify every file and record it in the lock."""
    from .registry import registry

    chosen, failed = pull_targets(registry(), names, every), []
    for name in chosen:
        try:
            item = cache.pull(name, revision)
        except ZooError as e:  # one model's failure is its own line; the others still download
            failed.append(name)
            click.echo(failure(name, e))
            continue
        if item is None:
            click.echo(f"{name}: nothing to download (its weights are a local path, in the package, or none)")
        else:
            size = human_count(sum(f["size"] for f in item["files"].values()))
            click.echo(f"{name}: {item['source']} at {item['commit'][:12]}, {len(item['files'])} files, {size}B, verified")
    if failed:
        raise ZooError(f"{len(failed)} of {len(chosen)} models could not be pulled: {', '.join(failed)}.")


def pull_targets(reg, names, every):
    if not names and not every:
        raise ZooError("Name the models to pull (patterns allowed: 'deit-*'), or pass --all.")
    if every:
        records = [reg.get(n) for n in reg.names()]  # no weights source: a plugin's resolver (timm) downloads
        return [r.name for r in records if r.weights is None or r.weights.kind in ("hf", "url")]
    chosen = []
    for pattern in names:
        matched = reg.names(pattern) if any(c in pattern for c in "*?[") else [reg.get(pattern).name]
        if not matched:
            raise ZooError(f"No model matches {pattern!r}: 'zoo list' shows every model.")
        chosen += [n for n in matched if n not in chosen]
    return chosen


@click.group(name="cache")
def cache_group():
    """What zoo downloaded: list, verify, remove."""


@cache_group.command(name="ls")
@click.option("--json", "as_json", is_flag=True)
def cache_ls(as_json):
    """Every downloaded model: source, revision, commit, size, last used, verified (size and time check)."""
    rows = cache.rows()
    if as_json:
        return emit_json(rows)
    click.echo(table([(r["model"], r["source"], r["revision"], r["commit"], human_count(r["size"]) + "B",
                       r["last_used"], VERIFIED[r["verified"]]) for r in rows],
                     ["MODEL", "SOURCE", "REVISION", "COMMIT", "SIZE", "LAST USED", "VERIFIED"]))


VERIFIED = {True: "yes", False: "NO", None: "not downloaded"}


def failure(name, error):
    """'NAME: FAILED: reason', naming the model once (most errors start with its name)."""
    return f"{name}: FAILED: {str(error).removeprefix(f'{name}: ')}"


@cache_group.command(name="verify")
@click.argument("names", nargs=-1)
def cache_verify(names):
    """Hash every file of NAMES (default: all) against the lock; exit 1 if any differs."""
    entries = lock.read()["models"]
    if not entries and not names:
        return click.echo("Nothing to verify: zoo has downloaded nothing yet (zoo pull NAME downloads a model).")
    bad = []
    for name in names or sorted(entries):
        if name not in entries:
            raise ZooError(f"{name} is not in the lock: 'zoo cache ls' lists what zoo downloaded.")
        if not entries[name].get("folder"):
            click.echo(f"{name}: pinned, not downloaded here yet (zoo pull {name})")
            continue
        try:
            lock.check(name, entries[name], entries[name]["folder"], full=True)
            click.echo(f"{name}: ok ({len(entries[name]['files'])} files)")
        except ZooError as e:
            bad.append(name)
            click.echo(failure(name, e))
    if bad:
        raise ZooError(f"{len(bad)} model(s) do not match the lock: {', '.join(bad)}.")


@cache_group.command(name="rm")
@click.argument("names", nargs=-1)
@click.option("--older-than", type=click.IntRange(min=0), default=None, metavar="DAYS",
              help="Every model last used more than DAYS days ago.")
def cache_rm(names, older_than):
    """Remove the cached files of NAMES (or of models unused for --older-than DAYS) and their lock entries."""
    chosen = list(names) + (cache.unused_for(older_than) if older_than is not None else [])
    if not chosen:
        raise ZooError("Name the models to remove, or pass --older-than DAYS.")
    for name in dict.fromkeys(chosen):
        cache.remove(name)
        click.echo(f"Removed {name}")


@click.group(name="lock")
def lock_group():
    """Share pins: the lock holds each download's commit and file hashes."""


@lock_group.command(name="export")
@click.argument("file", type=PATH)
def lock_export(file):
    """Write the lock to FILE (for a team to import)."""
    lock.export(file)
    click.echo(f"Wrote {len(lock.read()['models'])} locked models to {file}")


@lock_group.command(name="import")
@click.argument("file", type=PATH)
def lock_import(file):
    """Merge FILE's pins: loads of those models then resolve the same commits and check the same hashes."""
    from .inputs import existing_file

    names = lock.import_from(existing_file(as_path(file), "a zoo lock"))
    click.echo(f"Imported {len(names)} pins: {', '.join(names)}")


COMMANDS = (pull, cache_group, lock_group)
