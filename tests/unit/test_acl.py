"""ACL rules: OpenNebula's encoding, the string form, validation and `oneacl list`."""

from dataclasses import replace

import pytest

from raftcore import acl
from raftcore.acl import ALL, CLUSTER, GROUP, INDIVIDUAL, AclSyntaxError, Rule

T = acl.RESOURCE_TYPES
R = acl.RIGHTS


def test_encoding_constants_are_opennebulas():
    # AclRule.cc and PoolObjectSQL.h (OpenNebula 6.x).
    assert (INDIVIDUAL, GROUP, ALL, CLUSTER) == (
        0x100000000,
        0x200000000,
        0x400000000,
        0x800000000,
    )
    assert T == {
        "VM": 0x1000000000,
        "HOST": 0x2000000000,
        "NET": 0x4000000000,
        "IMAGE": 0x8000000000,
        "USER": 0x10000000000,
        "TEMPLATE": 0x20000000000,
        "GROUP": 0x40000000000,
        "DATASTORE": 0x100000000000,
        "CLUSTER": 0x200000000000,
        "DOCUMENT": 0x400000000000,
        "ZONE": 0x800000000000,
        "SECGROUP": 0x1000000000000,
        "VDC": 0x2000000000000,
        "VROUTER": 0x4000000000000,
        "MARKETPLACE": 0x8000000000000,
        "MARKETPLACEAPP": 0x10000000000000,
        "VMGROUP": 0x20000000000000,
        "VNTEMPLATE": 0x40000000000000,
        "BACKUPJOB": 0x100000000000000,
    }
    assert acl.UNNAMEABLE_TYPES == {"ACL": 0x80000000000, "HOOK": 0x80000000000000}
    assert R == {"USE": 1, "MANAGE": 2, "ADMIN": 4, "CREATE": 8}


def test_parse_the_example_rule():
    rule = acl.parse("#5 IMAGE+TEMPLATE/@103 USE+MANAGE #0")
    assert rule == Rule(
        None,
        INDIVIDUAL | 5,
        T["IMAGE"] | T["TEMPLATE"] | GROUP | 103,
        R["USE"] | R["MANAGE"],
        INDIVIDUAL | 0,
    )
    assert acl.format(rule) == "#5 IMAGE+TEMPLATE/@103 USE+MANAGE #0"


@pytest.mark.parametrize(
    "text, user, resource, rights, zone",
    [
        (
            "@1 VM+IMAGE+TEMPLATE+DOCUMENT+SECGROUP+VMGROUP+BACKUPJOB/* CREATE *",
            0x200000001,
            0x121429400000000,
            0x8,
            0x400000000,
        ),
        ("* ZONE/* USE *", 0x400000000, 0x800400000000, 0x1, 0x400000000),
        ("* MARKETPLACE+MARKETPLACEAPP/* USE *", 0x400000000, 0x18000400000000, 0x1, 0x400000000),
        ("@100 HOST/%3 MANAGE #0", 0x200000064, 0x2800000003, 0x2, 0x100000000),
        ("#7 USER/#9 ADMIN *", 0x100000007, 0x10100000009, 0x4, 0x400000000),
    ],
)
def test_parse_encodes_as_opennebula(text, user, resource, rights, zone):
    # The bootstrap rules' integers are what oned stores for them.
    rule = acl.parse(text)
    assert (rule.user, rule.resource, rule.rights, rule.zone) == (user, resource, rights, zone)
    assert acl.format(rule) == text


def test_names_are_case_insensitive_and_whitespace_free_form():
    canonical = "#5 IMAGE+TEMPLATE/@103 USE+MANAGE #0"
    for text in (
        "#5 image+Template/@103 use+MANAGE #0",
        "  #5\tIMAGE+TEMPLATE/@103   USE+MANAGE\n#0  ",
        "#005 TEMPLATE+IMAGE/@0103 MANAGE+USE #00",
    ):
        assert acl.format(acl.parse(text)) == canonical


