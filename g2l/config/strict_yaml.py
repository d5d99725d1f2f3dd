"""YAML that people hand in (config files, command-line override values), read strictly.

``loads`` parses with PyYAML's SafeLoader (no Python objects), YAML 1.2-style scalars (only
true/false are booleans, "1e-4" is a float), and bounds on what a small text may stand for: a
600-byte file of anchors and aliases (the "billion laughs") can otherwise be a billion values, and
printing one in a message takes minutes and gigabytes. The bounds are checked on the composed
document, before any value is built. A malformed text is a ``YAMLError``, a text beyond a bound a
``YAMLLimitError``; both messages are one line, to follow the name of the file or override.
"""

from __future__ import annotations

import functools
import re

from g2l.errors import G2LError

MAX_VALUES = 10_000  # values of one document, every alias counted as the values it stands for
MAX_DEPTH = 32  # collections nested in one another (a config nests three: section, key, list)
MAX_INTEGER_CHARS = 300  # an integer written with more characters (no config value needs 20)


class YAMLError(G2LError):
    """PyYAML's error, re-raised so that callers need not import PyYAML to catch it."""


class YAMLLimitError(YAMLError):
    """Well-formed YAML beyond the bounds (values once expanded, depth, integer length)."""


@functools.cache
def _loader():
    """A SafeLoader with YAML 1.2-style scalars: only true/false are booleans ("off" stays a
    string), and "1e-4" is a float. Built on first use: reading a checkpoint's config needs no
    YAML, and importing PyYAML is a tenth of a second of a cold start."""
    import yaml

    class _Loader(yaml.SafeLoader):
        """Also bounds what a small text may stand for: collections nested at most MAX_DEPTH
        deep, at most MAX_VALUES values once every alias is expanded (counted on the composed
        nodes, before anything is built), integers of at most MAX_INTEGER_CHARS characters."""

        depth = 0

        def compose_node(self, parent, index):
            self.depth += 1
            try:
                if self.depth > MAX_DEPTH:
                    mark = self.peek_event().start_mark
                    raise YAMLLimitError(f"nests values more than {MAX_DEPTH} deep{_where(mark)}; a config "
                                         "nests three (section, key, list)")
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

        def construct_document(self, node):
            _check_expanded_size(node)
            return super().construct_document(node)

        def construct_yaml_int(self, node):
            if len(node.value) > MAX_INTEGER_CHARS:
                raise YAMLLimitError(f"holds an integer of {len(node.value):,} characters{_where(node.start_mark)}; "
                                     "no config value needs more than a few digits")
            return super().construct_yaml_int(node)

    _Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)

    _Loader.yaml_implicit_resolvers = {
        key: [(tag, regexp) for tag, regexp in resolvers if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:float")]
        for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    _Loader.add_implicit_resolver(
        "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
    )
    _Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?|\.[0-9_]+(?:[eE][-+]?[0-9]+)?"
                   r"|[0-9][0-9_]*[eE][-+]?[0-9]+|\.(?:inf|Inf|INF)|[-+]\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
        list("-+0123456789."),
    )
    return _Loader


def _where(mark) -> str:
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""


def _check_expanded_size(root) -> None:
    """Count the values the composed document ``root`` stands for, each alias as often as it is
    used (a node's count is kept, so the count costs one visit per node however large it is);
    more than MAX_VALUES, or a collection that contains itself, is a ``YAMLLimitError``."""
    counts: dict[int, int] = {}
    on_path: set[int] = set()
    stack = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in counts:
            continue
        children = [] if isinstance(node.value, str) else [
            item for pair in node.value for item in (pair if isinstance(pair, tuple) else (pair,))]
        if children_done:
            on_path.discard(id(node))
            counts[id(node)] = 1 + sum(counts[id(child)] for child in children)
            if counts[id(node)] > MAX_VALUES:
                raise YAMLLimitError(
                    f"stands for more than {MAX_VALUES:,} values once its anchors and aliases (&name, *name) are "
                    "expanded; a config holds about a hundred, write the values out")
            continue
        if id(node) in on_path:
            raise YAMLLimitError(f"holds a value that contains itself through an alias{_where(node.start_mark)}; "
                                 "write the values out")
        on_path.add(id(node))
        stack.append((node, True))
        for child in children:
            if id(child) in on_path:
                raise YAMLLimitError(f"holds a value that contains itself through an alias"
                                     f"{_where(child.start_mark)}; write the values out")
            if id(child) not in counts:
                stack.append((child, False))


def loads(text: str):
    """Parse YAML text; a malformed text raises ``YAMLError``, whose message is one line: where
    (``at line 4, column 6``) and what PyYAML found there (its own message spans eight). A text
    beyond the loader's bounds raises ``YAMLLimitError``."""
    import yaml

    try:
        return yaml.load(text, Loader=_loader())  # noqa: S506 - a SafeLoader subclass
    except RecursionError:  # a guard: the depth bound above refuses long before Python's recursion limit
        raise YAMLLimitError(f"nests values more than {MAX_DEPTH} deep; a config nests three") from None
    except yaml.MarkedYAMLError as error:
        mark, context = error.problem_mark, error.context_mark
        where = f"at line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = error.problem or "a syntax error"
        if error.context:  # e.g. "while parsing a flow sequence", and where that began
            began = f" that begins at line {context.line + 1}, column {context.column + 1}" if context else ""
            what += f" ({error.context}{began})"
        raise YAMLError(where + " ".join(what.split())) from None
    except yaml.YAMLError as error:
        raise YAMLError(" ".join(str(error).split())) from None
