"""bench.failover: which acknowledgement ends the failover window (no servers needed)."""

from bench.failover import IN_FLIGHT_S, Ack, Writer


def _ack(n, sent, acked):
    return Ack(n, f"k{n}", b"v", n, sent, acked, 1)


def test_ack_after_kill_ignores_in_flight_responses():
    w = Writer(["127.0.0.1:1"], "token")  # channels are lazy: nothing connects
    try:
        t_kill = 100.0
        w.stats.acks = [
            _ack(0, 99.0, 99.5),  # before the kill
            _ack(1, 99.9, t_kill + IN_FLIGHT_S / 2),  # sent before, back right after: old leader
            _ack(2, t_kill + 0.1, t_kill + 0.6),  # the first write the new leader commits
        ]
        assert w.wait_ack_after(t_kill, timeout=0).n == 2
        # An attempt sent before the kill but acknowledged well after it was committed by
        # the new leader (e.g. forwarded by a follower that waited for the election).
        w.stats.acks[2] = _ack(2, 99.95, t_kill + 0.5)
        assert w.wait_ack_after(t_kill, timeout=0).n == 2
        w.stats.acks = w.stats.acks[:2]
        assert w.wait_ack_after(t_kill, timeout=0) is None
    finally:
        for ch in w.channels:
            ch.close()
