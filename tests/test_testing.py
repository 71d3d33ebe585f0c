"""The test helpers' own promises (workers/testing.py)."""

from workers.testing import free_port


def test_free_port_never_hands_out_a_port_twice() -> None:
    """Workers bind their ports a second after they start: a port handed out and not
    bound yet must not be handed out again (a restarted worker found its admin port
    taken by another's metrics page)."""
    ports = [free_port() for _ in range(500)]
    assert len(set(ports)) == len(ports)
