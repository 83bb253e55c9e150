"""Catalogue queries and the licence policy, over records alone (no torch).

`--where` takes conditions `FIELD OP VALUE` joined by ',' or ' and ': OP is one of < <= > >= == != ~ (an fnmatch
pattern). FIELD is a record field (name, plugin, architecture, license, params, tasks, ...) or a metric
(imagenet_top1, cifar10_top1, ...). Numbers compare as numbers; a record without the field never matches.
"""

import dataclasses
import fnmatch
import operator
import os
import re

from .config import home, user_config
from .errors import BadInput, ZooError
from .records import ModelRecord

OPERATORS = {"<=": operator.le, ">=": operator.ge, "==": operator.eq, "!=": operator.ne, "<": operator.lt,
             ">": operator.gt, "~": lambda value, pattern: fnmatch.fnmatch(str(value), str(pattern))}
CONDITION = re.compile(r"^\s*([A-Za-z_][\w.-]*)\s*(<=|>=|==|!=|<|>|~)\s*(.+?)\s*$")


def value_of(record, field):
    """A record field, else a metric; None when the record has neither."""
    if field in record.metrics:
        return record.metrics[field]
    value = getattr(record, field, None)
    return ",".join(value) if isinstance(value, tuple) and all(isinstance(v, str) for v in value) else value


def check_fields(fields, records):
    """A misspelt field would silently match nothing (or sort nothing): name the fields there are instead."""
    known = {f.name for f in dataclasses.fields(ModelRecord)} | {m for r in records for m in r.metrics}
    unknown = [f for f in fields if f not in known]
    if unknown:
        raise BadInput(f"Unknown field {unknown[0]!r}: use one of {', '.join(sorted(known))}.")


def number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def parse_where(text):
    """[(field, operator, value)] from a --where expression."""
    conditions = []
    for part in re.split(r",|\s+and\s+", text or ""):
        if not part.strip():
            continue
        match = CONDITION.match(part)
        if not match or match[3][0] in "<>=!~":
            raise BadInput(f"--where {part.strip()!r}: write FIELD OP VALUE, OP one of {' '.join(OPERATORS)} "
                           "(for example 'params<5e7, license==apache-2.0').")
        conditions.append((match[1], match[2], match[3].strip("'\"")))
    return conditions


def matches(record, conditions):
    return all(holds(value_of(record, field), op, wanted) for field, op, wanted in conditions)


def holds(value, op, wanted):
    if value is None:
        return False
    if op == "~":
        return fnmatch.fnmatch(str(value).lower(), wanted.lower())
    if number(value) is not None and number(wanted) is not None:
        return OPERATORS[op](number(value), number(wanted))
    return op in ("==", "!=") and OPERATORS[op](str(value).lower(), wanted.lower())  # only numbers are ordered


def sort_records(records, key):
    """By a field or metric; '-field' for descending; records without it last."""
    if not key:
        return records
    field, descending = key.lstrip("-"), key.startswith("-")
    have = [r for r in records if value_of(r, field) is not None]
    missing = [r for r in records if value_of(r, field) is None]
    numeric = all(number(value_of(r, field)) is not None for r in have)
    have.sort(key=lambda r: number(value_of(r, field)) if numeric else str(value_of(r, field)), reverse=descending)
    return have + missing


def allowed_licenses():
    """The licence policy: ZOO_ALLOWED_LICENSES (comma-separated), else allowed_licenses in config.yaml."""
    value = os.environ.get("ZOO_ALLOWED_LICENSES") or user_config().get("allowed_licenses")
    if isinstance(value, str):
        value = value.split(",")
    if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        raise ZooError(f"allowed_licenses in {home() / 'config.yaml'} must be a list of licence names, "
                       "such as [apache-2.0, mit].")
    if value is None:
        return None
    allowed = {v.strip().lower() for v in value if v.strip()}
    if not allowed:  # allowing nothing at all is surely not what was meant
        raise ZooError("The licence policy names no licence: list some (ZOO_ALLOWED_LICENSES=apache-2.0,mit), or "
                       "unset it to allow every licence.")
    return allowed


def check_license(record):
    """Refuse a model whose licence the policy does not allow (a record without a licence included)."""
    allowed = allowed_licenses()
    if allowed is None or (record.license or "").lower() in allowed:
        return
    raise ZooError(f"{record.name} is licensed {record.license or 'under no stated licence'}, which the licence policy "
                   f"does not allow ({', '.join(sorted(allowed))}; set by ZOO_ALLOWED_LICENSES or allowed_licenses "
                   "in $ZOO_HOME/config.yaml).")
