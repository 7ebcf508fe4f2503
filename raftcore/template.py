"""OpenNebula template text: parse, print, and a concrete syntax tree for exact round trips.

The syntax, as accepted here::

    # a comment runs to the end of the line (outside quotes), anywhere trivia may go
    NAME   = value           unquoted: ends at end of line, '#', ',' or ']'; trimmed
    NAME   = "a \\"quoted\\" value"
                             quoted: may span lines; \\" and \\\\ are escapes, any other
                             backslash is kept literally (so "s/\\s+//" needs no doubling)
    NAME   =                 an empty value
    DISK   = [ IMAGE_ID = 3,
               SIZE = "1024" ]   a vector: NAME = value pairs separated by ',', with
                             newlines and comments allowed between them; no nesting

Attribute names are ASCII letters, digits and '_' (OpenNebula's lexer accepts exactly
these: no '-', no '.'). Names are case-insensitive in OpenNebula, which upper-cases them
internally; the semantic `Template` holds them in upper case, while the syntax tree keeps
the spelling as written. A name may repeat at the top level (several DISK or NIC) but not
inside one vector: OpenNebula stores a vector as a map and would silently keep only one of
the two, so a repeat there is refused.

Deliberate differences from OpenNebula's own parser, each on the side of clarity:

* an unquoted value may contain inner blanks (``NAME = my vm`` is "my vm"); OpenNebula
  stops an unquoted value at the first blank. It may not contain '"', '=' or '[': quote
  such values.
* ``\\\\`` is an escape for one backslash (OpenNebula leaves it ambiguous).
* an empty vector, a trailing ',' before ']', a nested vector and text after a value are
  errors with a line and a column rather than generic syntax errors.

Two layers:

* `parse_preserving(text) -> Document`: a concrete syntax tree keeping every byte of
  trivia (blanks, newlines, comments, commas, quoting style); `render_preserving(doc)`
  gives back the exact text. `Document.template()` derives the semantic view.
* `parse(text) -> Template`, `render(template) -> str`: the semantic view, an ordered
  list of (NAME, value) where a value is a str or, for a vector, an ordered list of
  (NAME, str); `render` prints it canonically and ``parse(render(t)) == t`` always.

Errors are `TemplateError` (a ValueError) with a 1-based line and column; the column
counts characters (code points), a tab counting as one. Texts over 1 MiB (UTF-8) are
refused before parsing. Everything here is pure: no I/O, no clock, no global state.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

MAX_TEMPLATE_BYTES = 1 << 20

VectorValue = list[tuple[str, str]]
Value = str | VectorValue
# What callers may hand in for a vector: pairs or a mapping; normalised to VectorValue.
VectorLike = Mapping[str, str] | Iterable[tuple[str, str]]
ValueLike = str | VectorLike
# The API's structured form: repeated names become lists, vectors become dicts.
DictValue = str | dict[str, str] | list[str | dict[str, str]]

# --- errors -----------------------------------------------------------------------------


class TemplateError(ValueError):
    """Bad template text or data. `line` and `column` are 1-based, or None when the
    problem has no position (size limit, structured input)."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None):
        self.message = message
        self.line = line
        self.column = column
        where = f"line {line}, column {column}: " if line is not None else ""
        super().__init__(where + message)


# --- lexical pieces ---------------------------------------------------------------------

_BLANK_CHARS = " \t\r\f\v"  # '\r' is a blank so CRLF files parse (and round-trip) as-is
_KEY_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")

_BLANKS = re.compile(r"[ \t\r\f\v]*")
# Blanks, newlines and comments; the two alternatives start differently, so no blow-up.
_TRIVIA = re.compile(r"(?:[ \t\r\f\v\n]+|#[^\n]*)*")
# A name is scanned up to the first character that can end it, then checked, so that
# "MY-KEY" reports the '-' instead of a confusing "missing '='".
_KEY_RUN = re.compile(r'[^ \t\r\f\v\n=#,\[\]"]*')
_UNQUOTED = re.compile(r'[^\n#,\[\]"=]*')
# The unrolled form of "(char | \\ any)*" so that a long or unterminated string stays
# linear; a backslash swallows the next character whatever it is.
_QUOTED = re.compile(r'"([^"\\]*(?:\\.[^"\\]*)*)"', re.DOTALL)
_UNESCAPE = re.compile(r'\\([\\"])')
# When printing, a backslash is doubled only where the parser would otherwise read an
# escape (before '"', before '\\', or before the closing quote); a '"' is always escaped.
_ESCAPE = re.compile(r'\\(?=[\\"]|\Z)|"')