def test_zone_defaults_to_the_current_zone():
    assert acl.parse("#5 VM/* USE").zone == INDIVIDUAL | 0
    assert acl.parse("#5 VM/* USE", default_zone=3).zone == INDIVIDUAL | 3
    assert acl.parse("#5 VM/* USE *", default_zone=3).zone == ALL
    with pytest.raises(AclSyntaxError, match="default zone"):
        acl.parse("#5 VM/* USE", default_zone=-1)


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty ACL rule"),
        ("   \t ", "empty ACL rule"),
        ("#5", "3 or 4 components .* got 1"),
        ("#5 VM/*", "3 or 4 components .* got 2"),
        ("#5 VM/* USE #0 extra", "3 or 4 components .* got 5"),
        # user component
        ("%100 VM/* USE", r"user selector '%100' is not allowed \(the cluster selector"),
        ("# VM/* USE", "user selector '#': the id is missing"),
        ("#x VM/* USE", "user selector '#x': the id 'x' is not a non-negative integer"),
        ("#-1 VM/* USE", "user selector '#-1': the id '-1' is not"),
        ("#+1 VM/* USE", "user selector '#\\+1'"),
        ("#1.5 VM/* USE", "user selector '#1.5'"),
        ("#\uff12 VM/* USE", "is not a non-negative integer"),  # a fullwidth digit
        ("#4294967296 VM/* USE", "id 4294967296 exceeds 2147483647"),
        ("#2147483648 VM/* USE", "id 2147483648 exceeds 2147483647"),
        ("*1 VM/* USE", "'\\*' takes no id"),
        ("5 VM/* USE", "user selector '5' must start with one of # @ \\*"),
        ("ALL VM/* USE", "user selector 'ALL' must start with one of"),
        # resource component
        ("#5 VM USE", "resource component 'VM' must be TYPE"),
        ("#5 VM/*/* USE", "with one '/'"),
        ("#5 /* USE", "no resource type in resources '/\\*'"),
        ("#5 VM+/* USE", "empty resource type name in resources 'VM\\+/\\*'"),
        ("#5 VM++IMAGE/* USE", "empty resource type name"),
        ("#5 FOO/* USE", "unknown resource type 'FOO' in resources 'FOO/\\*'; allowed: VM, HOST"),
        ("#5 ACL/* USE", "ACL cannot be named in a rule"),
        ("#5 VM+vm/* USE", "resource type VM repeated"),
        ("#5 VM/ USE", "resource selector is empty"),
        ("#5 VM/#x USE", "resource selector '#x'"),
        ("#5 VM/$1 USE", "resource selector '\\$1' must start with one of # @ \\* %"),
        ("#5 VM/%1 USE", "%cid applies only to HOST, NET and DATASTORE, not to VM"),
        ("#5 HOST+VM/%1 USE", "not to VM"),
        ("#5 HOST/@1 USE", "@gid cannot apply to HOST, GROUP, CLUSTER, ZONE or VDC"),
        ("#5 VM/#1 USE *", "#id with zone \\* applies only to USER, GROUP, ZONE and VDC"),
        # rights component
        ("#5 VM/* FLY", "unknown right 'FLY' in rights 'FLY'; allowed: USE, MANAGE, ADMIN"),
        ("#5 VM/* USE+", "empty right name in rights 'USE\\+'"),
        ("#5 VM/* USE+use", "right USE repeated"),
        # zone component
        ("#5 VM/* USE @1", "zone selector '@1' is not allowed; expected one of #id, \\*"),
        ("#5 VM/* USE %1", "zone selector '%1' is not allowed"),
        ("#5 VM/* USE #", "zone selector '#': the id is missing"),
        ("#5 VM/* USE 0", "zone selector '0' must start with one of # \\*"),
    ],
)
def test_malformed_rules_are_refused_precisely(text, message):
    with pytest.raises(AclSyntaxError, match=message):
        acl.parse(text)


def test_federated_types_may_take_an_id_in_every_zone():
    rule = acl.parse("#5 USER+GROUP/#9 MANAGE *")
    assert rule.zone == ALL


def test_parse_rejects_non_strings():
    with pytest.raises(AclSyntaxError, match="must be a string"):
        acl.parse(None)  # type: ignore[arg-type]


def test_error_is_a_value_error():
    assert issubclass(AclSyntaxError, ValueError)


# --- validate: integer-encoded rules from commands ---------------------------------------

GOOD = acl.parse("#5 IMAGE+TEMPLATE/@103 USE+MANAGE #0")


def with_(**fields):
    return Rule(**{**GOOD.to_record(), **fields})


