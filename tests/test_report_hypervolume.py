import pytest

from lfm2_nas.report.front import hypervolume, non_dominated


def test_two_dimensional_staircase():
    # points (1,3), (2,2), (3,1) against (4,4): 3x1 + 2x1 + 1x1 ... = 6
    assert hypervolume([(1, 3), (2, 2), (3, 1)], (4, 4)) == pytest.approx(6.0)


def test_dominated_and_outside_points_add_nothing():
    base = hypervolume([(1, 1)], (3, 3))
    assert base == pytest.approx(4.0)
    assert hypervolume([(1, 1), (2, 2), (1, 1), (5, 0)], (3, 3)) == pytest.approx(base)


def test_three_dimensional_union_of_boxes():
    # two boxes of volume 2x2x1 and 1x1x2 (against the origin-shifted reference 2,2,2) overlap in 1x1x1
    points = [(0, 0, 1), (1, 1, 0)]
    assert hypervolume(points, (2, 2, 2)) == pytest.approx(4 + 2 - 1)


def test_one_dimension_and_empty():
    assert hypervolume([(3,), (1,)], (5,)) == pytest.approx(4)
    assert hypervolume([], (1, 1)) == 0.0


def test_mismatched_dimensions_raise():
    with pytest.raises(ValueError, match="2 objectives"):
        hypervolume([(1, 2, 3)], (4, 4))


def test_non_dominated():
    assert sorted(non_dominated([(1, 2), (2, 1), (2, 2), (1, 2)])) == [(1.0, 2.0), (2.0, 1.0)]


def test_dominates_is_optunas_dominance():
    """One definition of dominance, the same as optuna's own (values normalised to minimisation)."""
    import itertools

    from optuna.study import StudyDirection
    from optuna.study._multi_objective import _dominates
    from optuna.trial import create_trial

    from lfm2_nas.report.front import dominates, minimised

    directions = [StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE]
    values = list(itertools.product([1.0, 2.0], [1.0, 2.0]))
    for a, b in itertools.product(values, values):
        ours = dominates(*(tuple(minimised(v, d.name.lower()) for v, d in zip(p, directions)) for p in (a, b)))
        assert ours == _dominates(create_trial(values=list(a)), create_trial(values=list(b)), directions), (a, b)
