"""Imported by Python at start-up when this folder is on PYTHONPATH (the fault tests' Ray nodes and
drivers): registers the test-only `test-slow` method in every process, Ray workers included.
(A plain module beside this one: a `tests` package that some wheels install would shadow ours.)"""
try:
    import facefill_test_slow  # noqa: F401
except ImportError:  # a process without the repository on its path (never in the tests)
    pass