def _escape_match(m: re.Match[str]) -> str:
    return "\\\\" if m.group() == "\\" else '\\"'


def quote(value: str) -> str:
    """`value` as a quoted template string that parses back to exactly `value`."""
    return '"' + _ESCAPE.sub(_escape_match, value) + '"'


def _is_key(name: str) -> bool:
    return bool(name) and all(c in _KEY_CHARS for c in name)


# --- the concrete syntax tree -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScalarNode:
    """A value as written (`raw`, quotes and escapes included) and as meant (`value`)."""

    raw: str
    value: str

    def render(self) -> str:
        return self.raw


@dataclass(frozen=True, slots=True)
class AttrNode:
    """``key sep value``: `key` as spelled, `sep` the '=' with the blanks around it."""

    key: str
    sep: str
    value: ScalarNode | VectorNode

    def render(self) -> str:
        return self.key + self.sep + self.value.render()


@dataclass(frozen=True, slots=True)
class VectorNode:
    """'[' ... ']': verbatim text (brackets, commas, trivia) interleaved with pairs; the
    pairs' values are always scalars."""

    parts: tuple[str | AttrNode, ...]

    @property
    def pairs(self) -> list[AttrNode]:
        return [p for p in self.parts if isinstance(p, AttrNode)]

    def render(self) -> str:
        return "".join(p if isinstance(p, str) else p.render() for p in self.parts)


@dataclass(frozen=True, slots=True)
class Document:
    """A whole template text: trivia strings interleaved with attributes.

    ``render()`` returns the source text byte for byte; ``template()`` the meaning."""

    parts: tuple[str | AttrNode, ...]

    @property
    def attributes(self) -> list[AttrNode]:
        return [p for p in self.parts if isinstance(p, AttrNode)]

    def render(self) -> str:
        return "".join(p if isinstance(p, str) else p.render() for p in self.parts)

    def template(self) -> Template:
        return Template._trusted([_semantic(a) for a in self.attributes])


def _semantic(attr: AttrNode) -> tuple[str, Value]:
    node = attr.value
    if isinstance(node, ScalarNode):
        return attr.key.upper(), node.value
    return attr.key.upper(), [(p.key.upper(), p.value.value) for p in node.pairs]  # type: ignore[union-attr]


def _push(parts: list[str | AttrNode], text: str) -> None:
    """Append trivia, merging with trivia just before it, so the tree has no empty or
    adjacent strings."""
    if not text:
        return
    if parts and isinstance(parts[-1], str):
        parts[-1] += text
    else:
        parts.append(text)


# --- the parser ---------------------------------------------------------------------------


def _describe(c: str) -> str:
    if c == "":
        return "end of text"
    if c == "\n":
        return "end of line"
    return repr(c)


