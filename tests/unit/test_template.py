"""OpenNebula template syntax: the corpus round-trips byte for byte, errors carry exact
positions, the Template helpers and the structured (dict) form behave, the 1 MiB limit."""

import time
from pathlib import Path

import pytest

from raftcore.template import (
    MAX_TEMPLATE_BYTES,
    AttrNode,
    Document,
    ScalarNode,
    Template,
    TemplateError,
    VectorNode,
    check_size,
    parse,
    parse_preserving,
    quote,
    render,
    render_preserving,
)

CORPUS_DIR = Path(__file__).parent / "data" / "templates"
CORPUS = sorted(CORPUS_DIR.glob("*.tmpl"))


def corpus(name: str) -> Template:
    return parse((CORPUS_DIR / name).read_text(encoding="utf-8"))


def grouped(t: Template) -> Template:
    """`t` with attributes grouped by name in first-appearance order (what a dict keeps)."""
    return Template((k, v) for key in t.keys() for k, v in t.items() if k == key)


# --- the corpus -------------------------------------------------------------------------


def test_corpus_is_big_enough() -> None:
    assert len(CORPUS) >= 12


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_corpus_round_trips_byte_for_byte(path: Path) -> None:
    data = path.read_bytes()
    doc = parse_preserving(data)
    assert render_preserving(doc).encode("utf-8") == data
    assert parse_preserving(data.decode("utf-8")) == doc


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_corpus_canonical_round_trip(path: Path) -> None:
    t = parse(path.read_text(encoding="utf-8"))
    assert len(t) > 0
    text = render(t)
    assert parse(text) == t
    assert render(parse(text)) == text


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_corpus_dict_round_trip(path: Path) -> None:
    t = parse(path.read_text(encoding="utf-8"))
    d = t.to_dict()
    assert Template.from_dict(d) == grouped(t)
    assert Template.from_dict(d).to_dict() == d


def test_corpus_several_disks_and_nics() -> None:
    t = corpus("vm_multi_disk_nic.tmpl")
    disks = t.vectors("DISK")
    assert [d.get("SIZE") for d in disks] == [None, "102400", "20480"]
    assert disks[0] == {"IMAGE_ID": "42", "DEV_PREFIX": "vd", "CACHE": "none"}
    assert disks[1]["TARGET"] == "vdb"  # the comment after SIZE is not part of the value
    assert [n["NETWORK_ID"] for n in t.vectors("NIC")] == ["0", "7"]
    assert t.vectors("NIC")[1]["SECURITY_GROUPS"] == "100,101"
    assert t.scalar("MEMORY") == "8192"
    assert t.scalar("CPU") == "2.5"


def test_corpus_context_script() -> None:
    ctx = corpus("vm_context_scripts.tmpl").vectors("CONTEXT")[0]
    script = ctx["START_SCRIPT"]
    assert script.startswith("#!/bin/bash\nset -euo pipefail\n")
    assert 'echo "booting $(hostname)" >> /var/log/one-context.log' in script
    assert r"sed -i -e 's/^#\?PasswordAuthentication.*/" in script  # \? kept literally
    assert "printf '%s\\n' \"nameserver 1.1.1.1\"" in script
    assert "# a comment inside the script is not a template comment\n" in script
    assert ctx["ETH0_DNS"] == '$NETWORK[DNS, NETWORK_ID="0"]'
    assert ctx["WIN_PATH"] == "C:\\Program Files\\App\\bin\\"
    assert ctx["SSH_PUBLIC_KEY"] == "$USER[SSH_PUBLIC_KEY]"
    assert list(ctx)[-1] == "TOKEN"


def test_corpus_raw_xml_and_pci() -> None:
    t = corpus("vm_raw_kvm.tmpl")
    raw = t.vectors("RAW")[0]
    assert raw["TYPE"] == "kvm"
    assert raw["DATA"].startswith('<devices>\n  <serial type="pty"><target port="0"/></serial>')
    assert raw["DATA_VMX"] == 'pciHole.start = "2048"'
    assert len(t.vectors("PCI")) == 2


