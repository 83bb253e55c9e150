"""Text for a terminal: plain aligned tables (the CLI, benchmark results), names shown safely."""

import re

CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def visible(text, keep=""):
    """`text` as a terminal should show it: control characters (a newline in a file name, an escape sequence that
    would drive the terminal) written as escapes, as `ls -b` does; those in `keep` stay (an answer's newlines)."""
    return CONTROL.sub(lambda m: m.group() if m.group() in keep else m.group().encode("unicode_escape").decode(),
                       str(text))


def table(rows, headers):
    """A plain, aligned text table."""
    rows = [[visible(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)
