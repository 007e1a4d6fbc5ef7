"""gaplabs: hands-on, auto-graded labs for machine-learning engineering."""

__version__ = "0.1.0"