def test_corpus_user_inputs_and_sched() -> None:
    inputs = corpus("vm_user_inputs.tmpl").vectors("USER_INPUTS")[0]
    assert inputs["FLAVOR"] == "M|list|Flavour|small,medium,large|medium"
    assert inputs["BLOG_TITLE"] == "M|text|Blog title| |My Blog"
    t = corpus("vm_sched_requirements.tmpl")
    req = t.scalar("SCHED_REQUIREMENTS")
    assert req is not None and '& HOSTNAME = "compute-*" & !(HOSTNAME' in req
    assert 'PCI_DEVICES/VENDOR @> "10de" & CURRENT_VMS != 0' in req
    assert t.scalar("SCHED_DS_RANK") == "FREE_MB"
    assert [a["ACTION"] for a in t.vectors("SCHED_ACTION")] == ["poweroff", "snapshot-create"]


def test_corpus_networks() -> None:
    ars = corpus("vnet_vxlan_dualstack.tmpl").vectors("AR")
    assert [a["TYPE"] for a in ars] == ["IP4_6", "IP6", "IP6_STATIC", "ETHER", "IP4"]
    assert ars[0]["IP"] == "192.168.42.10"
    bridged = corpus("vnet_bridged.tmpl")
    assert bridged.vectors("AR")[1]["GATEWAY"] == "203.0.113.254"
    assert bridged.scalar("PHYDEV") == ""


def test_corpus_lower_case_names_are_upper_cased() -> None:
    t = corpus("vmgroup_and_vrouter.tmpl")
    assert t.keys()[:2] == ["NAME", "ROLE"]
    assert t.vectors("role")[2] == {"NAME": "db", "POLICY": "NONE", "HOST_AFFINED": "20"}
    assert t.scalar("keepalived_password") == 's3cr3t "quoted" pw'
    # the syntax tree keeps the spelling as written
    doc = parse_preserving((CORPUS_DIR / "vmgroup_and_vrouter.tmpl").read_text())
    assert [a.key for a in doc.attributes][:4] == ["name", "role", "role", "Role"]


def test_corpus_odd_spacing() -> None:
    t = corpus("odd_spacing_no_eol.tmpl")
    assert t.items()[:6] == [
        ("CPU", "1"),
        ("MEMORY", "512"),
        ("NAME", "spaces   inside   "),
        ("EMPTY_ONE", ""),
        ("EMPTY_TWO", ""),
        ("EMPTY_THREE", ""),
    ]
    assert t.vectors("NIC") == [{"NETWORK_ID": "0"}, {"NETWORK_ID": "1", "MODEL": "e1000"}]
    assert t.scalar("BACKSLASHES") == "a\\b \\\\ \\q"
    assert t.scalar("LAST") == "no newline at the end"


def test_crlf_bom_and_tabs_round_trip() -> None:
    text = '\ufeffCPU = 1\r\n\tMEMORY=\t512 \r\n# c\r\nDISK = [\r\n  IMAGE_ID = 3,\r\n  SIZE = "10"\r\n]\r\n'
    doc = parse_preserving(text)
    assert doc.render() == text
    assert doc.template() == Template(
        [("CPU", "1"), ("MEMORY", "512"), ("DISK", [("IMAGE_ID", "3"), ("SIZE", "10")])]
    )


def test_syntax_tree_shape() -> None:
    doc = parse_preserving('# head\ncpu= 1 # one\nD = [ A = "x" ,\n b=2 ]\n')
    assert doc == Document(
        (
            "# head\n",
            AttrNode("cpu", "= ", ScalarNode("1", "1")),
            " # one\n",
            AttrNode(
                "D",
                " = ",
                VectorNode(
                    (
                        "[ ",
                        AttrNode("A", " = ", ScalarNode('"x"', "x")),
                        " ,\n ",
                        AttrNode("b", "=", ScalarNode("2", "2")),
                        " ]",
                    )
                ),
            ),
            "\n",
        )
    )


def test_empty_and_comment_only_texts() -> None:
    for text in ["", "\n\n", "# only a comment", "  # c\n\t\n# d\n"]:
        doc = parse_preserving(text)
        assert doc.render() == text
        assert doc.template() == Template()
    assert render(Template()) == ""


# --- errors -----------------------------------------------------------------------------

