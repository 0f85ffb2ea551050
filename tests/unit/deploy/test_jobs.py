"""deploy/jobs.py on plain data: the timers' one operation decides per unit as systemd.service
would (start if not running, restart only a running one, enable if not enabled)."""

from __future__ import annotations

from deploy.jobs import timer_actions

TIMERS = ["a.timer", "b.timer", "c.timer"]


def test_fresh_host_starts_and_enables_every_timer() -> None:
    off = dict.fromkeys(TIMERS, False)
    assert timer_actions(TIMERS, ["a.timer"], off, off) == [("start", TIMERS), ("enable", TIMERS)]


def test_unchanged_timers_need_nothing() -> None:
    on = dict.fromkeys(TIMERS, True)
    assert timer_actions(TIMERS, [], on, on) == []


def test_only_a_running_changed_timer_is_restarted() -> None:
    on = dict.fromkeys(TIMERS, True)
    running = {**on, "c.timer": False}
    assert timer_actions(TIMERS, ["b.timer", "c.timer"], running, on) == [
        ("start", ["c.timer"]), ("restart", ["b.timer"])]
