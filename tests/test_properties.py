"""Property tests: no input that validation accepts yields a non-finite model."""

import warnings

import numpy as np
from conftest import assert_finite_model
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.exceptions import ConvergenceWarning

from natgmm import NaturalDiagonalGMM

# Values from 1e-50 to 1e50 in magnitude, with exact repeats and zeros; a
# column may be rescaled by up to 1e+-100, so features span 1e-150 .. 1e150.
_values = st.one_of(
    st.floats(-1e50, 1e50, allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, 1.0, -1.0, 1e-50, 1e50, 3.0]),
)


@st.composite
def _problems(draw):
    n_samples = draw(st.integers(2, 40))
    n_features = draw(st.integers(1, 4))
    X = draw(arrays(np.float64, (n_samples, n_features), elements=_values))
    X[np.abs(X) < 1e-50] = 0.0
    if draw(st.booleans()):  # rescale a column to stress per-feature units
        j = draw(st.integers(0, n_features - 1))
        X[:, j] *= draw(st.sampled_from([1e-100, 1e-10, 1e10, 1e100]))
    n_components = draw(st.integers(1, min(4, n_samples)))
    weights = None
    if draw(st.booleans()):
        weights = draw(arrays(np.float64, n_samples, elements=st.floats(0.0, 5.0)))
        if not weights.sum() > 0:
            weights[0] = 1.0
    params = dict(
        n_components=n_components,
        init_params=draw(
            st.sampled_from(["kmeans", "k-means++", "random", "random_from_data", "bisect"])
        ),
        min_variance_relative=draw(st.sampled_from([0.0, 1e-3, 0.1])),
        min_weight=draw(st.sampled_from([0.0, 1e-5])),
        lower_precision_reg=draw(st.sampled_from([0.0, 1.0])),
        max_iter=draw(st.integers(1, 20)),
        split_merge=draw(st.sampled_from([0, 2])),  # moves after a converged fit
        annealing=draw(st.sampled_from([None, "floor", "fixed", "temperature"])),
        anneal_max_iter=draw(st.integers(1, 5)),
        # A sample of n_components rows (fewer than the data's, or not used).
        anneal_subsample=draw(st.sampled_from([None, n_components])),
        random_state=0,
    )
    return X, weights, params


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_problems(), st.sampled_from([np.float64, np.float32]))
def test_never_non_finite(problem, dtype):
    X, weights, params = problem
    if dtype == np.float32:  # keep variances (squares) inside float32's range
        X = np.clip(X, -1e15, 1e15)
        X[np.abs(X) < 1e-15] = 0.0
    X = X.astype(dtype)
    # reg_covar in the data's own units keeps it meaningful at any magnitude;
    # the floor below applies to the variance on top of it.
    spread = np.max(np.abs(X)) if np.any(X) else 1.0
    model = NaturalDiagonalGMM(reg_covar=1e-6 * float(spread) ** 2 or 1e-6, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.filterwarnings("ignore", message="Number of distinct clusters")
        try:
            model.fit(X, sample_weight=weights)
        except ValueError as error:
            # The only refusal allowed: sklearn's, for a variance that is zero.
            assert "ill-defined empirical covariance" in str(error), error
            return
    assert_finite_model(model, X)