BAD = [
    # (text, line, column, message)
    ('NAME = "unterminated\nCPU = 1\n', 1, 8, "unterminated quoted value"),
    ('A = 1\nB = "ends with an escaped quote\\"\n', 2, 5, "unterminated quoted value"),
    ("CPU 1\n", 1, 5, "missing '=' after attribute name CPU, found '1'"),
    ("CPU = 1\nMEMORY\n", 2, 7, "missing '=' after attribute name MEMORY, found end of line"),
    ("CPU", 1, 4, "missing '=' after attribute name CPU, found end of text"),
    ("  = 3\n", 1, 3, "missing attribute name before '='"),
    ("DISK = [ = 3 ]\n", 1, 10, "missing attribute name before '='"),
    ("MY-KEY = 1\n", 1, 3, "invalid character '-' in attribute name 'MY-KEY'"),
    ("A = 1\nCPU.MODEL = x\n", 2, 4, "invalid character '.' in attribute name 'CPU.MODEL'"),
    ("NÄME = 1\n", 1, 2, "invalid character 'Ä' in attribute name"),
    ("DISK = [ SI$E = 1 ]\n", 1, 12, "invalid character '$' in attribute name 'SI$E'"),
    ('"KEY" = 1\n', 1, 1, "unexpected '\"', expected an attribute name"),
    ("] = 1\n", 1, 1, "unexpected ']', expected an attribute name"),
    (
        "DISK = [ IMAGE_ID = 3,\n  SIZE = 1024\n",
        1,
        8,
        "unterminated vector DISK: '[' is never closed",
    ),
    ("DISK = [", 1, 8, "unterminated vector DISK"),
    ("NIC = [ A = 1,\n  B", 1, 7, "unterminated vector NIC"),
    ('X = [ A = "1" # c\n', 1, 5, "unterminated vector X"),
    ("DISK = [ A = [ B = 1 ] ]\n", 1, 14, "nested vectors are not allowed (in vector DISK)"),
    ("A = 1\nDISK = [\n  X = 1,\n  Y = [ Z = 2 ]\n]\n", 4, 7, "nested vectors are not allowed"),
    ('NAME = "vm" extra\n', 1, 13, "unexpected 'e' after the value of NAME"),
    ('NAME = "a" "b"\n', 1, 12, "unexpected '\"' after the value of NAME"),
    ("NAME = a, b\n", 1, 9, "unexpected ',' after the value of NAME (quote values containing it)"),
    ("REQ = CPU = 1\n", 1, 11, "unexpected '=' after the value of REQ"),
    ("KEY = $USER[SSH]\n", 1, 12, "unexpected '[' after the value of KEY"),
    ("NAME = a]\n", 1, 9, "unexpected ']' after the value of NAME"),
    ("CPU = 1 MEMORY = 2\n", 1, 16, "unexpected '=' after the value of CPU"),
    ("DISK = [ A = 1 B = 2 ]\n", 1, 18, "expected ',' or ']' in vector DISK, found '='"),
    ("DISK = [ A = 1\n  B = 2 ]\n", 2, 3, "expected ',' or ']' in vector DISK, found 'B'"),
    ('DISK = [ A = "1" "2" ]\n', 1, 18, "expected ',' or ']' in vector DISK, found '\"'"),
    ("DISK = [ ]\n", 1, 8, "empty vector DISK"),
    ("DISK = [\n  # nothing\n]\n", 1, 8, "empty vector DISK"),
    ("DISK = [ A = 1, ]\n", 1, 15, "trailing ',' before ']' in vector DISK"),
    ("DISK = [ A = 1,, B = 2 ]\n", 1, 16, "unexpected ',', expected an attribute name"),
    ("DISK = [ A = 1, a = 2 ]\n", 1, 17, "duplicate attribute A in vector DISK"),
    ("NIC = [ MODEL = x,\n  model = y ]\n", 2, 3, "duplicate attribute MODEL in vector NIC"),
]


@pytest.mark.parametrize(("text", "line", "column", "message"), BAD)
def test_bad_input_positions(text: str, line: int, column: int, message: str) -> None:
    with pytest.raises(TemplateError) as info:
        parse(text)
    e = info.value
    assert (e.line, e.column) == (line, column), str(e)
    assert message in e.message
    assert str(e) == f"line {line}, column {column}: {e.message}"


def test_template_error_is_a_value_error() -> None:
    assert issubclass(TemplateError, ValueError)
    assert str(TemplateError("no position")) == "no position"


def test_invalid_utf8_bytes_position() -> None:
    with pytest.raises(TemplateError) as info:
        parse(b'A = 1\nNAME = "caf\xc3\xa9 \xff"\n')
    assert (info.value.line, info.value.column) == (2, 14)
    assert info.value.message == "invalid UTF-8"


# --- the 1 MiB limit --------------------------------------------------------------------