def test_validate_accepts_parsed_rules():
    acl.validate(GOOD)
    acl.validate(with_(id=7))


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"id": -1}, "'id' must be None or an id"),
        ({"id": "3"}, "'id' must be None or an id"),
        ({"user": "5"}, "'user' must be an integer, got str"),
        ({"user": True}, "'user' must be an integer, got bool"),
        ({"user": -5}, "'user' must be an unsigned 64-bit integer"),
        ({"user": 2**64}, "'user' must be an unsigned 64-bit integer"),
        ({"user": 5}, "'user' = 0x5 needs exactly one selector flag"),
        ({"user": INDIVIDUAL | GROUP | 5}, "'user' = 0x300000005 needs exactly one selector"),
        ({"user": CLUSTER | 5}, "'user' = 0x800000005 needs exactly one selector flag"),
        ({"user": ALL | 5}, "'user' = 0x400000005: the \\* selector takes id 0"),
        ({"user": INDIVIDUAL | 0x80000000}, "id 2147483648 exceeds"),
        ({"user": INDIVIDUAL | T["VM"]}, "'user' = 0x1100000000 has unknown bits 0x1000000000"),
        ({"resource": GROUP | 103}, "'resource' = 0x200000067 names no resource type"),
        ({"resource": T["VM"] | 103}, "'resource' = 0x1000000067 needs exactly one selector"),
        ({"resource": T["VM"] | GROUP | ALL}, "'resource' .* needs exactly one selector flag"),
        (
            {"resource": T["VM"] | acl.UNNAMEABLE_TYPES["ACL"] | ALL},
            "unknown resource type bits 0x80000000000",
        ),
        ({"resource": (1 << 63) | T["VM"] | ALL}, "unknown resource type bits 0x8000000000000000"),
        ({"resource": T["VM"] | CLUSTER | 1}, "%cid applies only to HOST, NET and DATASTORE"),
        ({"rights": 0}, "'rights' = 0x0 must be a non-empty combination"),
        ({"rights": 0x10}, "'rights' = 0x10 must be a non-empty combination"),
        ({"zone": GROUP | 1}, "'zone' = 0x200000001 needs exactly one selector flag of #id"),
        ({"zone": 0}, "'zone' = 0x0 needs exactly one selector flag"),
        ({"zone": ALL | 3}, "'zone' = 0x400000003: the \\* selector takes id 0"),
    ],
)
def test_validate_names_the_bad_field(fields, message):
    with pytest.raises(AclSyntaxError, match=message):
        acl.validate(with_(**fields))


def test_format_refuses_an_invalid_rule():
    with pytest.raises(AclSyntaxError, match="'rights'"):
        acl.format(with_(rights=0))


def test_records_round_trip_and_are_checked():
    rule = with_(id=12)
    assert rule.to_record() == {
        "id": 12,
        "user": rule.user,
        "resource": rule.resource,
        "rights": rule.rights,
        "zone": rule.zone,
    }
    assert Rule.from_record(rule.to_record()) == rule
    with pytest.raises(AclSyntaxError, match="lacks zone"):
        Rule.from_record({k: v for k, v in rule.to_record().items() if k != "zone"})
    with pytest.raises(AclSyntaxError, match="unknown field\\(s\\) extra"):
        Rule.from_record({**rule.to_record(), "extra": 1})
    with pytest.raises(AclSyntaxError, match="'rights'"):
        Rule.from_record({**rule.to_record(), "rights": 99})
    with pytest.raises(AclSyntaxError, match="must be a map"):
        Rule.from_record([1, 2])  # type: ignore[arg-type]


def test_storage_keys():
    rule = with_(id=258)
    assert acl.user_key(rule) == (INDIVIDUAL | 5).to_bytes(8, "big")
    assert acl.by_user_key(rule) == acl.user_key(rule) + (258).to_bytes(8, "big")
    assert acl.selector_key(GROUP, 103) == (GROUP | 103).to_bytes(8, "big")
    assert acl.selector_key(ALL) == ALL.to_bytes(8, "big")
    with pytest.raises(AclSyntaxError, match="needs an id"):
        acl.by_user_key(GOOD)


# --- oneacl list --------------------------------------------------------------------------


def stored(text, rule_id):
    return replace(acl.parse(text), id=rule_id)


def bootstrap_rules():
    texts = (
        "@1 VM+IMAGE+TEMPLATE+DOCUMENT+SECGROUP+VMGROUP+BACKUPJOB/* CREATE *",
        "* ZONE/* USE *",
        "* MARKETPLACE+MARKETPLACEAPP/* USE *",
    )
    return [stored(text, i) for i, text in enumerate(texts)]


def test_oneacl_list_of_the_bootstrap_rules():
    # As `oneacl list` prints a fresh OpenNebula (right-aligned, one space between).
    assert acl.format_list(bootstrap_rules()).splitlines() == [
        "   ID     USER RES_VHNIUTGDCOZSvRMAPtB   RID OPE_UMAC  ZONE",
        "    0       @1     V--I-T---O-S----P-B     *     ---c     *",
        "    1        *     ----------Z--------     *     u---     *",
        "    2        *     --------------MA---     *     u---     *",
    ]


def test_list_row_and_masks():
    rule = stored("#5 IMAGE+TEMPLATE+VDC+VNTEMPLATE/* USE+ADMIN #0", 7)
    assert acl.list_row(rule) == {
        "ID": "7",
        "USER": "#5",
        "RES_VHNIUTGDCOZSvRMAPtB": "---I-T------v----t-",
        "RID": "*",
        "OPE_UMAC": "u-a-",
        "ZONE": "#0",
    }
    assert acl.RESOURCE_COLUMN == "RES_VHNIUTGDCOZSvRMAPtB"
    assert acl.RIGHTS_COLUMN == "OPE_UMAC"


def test_list_truncates_cells_to_the_column_width_like_oneacl():
    rule = stored("#5 VM/@1234567 USE #0", 123456)
    line = acl.format_list([rule]).splitlines()[1]
    assert line.split() == ["12345", "#5", "V------------------", "@1234", "u---", "#0"]
