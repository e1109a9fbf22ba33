"""The one exception users see: bad input, named by file and line or image."""


class TiledupError(Exception):
    """A problem with the user's input or configuration; the message says where."""