def padded(total_bytes: int) -> str:
    """A one-attribute template of exactly `total_bytes` UTF-8 bytes."""
    head = 'DESCRIPTION = "'
    return head + "x" * (total_bytes - len(head) - 2) + '"\n'


def test_limit_exactly_one_mib_is_accepted() -> None:
    text = padded(MAX_TEMPLATE_BYTES)
    assert len(text.encode()) == MAX_TEMPLATE_BYTES
    t = parse(text)
    assert len(t.scalar("DESCRIPTION") or "") == MAX_TEMPLATE_BYTES - 17


def test_limit_one_byte_over_is_refused() -> None:
    text = padded(MAX_TEMPLATE_BYTES + 1)
    for parser in (parse, parse_preserving):
        with pytest.raises(TemplateError) as info:
            parser(text)
        assert str(info.value) == "template of 1048577 bytes exceeds the 1 MiB limit"
        assert info.value.line is None
    with pytest.raises(TemplateError, match="1048577 bytes"):
        parse(text.encode())


def test_limit_counts_utf8_bytes_not_characters() -> None:
    chars = MAX_TEMPLATE_BYTES // 2  # 'é' is two bytes: twice the limit in bytes
    text = 'A = "' + "é" * chars + '"'
    with pytest.raises(TemplateError, match=f"template of {2 * chars + 6} bytes exceeds"):
        parse(text)
    check_size("é" * (MAX_TEMPLATE_BYTES // 2))  # exactly at the limit: fine


def test_large_templates_parse_fast() -> None:
    many = "".join(f'DISK = [ IMAGE_ID = {i}, SIZE = "{i * 10}" ]\n' for i in range(20000))
    assert len(many.encode()) < MAX_TEMPLATE_BYTES
    start = time.perf_counter()
    t = parse(many)
    assert len(t.vectors("DISK")) == 20000
    assert parse_preserving(many).render() == many
    unterminated = 'A = "' + "\\x" * (MAX_TEMPLATE_BYTES // 2 - 8)
    with pytest.raises(TemplateError, match="unterminated quoted value"):
        parse(unterminated)
    assert time.perf_counter() - start < 5


# --- printing ---------------------------------------------------------------------------


def test_render_canonical_form() -> None:
    t = Template([("CPU", "1"), ("DISK", [("IMAGE_ID", "3"), ("SIZE", "1024")]), ("E", "")])
    assert render(t) == 'CPU = "1"\nDISK = [\n  IMAGE_ID = "3",\n  SIZE = "1024" ]\nE = ""\n'


@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        ("plain", '"plain"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("s/\\s+//", '"s/\\s+//"'),  # a lone backslash needs no doubling
        ("ends with \\", '"ends with \\\\"'),
        ('\\"', '"\\\\\\""'),
        ("a\\\\b", '"a\\\\\\b"'),
        ("two\nlines # not a comment, [x]", '"two\nlines # not a comment, [x]"'),
    ],
)
def test_quote(value: str, quoted: str) -> None:
    assert quote(value) == quoted
    assert parse(f"K = {quoted}").scalar("K") == value


# --- the Template helpers ---------------------------------------------------------------


def sample() -> Template:
    return parse(
        "CPU = 1\nDISK = [ IMAGE_ID = 1 ]\nNIC = [ NETWORK_ID = 0 ]\n"
        "DISK = [ IMAGE_ID = 2, SIZE = 10 ]\nDISK = legacy\n"
    )


def test_get_and_friends() -> None:
    t = sample()
    assert t.get("cpu") == "1"
    assert t.get("DISK") == [("IMAGE_ID", "1")]
    assert t.get("MISSING") is None and t.get("MISSING", "d") == "d"
    assert t.get_all("disk") == [[("IMAGE_ID", "1")], [("IMAGE_ID", "2"), ("SIZE", "10")], "legacy"]
    assert t.vectors("DISK") == [{"IMAGE_ID": "1"}, {"IMAGE_ID": "2", "SIZE": "10"}]
    assert t.keys() == ["CPU", "DISK", "NIC"]
    assert "disk" in t and "MEMORY" not in t and 3 not in t
    assert len(t) == 5
    assert t.scalar("CPU") == "1" and t.scalar("MEMORY", "512") == "512"
    with pytest.raises(TemplateError, match="DISK is a vector"):
        t.scalar("disk")


def test_returned_values_are_copies() -> None:
    t = sample()
    disk = t.get("DISK")
    assert isinstance(disk, list)
    disk.append(("X", "y"))
    t.items()[1][1].append(("X", "y"))  # type: ignore[union-attr]
    assert t == sample()


def test_set_append_remove() -> None:
    t = sample()
    t.set("disk", {"image_id": "9"})  # first DISK replaced in place, the others removed
    assert t.items() == [
        ("CPU", "1"),
        ("DISK", [("IMAGE_ID", "9")]),
        ("NIC", [("NETWORK_ID", "0")]),
    ]
    t.set("MEMORY", "512")
    assert t.items()[-1] == ("MEMORY", "512")
    t.append("nic", [("network_id", "1"), ("model", "virtio")])
    assert t.vectors("NIC")[1] == {"NETWORK_ID": "1", "MODEL": "virtio"}
    assert t.remove("nic") == 2 and t.remove("nic") == 0
    assert t.keys() == ["CPU", "DISK", "MEMORY"]
    copy = t.copy()
    copy.set("CPU", "2")
    assert t.scalar("CPU") == "1" and copy != t


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("BAD-KEY", "1", "invalid attribute name 'BAD-KEY'"),
        ("", "1", "invalid attribute name ''"),
        ("CPU", 1, "value of CPU must be a string or a vector, got int"),
        ("DISK", [], "empty vector DISK"),
        ("DISK", {}, "empty vector DISK"),
        ("DISK", [("A", "1"), ("a", "2")], "duplicate attribute A in vector DISK"),
        ("DISK", [("A", 1)], "vector DISK: value of A must be a string"),
        ("DISK", [("A-B", "1")], "vector DISK: invalid attribute name 'A-B'"),
        ("DISK", ["A=1"], "expected (name, value) pairs"),
    ],
)
def test_mutators_validate(key: str, value: object, message: str) -> None:
    t = Template()
    with pytest.raises(TemplateError) as info:
        t.append(key, value)  # type: ignore[arg-type]
    assert message in str(info.value)
    with pytest.raises(TemplateError):
        Template([(key, value)])  # type: ignore[list-item]
    assert t == Template()


