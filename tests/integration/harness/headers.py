"""Header lookups shared by the harness's request and response types: case-insensitive, over a list of
(name, value) pairs in wire order."""


def first(headers, name):
    """The first value of header `name` (any case), or None."""
    name = name.lower()
    for n, v in headers:
        if n.lower() == name:
            return v
    return None


def every(headers, name):
    """Every value of header `name` (any case), in wire order."""
    name = name.lower()
    return [v for n, v in headers if n.lower() == name]
