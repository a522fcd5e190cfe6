"""The pipeline benchmark's summary: every throughput figure at the fastest of its rounds.

The machine is shared and a rate moves between runs minutes apart; the baseline was the
faster of two rounds while each service ran once, which judged the services against a
luckier reference than themselves. Now each counts the same way."""

from __future__ import annotations

from bench.pipeline import Outcome, Round, replica_envs, replica_names, summary


def _outcome(service: str, seconds: float | None, count: int = 1000) -> Outcome:
    applied = count if seconds is not None else count // 2
    return Outcome(service, "what", count, seconds, applied, "" if seconds else "stalled")


def _line(lines: list[str], start: str) -> str:
    [found] = [line for line in lines if line.strip().startswith(start)]
    return found


def test_every_figure_counts_at_its_fastest_round() -> None:
    first = Round(
        1,
        baseline=_outcome("baseline", 1.0),  # 1,000/s
        alone=[_outcome("profiles", 2.5), _outcome("analytics", 1.8)],  # 0.40, 0.56
    )
    second = Round(
        2,
        baseline=_outcome("baseline", 0.8),  # 1,250/s, the reference
        alone=[_outcome("profiles", 1.6), _outcome("analytics", None)],  # 625/s: 0.50
    )
    lines = summary([first, second], [])

    assert "1,250 events/s" in _line(lines, "baseline (fastest round)")
    profiles = _line(lines, "alone: profiles")
    assert "625 events/s" in profiles
    assert "ratio  0.500" in profiles
    assert "PASS" in profiles
    assert "(by round: 0.400 / 0.500)" in profiles  # each against its own round's baseline
    analytics = _line(lines, "alone: analytics")  # its second round did not finish
    assert "556 events/s" in analytics
    assert "ratio  0.444" in analytics
    assert "MISS" in analytics
    assert "(by round: 0.556 / -)" in analytics


def test_the_platform_counts_at_its_best_round_as_a_whole() -> None:
    # Round 1 has the faster profiles, round 2 the faster slowest service: the platform is
    # judged on round 2, not on a mix of both rounds' best.
    first = Round(
        1,
        baseline=_outcome("baseline", 1.0),
        platform=[_outcome("profiles", 2.0), _outcome("notifications", 10.0)],
    )
    second = Round(
        2,
        baseline=_outcome("baseline", 1.0),
        platform=[_outcome("profiles", 4.0), _outcome("notifications", 4.5)],
    )
    lines = summary([first, second], ["  latency line"])

    assert "ratio  0.250" in _line(lines, "platform: profiles")
    slowest = _line(lines, "platform slowest: notifications")
    assert "ratio  0.222" in slowest
    assert "PASS" in slowest
    assert "(round 2 of 2)" in slowest
    assert lines[-1] == "  latency line"


def test_a_platform_round_that_did_not_finish_is_never_the_best() -> None:
    first = Round(
        1,
        baseline=_outcome("baseline", 1.0),
        platform=[_outcome("profiles", 1.0), _outcome("notifications", None)],
    )
    second = Round(
        2,
        baseline=_outcome("baseline", 1.0),
        platform=[_outcome("profiles", 8.0), _outcome("notifications", 9.0)],
    )
    slowest = _line(summary([first, second], []), "platform slowest")
    assert "notifications" in slowest
    assert "(round 2 of 2)" in slowest
    assert "MISS" in slowest


def test_one_round_prints_no_round_notes() -> None:
    only = Round(1, baseline=_outcome("baseline", 1.0), alone=[_outcome("profiles", 2.0)])
    lines = summary([only], [])
    assert "by round" not in _line(lines, "alone: profiles")
    assert "ratio  0.500" in _line(lines, "alone: profiles")


def test_replicas_are_the_same_service_on_ports_of_their_own() -> None:
    env = {"RAPPORT_TOPIC_PREFIX": "p-", "RAPPORT_NOTIFICATIONS_MONGODB_DATABASE": "db"}
    ports = {"notifications": 8003}
    replicas = replica_envs("notifications", 3, env, ports)

    assert [name for name, _ in replicas] == replica_names("notifications", 3)
    assert replica_names("notifications", 3) == [
        "notifications",
        "notifications#2",
        "notifications#3",
    ]
    http = [one["RAPPORT_NOTIFICATIONS_HTTP_PORT"] for _, one in replicas]
    assert http[0] == "8003"  # the first where the bench looks for the service
    assert len(set(http)) == 3
    for _, one in replicas:  # one consumer group and database: replicas, not copies
        assert one["RAPPORT_TOPIC_PREFIX"] == "p-"
        assert one["RAPPORT_NOTIFICATIONS_MONGODB_DATABASE"] == "db"
    assert replica_envs("profiles", 1, env, {"profiles": 8001}) == [
        ("profiles", {**env, "RAPPORT_PROFILES_HTTP_PORT": "8001"})
    ]


def test_a_summary_of_replicas_says_the_targets_are_for_one() -> None:
    only = Round(1, baseline=_outcome("baseline", 1.0), alone=[_outcome("profiles", 2.0)])
    said = summary([only], [], replicas=2)
    assert "  each service ran as 2 processes: the targets are for one" in said
    assert not any("processes" in line for line in summary([only], []))