class _Parser:
    """Recursive descent over `text`; `pos` is the index of the next unread character."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    # - helpers -

    def error(self, message: str, pos: int) -> TemplateError:
        line = self.text.count("\n", 0, pos) + 1
        column = pos - (self.text.rfind("\n", 0, pos) + 1) + 1
        return TemplateError(message, line, column)

    def take(self, pattern: re.Pattern[str]) -> str:
        m = pattern.match(self.text, self.pos)
        assert m is not None  # every pattern passed here can match the empty string
        self.pos = m.end()
        return m.group()

    def peek(self) -> str:
        return self.text[self.pos : self.pos + 1]

    # - top level -

    def document(self) -> Document:
        parts: list[str | AttrNode] = []
        if self.text.startswith("\ufeff"):  # editors on some systems write a BOM
            self.pos = 1
            _push(parts, "\ufeff")
        while True:
            _push(parts, self.take(_TRIVIA))
            if self.pos >= len(self.text):
                return Document(tuple(parts))
            attr = self.attribute(vector=None)
            self.check_line_end(attr.key)
            parts.append(attr)

    def check_line_end(self, key: str) -> None:
        """After a top-level value only blanks and a comment may follow on its line."""
        m = _BLANKS.match(self.text, self.pos)
        assert m is not None
        c = self.text[m.end() : m.end() + 1]
        if c not in ("", "\n", "#"):
            hint = " (quote values containing it)" if c in '=,[]"' else ""
            raise self.error(f"unexpected {c!r} after the value of {key}{hint}", m.end())

    # - attributes -

    def attribute(self, vector: tuple[str, int] | None) -> AttrNode:
        """``NAME = value``; `vector` is (name, position of '[') inside a vector."""
        start = self.pos
        key = self.take(_KEY_RUN)
        self.check_key(key, start)
        sep_start = self.pos
        self.take(_BLANKS)
        c = self.peek()
        if c != "=":
            if c == "" and vector is not None:
                raise self.unterminated(*vector)
            raise self.error(
                f"missing '=' after attribute name {key}, found {_describe(c)}", self.pos
            )
        self.pos += 1
        self.take(_BLANKS)
        sep = self.text[sep_start : self.pos]
        return AttrNode(key, sep, self.value(key, vector))

    def check_key(self, key: str, start: int) -> None:
        if not key:
            c = self.peek()
            if c == "=":
                raise self.error("missing attribute name before '='", start)
            raise self.error(f"unexpected {_describe(c)}, expected an attribute name", start)
        for i, ch in enumerate(key):
            if ch not in _KEY_CHARS:
                raise self.error(
                    f"invalid character {ch!r} in attribute name {key!r}"
                    " (letters, digits and '_' only)",
                    start + i,
                )

    # - values -

    def value(self, key: str, vector: tuple[str, int] | None) -> ScalarNode | VectorNode:
        c = self.peek()
        if c == '"':
            return self.quoted()
        if c == "[":
            if vector is not None:
                raise self.error(
                    f"nested vectors are not allowed (in vector {vector[0]})", self.pos
                )
            return self.vector(key)
        return self.unquoted()

    def quoted(self) -> ScalarNode:
        m = _QUOTED.match(self.text, self.pos)
        if m is None:
            raise self.error("unterminated quoted value: the closing '\"' is missing", self.pos)
        self.pos = m.end()
        return ScalarNode(m.group(), _UNESCAPE.sub(r"\1", m.group(1)))

    def unquoted(self) -> ScalarNode:
        start = self.pos
        raw = self.take(_UNQUOTED).rstrip(_BLANK_CHARS)
        self.pos = start + len(raw)  # trailing blanks are trivia, not value
        return ScalarNode(raw, raw)

    # - vectors -

    def unterminated(self, key: str, open_pos: int) -> TemplateError:
        return self.error(f"unterminated vector {key}: '[' is never closed", open_pos)

    def vector(self, key: str) -> VectorNode:
        open_pos = self.pos
        self.pos += 1
        parts: list[str | AttrNode] = ["["]
        seen: set[str] = set()
        comma = -1  # position of the last ',' (for the trailing-comma error)
        while True:
            _push(parts, self.take(_TRIVIA))
            c = self.peek()
            if c == "":
                raise self.unterminated(key, open_pos)
            if c == "]" and not seen:
                raise self.error(
                    f"empty vector {key}: a vector needs at least one attribute", open_pos
                )
            if c == "]" and comma >= 0:
                raise self.error(f"trailing ',' before ']' in vector {key}", comma)
            parts.append(self.pair(key, open_pos, seen))
            _push(parts, self.take(_TRIVIA))
            c = self.peek()
            if c == "]":
                self.pos += 1
                _push(parts, "]")
                return VectorNode(tuple(parts))
            if c != ",":
                if c == "":
                    raise self.unterminated(key, open_pos)
                raise self.error(
                    f"expected ',' or ']' in vector {key}, found {_describe(c)}", self.pos
                )
            comma = self.pos
            self.pos += 1
            _push(parts, ",")

    def pair(self, key: str, open_pos: int, seen: set[str]) -> AttrNode:
        start = self.pos
        node = self.attribute(vector=(key, open_pos))
        name = node.key.upper()
        if name in seen:
            raise self.error(f"duplicate attribute {name} in vector {key}", start)
        seen.add(name)
        return node


# --- text entry points --------------------------------------------------------------------


def check_size(text: str | bytes) -> None:
    """Refuse texts over MAX_TEMPLATE_BYTES (UTF-8), before spending time parsing them."""
    size = len(text) if isinstance(text, bytes) else len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_TEMPLATE_BYTES:
        raise TemplateError(f"template of {size} bytes exceeds the 1 MiB limit")


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        head = data[: e.start]
        line_start = head.rfind(b"\n") + 1
        column = len(head[line_start:].decode("utf-8", "replace")) + 1
        raise TemplateError("invalid UTF-8", head.count(b"\n") + 1, column) from None


def parse_preserving(text: str | bytes) -> Document:
    """The concrete syntax tree of `text` (bytes are decoded as UTF-8)."""
    check_size(text)
    if isinstance(text, bytes):
        text = _decode(text)
    return _Parser(text).document()


def render_preserving(doc: Document) -> str:
    """The exact text `doc` was parsed from."""
    return doc.render()


def parse(text: str | bytes) -> Template:
    """The semantic template of `text`; raises TemplateError with line and column."""
    return parse_preserving(text).template()


def render(template: Template) -> str:
    """Canonical text: one attribute per line, every value quoted, vectors one pair per
    line indented by two spaces. ``parse(render(t)) == t`` for every template."""
    return "".join(_render_attr(k, v) for k, v in template._attrs)


def _render_attr(key: str, value: Value) -> str:
    if isinstance(value, str):
        return f"{key} = {quote(value)}\n"
    pairs = ",\n".join(f"  {k} = {quote(v)}" for k, v in value)
    return f"{key} = [\n{pairs} ]\n"


# --- the semantic template ----------------------------------------------------------------


def _norm_key(key: object, where: str = "") -> str:
    if not isinstance(key, str) or not _is_key(key):
        raise TemplateError(f"{where}invalid attribute name {key!r} (letters, digits and '_' only)")
    return key.upper()


def _norm_vector(value: VectorLike, key: str) -> VectorValue:
    items = value.items() if isinstance(value, Mapping) else value
    pairs: VectorValue = []
    seen: set[str] = set()
    for item in items:
        if not (isinstance(item, tuple) and len(item) == 2):
            raise TemplateError(f"vector {key}: expected (name, value) pairs, got {item!r}")
        name = _norm_key(item[0], f"vector {key}: ")
        if not isinstance(item[1], str):
            raise TemplateError(f"vector {key}: value of {name} must be a string")
        if name in seen:
            raise TemplateError(f"duplicate attribute {name} in vector {key}")
        seen.add(name)
        pairs.append((name, item[1]))
    if not pairs:
        raise TemplateError(f"empty vector {key}: a vector needs at least one attribute")
    return pairs


def _norm_value(value: object, key: str) -> Value:
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping | list | tuple):
        return _norm_vector(value, key)  # type: ignore[arg-type]
    raise TemplateError(f"value of {key} must be a string or a vector, got {type(value).__name__}")


def _copy(value: Value) -> Value:
    return value if isinstance(value, str) else list(value)


class Template:
    """An ordered list of (NAME, value): value is a str, or a vector, an ordered list of
    (NAME, str) with distinct names. Names are upper case; every mutator validates, so a
    Template always renders to text that parses back to an equal Template."""

    __slots__ = ("_attrs",)

    def __init__(self, attrs: Iterable[tuple[str, ValueLike]] = ()) -> None:
        self._attrs: list[tuple[str, Value]] = []
        for key, value in attrs:
            self.append(key, value)

    @classmethod
    def _trusted(cls, attrs: list[tuple[str, Value]]) -> Template:
        """Skip validation: the parser has already checked names and vectors."""
        t = cls()
        t._attrs = attrs
        return t

    # - reading -

    def __len__(self) -> int:
        return len(self._attrs)

    def __iter__(self) -> Iterator[tuple[str, Value]]:
        return iter(self.items())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and any(k == key.upper() for k, _ in self._attrs)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Template):
            return NotImplemented
        return self._attrs == other._attrs

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Template({self._attrs!r})"

    def items(self) -> list[tuple[str, Value]]:
        """A copy of the (NAME, value) list, in order."""
        return [(k, _copy(v)) for k, v in self._attrs]

    def keys(self) -> list[str]:
        """Distinct names in order of first appearance."""
        return list(dict.fromkeys(k for k, _ in self._attrs))

    def get(self, key: str, default: Value | None = None) -> Value | None:
        """The first value of `key` (case-insensitive), or `default`."""
        key = key.upper()
        for k, v in self._attrs:
            if k == key:
                return _copy(v)
        return default

    def get_all(self, key: str) -> list[Value]:
        key = key.upper()
        return [_copy(v) for k, v in self._attrs if k == key]

    def scalar(self, key: str, default: str | None = None) -> str | None:
        """The first value of `key` if it is a plain string; TemplateError if a vector."""
        value = self.get(key)
        if value is None:
            return default
        if not isinstance(value, str):
            raise TemplateError(f"{key.upper()} is a vector, expected a single value")
        return value

    def vectors(self, key: str) -> list[dict[str, str]]:
        """Every vector value of `key` as a dict (names are distinct within a vector),
        e.g. ``t.vectors("DISK")[0]["IMAGE_ID"]``; plain values of `key` are skipped."""
        return [dict(v) for v in self.get_all(key) if not isinstance(v, str)]

    # - writing -

    def append(self, key: str, value: ValueLike) -> None:
        """Add an attribute at the end (repeats allowed: several DISK, NIC...)."""
        key = _norm_key(key)
        self._attrs.append((key, _norm_value(value, key)))

    def set(self, key: str, value: ValueLike) -> None:
        """Give `key` exactly one value: the first occurrence is replaced in place and any
        others removed; appended if absent."""
        key = _norm_key(key)
        new = (key, _norm_value(value, key))
        at = next((i for i, (k, _) in enumerate(self._attrs) if k == key), None)
        if at is None:
            self._attrs.append(new)
            return
        self._attrs = [a for i, a in enumerate(self._attrs) if a[0] != key or i == at]
        self._attrs[at] = new

    def remove(self, key: str) -> int:
        """Remove every occurrence of `key`; returns how many there were."""
        key = key.upper()
        before = len(self._attrs)
        self._attrs = [a for a in self._attrs if a[0] != key]
        return before - len(self._attrs)

    def copy(self) -> Template:
        return Template._trusted(self.items())

    # - structured form -

    def to_dict(self) -> dict[str, DictValue]:
        """The API's structured form: {NAME: str | dict | list}. A repeated name maps to
        a list in order; vectors become dicts. The relative order of *different* names
        beyond their first appearance is not kept (see `from_dict`)."""
        groups: dict[str, list[str | dict[str, str]]] = {}
        for key, value in self._attrs:
            groups.setdefault(key, []).append(value if isinstance(value, str) else dict(value))
        return {k: v[0] if len(v) == 1 else v for k, v in groups.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Template:
        """Inverse of `to_dict`: attributes grouped by name in the mapping's order. Numbers
        (not booleans) are accepted for values and printed with str(). Names are
        case-insensitive, so {"cpu": .., "CPU": ..} is refused as a duplicate."""
        if not isinstance(data, Mapping):
            raise TemplateError(f"a template must be a mapping, got {type(data).__name__}")
        t = cls()
        seen: set[str] = set()
        for raw_key, raw in data.items():
            key = _norm_key(raw_key)
            if key in seen:
                raise TemplateError(f"duplicate attribute {key} (names are case-insensitive)")
            seen.add(key)
            items = raw if isinstance(raw, list | tuple) else [raw]
            if not items:
                raise TemplateError(f"{key}: empty list")
            for i, item in enumerate(items):
                where = f"{key}[{i}]" if isinstance(raw, list | tuple) else key
                t._attrs.append((key, _value_from_dict(item, where)))
        return t


def _scalar_from_dict(value: object, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise TemplateError(f"{where}: expected a string or a number, got {type(value).__name__}")


def _value_from_dict(value: object, where: str) -> Value:
    if isinstance(value, Mapping):
        pairs = [(k, _scalar_from_dict(v, f"{where}.{k}")) for k, v in value.items()]
        return _norm_vector(pairs, where)
    return _scalar_from_dict(value, where)
