"""Request parsers: JSON without NUL characters.

PostgreSQL stores no NUL (``\\u0000``) in text or jsonb: a JSON body carrying one in any
string, key or value, reached the database and answered 500. Nothing real sends one, so
the body is refused as malformed (400 ``parse_error``) before any view sees it.
"""

from rest_framework import parsers
from rest_framework.exceptions import ParseError

NUL_REFUSED = "JSON strings cannot hold NUL (\\u0000) characters"


def contains_nul(value) -> bool:
    """Whether any string in a parsed JSON document (keys included) holds a NUL."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return False


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        if contains_nul(data):
            raise ParseError(NUL_REFUSED)
        return data
