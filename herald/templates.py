"""Notification templates: compile ``Hello {user.name|title}`` once, render it against a payload.

Syntax (parsed by hand; nothing in a template is ever evaluated or executed):

* Literal text is copied as is; ``{{`` and ``}}`` stand for literal ``{`` and ``}``.
  A lone ``}`` outside a placeholder is an error.
* ``{path|filter|filter...}`` is a placeholder. ``path`` is dotted segments, each an
  identifier ``[A-Za-z_][A-Za-z0-9_-]*`` or a list index of digits (``items.0.sku``).
  Segments are looked up with mapping ``[]`` (or list index) only, never attributes, so
  ``{user.__class__}`` is simply missing. Spaces are allowed around every token.
* Only scalars render: text, integers, floats and booleans with ``str()``; ``None`` renders
  as ``""``. A path that resolves to an object (a mapping or list, e.g. ``{details}``) is a
  :class:`TemplateError`, never ``str()``-ed: one placeholder would copy a whole payload into
  the message, and a few of them would multiply it.
* Filters, applied left to right:
  ``upper``, ``lower``, ``title``, ``trim`` (strip surrounding whitespace) -- no arguments;
  ``default('x')`` -- use ``x`` when the value is missing or renders empty (the argument may
  also be an integer); ``sub(n)`` = ``text[:n]`` and ``sub(a,b)`` = ``text[a:b]``, Python slice
  semantics, negative integers allowed.
* A quoted literal (``'...'`` or ``"..."``, backslash escapes the next character) is allowed
  only directly after ``sub(...)``: it is the suffix appended when that ``sub`` cut the text,
  i.e. when the text goes on past the end of the slice. ``{message|sub(0,15)|'...'}`` gives
  ``Hello there, ho...`` for a long message and ``Hi`` for ``Hi``. Anywhere else it is an error.
* A placeholder with a ``default`` filter never counts as missing and is left out of
  :meth:`Template.variables`; any other placeholder whose path does not resolve makes
  :meth:`Template.render` raise :class:`TemplateError`.
* ``Template.render(context, limit)`` stops with :class:`TemplateError` as soon as the output
  passes ``limit`` characters, so a small template cannot build a huge string first.

Syntax errors raise :class:`TemplateError` naming the 0-based character position.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache

from herald.errors import TemplateError

__all__ = ["Template", "compile_template", "render"]

Filter = Callable[[str | None], str | None]  # None means "the variable is missing"

_TEXT = re.compile(r"(?:[^{}]|\{\{|\}\})+")
_STRING = re.compile(r"'((?:[^'\\]|\\.)*)'|\"((?:[^\"\\]|\\.)*)\"", re.DOTALL)
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
_SUFFIX_BAR = re.compile(r"\s*\|\s*(?=['\"])")
_SEGMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*|[0-9]{1,9}(?![A-Za-z0-9_-])")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INT = re.compile(r"[+-]?[0-9]{1,18}(?![0-9])")
_INT_WHAT = "a quoted string or integer"
_USAGE = {"default": "default('text')", "sub": "sub(n) or sub(a,b) with integers"}
_MISSING = object()
#: The values a placeholder renders (besides ``None``).
_SCALARS = (str, int, float, bool)
_SIMPLE: dict[str, Callable[[str], str]] = {
    "upper": str.upper,
    "lower": str.lower,
    "title": str.title,
    "trim": str.strip,
}


def _error(message: str, pos: int) -> TemplateError:
    return TemplateError(f"{message} at position {pos}")


def _ints(args: list[str | int]) -> list[int]:
    return [arg for arg in args if isinstance(arg, int)]


def _lift(fn: Callable[[str], str]) -> Filter:
    return lambda text: None if text is None else fn(text)


def _default(value: str) -> Filter:
    return lambda text: text if text else value


def _sub(start: int | None, stop: int | None, suffix: str) -> Filter:
    def apply(text: str | None) -> str | None:
        if text is None:
            return None
        begin, end, _ = slice(start, stop).indices(len(text))
        cut = text[begin:end]
        return cut + suffix if suffix and end < len(text) else cut

    return apply


@dataclass(frozen=True, slots=True)
class _Placeholder:
    name: str  # the dotted path, as written without spaces
    path: tuple[str, ...]
    filters: tuple[Filter, ...]
    has_default: bool

    def evaluate(self, context: Mapping[str, object]) -> str | None:
        value = _lookup(context, self.path)
        text: str | None
        if value is _MISSING:
            text = None
        elif value is None:
            text = ""
        elif isinstance(value, _SCALARS):
            text = str(value)
        else:
            raise TemplateError(f"{{{self.name}}} names an object; only text and numbers render")
        for apply in self.filters:
            text = apply(text)
        return text


def _lookup(context: Mapping[str, object], path: tuple[str, ...]) -> object:
    current: object = context
    for segment in path:
        key: str | int = int(segment) if segment.isdigit() else segment
        if isinstance(current, Mapping) and segment in current:
            current = current[segment]
        elif isinstance(current, Mapping) and isinstance(key, int) and key in current:
            current = current[key]
        elif isinstance(current, (list, tuple)) and isinstance(key, int) and key < len(current):
            current = current[key]
        else:
            return _MISSING
    return current


class _Parser:
    """Recursive-descent parser over one template source; ``pos`` is the cursor."""

    def __init__(self, source: str) -> None:
        self.src = source
        self.pos = 0

    def parse(self) -> tuple[str | _Placeholder, ...]:
        parts: list[str | _Placeholder] = []
        seen: dict[str, _Placeholder] = {}  # a placeholder written N times is one object
        while self.pos < len(self.src):
            if match := _TEXT.match(self.src, self.pos):
                parts.append(match.group().replace("{{", "{").replace("}}", "}"))
                self.pos = match.end()
            elif self.src[self.pos] == "}":
                raise _error("unmatched '}' (write '}}' for a literal brace)", self.pos)
            else:
                opened = self.pos
                placeholder = self._placeholder()
                parts.append(seen.setdefault(self.src[opened : self.pos], placeholder))
        return tuple(parts)

    def _peek(self) -> str:
        """Skip whitespace; return the next character, or "" at the end."""
        while self.pos < len(self.src) and self.src[self.pos].isspace():
            self.pos += 1
        return self.src[self.pos : self.pos + 1]

    def _expect_more(self, opened: int, what: str) -> str:
        char = self._peek()
        if not char:
            raise _error(f"unclosed '{{' opened at position {opened}: expected {what}", self.pos)
        return char

    def _placeholder(self) -> _Placeholder:
        opened = self.pos
        self.pos += 1
        if self._expect_more(opened, "a variable name") == "}":
            raise _error("empty placeholder", opened)
        path = [self._segment(opened)]
        while self._peek() == ".":
            self.pos += 1
            path.append(self._segment(opened))
        filters: list[Filter] = []
        has_default = False
        while (char := self._expect_more(opened, "'|' or '}'")) == "|":
            self.pos += 1
            start = self.pos
            if self._expect_more(opened, "a filter") in "'\"":
                raise _error("a quoted suffix is only allowed directly after sub(...)", self.pos)
            name = self._match(_NAME, "a filter name")
            args = self._args(opened) if self._peek() == "(" else []
            if name in _SIMPLE and not args:
                filters.append(_lift(_SIMPLE[name]))
            elif name == "default" and len(args) == 1:
                filters.append(_default(str(args[0])))
                has_default = True
            elif name == "sub" and len(args) in (1, 2) and len(ints := _ints(args)) == len(args):
                begin, end = [None, *ints][-2:]
                filters.append(_sub(begin, end, self._suffix()))
            elif name in _SIMPLE or name in ("default", "sub"):
                usage = _USAGE.get(name, name)
                raise _error(f"bad arguments to filter {name!r}, use {usage}", start)
            else:
                raise _error(f"unknown filter {name!r}", start)
        if char != "}":
            raise _error(f"unexpected {char!r} in placeholder, expected '|' or '}}'", self.pos)
        self.pos += 1
        return _Placeholder(".".join(path), tuple(path), tuple(filters), has_default)

    def _suffix(self) -> str:
        """After ``sub(...)``: consume ``|'text'`` if it follows and return text, else ""."""
        if match := _SUFFIX_BAR.match(self.src, self.pos):
            self.pos = match.end()
            return self._string()
        return ""

    def _segment(self, opened: int) -> str:
        self._expect_more(opened, "a variable name")
        return self._match(_SEGMENT, "a variable name segment ([A-Za-z_][A-Za-z0-9_-]* or digits)")

    def _match(self, pattern: re.Pattern[str], what: str) -> str:
        match = pattern.match(self.src, self.pos)
        if match is None:
            raise _error(f"expected {what}, found {self.src[self.pos : self.pos + 1]!r}", self.pos)
        self.pos = match.end()
        return match.group()

    def _args(self, opened: int) -> list[str | int]:
        self.pos += 1  # the "("
        args: list[str | int] = []
        if self._expect_more(opened, "')'") == ")":
            self.pos += 1
            return args
        while True:
            char = self._expect_more(opened, "a filter argument")
            quoted = char in "'\""
            args.append(self._string() if quoted else int(self._match(_INT, _INT_WHAT)))
            char = self._expect_more(opened, "',' or ')'")
            self.pos += 1
            if char == ")":
                return args
            if char != ",":
                raise _error(f"unexpected character {char!r} in filter arguments", self.pos - 1)

    def _string(self) -> str:
        match = _STRING.match(self.src, self.pos)
        if match is None:
            raise _error("unterminated string literal", self.pos)
        self.pos = match.end()
        return _ESCAPE.sub(r"\1", match.group(1) if match.group(1) is not None else match.group(2))


class Template:
    """A compiled template: literal strings and placeholders, rendered by joining them."""

    __slots__ = ("_parts", "_placeholders", "_variables", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self._parts = _Parser(source).parse()
        self._placeholders = tuple(dict.fromkeys(
            p for p in self._parts if isinstance(p, _Placeholder) and not p.has_default
        ))
        self._variables = frozenset(p.name for p in self._placeholders)

    def __repr__(self) -> str:
        return f"Template({self.source!r})"

    def variables(self) -> frozenset[str]:
        """Dotted paths the template needs (those without a ``default`` filter)."""
        return self._variables

    def missing(self, context: Mapping[str, object]) -> list[str]:
        """Needed paths that do not resolve in ``context``, in order of first use."""
        names = (p.name for p in self._placeholders if _lookup(context, p.path) is _MISSING)
        return list(dict.fromkeys(names))

    def render(self, context: Mapping[str, object], limit: int | None = None) -> str:
        """Fill the template in; raise :class:`TemplateError` if a needed variable is missing,
        a placeholder names an object, or the output passes ``limit`` characters (checked
        part by part, so the oversized text is never built).
        """
        out: list[str] = []
        size = 0
        for part in self._parts:
            text = part if isinstance(part, str) else part.evaluate(context)
            if text is None:
                names = ", ".join(self.missing(context))
                raise TemplateError(f"missing template variable(s): {names}")
            size += len(text)
            if limit is not None and size > limit:
                raise TemplateError(f"renders to more than {limit} characters")
            out.append(text)
        return "".join(out)


#: Larger sources (a long per-message HTML body) are compiled each time rather than cached:
#: they are rarely reused and would pin memory and push real templates out of the cache.
CACHED_SOURCE_LIMIT = 4096


@lru_cache(maxsize=4096)
def _compile_cached(source: str) -> Template:
    return Template(source)


def compile_template(source: str) -> Template:
    """Parse ``source`` once (cached when small); raise :class:`TemplateError` on a syntax error."""
    if len(source) > CACHED_SOURCE_LIMIT:
        return Template(source)
    return _compile_cached(source)


def render(source: str, context: Mapping[str, object], limit: int | None = None) -> str:
    """Compile (cached) and render ``source`` against ``context``, within ``limit`` characters."""
    return compile_template(source).render(context, limit)
