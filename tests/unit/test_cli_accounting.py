"""oneacct / oneshowback rendering and argument errors."""

from zones.api.gen import accounting_pb2
from zones.cli import accounting


def test_acct_rows():
    rows = accounting.acct_rows(
        [
            {
                "vmid": 3,
                "hostname": "node1",
                "action": "terminate",
                "reason": 2,
                "stime": 1_700_000_000_000,
                "etime": 0,
                "memory": 512,
                "cpu": 0.5,
            }
        ]
    )
    assert rows == [[3, "node1", "terminate", "user", "11/14 22:13:20", "-", "512M", 0.5]]


def test_showback_rows():
    row = accounting_pb2.ShowbackRow(
        vm_id=3, vm_name="web", uid=5, gid=100, year=2026, month=11, hours=10, total_cost=23.5
    )
    assert accounting.showback_rows([row], {5: "alice"}, {100: "dev"}) == [
        [5, "alice", 100, "dev", 3, "web", 11, 2026, "10.00", "23.50"]
    ]


def test_bad_dates_and_months(cli_env, capsys):
    assert accounting.main_acct(["--start", "yesterday"]) == 1
    assert "must be YYYY-MM-DD" in capsys.readouterr().err
    assert accounting.main_showback(["list", "--start", "2026-13"]) == 1
    assert "out of range" in capsys.readouterr().err
    assert accounting.main_showback(["list", "--start", "2026-05", "--end", "2026-04"]) == 1
    assert "before it starts" in capsys.readouterr().err
    assert accounting.main_acct([]) == 0  # no VMs yet: an empty table
