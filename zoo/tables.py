"""Text for a terminal: plain aligned tables (the CLI, benchmark results), names shown safely."""

import itertools
import math
import re
import time

CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def visible(text, keep=""):
    """`text` as a terminal should show it: control characters (a newline in a file name, an escape sequence that
    would drive the terminal) written as escapes, as `ls -b` does; those in `keep` stay (an answer's newlines)."""
    return CONTROL.sub(lambda m: m.group() if m.group() in keep else m.group().encode("unicode_escape").decode(),
                       str(text))


PAGE_ROWS = 1000  # rows that set a streamed table's column widths
PAGE_SECONDS = 1.0  # in a terminal, how long the first page waits for more rows before it is shown


def table(rows, headers):
    """A plain, aligned text table."""
    rows = [[visible(c) for c in row] for row in rows]
    return "\n".join(aligned(rows, headers, widths(rows, headers)))


def table_lines(rows, headers, page=PAGE_ROWS, wait=math.inf):
    """The lines of table(rows, headers) as the rows come, for results that stream: the first page of rows sets the
    column widths (a longer cell later widens only its own line), so rows are printed as they come and never all
    held. The first page is `page` rows, or fewer: it ends at the first row that comes `wait` seconds after the
    first row did (a slow model's first batch shows when its second comes, not after the last). Nothing, not even
    the header, when there are no rows."""
    rows = ([visible(c) for c in row] for row in rows)
    first, began = [], None
    for row in rows:
        first.append(row)
        began = time.monotonic() if began is None else began
        if len(first) == page or time.monotonic() - began >= wait:
            break
    if first:
        yield from aligned(itertools.chain(first, rows), headers, widths(first, headers))


def widths(rows, headers):
    return [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]


def aligned(rows, headers, widths):
    for row in itertools.chain([headers], rows):
        yield "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()
