"""Settings keys at the start of error lines become the options that set them."""

from oracles._cli import with_options

OPTIONS = {"engine_params": "--lj-sigma/--lj-epsilon", "engine_params.sigma": "--lj-sigma",
           "engine_params.rc": "--lj-sigma", "grid": "--grid", "tol": "--tol"}


def test_longest_key_wins_and_one_option_gives_one_line():
    lines = ["engine_params.sigma = -1.0: Input should be greater than 0",
             "engine_params.rc = -1.0: Input should be greater than 0",
             "engine_params: Input should be a valid dictionary"]
    assert with_options(lines, OPTIONS) == [
        "--lj-sigma = -1.0: Input should be greater than 0",
        "--lj-sigma/--lj-epsilon: Input should be a valid dictionary",
    ]


def test_only_a_whole_leading_key_is_renamed():
    assert with_options("gridded = 3: no", OPTIONS) == ["gridded = 3: no"]
    assert with_options("tolerance tol must be > 0", OPTIONS) == ["tolerance tol must be > 0"]
    assert with_options("tol must be > 0, got -1", OPTIONS) == ["--tol must be > 0, got -1"]
    assert with_options("grid.1 = 0: must be positive", OPTIONS) == ["--grid = 0: must be positive"]
    assert with_options("engine_params.sigma.x = 1", OPTIONS) == ["--lj-sigma.x = 1"]
    assert with_options("grid", OPTIONS) == ["--grid"]
    assert with_options([], OPTIONS) == []