def test_template_equality_and_repr() -> None:
    assert Template([("cpu", "1")]) == Template([("CPU", "1")])
    assert Template([("CPU", "1")]) != Template([("CPU", "2")])
    assert Template() != {}
    assert repr(Template([("A", "1")])) == "Template([('A', '1')])"
    with pytest.raises(TypeError):
        hash(Template())


# --- the structured form ----------------------------------------------------------------


def test_to_dict_shape() -> None:
    assert sample().to_dict() == {
        "CPU": "1",
        "DISK": [{"IMAGE_ID": "1"}, {"IMAGE_ID": "2", "SIZE": "10"}, "legacy"],
        "NIC": {"NETWORK_ID": "0"},
    }


def test_from_dict_round_trip() -> None:
    t = sample()
    assert Template.from_dict(t.to_dict()) == grouped(t)
    d = {"cpu": 0.5, "memory": 1024, "nic": [{"network_id": 0}, {"NETWORK": "x", "ip": "1.2.3.4"}]}
    t2 = Template.from_dict(d)
    assert t2.to_dict() == {
        "CPU": "0.5",
        "MEMORY": "1024",
        "NIC": [{"NETWORK_ID": "0"}, {"NETWORK": "x", "IP": "1.2.3.4"}],
    }
    assert parse(render(t2)) == t2


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"CPU": True}, "CPU: expected a string or a number, got bool"),
        ({"CPU": None}, "CPU: expected a string or a number, got NoneType"),
        ({"DISK": [{"SIZE": [1]}]}, "DISK[0].SIZE: expected a string or a number, got list"),
        ({"DISK": [["A", "1"]]}, "DISK[0]: expected a string or a number, got list"),
        ({"DISK": {}}, "empty vector DISK"),
        ({"DISK": []}, "DISK: empty list"),
        ({"cpu": "1", "CPU": "2"}, "duplicate attribute CPU"),
        ({"DISK": {"size": "1", "SIZE": "2"}}, "duplicate attribute SIZE in vector DISK"),
        ({"BAD KEY": "1"}, "invalid attribute name 'BAD KEY'"),
        ({1: "1"}, "invalid attribute name 1"),
        (["CPU", "1"], "a template must be a mapping, got list"),
    ],
)
def test_from_dict_refuses(data: object, message: str) -> None:
    with pytest.raises(TemplateError) as info:
        Template.from_dict(data)  # type: ignore[arg-type]
    assert message in str(info.value)
    assert info.value.line is None
