"""How closely a score must match its reference, and a top-k check built on that.

The same .tflite does not give bit-identical scores everywhere: XNNPACK and the
builtin kernels sum in different orders, aarch64 builds round differently from
x86_64, and on aarch64 even the same (user, movie) pair can move by one float32
step with its position in the batch. Scores are therefore compared within
SCORE_ATOL, never for equality.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

# Measured on the fixtures' scores (3 to 4.6; one float32 step is 2.4e-7 or 4.8e-7 there):
# XNNPACK vs builtin kernels on x86_64 at most 1.9e-6; aarch64 (qemu, tflite-runtime or
# LiteRT) vs the x86_64 references at most 1.4e-6; the same pair at another batch position
# on aarch64 2.4e-7. A real bug (wrong row, input or output) moves a score far more.
SCORE_ATOL = 1e-5

# Personalized scores against numpy's exact ridge solve: the graph solves in float32 with D + 1
# conjugate-gradient steps, measured at most 1.2e-5 off on the fixtures' histories (6.5e-6 on the
# state). A runtime mistake (history not cleaned, state from another model) moves scores by 1e-2 or more.
PERSONALIZED_ATOL = 5e-5


def assert_top_k_matches(
    ranked: Sequence[tuple[str, float]], expected: Mapping[str, float], k: int, atol: float = SCORE_ATOL
) -> None:
    """Checks that `ranked` is the reference top `k`, up to SCORE_ATOL.

    Every score is within `atol` of its title's reference score and the
    list is best first. Titles must keep the reference order wherever their
    reference scores differ by more than `atol` (closer pairs may swap
    between platforms); a title clearly inside the reference top k must be
    listed and one clearly outside it must not.

    Args:
        ranked: (title, score) pairs as the code under test returned them, best first.
        expected: the reference score of every candidate title.
        k: how many results were asked for.
        atol: the tolerance (SCORE_ATOL, or PERSONALIZED_ATOL for personalized scores).
    """
    titles = [title for title, _ in ranked]
    scores = [score for _, score in ranked]
    assert len(titles) == min(k, len(expected)) and len(set(titles)) == len(titles), titles
    assert scores == sorted(scores, reverse=True), "results are not best first by their own scores"
    np.testing.assert_allclose(scores, [expected[title] for title in titles], rtol=0, atol=atol)
    last_included = sorted(expected.values(), reverse=True)[len(titles) - 1]
    for title, score in expected.items():
        if score > last_included + atol:
            assert title in titles, f"{title!r} (reference {score}) belongs in the top {k}: {titles}"
        if score < last_included - atol:
            assert title not in titles, f"{title!r} (reference {score}) does not belong in the top {k}: {titles}"
    for position, higher in enumerate(titles):
        for lower in titles[position + 1 :]:
            assert expected[lower] <= expected[higher] + atol, (
                f"{lower!r} (reference {expected[lower]}) should rank above {higher!r} (reference {expected[higher]})"
            )
