"""The one exception users see: bad input, named by file and line or image."""


class TiledupError(Exception):
    """A problem with the user's input or configuration; the message says where."""


def listing(header: str, items: list[str], show: int = 20) -> str:
    """A message naming many bad things at once: a header, the first `show` items one per line,
    then how many more (so one round of fixes is enough, and a huge list stays readable)."""
    more = f"\n... and {len(items) - show} more" if len(items) > show else ""
    return "\n".join([header, *items[:show]]) + more
