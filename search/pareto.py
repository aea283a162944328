"""Accuracy against cost: the Pareto front, the members that span it, and pruning by dominance.

A point is ``(accuracy, cost)``: accuracy up, cost down. The accuracy is the proxy's score (its
validation accuracy less its width penalty, ``search.trial.score_penalty``; with
both weights 0 the accuracy itself). Optuna's pruners compare one value
per step and do not support several objectives, so a ``--objective pareto`` search stops a
trial after epoch ``e`` only when a complete trial that costs no more had a higher score
after the same epoch ``e`` (it is dominated at equal training), and never before a trial has
completed. Costs are known before training, so a cheap trial is never stopped by a costlier
one, however accurate.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from optuna.trial import FrozenTrial, TrialState

from search.results import TrialSummary

T = TypeVar("T")
CLOSE = 0.01  # "within 1 point" of the most accurate


def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether ``a`` is at least as accurate and as cheap as ``b``, and better in one.

    Example:
        >>> dominates((0.9, 10), (0.8, 10)), dominates((0.9, 10), (0.9, 10)), dominates((0.9, 20), (0.8, 10))
        (True, False, False)
    """
    return a[0] >= b[0] and a[1] <= b[1] and (a[0] > b[0] or a[1] < b[1])


def front(items: Iterable[T], point: Callable[[T], tuple[float, float]]) -> list[T]:
    """The items no other item dominates, cheapest first (of equal points, the first kept).

    Example:
        >>> front([(0.9, 30), (0.8, 10), (0.85, 40), (0.7, 10), (0.8, 10)], lambda p: p)
        [(0.8, 10), (0.9, 30)]
    """
    items = list(items)
    kept: list[T] = []
    for index, item in enumerate(items):
        p = point(item)
        if any(dominates(point(other), p) for other in items):
            continue
        if any(point(other) == p for other in items[:index]):
            continue
        kept.append(item)
    return sorted(kept, key=lambda item: (point(item)[1], -point(item)[0]))


def trial_point(cost: str) -> Callable[[TrialSummary], tuple[float, float]]:
    return lambda t: (float(t.score if t.score is not None else 0.0), float(t.cost(cost) or 0.0))


def pareto_front(trials: Iterable[TrialSummary], cost: str) -> list[TrialSummary]:
    """The complete trials on the front of proxy accuracy against ``cost``, cheapest first."""
    done = [t for t in trials if t.state == "COMPLETE" and t.score is not None and t.cost(cost) is not None]
    return front(done, trial_point(cost))


def spanning(members: Sequence[TrialSummary], cost: str) -> list[TrialSummary]:
    """The front's members in the order the second phase trains them: the most accurate, the
    cheapest within 1 point of it, the knee (farthest above the line from the cheapest to the
    most accurate, with accuracy and log cost each scaled to [0, 1]), then the rest by accuracy.

    Example:
        >>> from search.results import TrialSummary
        >>> def t(n, acc, params): return TrialSummary(n, "COMPLETE", (n,), 1, acc, 0, 0, 1.0, None,
        ...                                           total_params=params)
        >>> [m.number for m in spanning([t(1, 0.70, 100), t(2, 0.85, 1000), t(3, 0.895, 10**5),
        ...                              t(4, 0.90, 10**6)], "params")]
        [4, 3, 2, 1]
    """
    if not members:
        return []
    point = trial_point(cost)
    best = max(members, key=lambda m: (point(m)[0], -point(m)[1]))
    close = min((m for m in members if point(m)[0] >= point(best)[0] - CLOSE), key=lambda m: point(m)[1])
    order = [best, close]
    knee = _knee(members, point)
    if knee is not None:
        order.append(knee)
    order += sorted(members, key=lambda m: -point(m)[0])
    unique: list[TrialSummary] = []
    for member in order:
        if all(member.number != u.number for u in unique):
            unique.append(member)
    return unique


def _knee(members: Sequence[TrialSummary], point: Callable[[TrialSummary], tuple[float, float]]) -> TrialSummary | None:
    accs = [point(m)[0] for m in members]
    logs = [math.log10(max(point(m)[1], 1e-12)) for m in members]
    if len(members) < 3 or max(accs) == min(accs) or max(logs) == min(logs):
        return None
    x = [(v - min(logs)) / (max(logs) - min(logs)) for v in logs]
    y = [(v - min(accs)) / (max(accs) - min(accs)) for v in accs]
    cheap = min(range(len(members)), key=lambda i: (x[i], -y[i]))
    top = max(range(len(members)), key=lambda i: (y[i], -x[i]))
    dx, dy = x[top] - x[cheap], y[top] - y[cheap]
    # Above the line cheap -> top: better accuracy for its cost than the line predicts.
    height = [(dx * (y[i] - y[cheap]) - dy * (x[i] - x[cheap])) for i in range(len(members))]
    index = max(range(len(members)), key=lambda i: height[i])
    return members[index] if height[index] > 0 else None


def dominated_at(epoch: int, accuracy: float, cost: float, others: Iterable[tuple[Sequence[float], float]]) -> bool:
    """Whether a trial at ``accuracy`` after ``epoch`` (1-based) that costs ``cost`` is dominated
    by one of ``others`` (each: its accuracy after every epoch, its cost) at the same epoch.

    Example:
        >>> dominated_at(1, 0.5, 100, [([0.6, 0.8], 100)]), dominated_at(1, 0.5, 100, [([0.6, 0.8], 101)])
        (True, False)
    """
    return any(len(curve) >= epoch and curve[epoch - 1] > accuracy and other <= cost for curve, other in others)


def completed_curves(trials: Iterable[FrozenTrial]) -> list[tuple[Sequence[float], float]]:
    """(accuracy after each epoch, cost) of a multi-objective study's complete trials."""
    return [(t.user_attrs.get("curve", []), t.values[1]) for t in trials
            if t.state == TrialState.COMPLETE and t.values is not None and len(t.values) > 1]
