"""The NoC click protocol on hand-made masks: where each click goes and what sign it has."""

import numpy as np

from segdemo.clicks import (
    Click,
    click_curve,
    clicks_to_reach,
    distance_to_boundary,
    first_click,
    next_click,
    sample_click,
)


def square_with_tail() -> np.ndarray:
    """An 11×11 square (rows and columns 2..12) with a thin bar to its right (rows 6..8)."""
    mask = np.zeros((20, 30), bool)
    mask[2:13, 2:13] = True
    mask[6:9, 13:29] = True
    return mask


def test_first_click_is_positive_at_the_deepest_point():
    # The square's centre (x=7, y=7) is 6 px from the outside; every other pixel is nearer.
    assert first_click(square_with_tail()) == Click(7, 7, True)


def test_image_border_counts_as_boundary():
    mask = np.zeros((20, 30), bool)
    mask[:, :10] = True  # the left third, touching the top, bottom and left borders
    click = first_click(mask)
    # Without the padding the deepest point would sit on the left border (10 px from the
    # right edge of the mask); with it, the first of the pixels 5 px from every boundary.
    assert (click.x, click.y) == (4, 4)
    assert distance_to_boundary(mask)[4, 4] == 5


def test_distance_is_exact_euclidean():
    rng = np.random.default_rng(0)
    for _ in range(5):
        mask = rng.uniform(size=(9, 13)) < 0.7
        padded = np.pad(mask, 1)
        outside = np.argwhere(~padded)
        brute = np.zeros(mask.shape)
        for y, x in np.argwhere(mask):
            brute[y, x] = np.sqrt(((outside - (y + 1, x + 1)) ** 2).sum(1)).min()
        assert np.allclose(distance_to_boundary(mask), brute)


def test_missed_part_gets_a_positive_click_there():
    truth = square_with_tail()
    prediction = truth.copy()
    prediction[:, 8:] = False  # the right of the square and the whole bar are missed
    click = next_click(truth, prediction)
    assert click.positive and truth[click.y, click.x] and not prediction[click.y, click.x]


def test_spill_gets_a_negative_click_there():
    truth = square_with_tail()
    prediction = truth.copy()
    prediction[14:20, 0:10] = True  # a blob below the square that is not the object
    click = next_click(truth, prediction)
    assert not click.positive and prediction[click.y, click.x] and not truth[click.y, click.x]
    # The blob (rows 14..19, x 0..9) is 3 px deep at rows 16-17, x 2..7: the first one wins.
    assert (click.x, click.y) == (2, 16)


def test_larger_error_wins_and_ties_are_negative():
    truth = np.zeros((20, 40), bool)
    truth[2:9, 2:9] = True  # a 7×7 object
    prediction = np.zeros_like(truth)
    prediction[2:9, 20:27] = True  # predicted a 7×7 square elsewhere: FN and FP equally deep
    assert next_click(truth, prediction).positive is False
    prediction[2:9, 20:27] = False
    prediction[2:5, 20:23] = True  # now the miss is deeper than the spill
    assert next_click(truth, prediction).positive is True


def test_perfect_prediction_needs_no_click():
    truth = square_with_tail()
    assert next_click(truth, truth.copy()) is None


def test_curve_and_noc_with_a_scripted_model():
    truth = square_with_tail()
    seen = []

    def predict(clicks, logits):
        seen.append((len(clicks), logits))
        mask = truth if len(clicks) >= 3 else np.zeros_like(truth)
        return mask, np.full((4, 4), float(len(clicks)))

    ious = click_curve(predict, truth)
    assert ious == [0.0, 0.0] + [1.0] * 18
    assert clicks_to_reach(ious, 0.9) == 3 and clicks_to_reach([0.5] * 20, 0.85) == 20
    # The previous low-res logits go back with every click; the first click has none.
    assert seen[0] == (1, None) and seen[1][1][0, 0] == 1.0 and len(seen) == 3


def test_training_clicks_land_in_the_right_region():
    rng = np.random.default_rng(1)
    truth = square_with_tail()
    prediction = truth.copy()
    prediction[:, 8:] = False
    prediction[14:20, 0:10] = True
    for _ in range(50):
        first = sample_click(rng, truth, None)
        assert first.positive and truth[first.y, first.x]
        click = sample_click(rng, truth, prediction)
        assert truth[click.y, click.x] == click.positive
        assert prediction[click.y, click.x] != click.positive
