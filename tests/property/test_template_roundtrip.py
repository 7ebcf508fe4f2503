"""Property tests of the template syntax: canonical printing round-trips every template,
hand-formatted texts round-trip byte for byte, and arbitrary text either parses or fails
with a TemplateError inside the text."""

import re
import string

from hypothesis import given, settings
from hypothesis import strategies as st

from raftcore.template import (
    Template,
    TemplateError,
    Value,
    parse,
    parse_preserving,
    quote,
    render,
)

FAST = settings(max_examples=150, deadline=None)

# Names in any case; a few fixed ones so that repeats (several DISK, NIC) are common.
KEYS = st.one_of(
    st.sampled_from(["DISK", "nic", "Context", "CPU"]),
    st.text(alphabet=string.ascii_letters + string.digits + "_", min_size=1, max_size=8),
)
# Values stress the syntax: quotes, backslashes, newlines, commas, brackets, '#', '='.
TRICKY = st.sampled_from(list('\\"\n\r,[]#= \tx') + ["\\\\", '\\"', "é", "\x00"])
VALUES = st.lists(st.one_of(TRICKY, st.characters(exclude_categories=["Cs"])), max_size=20).map(
    "".join
)
VECTORS = st.lists(
    st.tuples(KEYS, VALUES), min_size=1, max_size=4, unique_by=lambda kv: kv[0].upper()
)
TEMPLATES = st.lists(st.tuples(KEYS, st.one_of(VALUES, VECTORS)), max_size=8).map(Template)


@FAST
@given(TEMPLATES)
def test_render_then_parse_is_identity(t: Template) -> None:
    text = render(t)
    assert parse(text) == t
    assert render(parse(text)) == text  # printing is stable
    assert parse_preserving(text).render() == text


@FAST
@given(VALUES)
def test_quote_round_trips(value: str) -> None:
    assert parse("K = " + quote(value)).scalar("K") == value


@FAST
@given(TEMPLATES)
def test_dict_round_trip(t: Template) -> None:
    d = t.to_dict()
    back = Template.from_dict(d)
    assert back.to_dict() == d
    # a dict keeps names grouped by first appearance; otherwise nothing is lost
    assert back == Template((k, v) for key in t.keys() for k, v in t.items() if k == key)


# --- hand-formatted texts ---------------------------------------------------------------

_UNQUOTABLE = re.compile(r'[^\n#,\[\]"=]*')
_BLANKS = " \t\r\f\v"

TOP_TRIVIA = st.lists(
    st.sampled_from(["\n", "  \n", "# comment\n", '\t# x, [y] = "z"\n', "\r\n", "#\n"]),
    max_size=3,
).map("".join)
INDENT = st.sampled_from(["", " ", "\t", "    "])
SEP = st.sampled_from(["=", " = ", "  =\t", "= ", " ="])
LINE_END = st.sampled_from(["\n", " \n", "  # trailing, comment [x]\n", "\t\r\n", "#c\n"])
VEC_TRIVIA = st.sampled_from(["", " ", "\n", "\n  ", " # c, ]\n  ", "\t", "\r\n"])


def spelled(draw: st.DrawFn, key: str) -> str:
    """`key` in a random mix of cases (names are case-insensitive)."""
    flips = draw(st.lists(st.booleans(), min_size=len(key), max_size=len(key)))
    return "".join(c.swapcase() if f else c for c, f in zip(key, flips, strict=True))


def written(draw: st.DrawFn, value: str) -> str:
    """`value` as some user might write it: bare when possible, or quoted either with
    minimal escapes or with every backslash doubled."""
    styles = ["minimal", "doubled"]
    bare = _UNQUOTABLE.fullmatch(value) and value == value.strip(_BLANKS)
    if bare:
        styles.append("bare")
    style = draw(st.sampled_from(styles))
    if style == "bare":
        return value
    if style == "doubled":
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return quote(value)


def written_vector(draw: st.DrawFn, pairs: list[tuple[str, str]]) -> str:
    out = "["
    for i, (k, v) in enumerate(pairs):
        out += draw(VEC_TRIVIA) + ("," + draw(VEC_TRIVIA) if i else "")
        out += spelled(draw, k) + draw(SEP) + written(draw, v)
    return out + draw(VEC_TRIVIA) + "]"


@st.composite
def formatted(draw: st.DrawFn) -> tuple[str, Template]:
    t = draw(TEMPLATES)
    text = ""
    for key, value in t.items():
        text += draw(TOP_TRIVIA) + draw(INDENT) + spelled(draw, key) + draw(SEP)
        text += written(draw, value) if isinstance(value, str) else written_vector(draw, value)
        text += draw(LINE_END)
    if text and draw(st.booleans()):
        text = text.rstrip("\n")  # no newline at the end of the file
    return text + draw(TOP_TRIVIA), t


@FAST
@given(formatted())
def test_formatted_text_round_trips_exactly(case: tuple[str, Template]) -> None:
    text, expected = case
    doc = parse_preserving(text)
    assert doc.render() == text
    assert doc.template() == expected
    assert parse(render(expected)) == expected


# --- arbitrary text ---------------------------------------------------------------------

NOISE = st.text(alphabet='AB_= "\\\n#,[]x\t-', max_size=40)


@settings(max_examples=400, deadline=None)
@given(NOISE)
def test_arbitrary_text_parses_or_fails_cleanly(text: str) -> None:
    try:
        doc = parse_preserving(text)
    except TemplateError as e:
        assert e.line is not None and e.column is not None
        lines = text.split("\n")
        assert 1 <= e.line <= len(lines)
        assert 1 <= e.column <= len(lines[e.line - 1]) + 1
        return
    assert doc.render() == text
    t = doc.template()
    assert parse(render(t)) == t


@FAST
@given(TEMPLATES, st.data())
def test_mutations_keep_templates_printable(t: Template, data: st.DataObject) -> None:
    key = data.draw(KEYS)
    value: Value = data.draw(st.one_of(VALUES, VECTORS))
    op = data.draw(st.sampled_from(["set", "append", "remove"]))
    if op == "set":
        t.set(key, value)
        assert t.get_all(key) == [value if isinstance(value, str) else _upper(value)]
    elif op == "append":
        t.append(key, value)
    else:
        t.remove(key)
        assert key not in t
    assert parse(render(t)) == t


def _upper(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(k.upper(), v) for k, v in pairs]
